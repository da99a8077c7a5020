"""TFRecord benchmarks: the `tf.data` input pipeline alone, and end-to-end eval (pipeline + forward).

  benchmark_input        videos/s and CPU ms per video of `yt8m.make_dataset` (uint8 batches out), the
                         full pipeline or the student-only one (`student_frames=(k, method)`, which
                         decodes and ships only the k frames the student sees).
  benchmark_eval         one pass over TFRecords per network, pipeline and forward pass together, each
                         network scored by `inference.Network` (the project's inference path).
  yt8m_shaped_records    synthetic records with YouTube-8M's lengths (the bundled eval split is mostly
                         short videos, which would understate what decoding only k frames saves).

TensorFlow is imported only inside these functions, and JAX only by the eval benchmark (the input
benchmark runs on a host without it).
"""
import functools
import os
import statistics
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import ml_collections


def benchmark_input(file_pattern: str = "", batch_size: int = 64, num_batches: int = 200, *,
                    warmup_batches: int = 10, num_classes: int = 0, max_frames: int = 300,
                    feature_names: Sequence[str] = ("rgb", "audio"),
                    feature_sizes: Sequence[int] = (1024, 128), training: bool = True,
                    seed: int = 0, student_frames: Optional[Tuple[int, str]] = None) -> Dict[str, Any]:
  """Measures how fast `yt8m.make_dataset` delivers numpy batches on this host.

  Args:
    file_pattern: TFRecord glob; empty: the bundled train split (its class count is used).
    batch_size: B.
    num_batches: timed batches (after `warmup_batches` untimed ones). In eval mode
      (`training=False`) the pass may end sooner; the batches actually read are counted.
    num_classes: C for label validation; 0: the bundled count, or 4716 (the 2017 vocabulary, which
      also admits every 2018 label) for a given pattern.
    max_frames, feature_names, feature_sizes, training, seed: as `make_dataset`.
    student_frames: (k, method): the student-only pipeline, which decodes and batches only k frames.

  Returns:
    {"videos_per_sec", "batches_per_sec", "batches", "videos", "seconds", "cpu_ms_per_video",
     "batch_size", "max_frames", "frame_bytes", "file_pattern", "training", "student_frames",
     "load_average" (1/5/15 min, before and after), "cpus"}.
  """
  from fewframes_jax.data import yt8m  # pylint: disable=g-import-not-at-top  (imports TensorFlow)

  if not file_pattern:
    from fewframes_jax.data import bundled  # pylint: disable=g-import-not-at-top
    file_pattern, _, bundled_classes = bundled.ensure_bundled()
    num_classes = num_classes or bundled_classes
  num_classes = num_classes or 4716
  load_before = os.getloadavg()
  ds = yt8m.make_dataset(file_pattern, batch_size, num_classes=num_classes, max_frames=max_frames,
                         training=training, seed=seed, feature_names=tuple(feature_names),
                         feature_sizes=tuple(feature_sizes), process_index=0, process_count=1,
                         student_frames=student_frames)
  batches = yt8m.as_numpy_batches(ds)
  for _ in range(warmup_batches):
    if next(batches, None) is None:
      break
  count, videos = 0, 0
  start, cpu_start = time.perf_counter(), time.process_time()
  for batch in batches:
    videos += int(batch["valid"].sum())
    count += 1
    if count >= num_batches:
      break
  seconds = time.perf_counter() - start
  cpu_seconds = time.process_time() - cpu_start
  return {
      "videos_per_sec": videos / seconds if seconds > 0 else float("nan"),
      "batches_per_sec": count / seconds if seconds > 0 else float("nan"),
      "batches": count,
      "videos": videos,
      "seconds": seconds,
      # CPU time of this process (all pipeline threads) per video: comparable across machine loads.
      "cpu_ms_per_video": 1000 * cpu_seconds / videos if videos else float("nan"),
      "batch_size": batch_size,
      "max_frames": max_frames,
      "frame_bytes": int(sum(feature_sizes)),
      "file_pattern": file_pattern,
      "training": training,
      "student_frames": list(student_frames) if student_frames else None,
      "load_average": {"before": list(load_before), "after": list(os.getloadavg())},
      "cpus": os.cpu_count(),
  }


def benchmark_input_variants(config: ml_collections.ConfigDict, *, file_pattern: str, ks: Sequence[int],
                             batch_size: int = 0, max_batches: int = 0, rounds: int = 2
                             ) -> List[Dict[str, Any]]:
  """The eval pipeline of the config's data (one pass after one warm-up batch), full and student-only
  at each k, in `rounds` interleaved rounds (as `benchmark_eval`): one `benchmark_input` result per
  pipeline and round, with its `round`. batch_size: default `data.eval_batch_size`."""
  d = config.data
  kw = dict(warmup_batches=1, num_classes=d.num_classes, max_frames=d.max_frames,
            feature_names=tuple(d.feature_names), feature_sizes=tuple(d.feature_sizes), training=False)
  variants = [None] + [(k, config.student.sampling) for k in ks]
  results = []
  for round_index in range(rounds):
    for student_frames in variants:
      result = benchmark_input(file_pattern, batch_size or d.eval_batch_size, max_batches or 10**9,
                               student_frames=student_frames, **kw)
      results.append(dict(result, round=round_index))
  return results


def yt8m_shaped_records(out_dir: str, *, num_videos: int = 1024, num_classes: int = 64, seed: int = 0,
                        num_shards: int = 4, feature_sizes: Sequence[int] = (1024, 128)) -> str:
  """Writes synthetic eval records with YouTube-8M's lengths (log-uniform in 120..360 frames) and
  frame widths (rgb, audio) `feature_sizes`, and returns their glob."""
  from fewframes_jax.data import synthetic  # pylint: disable=g-import-not-at-top
  rgb_size, audio_size = feature_sizes
  spec = synthetic.SyntheticSpec(num_classes=num_classes, rgb_size=rgb_size, audio_size=audio_size,
                                 long_video_fraction=1.0, long_frames=(120, 360))
  synthetic.write_split(out_dir, "eval", num_videos, spec=spec, seed=seed, num_shards=num_shards)
  return os.path.join(out_dir, "eval-*.tfrecord")


def _eval_pass(network, dataset, *, preselected: bool,
               max_batches: int) -> Tuple[int, int, float, float]:
  """One timed pass of an `inference.Network` over a dataset: (batches, valid videos, seconds, mean true
  length). One batch stays in flight: the next batch is read while the device scores the previous one."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from fewframes_jax.data import yt8m  # pylint: disable=g-import-not-at-top
  batches = videos = frames = 0
  pending = None
  lengths = "num_frames_k" if preselected else "num_frames"
  start = time.perf_counter()
  for batch in yt8m.as_numpy_batches(dataset):
    probs = network.probabilities(batch["frames"], batch[lengths], batch_index=batches, preselected=preselected)
    if pending is not None:
      np.asarray(pending)
    pending = probs
    valid = batch["valid"].astype(bool)
    videos += int(valid.sum())
    frames += int(batch["num_frames"][valid].sum())
    batches += 1
    if max_batches and batches >= max_batches:
      break
  if pending is not None:
    np.asarray(jax.block_until_ready(pending))
  return batches, videos, time.perf_counter() - start, frames / max(videos, 1)


def _eval_networks(config: ml_collections.ConfigDict, ks: Sequence[int], *, sampled: bool, seed: int):
  """(name, network, student_frames of its pipeline or None) for the teacher and each student (a
  student fed by both pipelines is one network)."""
  from fewframes_jax import inference  # pylint: disable=g-import-not-at-top
  from fewframes_jax.cost import compute  # pylint: disable=g-import-not-at-top
  teacher = compute.teacher_scorer(config)
  out = [("teacher", inference.Network(which="teacher", scorer=teacher, config=config,
                                       variables=compute.served_variables(config, teacher, seed=seed)), None)]
  for k in ks:
    scorer = compute.student_scorer(config, k)
    student = inference.Network(which="student", scorer=scorer, config=config,
                                variables=compute.served_variables(config, scorer, seed=seed))
    out.append((f"student_k{k}", student, (k, scorer.selection.method)))
    if sampled:
      out.append((f"student_k{k}_sampled", student, None))
  return out


def benchmark_eval(config: ml_collections.ConfigDict, *, file_pattern: str, ks: Sequence[int],
                   batch_size: int = 0, max_batches: int = 0, sampled: bool = True, rounds: int = 2,
                   seed: int = 0) -> Dict[str, Any]:
  """End-to-end eval throughput from TFRecords: pipeline + forward pass, per network.

  Rows: `teacher` (full pipeline), `student_k{k}` (student-only pipeline, k frames decoded),
  `student_k{k}_sampled` (full pipeline, k frames picked on the device; unless `sampled=False`).
  Networks are randomly initialised (the time does not depend on the weights). Each network is
  compiled and run once on the first batch; then `rounds` rounds each time one pass per network, in
  turn, so that a shared machine's changing load hits them alike; a row reports the median round.
  batch_size: default `data.eval_batch_size`; max_batches: 0 for the whole pass.

  Returns {"rows": [...], "ratios": [{"student", "k", "throughput_ratio"}], "file_pattern"}
  (throughput_ratio: student / teacher videos/s).
  """
  from fewframes_jax.data import yt8m  # pylint: disable=g-import-not-at-top
  d = config.data
  batch_size = batch_size or d.eval_batch_size
  prepared = []
  for name, network, student_frames in _eval_networks(config, ks, sampled=sampled, seed=seed):
    dataset = functools.partial(yt8m.make_dataset, file_pattern, batch_size, training=False, process_index=0,
                                process_count=1, student_frames=student_frames, **yt8m.config_options(d))
    _eval_pass(network, dataset(), preselected=student_frames is not None, max_batches=1)  # compiles
    prepared.append((name, network, student_frames, dataset))
  passes = {name: [] for name, *_ in prepared}
  for _ in range(rounds):
    for name, network, student_frames, dataset in prepared:
      passes[name].append(_eval_pass(network, dataset(), preselected=student_frames is not None,
                                     max_batches=max_batches))
  rows = []
  for name, network, student_frames, _ in prepared:
    per_round = [videos / seconds for _, videos, seconds, _ in passes[name]]
    batches, videos, _, mean_frames = passes[name][0]
    k = network.scorer.selection.k
    rows.append(dict(name=name, network=config.teacher.name if k is None else config.student.name, k=k,
                     method=None if k is None else network.scorer.selection.method,
                     pipeline="student" if student_frames else "full", batch_size=batch_size,
                     batches=batches, videos=videos, videos_per_sec=statistics.median(per_round),
                     videos_per_sec_rounds=per_round, mean_num_frames=mean_frames, dtype=config.dtype))
  teacher_vps = rows[0]["videos_per_sec"]
  ratios = [dict(student=r["name"], k=r["k"], throughput_ratio=r["videos_per_sec"] / teacher_vps)
            for r in rows[1:]]
  return {"rows": rows, "ratios": ratios, "file_pattern": file_pattern}


def format_eval(result: Dict[str, Any]) -> str:
  """A markdown table of a `benchmark_eval` result."""
  lines = ["| eval from TFRecords | pipeline | k | batch | videos | mean frames | videos/s | vs teacher |",
           "|---|---|---:|---:|---:|---:|---:|---:|"]
  teacher = result["rows"][0]["videos_per_sec"]
  for r in result["rows"]:
    lines.append(f"| {r['name']} | {r['pipeline']} | {r['k'] or '-'} | {r['batch_size']} | {r['videos']} | "
                 f"{r['mean_num_frames']:.0f} | {r['videos_per_sec']:.1f} | "
                 f"{r['videos_per_sec'] / teacher:.2f}x |")
  return "\n".join(lines)


def format_input(results: Sequence[Dict[str, Any]]) -> str:
  """A markdown table of `benchmark_input` results."""
  lines = ["| input pipeline | frames out | batch | batches | videos/s | CPU ms/video | load (1 min) |",
           "|---|---:|---:|---:|---:|---:|---:|"]
  for r in results:
    sf = r.get("student_frames")
    name = f"student k={sf[0]} ({sf[1]})" if sf else "full"
    lines.append(f"| {name} | {sf[0] if sf else r['max_frames']} | {r['batch_size']} | {r['batches']} | "
                 f"{r['videos_per_sec']:.0f} | {r['cpu_ms_per_video']:.3f} | "
                 f"{r['load_average']['after'][0]:.2f} |")
  return "\n".join(lines)
