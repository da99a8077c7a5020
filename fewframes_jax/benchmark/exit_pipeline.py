"""End-to-end throughput of batched early exit from TFRecords, against a fixed-k student, in one run.

Both read the same files through the student-only input path (`yt8m.make_dataset(student_frames=...)`):
each record is parsed and only the frames the model may read are decoded. For early exit that is the
first k_max frames of the coarse-to-fine order (the host cannot know in advance where a video will
stop, so every video's k_max frames are decoded; the model then reads only up to its exit); for the
fixed-k student its k frames. A content order or rule (far_from_mean) ranks every frame, so its path
decodes all of them and takes the view on the device; the rows count the frames each path decoded
(`decoded_frames_per_video`) apart from the frames its model read. Early exit runs in waves (`early_exit.run_waves`) over groups of
`group_batches` input batches: every video of the group to the first exit, the survivors compacted into
full batches for the next. Each path is compiled on a first group, then timed over `rounds` alternating
passes (the median pass is reported), so a shared machine's load hits both alike.
"""
import statistics
import time
from typing import Any, Dict, Optional

import jax
import numpy as np

from fewframes_jax import specs
from fewframes_jax.exits import early_exit
from fewframes_jax import inference
from fewframes_jax.data.quantization import dequantize


def _dataset(network: inference.Network, file_pattern: str, batch_size: int, student_frames):
  from fewframes_jax.data import yt8m  # pylint: disable=g-import-not-at-top  (TensorFlow)
  ds = yt8m.make_dataset(file_pattern, batch_size, training=False, process_index=0, process_count=1,
                         student_frames=student_frames, **yt8m.config_options(network.spec.data))
  return yt8m.as_numpy_batches(ds)


def _frames_decoded(batch, preselected: bool) -> int:
  """Frames the input path decoded for the batch's real videos: its k chosen frames (`num_frames_k`) or
  every frame (the true length, at most the T slots shipped)."""
  valid = np.asarray(batch["valid"]).astype(bool)
  n = np.asarray(batch["num_frames_k"]) if preselected else np.minimum(np.asarray(batch["num_frames"]),
                                                                       np.asarray(batch["frames"]).shape[1])
  return int(n[valid].sum())


def _exit_view(network, plan):
  """(what the input path decodes, a jitted batch -> `NestedView`): the first k_max frames of the
  coarse-to-fine order (it depends on the length only), or every frame for a content order (its ranking
  looks at all of them; the view is then taken on the device)."""
  if plan.order == "coarse_to_fine":
    return (plan.k_max, "coarse_to_fine"), jax.jit(lambda v, b: early_exit.view_from_preselected(
        dequantize(b["frames"], b["num_frames_k"]), b["num_frames"], network.max_frames))
  return None, jax.jit(lambda v, b: plan.view(v, dequantize(b["frames"], b["num_frames"]), b["num_frames"]))


def _exit_pass(network, plan, policy, gate, *, file_pattern, batch_size, group_batches, max_batches, cache):
  if "view" not in cache:  # built (and compiled) once for every pass
    cache["view"] = _exit_view(network, plan)
  student_frames, view_fn = cache["view"]
  videos = frames_read = frames_decoded = batches = 0
  exits = np.zeros(len(plan.exits), np.int64)
  group = []

  def flush():
    nonlocal videos, frames_read
    arrays = [np.concatenate([g[i] for g in group]) for i in range(3)]
    result = early_exit.run_waves(plan, policy, network.variables, *arrays, batch_size=batch_size, gate=gate,
                                  step_cache=cache)
    videos += len(result.exit_index)
    frames_read += int(result.frames_read.sum())
    exits[:] += np.bincount(result.exit_index, minlength=len(plan.exits))
    group.clear()

  start = time.perf_counter()
  for batch in _dataset(network, file_pattern, batch_size, student_frames):
    valid = batch["valid"].astype(bool)
    frames_decoded += _frames_decoded(batch, student_frames is not None)
    view = jax.device_get(view_fn(network.variables, {key: batch[key] for key in ("frames", "num_frames",
                                                                                  "num_frames_k") if key in batch}))
    group.append(tuple(np.asarray(a)[valid] for a in view))
    batches += 1
    if len(group) == group_batches:
      flush()
    if max_batches and batches >= max_batches:
      break
  if group:
    flush()
  seconds = time.perf_counter() - start
  return {"videos": videos, "seconds": seconds, "mean_frames_read": frames_read / max(videos, 1),
          "frames_decoded": frames_decoded,
          "exit_counts": exits.tolist()}


def _fixed_pass(network, *, file_pattern, batch_size, max_batches):
  videos = batches = frames_decoded = 0
  pending = None
  start = time.perf_counter()
  frames = network.forward.selection.input_frames()
  for batch in _dataset(network, file_pattern, batch_size, frames):
    probs = network.probabilities(batch["frames"], batch["num_frames_k" if frames else "num_frames"],
                                  batch_index=batches, preselected=frames is not None)
    if pending is not None:
      np.asarray(pending)
    pending = probs
    videos += int(batch["valid"].sum())
    frames_decoded += _frames_decoded(batch, frames is not None)
    batches += 1
    if max_batches and batches >= max_batches:
      break
  np.asarray(jax.block_until_ready(pending))
  return {"videos": videos, "seconds": time.perf_counter() - start,
          "mean_frames_read": float(network.forward.selection.k), "frames_decoded": frames_decoded}


def benchmark_exit(anyk_network: inference.Network, fixed_network: inference.Network, *, policy: specs.ExitPolicy,
                   gate=None, file_pattern: str = "", batch_size: int = 0, group_batches: int = 4,
                   max_batches: int = 0, rounds: int = 2) -> Dict[str, Any]:
  """Videos/s of batched early exit (`anyk_network` at its largest budget, with `policy`) and of a
  fixed-k student (`fixed_network`, e.g. the separately trained k = 30 one), from the same TFRecords.

  Returns {'rows': [{'name', 'videos', 'videos_per_sec', 'videos_per_sec_rounds', 'mean_frames_read',
  'decoded_frames_per_video', ...}], 'ratio': exit / fixed videos/s}.
  """
  from fewframes_jax.exits import exit_curve  # pylint: disable=g-import-not-at-top
  plan = exit_curve.plan_of(anyk_network)
  data = anyk_network.spec.data
  file_pattern = file_pattern or data.eval_pattern
  batch_size = batch_size or data.eval_batch_size
  cache: Dict[Any, Any] = {}
  kw = dict(file_pattern=file_pattern, batch_size=batch_size)
  run_exit = lambda max_b: _exit_pass(anyk_network, plan, policy, gate, group_batches=group_batches,  # noqa: E731
                                      max_batches=max_b, cache=cache, **kw)
  run_fixed = lambda max_b: _fixed_pass(fixed_network, max_batches=max_b, **kw)  # noqa: E731
  run_exit(group_batches)  # compiles every exit on a first group
  run_fixed(1)
  passes = {"early_exit": [], "fixed": []}
  for _ in range(rounds):
    passes["early_exit"].append(run_exit(max_batches))
    passes["fixed"].append(run_fixed(max_batches))
  rows = []
  for name, runs in passes.items():
    per_round = [r["videos"] / r["seconds"] for r in runs]
    row = dict(runs[0], name=name, videos_per_sec=statistics.median(per_round), videos_per_sec_rounds=per_round,
               batch_size=batch_size)
    row["decoded_frames_per_video"] = row.pop("frames_decoded") / max(row["videos"], 1)
    row["decoded_bytes_per_video"] = row["decoded_frames_per_video"] * sum(data.feature_sizes)
    rows.append(row)
  return {"rows": rows, "ratio": rows[0]["videos_per_sec"] / rows[1]["videos_per_sec"], "file_pattern": file_pattern,
          "policy": f"{policy.rule}:{policy.threshold:g}", "exits": list(plan.exits)}


def format_exit(result: Dict[str, Any], machine: Optional[str] = None) -> str:
  lines = ["| path | videos/s | mean frames read | frames decoded / video | videos | exits taken |",
           "|:---|---:|---:|---:|---:|:---|"]
  for r in result["rows"]:
    lines.append(f"| {r['name']} | {r['videos_per_sec']:.1f} | {r['mean_frames_read']:.1f} | "
                 f"{r['decoded_frames_per_video']:.1f} | {r['videos']} | {r.get('exit_counts', '')} |")
  lines.append("")
  lines.append(f"early exit ({result['policy']}, exits {result['exits']}) / fixed: {result['ratio']:.2f}x videos/s"
               + (f" on {machine}" if machine else ""))
  return "\n".join(lines)
