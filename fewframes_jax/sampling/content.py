"""Training-free, content-aware frame selection: the student's k frames chosen from what the frames show.

Both rules look at every real frame of a video (its dequantized features, `f32[B, T, D]`), never at
padding, and return k frame indices in temporal order, with the conventions of `rules.py`: slots
`j < num_frames_k = min(n, k)` hold strictly increasing real indices, later slots hold `PAD_INDEX`; a
video with n <= k frames gives all of its frames.

  feature_change   uniform along the cumulative distribution of frame-to-frame feature change (the
                   idea of MGSampler, Zhi et al., ICCV'21, on YouTube-8M features): with c_t the L2
                   change between frames t-1 and t (c_0 = 0) and G_t = sum_{s<=t} c_s / sum_s c_s, slot j
                   takes the frame where G first reaches (j + 1/2) / k; where several slots fall on one
                   frame (a single big change), the later ones move to the next frames. Segments where
                   the content moves get more frames; a static video gets uniform frames.
  far_from_mean    the k frames farthest (L2) from the video's mean frame, re-sorted by time (ties: the
                   earlier frame): the frames that differ most from what the video shows most of the
                   time, e.g. a brief event.
"""
import jax
import jax.numpy as jnp

from fewframes_jax.sampling.rules import PAD_INDEX

CONTENT_METHODS = ("feature_change", "far_from_mean")


def _finish(indices: jax.Array, num_frames: jax.Array, k: int):
  """(indices i32[B, k] with PAD_INDEX at slots >= min(n, k), num_frames_k i32[B]); a video with n <= k
  frames takes all of its own frames 0..n-1."""
  n = num_frames[:, None]
  j = jnp.arange(k)[None, :]
  indices = jnp.where(n <= k, j, indices)
  nk = jnp.minimum(num_frames, k)
  return jnp.where(j < nk[:, None], indices, PAD_INDEX).astype(jnp.int32), nk.astype(jnp.int32)


def feature_change_indices(frames: jax.Array, num_frames: jax.Array, k: int):
  """MGSampler-style selection. frames: f32[B, T, D] (padding rows are ignored); num_frames: i32[B]."""
  b, t, _ = frames.shape
  n = num_frames[:, None]
  pos = jnp.arange(t)[None, :]
  x = frames.astype(jnp.float32)
  change = jnp.sqrt(jnp.sum(jnp.square(x[:, 1:] - x[:, :-1]), axis=-1))  # [B, T-1]: t-1 -> t
  change = jnp.concatenate([jnp.zeros([b, 1]), change], axis=1)
  change = jnp.where((pos >= 1) & (pos < n), change, 0.0)
  total = jnp.sum(change, axis=1, keepdims=True)
  # A static video (no change at all) is sampled uniformly: every real frame counts the same.
  change = jnp.where(total > 0, change, jnp.where((pos >= 1) & (pos < n), 1.0, 0.0))
  cumulative = jnp.cumsum(change, axis=1) / jnp.maximum(jnp.sum(change, axis=1, keepdims=True), 1e-12)
  cumulative = jnp.where(pos < n, cumulative, 2.0)  # padding is never reached
  targets = (jnp.arange(k) + 0.5) / k
  # The first frame whose cumulative change reaches each target (<= n - 1 for real videos).
  raw = jnp.sum(cumulative[:, None, :] < targets[None, :, None], axis=-1)  # [B, k]
  j = jnp.arange(k)[None, :]
  # Distinct and increasing, with room left for the later slots: i_j = min(max_{l<=j}(raw_l - l) + j, n-k+j).
  spread = jax.lax.cummax(raw - j, axis=1) + j
  return _finish(jnp.minimum(spread, n - k + j), num_frames, k)


def by_decreasing_score(score: jax.Array, real: jax.Array) -> jax.Array:
  """i32[B, T]: the frames by decreasing `score` f32[B, T] (ties: the earlier frame; NaN after every
  number), then every padding frame (`real` bool[B, T] False), whatever its score."""
  # A rank key of (is padding, -score), by two stable sorts.
  order = jnp.argsort(-score, axis=1, stable=True)
  return jnp.take_along_axis(order, jnp.argsort(~jnp.take_along_axis(real, order, axis=1), axis=1,
                                                stable=True), axis=1)


def top_k_in_time(score: jax.Array, num_frames: jax.Array, k: int):
  """The k real frames of highest `score` f32[B, T], re-sorted by time (ties: the earlier frame; NaN
  after every number; padding frames never, whatever their score). -> (indices i32[B, k], num_frames_k
  i32[B]) as `_finish`."""
  real = jnp.arange(score.shape[1])[None, :] < num_frames[:, None]
  return _finish(jnp.sort(by_decreasing_score(score, real)[:, :k], axis=1), num_frames, k)


def far_from_mean_indices(frames: jax.Array, num_frames: jax.Array, k: int):
  """The k real frames farthest from the video's mean frame, in time order. frames: f32[B, T, D]."""
  n = num_frames[:, None]
  real = jnp.arange(frames.shape[1])[None, :] < n
  x = frames.astype(jnp.float32)
  mean = jnp.sum(jnp.where(real[..., None], x, 0.0), axis=1) / jnp.maximum(n, 1).astype(jnp.float32)
  distance = jnp.sqrt(jnp.sum(jnp.square(x - mean[:, None, :]), axis=-1))
  return top_k_in_time(distance, num_frames, k)


def content_indices(frames: jax.Array, num_frames: jax.Array, k: int, method: str):
  """The frame indices of `method` (one of CONTENT_METHODS). -> (i32[B, k], num_frames_k i32[B])."""
  if k > frames.shape[1]:
    raise ValueError(f"k={k} frames per student video must be <= the {frames.shape[1]} frames given")
  num_frames = jnp.clip(num_frames.astype(jnp.int32), 0, frames.shape[1])
  if method == "feature_change":
    return feature_change_indices(frames, num_frames, k)
  if method == "far_from_mean":
    return far_from_mean_indices(frames, num_frames, k)
  raise ValueError(f"content selection method {method!r}: expected one of {CONTENT_METHODS}")
