"""A learned frame selector: a small per-frame network scores every real frame; the student sees the k
frames of highest score, re-sorted by time.

  FrameScorer      the scorer (SCSampler / SOSampler's idea on YouTube-8M features): per frame, a linear
                   projection of one stream or both (`streams`: all | audio | rgb) to `hidden` units z_t, then
                   an MLP on [z_t, z_t - mean of z over the video's real frames] -> one score. The mean gives
                   each frame its video's context for the price of `hidden` units per frame (the projection
                   is linear, so the mean of projections is the projection of the mean). Padding frames
                   score `PAD_SCORE`, and never change a real frame's score.
                   `prior='far_from_mean'` also feeds it the frame's scale-free distance to the video's mean
                   frame and starts its score there (a zero-initialised learned residual on that distance).
  learned_indices  the k frames of highest score in temporal order (`content.top_k_in_time`'s conventions).
  select_learned   the student's frames; `differentiable=True` keeps the hard top-k in the forward pass
                   and sends the student's gradient to the scores through the perturbed top-k below
                   (straight-through), for the scorer trained end to end with the student.
  perturbed_selection
                   Berthet et al.'s perturbed optimizer (NeurIPS'20) as Cordonnier et al. use it for top-k
                   selection (CVPR'21): the expectation over Gaussian noise of the one-hot top-k-in-time
                   matrix, f32[B, k, T]; its Jacobian is estimated from the same samples,
                   d E[P] / d s = E[P(s + sigma Z) Z^T] / sigma.

How the scorer learns (by a ranking loss on the frozen teacher's or a label judge's judgements, or end
to end) is in `scorer_training.py`; its parameters live in the student's parameter tree under `SELECTOR_KEY`, so the
student's optimizer trains them and its checkpoint saves them.
"""
import functools
from typing import Any, Dict, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from fewframes_jax import specs
from fewframes_jax.specs import SelectorSpec
from fewframes_jax.models.common import frame_mask
from fewframes_jax.sampling.rules import gather_frames
from fewframes_jax.sampling.content import top_k_in_time

SELECTOR_KEY = "selector"        # the scorer's parameters in the student's parameter tree
STREAMS = specs.SELECTOR_STREAMS
PRIORS = specs.SELECTOR_PRIORS
PAD_SCORE = -1e9
METHOD = specs.LEARNED           # the `student.sampling` value that asks for a learned selector


def frame_scorer(selector: SelectorSpec, feature_sizes: Sequence[int]) -> "FrameScorer":
  """The scorer module of a learned selector's settings, for frames of `feature_sizes`."""
  return FrameScorer(feature_sizes=tuple(int(s) for s in feature_sizes), streams=selector.streams,
                     hidden=int(selector.hidden), mlp=int(selector.mlp), prior=selector.prior)


def init_params(scorer: "FrameScorer", rng: jax.Array, *, frames: int) -> Dict[str, Any]:
  """The scorer's initial parameters for videos of `frames` slots."""
  d = sum(scorer.feature_sizes)
  x, n = jnp.zeros([2, frames, d], jnp.float32), jnp.full([2], frames, jnp.int32)
  return jax.jit(scorer.init)(rng, x, n)["params"]


def scorer_flops(scorer: "FrameScorer", frames: int) -> float:
  """XLA FLOPs per video of a frame scorer on all `frames` slots (it looks at every frame)."""
  from fewframes_jax.metrics import flops as flops_lib  # pylint: disable=g-import-not-at-top  (XLA cost analysis)
  params = jax.eval_shape(lambda: init_params(scorer, jax.random.PRNGKey(0), frames=frames))
  x = jax.ShapeDtypeStruct((1, frames, sum(scorer.feature_sizes)), jnp.float32)
  n = jax.ShapeDtypeStruct((1,), jnp.int32)
  return flops_lib.scan_aware_flops(lambda p, x, n: scorer.apply({"params": p}, x, n), params, x, n)


def stream_slice(feature_sizes: Sequence[int], streams: str) -> Tuple[int, int]:
  """[start, stop) of the features the scorer reads in a frame of `feature_sizes` (rgb[, audio])."""
  sizes = tuple(int(s) for s in feature_sizes)
  if streams not in STREAMS:
    raise ValueError(f"student.selector.streams={streams!r}: expected one of {STREAMS}")
  if streams == "all":
    return 0, sum(sizes)
  if len(sizes) != 2:
    raise ValueError(f"student.selector.streams={streams!r} needs two streams (rgb, audio); "
                     f"feature_sizes={sizes}")
  return (sizes[0], sum(sizes)) if streams == "audio" else (0, sizes[0])


class FrameScorer(nn.Module):
  """Scores every frame. (frames f32[B, T, D], num_frames i32[B]) -> f32[B, T], `PAD_SCORE` at padding;
  a length past T counts T frames (as every selection rule).

  FLOPs per frame: about 2 * width * hidden + 2 * (2 * hidden) * mlp + 2 * mlp, width = the streams read
  (1152 for all, 128 for audio on YouTube-8M): at the defaults (hidden 4, mlp 16) XLA counts 3.2 M per
  300-frame video for all features and 0.45 M for audio (`benchmark/selection_cost.py`): at the paper's sizes
  (4,716 classes) at most 1.41% of any family's student at k >= 6 (NeXtVLAD k=6), 0.49% of the H-RNN
  student at k=10. The far_from_mean prior adds a distance per frame: 5.65 M (all features; 2.48% of
  NeXtVLAD at k=6, 0.86% of H-RNN at k=10) and 0.73 M (audio).
  """
  feature_sizes: Tuple[int, ...] = (1024, 128)
  streams: str = "all"
  hidden: int = 4
  mlp: int = 16
  prior: str = "none"

  @nn.compact
  def __call__(self, frames: jax.Array, num_frames: jax.Array) -> jax.Array:
    start, stop = stream_slice(self.feature_sizes, self.streams)
    if frames.shape[-1] != sum(self.feature_sizes):
      raise ValueError(f"FrameScorer: frames have {frames.shape[-1]} features, feature_sizes="
                       f"{self.feature_sizes}")
    if self.prior not in PRIORS:
      raise ValueError(f"student.selector.prior={self.prior!r}: expected one of {PRIORS}")
    x, real, count = _read(frames[..., start:stop], num_frames)

    def video_mean(v):  # [B, T, F] -> [B, 1, F] over the real frames
      return _video_mean(v, real, count)

    z = nn.Dense(self.hidden, name="project")(x)                                     # [B, T, h]
    features = [z, z - video_mean(z)]
    if self.prior == "far_from_mean":
      distance = far_from_mean_prior(x, video_mean(x), real, count)                # [B, T]
      features.append(distance[..., None])
    h = nn.relu(nn.Dense(self.mlp, name="hidden")(jnp.concatenate(features, axis=-1)))
    if self.prior == "far_from_mean":  # zero-initialised residual: at step 0 the selection IS far_from_mean
      score = distance + nn.Dense(1, kernel_init=nn.initializers.zeros, name="score")(h)[..., 0]
    else:
      score = nn.Dense(1, name="score")(h)[..., 0]
    return jnp.where(real, score, PAD_SCORE)


def _read(frames: jax.Array, num_frames: jax.Array):
  """The features a scorer reads f32[B, T, F] (zeros at padding), the real-frame mask bool[B, T] and the
  real-frame count f32[B, 1, 1] (at least 1); a length past T counts T frames."""
  num_frames = jnp.clip(num_frames.astype(jnp.int32), 0, frames.shape[1])
  real = frame_mask(num_frames, frames.shape[1])
  x = jnp.where(real[..., None], frames.astype(jnp.float32), 0.0)
  return x, real, jnp.maximum(num_frames, 1).astype(jnp.float32)[:, None, None]


def _video_mean(v: jax.Array, real: jax.Array, count: jax.Array) -> jax.Array:
  """[B, T, F] -> [B, 1, F]: the mean over each video's real frames."""
  return jnp.sum(jnp.where(real[..., None], v, 0.0), axis=1, keepdims=True) / count


def prior_scores(scorer: "FrameScorer", frames: jax.Array, num_frames: jax.Array) -> jax.Array:
  """f32[B, T]: the part of `scorer`'s score it does not learn, its prior (`far_from_mean_prior` over the
  streams it reads; 0 for prior='none' and at padding). frames f32[B, T, D], num_frames i32[B]."""
  if scorer.prior != "far_from_mean":
    return jnp.zeros(frames.shape[:2], jnp.float32)
  start, stop = stream_slice(scorer.feature_sizes, scorer.streams)
  x, real, count = _read(frames[..., start:stop], num_frames)
  return far_from_mean_prior(x, _video_mean(x, real, count), real, count)


def far_from_mean_prior(x: jax.Array, mean: jax.Array, real: jax.Array, count: jax.Array) -> jax.Array:
  """f32[B, T]: each real frame's L2 distance to its video's mean frame over the features read, divided by
  the video's mean distance (scale-free; about 1 on average; 0 at padding). x f32[B, T, F] (zero padding),
  mean f32[B, 1, F], real bool[B, T], count f32[B, 1, 1]. Ranking by it is `content.far_from_mean`."""
  squares = jnp.sum(jnp.square(x - mean), axis=-1)
  distance = jnp.where(real, jnp.sqrt(jnp.maximum(squares, 1e-12)), 0.0)
  return distance / (jnp.sum(distance, axis=1, keepdims=True) / count[:, :, 0] + 1e-6)


def learned_indices(scores: jax.Array, num_frames: jax.Array, k: int):
  """The k real frames of highest score f32[B, T] in temporal order -> (i32[B, k], num_frames_k i32[B])."""
  num_frames = jnp.clip(num_frames.astype(jnp.int32), 0, scores.shape[1])
  return top_k_in_time(scores, num_frames, k)


def _one_hot_selection(scores, num_frames, k):
  """f32[B, k, T]: row j is the one-hot of the j-th selected frame in time order (zeros past num_frames_k)."""
  indices, nk = learned_indices(scores, num_frames, k)
  valid = jnp.arange(k)[None, :] < nk[:, None]
  return jax.nn.one_hot(indices, scores.shape[1], dtype=jnp.float32) * valid[..., None]


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5))
def perturbed_selection(scores: jax.Array, num_frames: jax.Array, rng: jax.Array, k: int, sigma: float,
                        samples: int) -> jax.Array:
  """E_Z[one-hot top-k-in-time of (scores + sigma Z)], f32[B, k, T], over `samples` draws of Z ~ N(0, 1)."""
  return _perturbed_fwd(scores, num_frames, rng, k, sigma, samples)[0]


def _perturbed_fwd(scores, num_frames, rng, k, sigma, samples):
  noise = jax.random.normal(rng, (samples,) + scores.shape, jnp.float32)
  real = frame_mask(num_frames, scores.shape[1])
  noisy = jnp.where(real[None], scores[None] + sigma * noise, PAD_SCORE)
  one_hots = jax.vmap(lambda s: _one_hot_selection(s, num_frames, k))(noisy)   # [S, B, k, T]
  return jnp.mean(one_hots, axis=0), (one_hots, noise, num_frames, rng)


def _perturbed_bwd(k, sigma, samples, residuals, g):
  del k
  one_hots, noise, num_frames, rng = residuals
  # d/ds_t' of <g, E[P]> = E[<g, P(s + sigma Z)> Z_t'] / sigma.
  inner = jnp.einsum("bkt,sbkt->sb", g, one_hots)
  grad = jnp.einsum("sb,sbt->bt", inner, noise) / (sigma * samples)
  return grad, None, None  # num_frames and the key are integer inputs: no cotangent


perturbed_selection.defvjp(_perturbed_fwd, _perturbed_bwd)


def select_learned(frames: jax.Array, num_frames: jax.Array, k: int, scores: jax.Array, *,
                   differentiable: bool = False, rng: Optional[jax.Array] = None, sigma: float = 0.5,
                   samples: int = 8, return_indices: bool = False):
  """The k frames of highest score, in time order: (frames_k f32[B, k, D], num_frames_k i32[B]) plus the
  indices i32[B, k] if `return_indices`; rows past num_frames_k are exact zeros.

  `differentiable`: the forward value is the same hard selection; the gradient reaches `scores` through
  `perturbed_selection(scores, ..., rng)` (straight-through: frames_k + (P x - stop_gradient(P x)), whose
  value is frames_k exactly: the bracket is an exact zero).
  """
  if k > frames.shape[1]:
    raise ValueError(f"k={k} frames per student video must be <= the {frames.shape[1]} frames given")
  num_frames = jnp.clip(num_frames.astype(jnp.int32), 0, frames.shape[1])
  indices, nk = learned_indices(jax.lax.stop_gradient(scores), num_frames, k)
  frames_k = gather_frames(frames, indices, nk)
  if differentiable:
    if rng is None:
      raise ValueError("select_learned(differentiable=True) needs an rng for the perturbed top-k")
    p = perturbed_selection(scores, num_frames, rng, k, sigma, samples)
    soft = jnp.einsum("bkt,btd->bkd", p, frames.astype(jnp.float32)).astype(frames_k.dtype)
    frames_k = frames_k + (soft - jax.lax.stop_gradient(soft))
  if return_indices:
    return frames_k, nk, indices
  return frames_k, nk
