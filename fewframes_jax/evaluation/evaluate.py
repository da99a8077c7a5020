"""Exact evaluation over an eval dataset: every video counted once, the last batch padded.

One computation serves the trainer's evaluation and the evaluation of a saved workdir
(`predict.evaluate_workdir`): `make_eval_step(forwards)` jits `eval_outputs`, which runs each network's
`inference.Forward` on one batch and reduces it on the device to each video's top-k scores, classes and
hits (O(B x k) leaves the device); the host accumulates them in `metrics.EvaluationMetrics`
(O(videos x k) memory). Given the same variables, batches and XLA flags, both evaluations give the same
numbers bit for bit.

The step's outputs are replicated, so in a multi-process run every process sees the top-k of the whole
global batch and computes the same metrics, each video counted once; every process must run the same
number of batches (padding batches are all `valid=False`).
"""
from typing import Any, Callable, Dict, Iterable, Iterator, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from fewframes_jax import inference
from fewframes_jax import specs
from fewframes_jax import losses
from fewframes_jax import metrics as metrics_lib
from fewframes_jax import parallel

# Reported next to the metrics when records were skipped or had unequal rgb/audio frame counts.
COUNT_KEYS = ("skipped_records", "frame_count_mismatches")


def eval_outputs(forwards: Mapping[str, inference.Forward], variables: Mapping[str, Any],
                 batch: Mapping[str, jax.Array], rng: jax.Array, *, top_k: int = metrics_lib.TOP_K,
                 preselected: bool = False) -> Dict[str, Any]:
  """Scores one eval batch with every network. Jittable (`forwards`, `top_k`, `preselected` static).

  Args:
    forwards: {'teacher'|'student': Forward}; variables: the same keys -> {'params', 'batch_stats'}.
    batch: frames u8[B, T, D], num_frames i32[B], labels [B, C], valid bool[B]; `preselected`: frames
      u8[B, k, D] and num_frames_k i32[B], each video's k frames chosen on the host (one student only).
    rng: the batch's key (`inference.eval_key(batch_index)`).

  Returns:
    {'valid': bool[B], <network>: {'scores': f32[B,k], 'class_ids': i32[B,k], 'hits': bool[B,k],
    'num_labels': i32[B], 'perr': f32[B], 'class_positives': i32[C] (valid rows), 'ce': f32[] (sum over
    valid rows)}}; the student also has 'rep_distance' (sum over valid rows of ||E_T - E_S||^2) when
    both networks are scored and their representations have the same size.
  """
  labels = batch["labels"].astype(jnp.float32)
  valid = batch["valid"]
  weights = valid.astype(jnp.float32)
  results: Dict[str, Any] = {"valid": valid}
  outputs = {}
  lengths = batch["num_frames_k"] if preselected else batch["num_frames"]
  for which, forward in forwards.items():
    out = outputs[which] = forward.apply(variables[which], batch["frames"], lengths, rng, preselected=preselected)
    top = metrics_lib.top_k_hits(out.probabilities, labels, top_k)
    results[which] = {
        "scores": top.scores, "class_ids": top.class_ids, "hits": top.hits, "num_labels": top.num_labels,
        "perr": metrics_lib.perr_per_video(out.probabilities, labels),
        "class_positives": metrics_lib.class_positive_counts(labels, valid),
        "ce": losses.cross_entropy(out.probabilities, labels, weights=weights) * jnp.sum(weights)}
  if "teacher" in outputs and "student" in outputs:
    t, s = outputs["teacher"].representation, outputs["student"].representation
    if t.shape == s.shape:
      results["student"]["rep_distance"] = jnp.sum(jnp.sum(jnp.square(t - s), axis=-1) * weights)
  return results


def make_eval_step(forwards: Mapping[str, inference.Forward], mesh=None, *, preselected: bool = False) -> Callable:
  """The jitted `eval_outputs` for these networks: (variables, batch, rng) -> outputs. With a mesh the
  outputs are replicated, so every process sees the whole global batch. `preselected`: the batches hold
  each video's k chosen frames (the student-only input path), not every frame."""
  forwards = dict(forwards)
  if preselected and set(forwards) != {"student"}:
    raise ValueError(f"make_eval_step: preselected frames are a student's alone, got {sorted(forwards)}")

  def step(variables, batch, rng):
    return eval_outputs(forwards, variables, batch, rng, preselected=preselected)

  if mesh is None:
    return jax.jit(step)
  return jax.jit(step, out_shardings=parallel.replicated(mesh))


def eval_batches(data: specs.DataSpec, counter=None, input_frames=None) -> Iterator[Dict[str, np.ndarray]]:
  """This process's eval batches of `data.eval_pattern`, full frames (the on-device selection picks each
  network's) or, with `input_frames` (`Selection.input_frames`), only the k frames of each video it picks;
  the last batch padded. Multi-process: every process yields as many batches as the largest shard needs.
  `counter`: a `bad_records.SkipCounter` that counts skipped and mismatched records."""
  from fewframes_jax.data import eval_batches as eval_input  # pylint: disable=g-import-not-at-top  (TensorFlow)
  from fewframes_jax.data import yt8m  # pylint: disable=g-import-not-at-top  (TensorFlow)
  local = parallel.local_batch_size(data.eval_batch_size)
  pad = yt8m.num_eval_batches(data.eval_pattern, local) if jax.process_count() > 1 else None
  return eval_input.eval_batches(data, batch_size=local, pad_to_batches=pad, counter=counter,
                                 input_frames=input_frames)


def evaluate(eval_step: Callable, variables: Mapping[str, Any], batches: Iterable[Mapping[str, np.ndarray]], *,
             num_classes: int, mesh=None, top_k: int = metrics_lib.TOP_K, max_videos: int = 0
             ) -> Dict[str, Dict[str, float]]:
  """Runs `eval_step` (from `make_eval_step`) over host-local numpy batches.

  Returns {'teacher'|'student': metrics}: gap, map, map_all_classes, hit_at_one, perr, num_videos,
  ce (mean per-video cross-entropy) and, for the student when sizes allow, rep_distance (mean squared
  L2 to the teacher's representation). `max_videos` > 0 stops after that many valid videos (rounded up
  to whole batches).
  """
  mesh = mesh or parallel.make_mesh()
  accumulators: Dict[str, metrics_lib.EvaluationMetrics] = {}
  sums: Dict[str, Dict[str, float]] = {}
  seen = 0
  for index, batch in enumerate(batches):
    out = jax.device_get(eval_step(variables, parallel.to_global(batch, mesh), inference.eval_key(index)))
    global_valid = np.asarray(out.pop("valid"), bool)
    for net, result in out.items():
      acc = accumulators.setdefault(net, metrics_lib.EvaluationMetrics(num_classes, top_k=top_k))
      acc.update_top_k(result["scores"], result["class_ids"], result["hits"], num_labels=result["num_labels"],
                       class_positive_counts=result["class_positives"], perr=result["perr"], valid=global_valid)
      s = sums.setdefault(net, {})
      for key in ("ce", "rep_distance"):
        if key in result:
          s[key] = s.get(key, 0.0) + float(result[key])
    seen += int(global_valid.sum())
    if max_videos and seen >= max_videos:
      break
  results = {}
  for net in sorted(accumulators, key=inference.NETWORKS.index):
    acc = accumulators[net]
    r = dict(acc.result())
    n = max(r["num_videos"], 1)
    for key, total in sums[net].items():
      r[key] = total / n
    results[net] = r
  return results


def evaluate_dataset(forwards: Mapping[str, inference.Forward], variables: Mapping[str, Any],
                     data: specs.DataSpec, *, mesh=None, eval_step: Optional[Callable] = None,
                     input_frames=None) -> Dict[str, Dict[str, float]]:
  """`evaluate` over `data.eval_pattern` with the record counts added to every network's metrics:
  `skipped_records` (bad records dropped with data.on_error=skip) and `frame_count_mismatches` (records
  whose rgb and audio frame counts differ: read up to the shorter), summed over processes.

  `input_frames`: a student scored alone (`forwards` = {'student': ...}) reads through the student-only
  input path, which decodes only the k frames its `Selection.input_frames` picks on the host: the same
  frames, so the same metrics, for less CPU per video."""
  from fewframes_jax.data import bad_records  # pylint: disable=g-import-not-at-top  (TensorFlow)
  if input_frames is not None and eval_step is not None:
    raise ValueError("evaluate_dataset: give input_frames or an eval_step, not both (the step must be built "
                     "for preselected frames: make_eval_step(..., preselected=True))")
  counter = bad_records.SkipCounter()
  eval_step = eval_step or make_eval_step(forwards, mesh, preselected=input_frames is not None)
  results = evaluate(eval_step, variables, eval_batches(data, counter, input_frames),
                     num_classes=data.num_classes, mesh=mesh, max_videos=data.max_eval_videos)
  counts = record_counts(counter)
  for metrics in results.values():
    metrics.update(counts)
  if counts["skipped_records"]:
    logging.warning("eval skipped %d bad records", counts["skipped_records"])
  return results


def record_counts(counter) -> Dict[str, int]:
  """{'skipped_records', 'frame_count_mismatches'} of a `bad_records.SkipCounter`, summed over processes."""
  summed = parallel.sum_over_processes({"skipped_records": counter.total,
                                        "frame_count_mismatches": counter.frame_count_mismatches})
  return {key: summed[key] for key in COUNT_KEYS}


def format_metrics(results: Dict[str, Dict[str, float]]) -> str:
  """One line: each network's GAP, mAP and Hit@1."""
  parts = []
  for net, r in results.items():
    parts.append(f"{net}: GAP {r['gap']:.4f} mAP {r['map']:.4f} Hit@1 {r['hit_at_one']:.4f} "
                 f"({r['num_videos']} videos)")
  return " | ".join(parts)
