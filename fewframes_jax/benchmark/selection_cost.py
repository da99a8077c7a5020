"""What a frame selector costs a student, counted whole: FLOPs (student + scorer, XLA), frames and bytes read.

A fixed rule (uniform, ...) depends on a video's length only: the student-only input path decodes just the
k chosen frames, and the selection itself costs a few integer ops. A content-aware rule or a learned scorer
looks at every real frame: every frame is read and decoded (an audio-only scorer: the audio of every frame,
the rgb of the k chosen ones, `audio_then_rgb`), and the scorer's FLOPs run on all T frame slots.

  selection_cost(config, k, mean_frames)  -> {'flops', 'scorer_flops', 'frames_read', 'bytes_read', ...}
  scorer_share(config, ks)                -> the scorer's FLOPs as a share of the student's at each k
"""
from typing import Any, Dict, Sequence

import jax
import numpy as np
import jax.numpy as jnp
import ml_collections

from fewframes_jax import specs
from fewframes_jax.sampling import methods
from fewframes_jax.benchmark import compute
from fewframes_jax.metrics import flops as flops_lib
from fewframes_jax.sampling import learned


def _frames(batch: int, frames: int, feature_dim: int):
  return (jax.ShapeDtypeStruct((batch, frames, feature_dim), jnp.uint8),
          jax.ShapeDtypeStruct((batch,), jnp.int32))


def forward_flops(config: ml_collections.ConfigDict, k: int) -> float:
  """XLA FLOPs per video of the student's whole eval forward at k (dequantize, select, score, model) from
  uint8 frames: all T = data.max_frames slots for a rule that looks at the frames, the k preselected
  frames otherwise (the student-only input path)."""
  d = config.data
  forward = compute.student_forward(config, k, unroll=1)
  variables = jax.eval_shape(lambda: compute.served_variables(config, forward, precast=False))  # no memory
  preselected = forward.selection.input_frames() is not None
  frames, n = _frames(1, k if preselected else d.max_frames, sum(d.feature_sizes))
  fn = compute.probabilities_fn(forward, preselected=preselected)
  return flops_lib.scan_aware_flops(fn, variables, frames, n, compute._rbg_key())  # pylint: disable=protected-access


def scorer_flops(config: ml_collections.ConfigDict) -> float:
  """XLA FLOPs per video of a learned selector's scorer on all T frame slots (0 without one)."""
  if config.student.sampling != learned.METHOD:
    return 0.0
  d = config.data
  selector = specs.SelectorSpec.from_config(config.student.get("selector"))
  return learned.scorer_flops(learned.frame_scorer(selector, d.feature_sizes), d.max_frames)


def frames_read(config: ml_collections.ConfigDict, k: int, mean_frames: float, mean_frames_k: float
                ) -> Dict[str, float]:
  """Frames and bytes read and decoded per video (uint8 features: one byte per value).

  mean_frames: the mean true length (up to max_frames) of the evaluated videos; mean_frames_k: the mean of
  min(length, k). A rule that looks at the frames reads every real frame; an audio-only scorer reads the
  audio of every frame and the rest of the k chosen ones."""
  sizes = tuple(int(s) for s in config.data.feature_sizes)
  method = config.student.sampling
  frame_bytes = sum(sizes)
  if not methods.needs_every_frame(method):
    return {"frames_read": mean_frames_k, "bytes_read": mean_frames_k * frame_bytes}
  if method == learned.METHOD:
    start, stop = learned.stream_slice(sizes, specs.SelectorSpec.from_config(config.student.get("selector")).streams)
    if stop - start < frame_bytes:  # one stream for every frame, the other for the chosen ones
      return {"frames_read": mean_frames,
              "bytes_read": mean_frames * (stop - start) + mean_frames_k * (frame_bytes - (stop - start))}
  return {"frames_read": mean_frames, "bytes_read": mean_frames * frame_bytes}


def selection_cost(config: ml_collections.ConfigDict, k: int, *, mean_frames: float, mean_frames_k: float
                   ) -> Dict[str, Any]:
  """{'flops': the whole forward per video, 'scorer_flops', 'frames_read', 'bytes_read'} of `config`'s
  student at k (see `forward_flops`, `scorer_flops`, `frames_read`)."""
  out = {"flops": forward_flops(config, k), "scorer_flops": scorer_flops(config)}
  out.update(frames_read(config, k, mean_frames, mean_frames_k))
  return out


def scorer_share(config: ml_collections.ConfigDict, ks: Sequence[int]) -> Dict[int, Dict[str, float]]:
  """{k: {'student', 'scorer', 'share'}}: the scorer's FLOPs per video against the student's own model
  FLOPs at each k (no selection, `flops.forward_flops_per_video`), both by XLA at the config's sizes."""
  d = config.data
  sel = scorer_flops(config)
  out = {}
  for k in ks:
    model = compute.student_forward(config, k, unroll=1).model
    student, _ = flops_lib.model_cost(model, frames=k, feature_dim=sum(d.feature_sizes))
    out[k] = {"student": student, "scorer": sel, "share": sel / student}
  return out


def eval_lengths(config: ml_collections.ConfigDict) -> np.ndarray:
  """i32[N]: the true lengths (up to data.max_frames) of the config's eval videos, read once."""
  from fewframes_jax.data import yt8m  # pylint: disable=g-import-not-at-top  (TensorFlow: data only)
  d = config.data
  dataset = yt8m.make_dataset(d.eval_pattern, d.eval_batch_size, training=False, process_index=0, process_count=1,
                              **yt8m.config_options(d))
  lengths = [b["num_frames"][b["valid"].astype(bool)] for b in yt8m.as_numpy_batches(dataset)]
  return np.concatenate(lengths) if lengths else np.zeros([0], np.int32)
