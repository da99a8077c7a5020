"""Which k frames a student sees: one entry point for every rule.

  fixed rules       `sampling.py`: uniform, random, first, middle, last, first_middle_last, stride_padded;
                    they depend on a video's length only, so the host can decode just the chosen frames.
  content-aware     `content.py`: feature_change (MGSampler's idea), far_from_mean; training-free, they
                    look at every real frame, so every frame is decoded.
  learned           `learned.py`: a small per-frame network scores every real frame, the top k go to the
                    student ('learned'; trained as `scorer_training.py` says); it needs the scorer's
                    parameters, so `inference.Selection` applies it, not `select_frames`.
  nested orders     `nested.py`: coarse_to_fine and far_from_mean as rankings whose first k frames are the
                    selection at every budget k (the any-k student, early exit).

`select_frames(frames, num_frames, k, method, rng)` applies any of them on the device (the trainer and
`inference.Selection` call it); the methods share `sampling.py`'s conventions (k indices in temporal
order, never a padding frame, all frames of a video shorter than k).
"""
from typing import Optional

import jax

from fewframes_jax import sampling
from fewframes_jax.selection import content
from fewframes_jax.selection import learned
from fewframes_jax.selection.nested import NESTED_ORDERS

SELECTION_METHODS = sampling.SAMPLING_METHODS + content.CONTENT_METHODS + (learned.METHOD,)


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
    return sampling.sample_frames(frames, num_frames, k, method, rng=rng, return_indices=return_indices)
  indices, num_frames_k = content.content_indices(frames, num_frames, k, method)
  frames_k = sampling.gather_frames(frames, indices, num_frames_k)
  if return_indices:
    return frames_k, num_frames_k, indices
  return frames_k, num_frames_k


__all__ = ["NESTED_ORDERS", "SELECTION_METHODS", "needs_every_frame", "select_frames"]
