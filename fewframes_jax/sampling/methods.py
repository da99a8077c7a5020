"""Every frame-selection method by name: `SELECTION_METHODS`, `select_frames`, `needs_every_frame`."""
from typing import Optional

import jax

from fewframes_jax.sampling import rules
from fewframes_jax.sampling import content
from fewframes_jax.sampling import learned

SELECTION_METHODS = rules.SAMPLING_METHODS + content.CONTENT_METHODS + (learned.METHOD,)


def needs_every_frame(method: str) -> bool:
  """Whether `method` looks at the frames themselves (then the host must decode every frame)."""
  return method in content.CONTENT_METHODS or method == learned.METHOD


def select_frames(frames: jax.Array, num_frames: jax.Array, k: int, method: str = "uniform",
                  rng: Optional[jax.Array] = None, *, return_indices: bool = False):
  """The student's k frames of dequantized `frames` f32[B, T, D] by `method` (SELECTION_METHODS).

  Returns (frames_k [B, k, D], num_frames_k i32[B]) plus the indices i32[B, k] if `return_indices`;
  rows at slots >= num_frames_k are exact zeros.
  """
  if method == learned.METHOD:
    raise ValueError("select_frames: the 'learned' selector needs its scorer's parameters; use "
                     "inference.Selection(k, 'learned', scorer=...).select(..., selector_params=...)")
  if method not in content.CONTENT_METHODS:
    return rules.sample_frames(frames, num_frames, k, method, rng=rng, return_indices=return_indices)
  indices, num_frames_k = content.content_indices(frames, num_frames, k, method)
  frames_k = rules.gather_frames(frames, indices, num_frames_k)
  if return_indices:
    return frames_k, num_frames_k, indices
  return frames_k, num_frames_k


__all__ = ["SELECTION_METHODS", "needs_every_frame", "select_frames"]
