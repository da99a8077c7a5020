"""Nested frame orders: one ranking of a video's frames whose first k frames are its k-frame selection
for every budget k at once (the any-k student, `train/student_loss.py`, and early exit, `exits/`).

An order gives every real frame t < n a rank r_t in 0..n-1 (a permutation of the real frames; padding
frames get rank `max_frames`, after every real one). The selection at budget k is the frames with
r_t < k, re-sorted by time: min(n, k) strictly increasing real indices, so a budget-k selection is a
subset of the budget-(k+1) one, and a video with n <= k frames gives all of its frames.

  coarse_to_fine   FrameExit's reading order (Ghodrati et al., CVPR'21) relative to each video's true
                   length: the middle frame, the first, the last, then the midpoints of the gaps,
                   bisecting level by level (`rules.coarse_to_fine_ranks`). It depends on the length
                   only, so the host can decode just the frames a budget needs.
  far_from_mean    frames by decreasing L2 distance from the video's mean frame (ties: the earlier
                   frame): `content.py`'s far_from_mean rule at every k at once. It looks at
                   every frame.
  learned          frames by decreasing score of a learned frame scorer (`learned.py`; ties:
                   the earlier frame): the learned selector's top k at every k at once. The scores come
                   with the call (`scores=`: the scorer's parameters are the student's).

`budget_indices` takes the budget k as a traced value, so one jitted step can train several budgets
of the same static width `slots` (the sandwich rule of `specs.Budgets`).
"""
from typing import Optional, Tuple

import jax
import jax.numpy as jnp

from fewframes_jax.sampling import content
from fewframes_jax.sampling import rules
from fewframes_jax.specs import NESTED_ORDERS



def frame_ranks(frames: jax.Array, num_frames: jax.Array, order: str, *,
                scores: Optional[jax.Array] = None) -> jax.Array:
  """i32[B, T]: each frame's rank in `order` (0 = read first); padding frames get T.

  frames: f32[B, T, D] dequantized (only `far_from_mean` looks at them); num_frames: int[B];
  scores: f32[B, T], the learned scorer's (order 'learned' only; higher is read first).
  """
  t = frames.shape[1]
  n = jnp.clip(num_frames.astype(jnp.int32), 0, t)
  if (order == "learned") != (scores is not None):
    raise ValueError(f"nested order {order!r} with scores={'given' if scores is not None else None}: the "
                     "'learned' order, and only it, ranks by a scorer's scores")
  real = jnp.arange(t)[None, :] < n[:, None]
  if order == "coarse_to_fine":
    return jnp.asarray(rules.coarse_to_fine_ranks(t))[n]
  if order == "far_from_mean":
    x = frames.astype(jnp.float32)
    mean = jnp.sum(jnp.where(real[..., None], x, 0.0), axis=1) / jnp.maximum(n, 1)[:, None].astype(jnp.float32)
    return ranks_by_score(jnp.sqrt(jnp.sum(jnp.square(x - mean[:, None, :]), axis=-1)), real)
  if order == "learned":
    return ranks_by_score(scores.astype(jnp.float32), real)
  raise ValueError(f"nested order {order!r}: expected one of {NESTED_ORDERS}")


def ranks_by_score(score: jax.Array, real: jax.Array) -> jax.Array:
  """i32[B, T]: the real frames' ranks by decreasing `score` f32[B, T] (ties: the earlier frame; a NaN
  ranks after every number, as `content.top_k_in_time` has it); padding frames (`real` False) get T."""
  b, t = score.shape
  by_rank = content.by_decreasing_score(score, real)
  ranks = jnp.zeros([b, t], jnp.int32).at[jnp.arange(b)[:, None], by_rank].set(
      jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), (b, t)))
  return jnp.where(real, ranks, t)


def reading_order(ranks: jax.Array) -> jax.Array:
  """i32[B, T]: the frame indices in reading order (rank 0 first); padding frames come last."""
  return jnp.argsort(ranks, axis=1, stable=True).astype(jnp.int32)


def budget_indices(ranks: jax.Array, num_frames: jax.Array, k, slots: int) -> Tuple[jax.Array, jax.Array]:
  """The budget-k selection of `ranks` (from `frame_ranks`), re-sorted by time, in `slots` slots.

  Args:
    ranks: i32[B, T]; num_frames: int[B] true lengths.
    k: the budget, an int or a traced int32 scalar (or i32[B], one budget per video), 0 <= k <= slots.
    slots: static width of the result, slots <= T.

  Returns:
    indices i32[B, slots]: the chosen frames in time order in slots j < num_frames_k, `PAD_INDEX` after;
    num_frames_k i32[B] = min(n, k).
  """
  t = ranks.shape[1]
  if not 1 <= slots <= t:
    raise ValueError(f"slots={slots} must lie in [1, T={t}]")
  k = jnp.minimum(jnp.asarray(k, jnp.int32), slots)
  k = jnp.broadcast_to(k, ranks.shape[:1])
  n = jnp.clip(num_frames.astype(jnp.int32), 0, t)
  pos = jnp.arange(t, dtype=jnp.int32)[None, :]
  chosen = ranks < k[:, None]
  # Chosen frames first, in time order; the rest after them.
  indices = jnp.argsort(jnp.where(chosen, pos, t + pos), axis=1)[:, :slots].astype(jnp.int32)
  nk = jnp.minimum(n, k)
  j = jnp.arange(slots)[None, :]
  return jnp.where(j < nk[:, None], indices, rules.PAD_INDEX).astype(jnp.int32), nk.astype(jnp.int32)


def select_budget(frames: jax.Array, num_frames: jax.Array, k, order: str, slots: int, *,
                  ranks: jax.Array = None):
  """The budget-k frames of `order`: (frames_k [B, slots, D], num_frames_k i32[B], indices i32[B, slots]),
  rows at slots >= num_frames_k exact zeros. `ranks`: precomputed `frame_ranks` (several budgets of one
  batch share them)."""
  if ranks is None:
    ranks = frame_ranks(frames, num_frames, order)
  indices, nk = budget_indices(ranks, num_frames, k, slots)
  return rules.gather_frames(frames, indices, nk), nk, indices


__all__ = ["NESTED_ORDERS", "budget_indices", "frame_ranks", "ranks_by_score", "reading_order", "select_budget"]
