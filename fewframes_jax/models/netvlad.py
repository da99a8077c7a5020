"""WILLOW's gated NetVLAD (Miech et al. 2017, `NetVLADModelLF` in [W] `frame_level_models.py`).

The encoder of the reported run (`--netvlad_relu=False --gating=True`):

  frames f32[B, T, 1152] -> normalize_frames ('l2' by default) -> [optional random re-sampling]
  -> batch norm over the 1152-d frames (statistics over real frames only)
  -> video NetVLAD(1024, K) | audio NetVLAD(128, K/2)   (each: intra-L2 per cluster, then global L2)
  -> concat (1024*K + 128*K/2 = 278,528-d at K=256)
  -> Dense(hidden, with bias; no BN, no activation) -> ContextGating -> representation [B, hidden].

The classifier (gated MoE with probability gating) is the head of `VideoModel`, see `classifiers.py`.

Differences from [W], on purpose:
* Padding is masked instead of re-sampled: [W] draws 300 frame indices with replacement from the real
  frames, at train AND eval time, so its eval is random. `random_frames=True` reproduces that sampling
  (rng stream 'frames', needed at eval too); the default `False` uses every real frame once and masks the
  padding, which makes eval deterministic.
* Batch norm over frames uses only real frames (flax `BatchNorm(mask=...)`); [W] never sees padding
  because of its re-sampling.

The helpers `frame_batch_norm`, `l2_normalize`, `vlad_sums`, `residuals_from_sums` and `carried_sums` are
shared with `nextvlad.py`.
"""
import math
from typing import Any, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from fewframes_jax.models.common import (ContextGating, batch_norm, einsum_f32, frame_mask, normalize_frames,
                                         stream_sizes)

Array = jax.Array


def l2_normalize(x: Array, axis: int, epsilon: float = 1e-12) -> Array:
  """`tf.nn.l2_normalize` in float32: `x / sqrt(max(sum(x^2), eps))`; zero vectors stay zero, and the
  gradient at zero is finite (unlike dividing by `jnp.linalg.norm`)."""
  x = x.astype(jnp.float32)
  sum_sq = jnp.sum(x * x, axis=axis, keepdims=True)
  return x * jax.lax.rsqrt(jnp.maximum(sum_sq, epsilon))


def frame_batch_norm(x: Array, mask: Array, *, train: bool, name: str) -> Array:
  """Batch norm over per-frame features whose train-mode statistics use only real frames.

  x: [B, T, F]; mask: bool[B, T] (True for real frames) -> f32[B, T, F].
  Must be called inside a compact method (it creates a `BatchNorm` submodule named `name`). A batch
  without any real frame (only zero-length videos) would give 0/0 statistics; it falls back to all rows
  so that outputs stay finite (its running averages then move towards the padding's statistics).
  """
  bn_mask = jnp.logical_or(mask, ~jnp.any(mask))[..., None]
  return batch_norm(train=train, name=name)(x, mask=bn_mask)


def vlad_sums(assignments: Array, descriptors: Array, *, dtype: Any) -> Tuple[Array, Array]:
  """The two sums over descriptors a VLAD needs: (sum_n a[n, k] x[n] f32[B, D, K], sum_n a[n, k] f32[B, K]).

  assignments: f32[B, N, K] (zero for padding); descriptors: [B, N, D]. Additive over descriptors, which
  is what lets early exit add a few frames to the sums of the frames already read. The product runs in
  `dtype` with float32 accumulation; no [B, N, K, D] tensor is formed.
  """
  weighted = einsum_f32("bnk,bnd->bdk", assignments.astype(dtype), descriptors.astype(dtype))
  return weighted, jnp.sum(assignments.astype(jnp.float32), axis=1)


def residuals_from_sums(sums: Tuple[Array, Array], centres: Array) -> Array:
  """`sum_n a[n, k] * (x[n] - c[:, k])` = `a^T x - (sum_n a[n, k]) c[:, k]` from `vlad_sums`. -> f32[B, D, K]."""
  weighted, mass = sums
  return weighted - mass[:, None, :] * centres.astype(jnp.float32)[None]


def carried_sums(module: nn.Module, sums: Tuple[Array, Array], carry) -> Tuple[Array, Array]:
  """`sums` plus the carried sums of the frames read before (`carry`: this stream's entry of the
  'vlad_sums' collection, or None), sown into 'vlad_sums' for the next call (early exit)."""
  if carry is not None:
    sums = (sums[0] + carry["sums"][0], sums[1] + carry["sums"][1])
  module.sow("vlad_sums", "sums", sums, init_fn=lambda: None, reduce_fn=lambda _, new: new)
  return sums


def sample_random_frames(frames: Array, num_frames: Array, num_samples: int,
                         rng: Array) -> Tuple[Array, Array]:
  """[G]/[W] `SampleRandomFrames`: per slot, index `floor(U[0,1) * num_frames)`, with replacement.

  frames: [B, T, D]; num_frames: i32[B] -> (frames f32[B, S, D], num_frames i32[B]), S = num_samples.
  Every slot of a video with frames is real (num_frames -> S); a zero-length video stays empty (0).
  """
  batch = frames.shape[0]
  n = num_frames.astype(jnp.int32)
  u = jax.random.uniform(rng, (batch, num_samples))
  index = jnp.floor(u * n[:, None].astype(jnp.float32)).astype(jnp.int32)
  index = jnp.clip(index, 0, jnp.maximum(n[:, None] - 1, 0))
  sampled = jnp.take_along_axis(frames, index[..., None], axis=1)
  return sampled, jnp.where(n > 0, num_samples, 0).astype(jnp.int32)


class NetVLAD(nn.Module):
  """One NetVLAD stream ([W] `NetVLAD`, `add_batch_norm=True`).

  a = softmax_K(BN(x W)) (W [D, K] without bias: the BN's offset is the bias), zeroed on padding;
  vlad[d, k] = sum_t a_tk (x_td - c_dk) with learned centres c [D, K] separate from W;
  L2 over d per cluster, flatten d-major to D*K (as [W]'s reshape of [B, D, K]), global L2.
  Initialisers follow [W]: W and c ~ N(0, 1/sqrt(D)).
  """
  feature_size: int
  cluster_size: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array, mask: Array, *, train: bool, carry=None) -> Array:
    """x: [B, T, D] (already input-normalised); mask: bool[B, T] -> f32[B, D * K].
    carry: the sums of frames read before (early exit, see `carried_sums`), or None."""
    d, k = self.feature_size, self.cluster_size
    if x.shape[-1] != d:
      raise ValueError(f"NetVLAD: frames have {x.shape[-1]} features, expected feature_size={d}")
    init = nn.initializers.normal(stddev=1.0 / math.sqrt(d))
    logits = nn.Dense(k, use_bias=False, dtype=self.dtype, kernel_init=init, name="cluster_weights")(x)
    logits = frame_batch_norm(logits, mask, train=train, name="cluster_bn")
    assignments = jax.nn.softmax(logits.astype(jnp.float32), axis=-1) * mask[..., None]
    centres = self.param("centres", init, (d, k), jnp.float32)
    sums = carried_sums(self, vlad_sums(assignments, x, dtype=self.dtype), carry)
    vlad = residuals_from_sums(sums, centres)  # [B, D, K]
    vlad = l2_normalize(vlad, axis=1)
    vlad = vlad.reshape(vlad.shape[0], d * k)
    return l2_normalize(vlad, axis=-1)


class GatedNetVLAD(nn.Module):
  """Encoder of WILLOW's `NetVLADModelLF` (netvlad_relu=False, gating=True).

  feature_sizes: per-stream widths, rgb first (1024, 128); one stream -> only the video branch.
  cluster_size: K of the video branch (the audio branch uses K // 2, as [W]'s Python-2 `K/2`).
  hidden_size: width of the hidden Dense (with bias, initialised N(0, 1/sqrt(K)) as [W]; bias N(0, 0.01)).
  random_frames, num_random_frames: [W]'s re-sampling with replacement (train AND eval, rng 'frames');
    off by default (masking), see the module docstring.
  input_norm, whitening: per-frame input normalisation (`common.normalize_frames`).

  Call: (frames f32[B, T, D], num_frames i32[B], *, train, carry=None) -> (representation [B, hidden] in
  `dtype`, None). `carry`: the 'vlad_sums' of the frames read before (early exit; inference only).
  """
  feature_sizes: Sequence[int] = (1024, 128)
  cluster_size: int = 256
  hidden_size: int = 1024
  random_frames: bool = False
  num_random_frames: int = 300
  input_norm: str = "l2"
  whitening: Optional[Tuple[Any, Any]] = None
  dtype: Any = jnp.float32

  @property
  def sums_over_frames(self) -> bool:
    """Whether the representation is a function of sums over frames (not with random re-sampling)."""
    return not self.random_frames

  @nn.compact
  def __call__(self, frames: Array, num_frames: Array, *, train: bool, carry=None):
    sizes = stream_sizes(frames, self.feature_sizes, model="netvlad")
    if carry is not None and not self.sums_over_frames:
      raise ValueError("netvlad: random_frames re-samples every frame; its sums cannot be carried")
    carry = carry or {}
    if self.cluster_size < 2 and len(sizes) == 2:
      raise ValueError(f"netvlad.cluster_size={self.cluster_size}: the audio branch needs K // 2 >= 1")
    scale, offset = self.whitening if self.whitening is not None else (None, None)
    x = normalize_frames(frames, num_frames, mode=self.input_norm, whitening_scale=scale,
                         whitening_offset=offset)
    if self.random_frames:
      x, num_frames = sample_random_frames(x, num_frames, self.num_random_frames, self.make_rng("frames"))
    mask = frame_mask(num_frames, x.shape[1])
    x = frame_batch_norm(x, mask, train=train, name="input_bn")

    vlads = [NetVLAD(sizes[0], self.cluster_size, dtype=self.dtype, name="video_vlad")(
        x[..., :sizes[0]], mask, train=train, carry=carry.get("video_vlad"))]
    if len(sizes) == 2:
      vlads.append(NetVLAD(sizes[1], self.cluster_size // 2, dtype=self.dtype, name="audio_vlad")(
          x[..., sizes[0]:], mask, train=train, carry=carry.get("audio_vlad")))
    vlad = jnp.concatenate(vlads, axis=-1)

    hidden = nn.Dense(self.hidden_size, dtype=self.dtype,
                      kernel_init=nn.initializers.normal(stddev=1.0 / math.sqrt(self.cluster_size)),
                      bias_init=nn.initializers.normal(stddev=0.01), name="hidden")(vlad)
    representation = ContextGating(dtype=self.dtype, name="context_gating")(hidden, train=train)
    return representation, None
