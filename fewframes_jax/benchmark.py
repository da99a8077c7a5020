"""Benchmarks: compute throughput (teacher, student at each k, train steps), the input pipeline, and
end-to-end eval from TFRecords. Every subcommand prints tables and can write JSON (`--json_out`).

  python -m fewframes_jax.benchmark infer --config=configs/nextvlad_k10.py --ks=10,30 --batch_size=256
  python -m fewframes_jax.benchmark train --config=configs/nextvlad_k10.py --config.dtype=bfloat16
  python -m fewframes_jax.benchmark input --file_pattern='/data/yt8m/frame/train*.tfrecord' \\
      --batch_size=64 [--num_batches=200 --student_k=10 --sampling=uniform --json_out=input.json]
  python -m fewframes_jax.benchmark eval --config=configs/nextvlad_k10.py --ks=10,30 [--file_pattern=...]
  python -m fewframes_jax.benchmark all --config=configs/nextvlad_k10.py:tiny --json_out=all.json

infer, train: synthetic in-memory uint8 batches (no TensorFlow), timed by `fewframes_jax.throughput`
  (videos/s, ms/step, XLA FLOPs per video, TFLOP/s, MFU where the device's peak is known, memory), and the
  student/teacher throughput ratio next to the XLA FLOP ratio of the same compiled functions.
input: the tf.data pipeline alone (`yt8m.make_dataset`, uint8 frames out); `--student_k` times the
  student-only pipeline, which decodes only the k frames the student sees.
eval: one pass over TFRecords, pipeline and forward pass together (randomly initialised networks): the
  teacher on full batches; each student fed by the student-only pipeline (`student_k{k}`) and, for
  comparison, by the full pipeline with the frames picked on the device (`student_k{k}_sampled`).
  An empty --file_pattern writes YouTube-8M-shaped records (lengths log-uniform in 120..360 frames,
  clipped to 300) into a temporary folder: the bundled eval split is mostly short videos.
all: infer, train, input (teacher and student pipelines) and eval, for one config.

A config takes an argument after a colon and `--config.<field>=<value>` overrides, as in `main.py`.
This module imports without TensorFlow; the input and eval benchmarks import it when they run.
"""
import argparse
import functools
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import ml_collections

# ----------------------------------------------------------------------------------------------
# Configs


def _parse_value(text: str, default: Any, key: str) -> Any:
  if isinstance(default, bool):
    if text.lower() not in ("1", "0", "true", "false", "yes", "no"):
      raise ValueError(f"--config.{key}={text!r}: expected a boolean")
    return text.lower() in ("1", "true", "yes")
  if isinstance(default, (tuple, list)):
    items = [t for t in text.split(",") if t]
    kind = type(default[0]) if default else str
    return tuple(kind(t) for t in items)
  if default is None:
    return text
  return type(default)(text)


def load_config(spec: str, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
  """The config of `path.py[:arg]` (its `get_config(arg)`), with `--config.a.b=value` overrides.

  Raises ValueError naming the file or the field when the file has no `get_config` or a field is unknown.
  """
  path, _, arg = spec.partition(":")
  if not os.path.isfile(path):
    raise ValueError(f"--config={spec!r}: no such file {path!r}")
  root = os.path.dirname(os.path.dirname(os.path.abspath(path)))  # configs/x.py imports `configs.base`
  if root not in sys.path:
    sys.path.insert(0, root)
  module_spec = importlib.util.spec_from_file_location("_benchmark_config", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise ValueError(f"--config={spec!r}: {path} has no get_config()")
  config = module.get_config(arg or None)
  for item in overrides:
    if not item.startswith("--config.") or "=" not in item:
      raise ValueError(f"unexpected argument {item!r} (overrides look like --config.dtype=bfloat16)")
    key, value = item[len("--config."):].split("=", 1)
    parent, name = config, key
    if "." in key:
      head, name = key.rsplit(".", 1)
      for part in head.split("."):
        if part not in parent:
          raise ValueError(f"--config.{key}: unknown field {part!r}")
        parent = parent[part]
    if name not in parent:
      raise ValueError(f"--config.{key}: unknown field {name!r}; known: {sorted(parent.keys())}")
    parent[name] = _parse_value(value, parent[name], key)
  return config


def config_summary(config: ml_collections.ConfigDict) -> Dict[str, Any]:
  d = config.data
  return {"teacher": config.teacher.name, "student": config.student.name, "k": config.student.k,
          "sampling": config.student.sampling, "dtype": config.dtype, "max_frames": d.max_frames,
          "num_classes": d.num_classes, "feature_sizes": list(d.feature_sizes),
          "batch_size": d.batch_size, "eval_batch_size": d.eval_batch_size}


def _ks(text: str, config) -> List[int]:
  ks = [int(t) for t in text.split(",") if t] if text else [config.student.k]
  bad = [k for k in ks if not 1 <= k < config.data.max_frames]
  if bad:
    raise ValueError(f"--ks={text}: each k must be in [1, data.max_frames={config.data.max_frames})")
  return ks


def _deterministic(method: str) -> str:
  """On-device sampling in the benchmarks needs a fixed rule: 'random' is timed as 'uniform'."""
  return "uniform" if method == "random" else method


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


def yt8m_shaped_records(out_dir: str, *, num_videos: int = 1024, num_classes: int = 64, seed: int = 0,
                        num_shards: int = 4) -> str:
  """Writes synthetic records with YouTube-8M's shape (1024 + 128 bytes per frame, lengths log-uniform
  in 120..360 frames) and returns their glob. The bundled eval split is mostly short videos, which would
  understate what decoding only k frames saves."""
  from fewframes_jax.data import synthetic  # pylint: disable=g-import-not-at-top
  spec = synthetic.SyntheticSpec(num_classes=num_classes, long_video_fraction=1.0, long_frames=(120, 360))
  synthetic.write_split(out_dir, "eval", num_videos, spec=spec, seed=seed, num_shards=num_shards)
  return os.path.join(out_dir, "eval-*.tfrecord")


def _eval_pass(fn, variables, dataset, *, frames_key: str, lengths_key: str,
               max_batches: int) -> Tuple[int, int, float, float]:
  """One timed pass: (batches, valid videos, seconds, mean true length). One batch stays in flight:
  the next batch is read while the device scores the previous one."""
  import jax  # pylint: disable=g-import-not-at-top
  from fewframes_jax.data import yt8m  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  batches = videos = frames = 0
  pending = None
  start = time.perf_counter()
  for batch in yt8m.as_numpy_batches(dataset):
    probs = fn(variables, batch[frames_key], batch[lengths_key])
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


def benchmark_eval(config: ml_collections.ConfigDict, *, file_pattern: str, ks: Sequence[int],
                   batch_size: int = 0, max_batches: int = 0, sampled: bool = True, rounds: int = 2,
                   seed: int = 0) -> Dict[str, Any]:
  """End-to-end eval throughput from TFRecords: pipeline + forward pass, per network.

  Rows: `teacher` (full pipeline), `student_k{k}` (student-only pipeline, k frames decoded),
  `student_k{k}_sampled` (full pipeline, k frames picked on the device; unless `sampled=False`).
  Networks are randomly initialised (the time does not depend on the weights). Each network's function
  is compiled and run once on the first batch; then `rounds` rounds each time one pass per network, in
  turn, so that a shared machine's changing load hits them alike; a row reports the median round.

  Returns {"rows": [...], "ratios": [{"student", "k", "throughput_ratio"}]} (student / teacher videos/s).
  """
  import jax  # pylint: disable=g-import-not-at-top
  from fewframes_jax import throughput as tp  # pylint: disable=g-import-not-at-top
  from fewframes_jax import train as train_lib  # pylint: disable=g-import-not-at-top
  from fewframes_jax.data import yt8m  # pylint: disable=g-import-not-at-top
  from fewframes_jax.models import build_model  # pylint: disable=g-import-not-at-top
  d = config.data
  batch_size = batch_size or d.eval_batch_size
  feature_dim = sum(d.feature_sizes)
  method = _deterministic(config.student.sampling)
  kw = dict(num_classes=d.num_classes, feature_sizes=tuple(d.feature_sizes), dtype=config.dtype)
  rng = jax.random.PRNGKey(seed)
  teacher = build_model(config.teacher, **kw)
  runs = [("teacher", teacher, d.max_frames, None, None)]
  for k in ks:
    student = build_model(tp.student_model_config(config, k), **kw)
    runs.append((f"student_k{k}", student, k, k, (k, method)))
    if sampled:
      runs.append((f"student_k{k}_sampled", student, k, k, None))
  prepared = []
  for name, model, init_frames, k, student_frames in runs:
    variables = train_lib.init_variables(model, rng, frames=init_frames, feature_dim=feature_dim)
    variables = tp.cast_params_for_inference(model, variables, frames=init_frames, feature_dim=feature_dim,
                                             dtype=kw["dtype"])
    on_device_k = k if (k is not None and student_frames is None) else None
    fn = jax.jit(tp.inference_fn(model, k=on_device_k, method=method))
    keys = dict(frames_key="frames", lengths_key="num_frames_k" if student_frames else "num_frames")
    dataset = functools.partial(
        yt8m.make_dataset, file_pattern, batch_size, num_classes=d.num_classes, max_frames=d.max_frames,
        training=False, feature_names=tuple(d.feature_names), feature_sizes=tuple(d.feature_sizes),
        process_index=0, process_count=1, student_frames=student_frames)
    first = next(yt8m.as_numpy_batches(dataset()))
    jax.block_until_ready(fn(variables, first[keys["frames_key"]], first[keys["lengths_key"]]))  # compile
    prepared.append((name, k, student_frames, fn, variables, dataset, keys))
  passes = {name: [] for name, *_ in prepared}
  for _ in range(rounds):
    for name, _, _, fn, variables, dataset, keys in prepared:
      passes[name].append(_eval_pass(fn, variables, dataset(), max_batches=max_batches, **keys))
  rows = []
  for name, k, student_frames, *_ in prepared:
    per_round = [videos / seconds for _, videos, seconds, _ in passes[name]]
    batches, videos, seconds, mean_frames = passes[name][0]
    rows.append(dict(name=name, network=config.teacher.name if k is None else config.student.name, k=k,
                     method=None if k is None else method,
                     pipeline="student" if student_frames else "full", batch_size=batch_size,
                     batches=batches, videos=videos, videos_per_sec=statistics.median(per_round),
                     videos_per_sec_rounds=per_round, mean_num_frames=mean_frames, dtype=config.dtype))
  teacher_vps = rows[0]["videos_per_sec"]
  ratios = [dict(student=r["name"], k=r["k"], throughput_ratio=r["videos_per_sec"] / teacher_vps)
            for r in rows[1:]]
  return {"rows": rows, "ratios": ratios, "file_pattern": file_pattern}


def format_eval(result: Dict[str, Any]) -> str:
  lines = ["| eval from TFRecords | pipeline | k | batch | videos | mean frames | videos/s | vs teacher |",
           "|---|---|---:|---:|---:|---:|---:|---:|"]
  teacher = result["rows"][0]["videos_per_sec"]
  for r in result["rows"]:
    lines.append(f"| {r['name']} | {r['pipeline']} | {r['k'] or '-'} | {r['batch_size']} | {r['videos']} | "
                 f"{r['mean_num_frames']:.0f} | {r['videos_per_sec']:.1f} | "
                 f"{r['videos_per_sec'] / teacher:.2f}x |")
  return "\n".join(lines)


def format_input(results: Sequence[Dict[str, Any]]) -> str:
  lines = ["| input pipeline | frames out | batch | batches | videos/s | CPU ms/video | load (1 min) |",
           "|---|---:|---:|---:|---:|---:|---:|"]
  for r in results:
    sf = r.get("student_frames")
    name = f"student k={sf[0]} ({sf[1]})" if sf else "full"
    lines.append(f"| {name} | {sf[0] if sf else r['max_frames']} | {r['batch_size']} | {r['batches']} | "
                 f"{r['videos_per_sec']:.0f} | {r['cpu_ms_per_video']:.3f} | "
                 f"{r['load_average']['after'][0]:.2f} |")
  return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Subcommands


def _input_main(args: argparse.Namespace) -> Dict[str, Any]:
  student = (args.student_k, args.sampling) if args.student_k else None
  result = benchmark_input(args.file_pattern, args.batch_size, args.num_batches,
                           warmup_batches=args.warmup_batches, num_classes=args.num_classes,
                           max_frames=args.max_frames, feature_names=tuple(args.feature_names.split(",")),
                           feature_sizes=tuple(int(s) for s in args.feature_sizes.split(",")),
                           training=not args.eval, student_frames=student)
  load = result["load_average"]["after"]
  what = f"student k={student[0]} ({student[1]})" if student else f"{result['max_frames']} frames"
  print(f"input pipeline ({what}): {result['videos_per_sec']:.0f} videos/s ({result['batches']} batches of "
        f"{result['batch_size']}, up to {result['max_frames']} frames x {result['frame_bytes']} uint8, "
        f"{result['seconds']:.1f} s; {result['cpu_ms_per_video']:.3f} CPU ms per video; "
        f"{result['cpus']} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f})")
  return result


def _machine() -> Dict[str, Any]:
  from fewframes_jax import throughput as tp  # pylint: disable=g-import-not-at-top
  return tp.machine_info()


def _infer(args, config) -> Dict[str, Any]:
  from fewframes_jax import throughput as tp  # pylint: disable=g-import-not-at-top
  rows = tp.run_infer(config, ks=_ks(args.ks, config), warmup=args.warmup, steps=args.steps,
                      batch_size=args.batch_size or None, sampled=not args.no_sampled)
  ratios = tp.ratio_rows(rows)
  print(tp.format_table(rows, ratios), flush=True)
  return {"rows": rows, "ratios": ratios}


def _train(args, config) -> Dict[str, Any]:
  from fewframes_jax import throughput as tp  # pylint: disable=g-import-not-at-top
  rows = tp.run_train(config, ks=_ks(args.ks, config), warmup=args.warmup, steps=args.steps,
                      batch_size=args.batch_size or None, which=tuple(args.train_which.split(",")))
  ratios = tp.ratio_rows(rows)
  print(tp.format_table(rows, ratios), flush=True)
  return {"rows": rows, "ratios": ratios}


def _eval_pattern(args, config, tmp: str) -> str:
  if args.file_pattern:
    return args.file_pattern
  return yt8m_shaped_records(tmp, num_videos=args.num_videos, num_classes=config.data.num_classes)


def _eval(args, config, tmp: str) -> Dict[str, Any]:
  result = benchmark_eval(config, file_pattern=_eval_pattern(args, config, tmp), ks=_ks(args.ks, config),
                          batch_size=args.batch_size, max_batches=args.max_batches,
                          sampled=not args.no_sampled, rounds=args.rounds)
  print(format_eval(result), flush=True)
  return result


def _input_for_config(args, config, tmp: str) -> List[Dict[str, Any]]:
  """The eval pipeline (one pass) over the eval records, full and student-only at each k."""
  d = config.data
  pattern = _eval_pattern(args, config, tmp)
  kw = dict(warmup_batches=1, num_classes=d.num_classes, max_frames=d.max_frames,
            feature_names=tuple(d.feature_names), feature_sizes=tuple(d.feature_sizes), training=False)
  batch = args.batch_size or d.eval_batch_size
  variants = [None] + [(k, config.student.sampling) for k in _ks(args.ks, config)]
  results = []
  for round_index in range(args.rounds):  # interleaved, as in `benchmark_eval`
    for student_frames in variants:
      result = benchmark_input(pattern, batch, args.max_batches or 10**9, student_frames=student_frames, **kw)
      results.append(dict(result, round=round_index))
  print(format_input(results), flush=True)
  return results


def _config_main(args: argparse.Namespace) -> Dict[str, Any]:
  config = load_config(args.config, args.overrides)
  out = {"command": args.command, "machine": _machine(), "config": config_summary(config)}
  with tempfile.TemporaryDirectory(prefix="fewframes_bench_") as tmp:
    if args.command in ("infer", "all"):
      out["infer"] = _infer(args, config)
    if args.command in ("train", "all"):
      out["train"] = _train(args, config)
    if args.command in ("eval", "all"):
      out["eval"] = _eval(args, config, tmp)
    if args.command == "all":
      out["input"] = _input_for_config(args, config, tmp)
  out["machine_end"] = _machine()
  return out


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="python -m fewframes_jax.benchmark", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  commands = parser.add_subparsers(dest="command", required=True)
  p = commands.add_parser("input", help="tf.data input pipeline throughput (videos/s)")
  p.add_argument("--file_pattern", default="", help="TFRecord glob; empty: the bundled train split")
  p.add_argument("--batch_size", type=int, default=64)
  p.add_argument("--num_batches", type=int, default=200)
  p.add_argument("--warmup_batches", type=int, default=10)
  p.add_argument("--num_classes", type=int, default=0,
                 help="0: the bundled count, or 4716 for a given pattern")
  p.add_argument("--max_frames", type=int, default=300)
  p.add_argument("--feature_names", default="rgb,audio")
  p.add_argument("--feature_sizes", default="1024,128")
  p.add_argument("--eval", action="store_true", help="time the eval pipeline (one pass, padded)")
  p.add_argument("--student_k", type=int, default=0, help=">0: the student-only pipeline (k frames decoded)")
  p.add_argument("--sampling", default="uniform", help="the student-only pipeline's sampling method")
  p.add_argument("--json_out", default="", help="also write the result as JSON here")
  p.set_defaults(run=_input_main)
  helps = {"infer": "eval forward throughput, teacher vs students (synthetic batches)",
           "train": "train step throughput: teacher, students, parallel step (synthetic batches)",
           "eval": "end-to-end eval from TFRecords, teacher vs students",
           "all": "infer, train, eval and input for one config"}
  for name, text in helps.items():
    p = commands.add_parser(name, help=text)
    p.add_argument("--config", required=True,
                   help="configs/<name>.py[:arg]; --config.<field>=<value> overrides")
    p.add_argument("--ks", default="10,30", help="student frame counts (comma-separated)")
    p.add_argument("--batch_size", type=int, default=0,
                   help="0: data.eval_batch_size (infer, eval) or data.batch_size (train)")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls before timing (infer, train)")
    p.add_argument("--steps", type=int, default=3, help="timed calls (infer, train)")
    p.add_argument("--no_sampled", action="store_true",
                   help="infer, eval: skip the students fed all frames and sampling on the device")
    p.add_argument("--train_which", default="teacher,student,parallel", help="train: which steps to time")
    p.add_argument("--file_pattern", default="",
                   help="eval/input: TFRecord glob; empty: YouTube-8M-shaped synthetic records")
    p.add_argument("--num_videos", type=int, default=1024, help="eval: videos written when no pattern")
    p.add_argument("--max_batches", type=int, default=0, help="eval/input: stop after this many batches")
    p.add_argument("--rounds", type=int, default=2,
                   help="eval, all: interleaved timed passes per network / input pipeline")
    p.add_argument("--json_out", default="", help="also write the results as JSON here")
    p.set_defaults(run=_config_main)
  return parser


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
  parser = _parser()
  args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
  if rest and args.run is not _config_main:
    parser.error(f"unrecognized arguments: {' '.join(rest)}")
  args.overrides = rest
  result = args.run(args)
  if args.json_out:
    with open(args.json_out, "w") as f:
      json.dump(result, f, indent=1)
  return result


if __name__ == "__main__":
  main()
