"""Student frame selection: which k of a video's frames the student sees.

Each rule is written once, in `_select`, against an array namespace `xp` (numpy or jax.numpy), so the
on-device sampler (`frame_indices`, `sample_frames`) and the host-side twin used by the student-only
input path (`frame_indices_np`, which decodes only the chosen frames) cannot drift apart.

Conventions shared by every method:
  * `n` is a video's true length, clipped to `[0, max_frames]` (the reader truncates to the first
    `max_frames` frames, [G] `resize_axis`).
  * The result is `indices: i32[B, k]` and `num_frames_k: i32[B]`. Slots `j < num_frames_k` hold real
    frame indices (`< n`), strictly increasing. Slots `j >= num_frames_k` are padding: they hold index 0
    (always inside the padded `[0, max_frames)` tensor), models ignore them, and `sample_frames` /
    `gather_frames` write exact zeros there.
  * Except for `stride_padded`, `num_frames_k = min(n, k)`, and a video shorter than k (n < k) gives all
    of its own frames 0..n-1, never padding frames. n = 0 gives num_frames_k = 0.

Methods (for n >= k; j = 0..k-1):
  uniform            index_j = floor(j * n / k): k evenly spaced frames over the TRUE length, starting at
                     frame 0 and ending within one stride of the last frame. This is the paper's
                     "F0, Fj, F2j, ..." [PDF §2] relative to each video's own length; for a full-length
                     video (n = max_frames) and k dividing max_frames it equals `stride_padded`.
  stride_padded      the official code's every-n over the zero-padded tensor ([CODE] train.py, see
                     ANCHORS_YT8M.md §1.5): stride s = max_frames // k, index_j = j * s, and
                     num_frames_k = min(floor(n / s), k), reproduced exactly. Quirk: the number of strided
                     indices that land on real frames is ceil(n / s), so e.g. a 57-frame video at
                     max_frames=300, k=30 (s=10) keeps 5 frames (0..40) although index 50 is also real.
                     Short videos get fewer than min(n, k) frames (a 20-frame video at k=30 gets 2).
                     When k does not divide max_frames, s = max_frames // k still (the first k multiples
                     of s all lie below max_frames) and num_frames_k is capped at k.
  random             k distinct frames drawn uniformly without replacement inside [0, n), sorted
                     ascending (top-k of uniform noise masked to the true length). Needs `rng`.
  first              frames 0..k-1.
  last               frames n-k..n-1.
  middle             frames s..s+k-1 with s = floor((n - k) / 2) (when n - k is odd the window sits half
                     a frame before the centre).
  first_middle_last  k1 = k // 3 first frames, k1 last frames, and the remaining k - 2*k1 frames (the
                     remainder goes to the middle) as a window starting at floor((n - k_mid) / 2), clamped
                     to [k1, n - k1 - k_mid] so the three segments never overlap (they touch when n is
                     small). k = 1 or 2 therefore gives middle frames only.
  coarse_to_fine     the first k frames of FrameExit's reading order (Ghodrati et al., CVPR'21), re-sorted
                     by time: the frames nearest the relative positions 1/2, 0, 1, 1/4, 3/4, 1/8, 3/8, 5/8,
                     7/8, 1/16, ... of the true length, each frame taken once (`coarse_to_fine_ranks`).
                     Nested: the frames at k are a subset of those at k + 1, so one reading order serves
                     every budget (the any-k student and early exit, `nested.py`). At k = 2^m + 1 it is a
                     uniform grid that includes the last frame.
"""
import functools
from typing import Any, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

SAMPLING_METHODS = ("uniform", "stride_padded", "random", "first", "middle", "last",
                    "first_middle_last", "coarse_to_fine")

# Index written into padding slots (j >= num_frames_k).
PAD_INDEX = 0


@functools.lru_cache(maxsize=None)
def coarse_to_fine_ranks(max_frames: int) -> np.ndarray:
  """i32[max_frames + 1, max_frames]: row n holds each frame's rank in the coarse-to-fine reading order
  of an n-frame video (rank 0 is read first; frames t >= n get max_frames).

  The order visits the relative positions p = 1/2, 0, 1, then level by level the midpoints of the gaps
  (1/4, 3/4; 1/8, 3/8, 5/8, 7/8; ...), each mapped to frame round(p * (n - 1)) (halves round up), and
  keeps a frame's first visit. The levels go deep enough (2^L >= n) that every frame is visited, so
  each row's real part is a permutation of 0..n-1. The table is built once per max_frames (read-only).
  """
  if max_frames < 1:
    raise ValueError(f"max_frames must be >= 1, got {max_frames}")
  table = np.full([max_frames + 1, max_frames], max_frames, np.int32)
  for n in range(1, max_frames + 1):
    positions = [(1, 2), (0, 1), (1, 1)]  # p = a / b
    level = 2
    while (1 << (level - 1)) < n:
      positions += [(2 * i + 1, 1 << level) for i in range(1 << (level - 1))]
      level += 1
    rank = 0
    for a, b in positions:
      t = (2 * a * (n - 1) + b) // (2 * b)  # round(a / b * (n - 1)), halves up, exact in integers
      if table[n, t] == max_frames:
        table[n, t] = rank
        rank += 1
    if rank != n:  # pragma: no cover - guaranteed by the depth of the levels
      raise AssertionError(f"coarse-to-fine order of {n} frames visits only {rank}")
  table.flags.writeable = False
  return table


def _check_static(k: Any, method: Any, max_frames: Any) -> None:
  if method not in SAMPLING_METHODS:
    raise ValueError(f"sampling method {method!r} is unknown; expected one of {SAMPLING_METHODS}")
  if isinstance(max_frames, bool) or not isinstance(max_frames, (int, np.integer)) or max_frames < 1:
    raise ValueError(f"max_frames must be a positive int, got {max_frames!r}")
  if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
    raise ValueError(f"k (frames per student video) must be an int, got {k!r}")
  if not 1 <= k <= max_frames:
    raise ValueError(f"k={k} frames per student video must lie in [1, max_frames={max_frames}]")


def _select(xp, n, k: int, method: str, max_frames: int, noise=None):
  """The selection rule, written once for numpy and jax.numpy.

  Args:
    xp: `numpy` or `jax.numpy`.
    n: i32[B] true lengths, already clipped to [0, max_frames].
    k, method, max_frames: static.
    noise: f[B, max_frames] uniform [0, 1) noise, only for `random`.

  Returns:
    (indices i32[B, k], num_frames_k i32[B]).
  """
  j = xp.arange(k, dtype=xp.int32)[None, :]
  n2 = n[:, None]
  if method == "stride_padded":
    stride = max_frames // k
    nk = xp.minimum(n2 // stride, k)
    idx = j * stride
  elif method == "random":
    pos = xp.arange(max_frames, dtype=xp.int32)[None, :]
    score = xp.where(pos < n2, noise, -1.0)  # real frames (noise >= 0) rank before padding
    cand = xp.argsort(-score, axis=-1, stable=True)[:, :k].astype(xp.int32)
    # n < k: the candidates are all n real frames plus padding; the sentinel sorts padding last.
    idx = xp.sort(xp.where(cand < n2, cand, max_frames), axis=-1)
    nk = xp.minimum(n2, k)
  elif method == "coarse_to_fine":
    pos = xp.arange(max_frames, dtype=xp.int32)[None, :]
    ranks = xp.asarray(coarse_to_fine_ranks(max_frames))[n]  # [B, T]; padding ranks max_frames >= k
    idx = xp.argsort(xp.where(ranks < k, pos, max_frames + pos), axis=-1)[:, :k]
    nk = xp.minimum(n2, k)
  else:
    if method == "uniform":
      long_idx = (j * n2) // k
    elif method == "first":
      long_idx = j + 0 * n2
    elif method == "last":
      long_idx = n2 - k + j
    elif method == "middle":
      long_idx = (n2 - k) // 2 + j
    elif method == "first_middle_last":
      k1 = k // 3
      k_mid = k - 2 * k1
      start = xp.minimum(xp.maximum((n2 - k_mid) // 2, k1), n2 - k1 - k_mid)
      long_idx = xp.where(j < k1, j, xp.where(j >= k1 + k_mid, n2 - k + j, start + (j - k1)))
    else:  # pragma: no cover - guarded by _check_static
      raise ValueError(method)
    nk = xp.minimum(n2, k)
    idx = xp.where(n2 < k, j, long_idx)  # short video: all of its own frames
  idx = xp.where(j < nk, idx, PAD_INDEX).astype(xp.int32)
  return idx, nk[:, 0].astype(xp.int32)


def frame_indices(num_frames: jax.Array, k: int, method: str = "uniform", rng: Optional[jax.Array] = None,
                  max_frames: int = 300) -> Tuple[jax.Array, jax.Array]:
  """Indices of the student's frames, on device. Jittable with `k`, `method`, `max_frames` static.

  Args:
    num_frames: int[B] true lengths; values are clipped to [0, max_frames] (cannot raise under jit).
    k: frames per student video, 1 <= k <= max_frames.
    method: one of `SAMPLING_METHODS` (see the module docstring).
    rng: a JAX PRNG key; required for `random`, ignored otherwise.
    max_frames: length T of the padded frame tensor.

  Returns:
    indices: i32[B, k], real frame indices in slots j < num_frames_k, `PAD_INDEX` after.
    num_frames_k: i32[B].
  """
  _check_static(k, method, max_frames)
  num_frames = jnp.asarray(num_frames)
  if num_frames.ndim != 1 or not jnp.issubdtype(num_frames.dtype, jnp.integer):
    raise ValueError(
        f"num_frames must be an integer vector [B], got {num_frames.dtype}{list(num_frames.shape)}")
  n = jnp.clip(num_frames.astype(jnp.int32), 0, max_frames)
  noise = None
  if method == "random":
    if rng is None:
      raise ValueError("sampling method 'random' needs an rng key")
    noise = jax.random.uniform(rng, (n.shape[0], max_frames))
  return _select(jnp, n, k, method, max_frames, noise)


def frame_indices_np(num_frames: np.ndarray, k: int, method: str = "uniform", seed_or_rng: Any = None,
                     max_frames: int = 300) -> Tuple[np.ndarray, np.ndarray]:
  """Host-side twin of `frame_indices` (same rule, numpy), for decoding only the student's frames.

  Deterministic methods return exactly the indices `frame_indices` returns. For `random` the rule is the
  same but the noise comes from numpy's generator, so the draws do not match the device RNG bit for bit.

  Args:
    num_frames: int[B] true lengths; values above max_frames are clipped (the reader truncates to the
      first max_frames frames); negative values raise.
    k, method, max_frames: as in `frame_indices`.
    seed_or_rng: an int seed or a `np.random.Generator`; required for `random`.

  Returns:
    (indices i32[B, k], num_frames_k i32[B]) as numpy arrays.
  """
  _check_static(k, method, max_frames)
  num_frames = np.asarray(num_frames)
  if num_frames.ndim != 1 or not np.issubdtype(num_frames.dtype, np.integer):
    raise ValueError(
        f"num_frames must be an integer vector [B], got {num_frames.dtype}{list(num_frames.shape)}")
  if (num_frames < 0).any():
    raise ValueError(f"num_frames must be >= 0, got {num_frames[num_frames < 0][:5].tolist()}")
  n = np.minimum(num_frames, max_frames).astype(np.int32)
  noise = None
  if method == "random":
    if seed_or_rng is None:
      raise ValueError("sampling method 'random' needs seed_or_rng (an int seed or np.random.Generator)")
    gen = seed_or_rng if isinstance(seed_or_rng, np.random.Generator) else np.random.default_rng(seed_or_rng)
    noise = gen.random((n.shape[0], max_frames), dtype=np.float32)
  return _select(np, n, k, method, max_frames, noise)


def gather_frames(values: jax.Array, indices: jax.Array, num_frames_k: jax.Array) -> jax.Array:
  """Gathers per-frame values at the student's frames; rows at/after num_frames_k are exact zeros.

  Also used to pick teacher per-frame intermediates at the frames the student sees.

  Args:
    values: [B, T, ...] per-frame values.
    indices: i32[B, k] from `frame_indices`.
    num_frames_k: i32[B].

  Returns:
    [B, k, ...] with the dtype of `values`.
  """
  if values.ndim < 2 or values.shape[0] != indices.shape[0]:
    raise ValueError(f"values {values.shape} and indices {indices.shape} disagree on the batch [B, T, ...]")
  extra = values.ndim - 2
  idx = indices.reshape(indices.shape + (1,) * extra)
  out = jnp.take_along_axis(values, idx, axis=1)
  keep = (jnp.arange(indices.shape[1])[None, :] < num_frames_k[:, None]).reshape(idx.shape)
  return jnp.where(keep, out, jnp.zeros((), values.dtype))


def sample_frames(frames: jax.Array, num_frames: jax.Array, k: int, method: str = "uniform",
                  rng: Optional[jax.Array] = None, *, return_indices: bool = False):
  """Selects the student's k frames on device (jittable with `k`, `method`, `return_indices` static).

  Args:
    frames: [B, T, D] frame features (T = max_frames). Sample after dequantization: padding rows are
      zeros of `frames.dtype`, which for uint8 input would not dequantize to zero.
    num_frames: int[B] true lengths.
    k: frames per student video, 1 <= k <= T.
    method: one of `SAMPLING_METHODS`.
    rng: PRNG key, required for `random`.
    return_indices: also return the i32[B, k] indices (to gather teacher intermediates with
      `gather_frames`).

  Returns:
    (frames_k [B, k, D], num_frames_k i32[B]), plus `indices` if `return_indices`.
  """
  if frames.ndim < 2:
    raise ValueError(f"frames must be [B, T, D], got shape {frames.shape}")
  if jnp.shape(num_frames) != frames.shape[:1]:
    raise ValueError(f"num_frames {jnp.shape(num_frames)} must be [B] for frames {frames.shape}")
  indices, num_frames_k = frame_indices(num_frames, k, method, rng, max_frames=frames.shape[1])
  frames_k = gather_frames(frames, indices, num_frames_k)
  if return_indices:
    return frames_k, num_frames_k, indices
  return frames_k, num_frames_k
