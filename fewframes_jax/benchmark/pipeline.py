"""TFRecord benchmarks: the `tf.data` input pipeline alone, and end-to-end eval (pipeline + forward).

  benchmark_input        videos/s and CPU ms per video of `yt8m.make_dataset` (uint8 batches out), the
                         full pipeline or the student-only one (`student_frames=(k, method)`, which
                         decodes and ships only the k frames the student sees).
  benchmark_eval         one pass over TFRecords per network, pipeline and forward pass together, each
                         network scored by `inference.Network` (the project's inference path).
  benchmark_export       the exported teacher and students (`export.py`: the SavedModel's serving signature,
                         serialized records in), next to the project's own end-to-end eval of the same
                         networks, in the same interleaved rounds.
  yt8m_shaped_records    synthetic records with YouTube-8M's lengths (the bundled eval split is mostly
                         short videos, which would understate what decoding only k frames saves).

TensorFlow is imported only inside these functions, and JAX only by the eval and export benchmarks (the
input benchmark runs on a host without it).
"""
import collections
from concurrent import futures
import functools
import os
import statistics
import tempfile
import time
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import ml_collections

from fewframes_jax import specs


def benchmark_input(file_pattern: str = "", batch_size: int = 64, num_batches: int = 200, *,
                    warmup_batches: int = 10, num_classes: int = 0, max_frames: int = 300,
                    feature_names: Sequence[str] = ("rgb", "audio"),
                    feature_sizes: Sequence[int] = (1024, 128), training: bool = True,
                    seed: int = 0, student_frames: Optional[Tuple[int, str]] = None, locate_frames: bool = True,
                    bare: bool = False) -> Dict[str, Any]:
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
    locate_frames: as `make_dataset` (False: the student-only pipeline parses every frame, as before).
    bare: time `yt8m.bare_dataset` instead (read + parse of the full records, nothing checked or decoded).

  Returns:
    {"videos_per_sec", "batches_per_sec", "batches", "videos", "seconds", "cpu_ms_per_video",
     "batch_size", "max_frames", "frame_bytes", "file_pattern", "training", "student_frames", "pipeline"
     (bare | full | student | student_parsed), "load_average" (1/5/15 min, before and after), "cpus"}.
  """
  from fewframes_jax.data import yt8m  # pylint: disable=g-import-not-at-top  (imports TensorFlow)

  if not file_pattern:
    from fewframes_jax.data import bundled  # pylint: disable=g-import-not-at-top
    file_pattern, _, bundled_classes = bundled.ensure_bundled()
    num_classes = num_classes or bundled_classes
  num_classes = num_classes or 4716
  load_before = os.getloadavg()
  if bare:
    ds = yt8m.bare_dataset(file_pattern, batch_size, feature_names=tuple(feature_names), training=training)
    student_frames, name = None, "bare"
  else:
    ds = yt8m.make_dataset(file_pattern, batch_size, num_classes=num_classes, max_frames=max_frames,
                           training=training, seed=seed, feature_names=tuple(feature_names),
                           feature_sizes=tuple(feature_sizes), process_index=0, process_count=1,
                           student_frames=student_frames, locate_frames=locate_frames)
    name = "full" if student_frames is None else "student" if locate_frames else "student_parsed"
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
      "student_frames": list(student_frames[:2]) if student_frames else None,
      "pipeline": name,
      "load_average": {"before": list(load_before), "after": list(os.getloadavg())},
      "cpus": os.cpu_count(),
  }


INPUT_PATHS = ("bare", "full", "student_parsed", "student")


def benchmark_input_paths(file_pattern: str = "", batch_size: int = 64, num_batches: int = 100, *,
                          k: int = 10, method: str = "uniform", rounds: int = 3, **kwargs) -> Dict[str, Any]:
  """The input paths side by side, in `rounds` interleaved rounds (each round one run of each, starting
  one path later): `bare` (`yt8m.bare_dataset`: read + parse of the full records, nothing checked or
  decoded: the floor of a reader that parses every frame), `full` (`make_dataset`, every frame),
  `student_parsed` (the student-only pipeline at k that parses every frame and decodes k, as before its
  frames were located) and `student` (the student-only pipeline: only the k frames copied out). Each run
  is `benchmark_input(file_pattern, batch_size, num_batches, **kwargs)` in its own pipeline, warm-up
  batches untimed.

  Returns {"runs": [benchmark_input results with "round"], "rows": per path {"pipeline",
  "cpu_ms_per_video" (median over rounds), "cpu_ms_rounds", "videos_per_sec" (median)}, "ratios":
  {"student_vs_full", "student_vs_bare", "student_vs_student_parsed"} (of the median CPU ms per video)}.
  """
  options = {"bare": dict(bare=True), "full": {}, "student_parsed": dict(student_frames=(k, method), locate_frames=False),
             "student": dict(student_frames=(k, method))}
  runs = []
  for round_index in range(rounds):
    for i in range(len(INPUT_PATHS)):
      path = INPUT_PATHS[(i + round_index) % len(INPUT_PATHS)]
      result = benchmark_input(file_pattern, batch_size, num_batches, **kwargs, **options[path])
      runs.append(dict(result, round=round_index))
  rows = []
  for path in INPUT_PATHS:
    mine = [r for r in runs if r["pipeline"] == path]
    rows.append(dict(pipeline=path, cpu_ms_per_video=statistics.median(r["cpu_ms_per_video"] for r in mine),
                     cpu_ms_rounds=[r["cpu_ms_per_video"] for r in mine],
                     videos_per_sec=statistics.median(r["videos_per_sec"] for r in mine)))
  cpu = {r["pipeline"]: r["cpu_ms_per_video"] for r in rows}
  ratios = {f"student_vs_{other}": cpu["student"] / cpu[other] for other in ("full", "bare", "student_parsed")}
  return {"runs": runs, "rows": rows, "ratios": ratios, "k": k, "method": method}


def format_input_paths(result: Dict[str, Any]) -> str:
  """A markdown table of a `benchmark_input_paths` result, then the student path's ratios."""
  names = {"bare": "bare tf.data read + parse of the full records (nothing checked or decoded)",
           "full": "full path (every frame, validated, decoded)",
           "student_parsed": f"student k={result['k']}, every frame parsed (before)",
           "student": f"student k={result['k']}, frames located (only k copied)"}
  lines = ["| input path | CPU ms/video (median) | rounds | videos/s (median) |", "|---|---:|---|---:|"]
  for r in result["rows"]:
    rounds = ", ".join(f"{v:.3f}" for v in r["cpu_ms_rounds"])
    lines.append(f"| {names[r['pipeline']]} | {r['cpu_ms_per_video']:.3f} | {rounds} | {r['videos_per_sec']:.0f} |")
  q = result["ratios"]
  lines += ["", f"student / full: {q['student_vs_full']:.2f}; student / bare parse: {q['student_vs_bare']:.2f}; "
            f"student / student parsed: {q['student_vs_student_parsed']:.2f} (CPU ms per video)"]
  return "\n".join(lines)


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
  frame widths (rgb, audio) `feature_sizes`, and returns their glob. Their id key is the release's that
  `num_classes` implies (`video_id` for 4716 classes, else `id`), so the reader's release check passes."""
  from fewframes_jax.data import bad_records, synthetic  # pylint: disable=g-import-not-at-top
  rgb_size, audio_size = feature_sizes
  spec = synthetic.SyntheticSpec(num_classes=num_classes, rgb_size=rgb_size, audio_size=audio_size,
                                 long_video_fraction=1.0, long_frames=(120, 360))
  id_key = "video_id" if bad_records.release_conflict("id", num_classes) else "id"
  synthetic.write_split(out_dir, "eval", num_videos, spec=spec, seed=seed, num_shards=num_shards, id_key=id_key)
  return os.path.join(out_dir, "eval-*.tfrecord")


class Pass(NamedTuple):
  """One timed pass over a dataset: batches, valid videos, wall seconds; `mean_frames` (true length) and
  `decoded` (frames decoded per video: the k chosen by the student-only pipeline, else every frame up to
  max_frames); `setup_cpu`: CPU seconds of this process until the first batch was in hand (building the
  pipeline, its iterator, reading the first batch; every video's network work comes after)."""
  batches: int
  videos: int
  seconds: float
  mean_frames: float = 0.0
  decoded: float = 0.0
  setup_cpu: float = 0.0


def _eval_pass(network, build_dataset: Callable[[], Any], *, preselected: bool, max_batches: int) -> Pass:
  """One timed pass of an `inference.Network` over the dataset `build_dataset()` returns (built inside the
  pass, as `--mode=eval/predict` build theirs). One batch stays in flight: the next batch is read while the
  device scores the previous one."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from fewframes_jax.data import yt8m  # pylint: disable=g-import-not-at-top
  batches = videos = frames = decoded = 0
  setup_cpu = 0.0
  pending = None
  lengths = "num_frames_k" if preselected else "num_frames"
  start, cpu_start = time.perf_counter(), time.process_time()
  for batch in yt8m.as_numpy_batches(build_dataset()):
    valid = batch["valid"].astype(bool)
    if not batches:
      setup_cpu = time.process_time() - cpu_start
    probs = network.probabilities(batch["frames"], batch[lengths], batch_index=batches, preselected=preselected)
    if pending is not None:
      np.asarray(pending)
    pending = probs
    videos += int(valid.sum())
    frames += int(batch["num_frames"][valid].sum())
    decoded += int(batch[lengths][valid].sum())
    batches += 1
    if max_batches and batches >= max_batches:
      break
  if pending is not None:
    np.asarray(jax.block_until_ready(pending))
  return Pass(batches, videos, time.perf_counter() - start, frames / max(videos, 1), decoded / max(videos, 1),
              setup_cpu)


def _eval_dataset(config: ml_collections.ConfigDict, file_pattern: str, batch_size: int, student_frames):
  """A function that builds one eval pass over `file_pattern` (one process; the student-only pipeline
  when `student_frames` is (k, method), else every frame), with the config's reader options."""
  from fewframes_jax.data import yt8m  # pylint: disable=g-import-not-at-top
  return functools.partial(yt8m.make_dataset, file_pattern, batch_size, training=False, process_index=0,
                           process_count=1, student_frames=student_frames, **yt8m.config_options(config.data))


def parse_selector(selector: str) -> Tuple[str, str]:
  """'<sampling rule>' or 'learned[:<streams>]' -> (method, streams: '' for a rule, all | audio | rgb for a
  learned scorer). Raises ValueError naming what is wrong."""
  from fewframes_jax.sampling import methods  # pylint: disable=g-import-not-at-top
  from fewframes_jax.sampling import learned  # pylint: disable=g-import-not-at-top
  method, _, streams = selector.partition(":")
  if method not in methods.SELECTION_METHODS:
    raise ValueError(f"selector {selector!r}: expected a sampling rule of {methods.SELECTION_METHODS} or "
                     f"learned:<{'|'.join(learned.STREAMS)}>")
  if method != learned.METHOD:
    if streams:
      raise ValueError(f"selector {selector!r}: only 'learned' takes ':<streams>'")
    return method, ""
  if (streams or "all") not in learned.STREAMS:
    raise ValueError(f"selector {selector!r}: a learned scorer reads one of {learned.STREAMS}")
  return method, streams or "all"


def selector_config(config: ml_collections.ConfigDict, selector: str) -> ml_collections.ConfigDict:
  """A copy of `config` whose student selects by `selector` (`parse_selector`)."""
  method, streams = parse_selector(selector)
  c = ml_collections.ConfigDict(config.to_dict())
  c.student.sampling = method
  if streams:
    c.student.selector.streams = streams
  return c


def _eval_networks(config: ml_collections.ConfigDict, ks: Sequence[int], *, sampled: bool, seed: int,
                   selectors: Sequence[str] = ()):
  """(name, network, student_frames of its pipeline or None) for the teacher and each student (a
  student fed by both pipelines is one network); with `selectors`, one student per selector and k."""
  from fewframes_jax import inference  # pylint: disable=g-import-not-at-top
  from fewframes_jax.benchmark import compute  # pylint: disable=g-import-not-at-top
  teacher = compute.teacher_forward(config)
  out = [("teacher", inference.Network(which="teacher", forward=teacher, spec=specs.RunSpec.from_config(config),
                                       variables=compute.served_variables(config, teacher, seed=seed)), None)]
  for k in ks:
    for selector in selectors or ("",):
      c = selector_config(config, selector) if selector else config
      forward = compute.student_forward(c, k)
      student = inference.Network(which="student", forward=forward, spec=specs.RunSpec.from_config(c),
                                  variables=compute.served_variables(c, forward, seed=seed))
      # None: a rule the host cannot apply; a learned selector of one stream is scored on the host
      student_frames = forward.selection.input_frames(inference.split_selector(student.variables)[1])
      name = f"student_k{k}" + (f"_{selector.replace(':', '_')}" if selector else "")
      out.append((name, student, student_frames))
      if sampled and student_frames is not None:
        out.append((f"{name}_sampled", student, None))
  return out


def benchmark_eval(config: ml_collections.ConfigDict, *, file_pattern: str, ks: Sequence[int],
                   batch_size: int = 0, max_batches: int = 0, sampled: bool = True, rounds: int = 2,
                   seed: int = 0, selectors: Sequence[str] = ()) -> Dict[str, Any]:
  """End-to-end eval throughput from TFRecords: pipeline + forward pass, per network.

  `selectors` (e.g. uniform, far_from_mean, learned:all, learned:audio; `selector_config`): one student
  per selector and k, rows `student_k{k}_{selector}`, timed in the same rounds; default the config's own.

  Rows: `teacher` (full pipeline), `student_k{k}` (student-only pipeline, k frames decoded, and for a
  learned selector of one stream that stream of every frame too; the full pipeline for a rule the host
  cannot apply: 'random', content-aware selection, a learned selector of every stream),
  `student_k{k}_sampled` (full pipeline, k frames picked on the device; unless `sampled=False` or the
  student row already is that). A pass builds its pipeline inside its timed seconds, as `--mode=eval`
  does (rows in BENCHMARKS.md measured before 2026-12-07 built it outside).
  Networks are randomly initialised (the time does not depend on the weights). Each network is
  compiled and run once on the first batch; then `rounds` rounds each time one pass per network, in
  turn, so that a shared machine's changing load hits them alike; a row reports the median round.
  batch_size: default `data.eval_batch_size`; max_batches: 0 for the whole pass.

  Returns {"rows": [...], "ratios": [{"student", "k", "throughput_ratio"}], "file_pattern"}
  (throughput_ratio: student / teacher videos/s).
  """
  batch_size = batch_size or config.data.eval_batch_size
  prepared = []
  for name, network, student_frames in _eval_networks(config, ks, sampled=sampled, seed=seed, selectors=selectors):
    dataset = _eval_dataset(config, file_pattern, batch_size, student_frames)
    _eval_pass(network, dataset, preselected=student_frames is not None, max_batches=1)  # compiles
    prepared.append((name, network, student_frames, dataset))
  passes = {name: [] for name, *_ in prepared}
  for _ in range(rounds):
    for name, network, student_frames, dataset in prepared:
      passes[name].append(_eval_pass(network, dataset, preselected=student_frames is not None,
                                     max_batches=max_batches))
  rows = []
  for name, network, student_frames, _ in prepared:
    per_round = [p.videos / p.seconds for p in passes[name]]
    first = passes[name][0]
    # A host-scored learned selector also decodes its stream of every frame (`data/host_scorer.py`).
    scored_bytes = student_frames[2].width if student_frames and len(student_frames) > 2 else 0
    decoded_bytes = first.decoded * sum(config.data.feature_sizes) + first.mean_frames * scored_bytes
    selection = network.forward.selection
    k = selection.k
    method = None if k is None else selection.method + (f":{selection.scorer.streams}" if selection.learned else "")
    rows.append(dict(name=name, network=config.teacher.name if k is None else config.student.name, k=k,
                     method=method,
                     pipeline="student" if student_frames else "full", batch_size=batch_size,
                     batches=first.batches, videos=first.videos, videos_per_sec=statistics.median(per_round),
                     videos_per_sec_rounds=per_round, mean_num_frames=first.mean_frames,
                     decoded_frames_per_video=first.decoded,
                     decoded_bytes_per_video=decoded_bytes, dtype=config.dtype))
  teacher_vps = rows[0]["videos_per_sec"]
  ratios = [dict(student=r["name"], k=r["k"], throughput_ratio=r["videos_per_sec"] / teacher_vps)
            for r in rows[1:]]
  return {"rows": rows, "ratios": ratios, "file_pattern": file_pattern}


def _serving_pass(signature, files: Sequence[str], batch_size: int, max_batches: int, *,
                  in_flight: int) -> Pass:
  """One timed pass of a SavedModel's serving signature over TFRecord files: requests of `batch_size`
  serialized records (the last one shorter), `in_flight` of them at a time, as a server takes concurrent
  requests (one is parsed while another runs the network), each answer read back."""
  from fewframes_jax.data import records  # pylint: disable=g-import-not-at-top
  tf = records.tensorflow()
  batches = videos = 0
  setup_cpu = 0.0
  pending = collections.deque()
  start, cpu_start = time.perf_counter(), time.process_time()
  with futures.ThreadPoolExecutor(in_flight) as pool:
    for serialized in tf.data.TFRecordDataset(files).batch(batch_size).prefetch(1):
      if not batches:
        setup_cpu = time.process_time() - cpu_start
      if len(pending) == in_flight:
        pending.popleft().result()
      pending.append(pool.submit(lambda s=serialized: signature(serialized=s)["scores"].numpy()))
      videos += int(serialized.shape[0])
      batches += 1
      if max_batches and batches >= max_batches:
        break
    for answer in pending:
      answer.result()
  return Pass(batches, videos, time.perf_counter() - start, setup_cpu=setup_cpu)


def benchmark_export(config: ml_collections.ConfigDict, *, file_pattern: str, ks: Sequence[int],
                     batch_size: int = 0, max_batches: int = 0, rounds: int = 2, seed: int = 0,
                     in_flight: int = 2) -> Dict[str, Any]:
  """Exported student vs exported teacher, videos/s from serialized records, next to the project's own
  end-to-end eval ratio of the same networks, measured in the same run.

  The teacher and a student per k (randomly initialised, as `benchmark_eval`) are exported as the SavedModel
  of `export.export_network` (`serving.save_saved_model`) to a temporary folder and loaded in this process. Rows:
  `export_teacher`, `export_student_k{k}` (the serving signature: parse, decode the frames the network
  needs, forward, top 20, all inside TensorFlow; `in_flight` requests at a time) and `eval_teacher`,
  `eval_student_k{k}` (the project's eval: `yt8m.make_dataset`, the student-only pipeline for a student,
  `Network.probabilities`; its input pipeline parses the next batches while one is scored). Each row
  makes one untimed pass first (TensorFlow's XLA compiles per request shape, and a pass has two: the
  full requests and the last one), then one pass per round in `rounds` rounds, each round starting one
  row later; a row reports the median round. max_batches: 0 for the whole pass. Each row splits its CPU:
  `setup_cpu_ms` until the first batch is in hand (an eval pass builds its tf.data pipeline there; the
  SavedModel is loaded and traced before any pass), `steady_cpu_ms_per_video` the rest over every video.

  Returns {"rows": [...], "ratios": [{"k", "export_ratio", "eval_ratio", "export_vs_eval"}],
  "file_pattern"}: the ratios are student / teacher videos/s, and `export_vs_eval` their quotient
  (the target: within 20% of 1).
  """
  from fewframes_jax.serve import saved_model  # pylint: disable=g-import-not-at-top
  from fewframes_jax.data import records, yt8m  # pylint: disable=g-import-not-at-top
  tf = records.tensorflow()
  batch_size = batch_size or config.data.eval_batch_size
  files = yt8m.list_files(file_pattern)
  passes = []  # (name, network, k, timed pass returning (batches, videos, seconds))
  with tempfile.TemporaryDirectory(prefix="fewframes_export_bench_") as tmp:
    for name, network, student_frames in _eval_networks(config, ks, sampled=False, seed=seed):
      folder = os.path.join(tmp, name)
      saved_model.save_saved_model(network, folder)
      signature = tf.saved_model.load(folder).signatures["serving_default"]
      dataset = _eval_dataset(config, file_pattern, batch_size, student_frames)
      k = network.forward.selection.k
      exported = functools.partial(_serving_pass, signature, files, batch_size, max_batches, in_flight=in_flight)
      evaluated = functools.partial(_eval_pass, network, dataset, preselected=student_frames is not None,
                                    max_batches=max_batches)
      passes += [(f"export_{name}", network, k, exported), (f"eval_{name}", network, k, evaluated)]
    for *_, timed in passes:  # compiles
      timed()
    seconds = {name: [] for name, *_ in passes}
    cpu_seconds = {name: [] for name, *_ in passes}
    steady_cpu = {name: [] for name, *_ in passes}  # CPU s per video once the first batch is in hand
    setup_cpu = {name: [] for name, *_ in passes}
    counts = {}
    for round_index in range(rounds):
      for i in range(len(passes)):
        name, _, _, timed = passes[(i + round_index) % len(passes)]
        cpu_start = time.process_time()
        done = timed()
        cpu = time.process_time() - cpu_start
        cpu_seconds[name].append(cpu)
        setup_cpu[name].append(done.setup_cpu)
        steady_cpu[name].append((cpu - done.setup_cpu) / max(done.videos, 1))
        counts[name] = (done.batches, done.videos)
        seconds[name].append(done.seconds)
  rows = []
  for name, network, k, _ in passes:
    batches, videos = counts[name]
    per_round = [videos / s for s in seconds[name]]
    rows.append(dict(name=name, path="export" if name.startswith("export_") else "eval", k=k,
                     network=config.teacher.name if k is None else config.student.name,
                     method=None if k is None else network.forward.selection.method, batch_size=batch_size,
                     batches=batches, videos=videos, videos_per_sec=statistics.median(per_round),
                     videos_per_sec_rounds=per_round,
                     cpu_ms_per_video=1000 * statistics.median(cpu_seconds[name]) / videos,
                     setup_cpu_ms=1000 * statistics.median(setup_cpu[name]),
                     steady_cpu_ms_per_video=1000 * statistics.median(steady_cpu[name]),
                     dtype=config.dtype, in_flight=in_flight if name.startswith("export_") else None))
  row = {r["name"]: r for r in rows}
  ratios = []
  for k in ks:
    export, evaluated = row[f"export_student_k{k}"], row[f"eval_student_k{k}"]
    export_ratio = export["videos_per_sec"] / row["export_teacher"]["videos_per_sec"]
    eval_ratio = evaluated["videos_per_sec"] / row["eval_teacher"]["videos_per_sec"]
    export_cpu_ratio = row["export_teacher"]["cpu_ms_per_video"] / export["cpu_ms_per_video"]
    eval_cpu_ratio = row["eval_teacher"]["cpu_ms_per_video"] / evaluated["cpu_ms_per_video"]
    ratios.append(dict(k=k, export_ratio=export_ratio, eval_ratio=eval_ratio, export_vs_eval=export_ratio / eval_ratio,
                       export_cpu_ratio=export_cpu_ratio, eval_cpu_ratio=eval_cpu_ratio,
                       export_vs_eval_cpu=export_cpu_ratio / eval_cpu_ratio))
  return {"rows": rows, "ratios": ratios, "file_pattern": file_pattern}


def format_export(result: Dict[str, Any]) -> str:
  """Markdown tables of a `benchmark_export` result: the rows, then each student's ratios."""
  lines = ["| from serialized records | k | batch | videos | videos/s (median) | rounds | CPU ms/video | set-up "
           "CPU ms (to the first batch) | steady CPU ms/video (the rest, over every video) |",
           "|---|---:|---:|---:|---:|---|---:|---:|---:|"]
  for r in result["rows"]:
    rounds = ", ".join(f"{v:.1f}" for v in r["videos_per_sec_rounds"])
    lines.append(f"| {r['name']} | {r['k'] or '-'} | {r['batch_size']} | {r['videos']} | "
                 f"{r['videos_per_sec']:.1f} | {rounds} | {r['cpu_ms_per_video']:.2f} | {r['setup_cpu_ms']:.0f} | "
                 f"{r['steady_cpu_ms_per_video']:.3f} |")
  lines += ["", "| student | exported student/teacher | eval student/teacher | exported / eval | within 20% | "
            "the same from CPU ms/video (exported, eval, quotient) |", "|---|---:|---:|---:|---|---|"]
  for q in result["ratios"]:
    lines.append(f"| k={q['k']} | {q['export_ratio']:.2f}x | {q['eval_ratio']:.2f}x | {q['export_vs_eval']:.2f} | "
                 f"{'yes' if abs(q['export_vs_eval'] - 1) <= 0.2 else 'no'} | {q['export_cpu_ratio']:.2f}x, "
                 f"{q['eval_cpu_ratio']:.2f}x, {q['export_vs_eval_cpu']:.2f} |")
  return "\n".join(lines)


def format_eval(result: Dict[str, Any]) -> str:
  """A markdown table of a `benchmark_eval` result."""
  lines = ["| eval from TFRecords | pipeline | k (selection) | batch | videos | mean frames | frames decoded / "
           "video | KB decoded / video | videos/s | vs teacher |",
           "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
  teacher = result["rows"][0]["videos_per_sec"]
  for r in result["rows"]:
    k = f"{r['k']} ({r['method']})" if r["k"] else "-"
    lines.append(f"| {r['name']} | {r['pipeline']} | {k} | {r['batch_size']} | {r['videos']} | "
                 f"{r['mean_num_frames']:.0f} | {r['decoded_frames_per_video']:.1f} | "
                 f"{r['decoded_bytes_per_video'] / 1024:.1f} | {r['videos_per_sec']:.1f} | "
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
