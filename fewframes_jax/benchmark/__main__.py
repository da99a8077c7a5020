"""Benchmarks the teacher and its k-frame students: compute, input pipeline, end-to-end eval.

  python -m fewframes_jax.benchmark infer --config=configs/nextvlad_k10.py --ks=10,30 --batch_size=256
  python -m fewframes_jax.benchmark train --config=configs/nextvlad_k10.py --config.dtype=bfloat16
  python -m fewframes_jax.benchmark input --file_pattern='/data/yt8m/frame/train*.tfrecord' \\
      --batch_size=64 [--num_batches=200 --student_k=10 --sampling=uniform --json_out=input.json]
  python -m fewframes_jax.benchmark input --file_pattern=... --eval --compare --rounds=3 --num_classes=4716
  python -m fewframes_jax.benchmark eval --config=configs/nextvlad_k10.py --ks=10,30 [--file_pattern=...]
  python -m fewframes_jax.benchmark export --config=configs/nextvlad_k10.py:cpu --ks=10 [--file_pattern=...]
  python -m fewframes_jax.benchmark all --config=configs/nextvlad_k10.py:tiny --json_out=all.json
  python -m fewframes_jax.benchmark restart [--file_pattern=... --batch_size=32 --fraction=0.9]
  python -m fewframes_jax.benchmark exit --workdir=<any-k run> --fixed_workdir=<k=30 run> --exit=stable:0.9

Subcommands (the first argument):
  infer  eval-forward throughput of the teacher (all frames) and of the student at each of --ks, on
         synthetic in-memory uint8 batches (no TensorFlow): videos/s, ms/step, XLA FLOPs per video,
         TFLOP/s, MFU where the device's peak is known, memory; and each student/teacher throughput
         ratio next to the XLA FLOP ratio of the same compiled functions (`compute.py`).
  train  train-step throughput, same measures: the teacher alone, the student alone at each k, and the
         joint parallel step (--train_which).
  input  the tf.data input pipeline alone (`yt8m.make_dataset`, uint8 batches out; no --config):
         videos/s and CPU ms per video; --student_k times the student-only pipeline, which decodes
         only the k frames the student sees (`pipeline.py`); --compare times, side by side, a bare parse of
         the full records, the full pipeline and the student-only one (frames located, and every frame
         parsed as before).
  eval   one pass over TFRecords, pipeline and forward pass together (randomly initialised networks):
         the teacher on full batches; each student fed by the student-only pipeline (`student_k{k}`)
         and by the full pipeline with its frames picked on the device (`student_k{k}_sampled`). With
         no --file_pattern, YouTube-8M-shaped records (lengths log-uniform in 120..360 frames, clipped to
         data.max_frames) are written to a temporary folder: the bundled eval split is mostly short.
  export the exported teacher and students (`export.py`'s SavedModel, its serving signature: serialized
         records in, top 20 out) vs the project's own end-to-end eval of the same networks, in the same
         interleaved rounds: videos/s of each, and each student/teacher ratio both ways (records as eval).
  all    infer, train, eval and the input pipelines (full and student-only) for one config.
  restart  a training run's restart deep in an epoch (no --config; `restart.py`): the time to its
         next batch by re-reading the epoch up to it (as before stream positions were saved) and by
         seeking the saved position, and that both give the same batch. With no --file_pattern,
         YouTube-8M-shaped records (--num_videos of them in --num_files files) are written to a
         temporary folder.
  exit   batched early exit of a trained any-k student (--workdir, policy --exit) against a trained fixed-k
         student (--fixed_workdir), end to end from the same TFRecords (default: the any-k run's eval
         files), in alternating timed passes (`exit_pipeline.py`): videos/s, mean frames read,
         frames decoded per video, where the videos stopped, and the ratio.

Every subcommand prints markdown tables and, with --json_out, writes every row and the machine (device,
CPU model, load, date). A config takes an argument after a colon and `--config.<field>=<value>`
overrides, as in `main.py`; its class count and sizes are used as they are (no data is resolved). A
mistake (an unknown subcommand, a k outside [1, data.max_frames), a pattern that matches no file)
prints one line and exits 2. The infer and train benchmarks run without TensorFlow.
"""
import dataclasses
import json
import tempfile
from typing import Any, Dict, List, Sequence

from fewframes_jax import specs
from fewframes_jax import cli

cli.quiet_start()

from absl import app, flags  # pylint: disable=g-import-not-at-top,wrong-import-position
import ml_collections  # pylint: disable=g-import-not-at-top,wrong-import-position
from ml_collections import config_flags  # pylint: disable=g-import-not-at-top,wrong-import-position

from fewframes_jax.errors import UserError  # pylint: disable=g-import-not-at-top,wrong-import-position

COMMANDS = ("infer", "train", "input", "eval", "export", "all", "restart", "exit")

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "infer/train/eval/export/all: the config file (configs/*.py[:arg]).",
                                lock_config=True)
flags.DEFINE_list("ks", ["10", "30"], "Student frame counts k, each in [1, data.max_frames); empty: "
                  "the config's student.k.")
flags.DEFINE_integer("batch_size", 0, "Videos per batch; 0: data.eval_batch_size (infer, eval), "
                     "data.batch_size (train), 64 (input).")
flags.DEFINE_integer("warmup", 1, "infer, train: untimed calls before timing.")
flags.DEFINE_integer("steps", 3, "infer, train: timed calls (infer: interleaved rounds).")
flags.DEFINE_list("selectors", [], "eval: one student per frame selector and k, timed in the same rounds "
                  "(e.g. uniform,far_from_mean,learned:all,learned:audio); default: the config's student.sampling.")
flags.DEFINE_bool("no_sampled", False, "infer, eval: skip the students fed all frames that pick theirs on "
                  "the device.")
flags.DEFINE_list("train_which", ["teacher", "student", "parallel"], "train: which steps to time.")
flags.DEFINE_string("file_pattern", "", "input, eval, export, all, restart: TFRecord glob; empty: the bundled "
                    "train split (input) or YouTube-8M-shaped synthetic records (the others).")
flags.DEFINE_integer("num_videos", 1024, "eval, export, all, restart: videos written when no --file_pattern is given.")
flags.DEFINE_integer("max_batches", 0, "eval, export, all: stop each pass after this many batches (0: whole "
                     "pass).")
flags.DEFINE_integer("rounds", 2, "eval, export, all, input --compare: interleaved timed passes per network / input "
                     "pipeline.")
flags.DEFINE_integer("num_batches", 200, "input: timed batches.")
flags.DEFINE_integer("warmup_batches", 10, "input: untimed batches before timing.")
flags.DEFINE_integer("num_classes", 0, "input, restart: C; 0: the bundled count (input), or 4716.")
flags.DEFINE_integer("max_frames", 300, "input, restart: T.")
flags.DEFINE_list("feature_names", ["rgb", "audio"], "input: the feature lists to read.")
flags.DEFINE_list("feature_sizes", ["1024", "128"], "input: their bytes per frame.")
flags.DEFINE_bool("eval", False, "input: time the eval pipeline (one pass, last batch padded).")
flags.DEFINE_integer("student_k", 0, "input: >0 times the student-only pipeline (k frames decoded).")
flags.DEFINE_string("sampling", "uniform", "input: the student-only pipeline's sampling method.")
flags.DEFINE_bool("compare", False, "input: time side by side, in --rounds interleaved rounds, a bare tf.data "
                  "parse of the full records, the full pipeline and the student-only pipeline at --student_k "
                  "(default 10) with its frames located and with every frame parsed.")
flags.DEFINE_float("fraction", 0.9, "restart: how far into the epoch the run stopped.")
flags.DEFINE_integer("num_files", 64, "restart: files written when no --file_pattern is given (read 8 at a "
                     "time, so 8 rounds by default; the 2018 train set has 3,844).")
flags.DEFINE_string("workdir", "", "exit: the trained any-k student's run.")
flags.DEFINE_string("fixed_workdir", "", "exit: the trained fixed-k student's run to compare with.")
flags.DEFINE_string("exit", "stable:0.9", "exit: the early-exit policy, <rule>:<threshold> (stable | confident | "
                    "gate; the gate is read from --workdir, fitted by `python -m fewframes_jax.exits`).")
flags.DEFINE_string("json_out", "", "Also write the results as JSON here.")


@dataclasses.dataclass
class Options:
  """What `run` needs besides the config (the flags of the config subcommands)."""
  ks: Sequence[int]
  batch_size: int = 0
  warmup: int = 1
  steps: int = 3
  sampled: bool = True
  train_which: Sequence[str] = ("teacher", "student", "parallel")
  file_pattern: str = ""
  num_videos: int = 1024
  max_batches: int = 0
  rounds: int = 2
  selectors: Sequence[str] = ()


def parse_ks(values: Sequence[str], config: ml_collections.ConfigDict) -> List[int]:
  """--ks as ints, each in [1, data.max_frames); empty: [student.k]. Raises UserError naming --ks."""
  if not values:
    values = [str(config.student.k)]
  try:
    ks = [int(v) for v in values]
  except ValueError:
    raise UserError(f"--ks={','.join(values)}: expected comma-separated integers") from None
  bad = [k for k in ks if not 1 <= k < config.data.max_frames]
  if bad:
    raise UserError(f"--ks={','.join(values)}: each k must be in [1, data.max_frames={config.data.max_frames})")
  return ks


def check_config(config: ml_collections.ConfigDict) -> None:
  """The fields the benchmarks read that a model build would only reject with a traceback."""
  from fewframes_jax import models  # pylint: disable=g-import-not-at-top
  from fewframes_jax.sampling import rules  # pylint: disable=g-import-not-at-top
  if config.dtype not in models.DTYPES:
    raise UserError(f"dtype={config.dtype!r}: expected one of {tuple(models.DTYPES)}")
  for net in ("teacher", "student"):
    if config[net].name not in models.MODEL_NAMES:
      raise UserError(f"{net}.name={config[net].name!r}: expected one of {models.MODEL_NAMES}")
  if config.student.sampling not in rules.SAMPLING_METHODS:
    raise UserError(f"student.sampling={config.student.sampling!r}: expected one of {rules.SAMPLING_METHODS}")


def check_file_pattern(pattern: str) -> None:
  """Raises UserError naming --file_pattern when it matches no file (TensorFlow only for a remote one)."""
  from fewframes_jax.data import yt8m  # pylint: disable=g-import-not-at-top
  try:
    yt8m.list_files(pattern)
  except FileNotFoundError as e:
    raise UserError(f"--file_pattern: {e}") from None


def config_summary(config: ml_collections.ConfigDict) -> Dict[str, Any]:
  d = config.data
  return {"teacher": config.teacher.name, "student": config.student.name, "k": config.student.k,
          "sampling": config.student.sampling, "dtype": config.dtype, "max_frames": d.max_frames,
          "num_classes": d.num_classes, "feature_sizes": list(d.feature_sizes),
          "batch_size": d.batch_size, "eval_batch_size": d.eval_batch_size}


def _with_ratios(rows: List[Dict[str, Any]]) -> Dict[str, Any]:
  from fewframes_jax.benchmark import timing  # pylint: disable=g-import-not-at-top
  ratios = timing.ratio_rows(rows)
  print(timing.format_table(rows, ratios), flush=True)
  return {"rows": rows, "ratios": ratios}


def run(command: str, config: ml_collections.ConfigDict, options: Options) -> Dict[str, Any]:
  """Runs a config subcommand (infer | train | eval | export | all), prints its tables, returns its
  results: {"command", "machine", "config", "infer"?, "train"?, "eval"?, "export"?, "input"?, "machine_end"}."""
  from fewframes_jax.benchmark import compute, pipeline, timing  # pylint: disable=g-import-not-at-top
  o = options
  out = {"command": command, "machine": timing.machine_info(), "config": config_summary(config)}
  if command in ("infer", "all"):
    out["infer"] = _with_ratios(compute.run_infer(config, ks=o.ks, warmup=o.warmup, steps=o.steps,
                                                  batch_size=o.batch_size or None, sampled=o.sampled))
  if command in ("train", "all"):
    out["train"] = _with_ratios(compute.run_train(config, ks=o.ks, warmup=o.warmup, steps=o.steps,
                                                  batch_size=o.batch_size or None, which=tuple(o.train_which)))
  if command in ("eval", "export", "all"):
    with tempfile.TemporaryDirectory(prefix="fewframes_bench_") as tmp:
      d = config.data
      pattern = o.file_pattern or pipeline.yt8m_shaped_records(
          tmp, num_videos=o.num_videos, num_classes=d.num_classes, feature_sizes=tuple(d.feature_sizes))
      if command == "export":
        out["export"] = pipeline.benchmark_export(config, file_pattern=pattern, ks=o.ks, batch_size=o.batch_size,
                                                  max_batches=o.max_batches, rounds=o.rounds)
        print(pipeline.format_export(out["export"]), flush=True)
      else:
        out["eval"] = pipeline.benchmark_eval(config, file_pattern=pattern, ks=o.ks, batch_size=o.batch_size,
                                              max_batches=o.max_batches, sampled=o.sampled, rounds=o.rounds,
                                              selectors=o.selectors)
        print(pipeline.format_eval(out["eval"]), flush=True)
      if command == "all":
        out["input"] = pipeline.benchmark_input_variants(config, file_pattern=pattern, ks=o.ks,
                                                         batch_size=o.batch_size, max_batches=o.max_batches,
                                                         rounds=o.rounds)
        print(pipeline.format_input(out["input"]), flush=True)
  out["machine_end"] = timing.machine_info()
  return out


def _run_input() -> Dict[str, Any]:
  from fewframes_jax.benchmark import pipeline  # pylint: disable=g-import-not-at-top
  try:
    sizes = tuple(int(s) for s in FLAGS.feature_sizes)
  except ValueError:
    raise UserError(f"--feature_sizes={','.join(FLAGS.feature_sizes)}: expected integers") from None
  from fewframes_jax.sampling import rules  # pylint: disable=g-import-not-at-top
  if FLAGS.sampling not in rules.SAMPLING_METHODS:
    raise UserError(f"--sampling={FLAGS.sampling!r}: expected one of {rules.SAMPLING_METHODS}")
  if FLAGS.compare:
    result = pipeline.benchmark_input_paths(
        FLAGS.file_pattern, FLAGS.batch_size or 64, FLAGS.num_batches, k=FLAGS.student_k or 10, method=FLAGS.sampling,
        rounds=FLAGS.rounds, warmup_batches=FLAGS.warmup_batches, num_classes=FLAGS.num_classes,
        max_frames=FLAGS.max_frames, feature_names=tuple(FLAGS.feature_names), feature_sizes=sizes,
        training=not FLAGS.eval)
    print(pipeline.format_input_paths(result), flush=True)
    return result
  student = (FLAGS.student_k, FLAGS.sampling) if FLAGS.student_k else None
  result = pipeline.benchmark_input(FLAGS.file_pattern, FLAGS.batch_size or 64, FLAGS.num_batches,
                                    warmup_batches=FLAGS.warmup_batches, num_classes=FLAGS.num_classes,
                                    max_frames=FLAGS.max_frames, feature_names=tuple(FLAGS.feature_names),
                                    feature_sizes=sizes, training=not FLAGS.eval, student_frames=student)
  load = result["load_average"]["after"]
  what = f"student k={student[0]} ({student[1]})" if student else f"{result['max_frames']} frames"
  print(f"input pipeline ({what}): {result['videos_per_sec']:.0f} videos/s ({result['batches']} batches of "
        f"{result['batch_size']}, up to {result['max_frames']} frames x {result['frame_bytes']} uint8, "
        f"{result['seconds']:.1f} s; {result['cpu_ms_per_video']:.3f} CPU ms per video; "
        f"{result['cpus']} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f})", flush=True)
  return result


def _run_restart() -> Dict[str, Any]:
  from fewframes_jax.benchmark import pipeline, restart  # pylint: disable=g-import-not-at-top
  if not 0 < FLAGS.fraction < 1:
    raise UserError(f"--fraction={FLAGS.fraction}: expected a number in (0, 1)")
  with tempfile.TemporaryDirectory(prefix="fewframes_bench_") as tmp:
    num_classes = FLAGS.num_classes or 4716
    pattern = FLAGS.file_pattern or pipeline.yt8m_shaped_records(tmp, num_videos=FLAGS.num_videos,
                                                                 num_classes=num_classes,
                                                                 num_shards=FLAGS.num_files)
    result = restart.benchmark_restart(pattern, num_classes=num_classes, batch_size=FLAGS.batch_size or 32,
                                       fraction=FLAGS.fraction, max_frames=FLAGS.max_frames)
  print(restart.format_restart(result), flush=True)
  return result


def _run_exit() -> Dict[str, Any]:
  from fewframes_jax import checkpoint  # pylint: disable=g-import-not-at-top
  from fewframes_jax.exits import exit_gate  # pylint: disable=g-import-not-at-top
  from fewframes_jax.benchmark import exit_pipeline, timing  # pylint: disable=g-import-not-at-top
  if not FLAGS.workdir or not FLAGS.fixed_workdir:
    raise app.UsageError("exit needs --workdir (an any-k student's run) and --fixed_workdir (a fixed-k run)")
  try:
    policy = specs.ExitPolicy.parse(FLAGS.exit)
  except ValueError as e:
    raise UserError(f"--exit: {e}") from None
  if policy is None:
    raise UserError("--exit: give a policy, e.g. stable:0.9")
  gate = exit_gate.load(FLAGS.workdir) if policy.rule == "gate" else None
  result = exit_pipeline.benchmark_exit(checkpoint.restore(FLAGS.workdir).network("student"),
                                        checkpoint.restore(FLAGS.fixed_workdir).network("student"), policy=policy,
                                        gate=gate, file_pattern=FLAGS.file_pattern, batch_size=FLAGS.batch_size,
                                        max_batches=FLAGS.max_batches, rounds=FLAGS.rounds)
  result["machine"] = timing.machine_info()
  print(exit_pipeline.format_exit(result, result["machine"]["cpu_model"]), flush=True)
  return result


def _options(config: ml_collections.ConfigDict) -> Options:
  from fewframes_jax.benchmark import compute  # pylint: disable=g-import-not-at-top
  unknown = set(FLAGS.train_which) - set(compute.TRAIN_BENCHMARKS)
  if unknown:
    raise UserError(f"--train_which: unknown {sorted(unknown)}; expected some of {compute.TRAIN_BENCHMARKS}")
  return Options(ks=parse_ks(FLAGS.ks, config), batch_size=FLAGS.batch_size, warmup=FLAGS.warmup,
                 steps=FLAGS.steps, sampled=not FLAGS.no_sampled, train_which=tuple(FLAGS.train_which),
                 file_pattern=FLAGS.file_pattern, num_videos=FLAGS.num_videos, max_batches=FLAGS.max_batches,
                 rounds=FLAGS.rounds, selectors=tuple(_selectors(FLAGS.selectors)))


def _selectors(values: Sequence[str]) -> List[str]:
  """--selectors, checked (`pipeline.parse_selector`): sampling rules or learned:<streams>."""
  from fewframes_jax.benchmark import pipeline  # pylint: disable=g-import-not-at-top
  for value in values:
    try:
      pipeline.parse_selector(value)
    except ValueError as e:
      raise UserError(f"--selectors: {e}") from None
  return list(values)


def main(argv: Sequence[str]) -> None:
  if len(argv) != 2 or argv[1] not in COMMANDS:
    raise app.UsageError(f"expected one subcommand, {' | '.join(COMMANDS)}, got {argv[1:] or 'none'} "
                         "(--help describes each)")
  command, config = argv[1], FLAGS.config
  if command not in ("input", "restart", "exit"):
    if config is None:
      raise app.UsageError(f"{command} needs --config=configs/<name>.py[:arg]")
    options = _options(config)
    check_config(config)
  if FLAGS.file_pattern and command in ("input", "eval", "export", "all", "restart", "exit"):
    check_file_pattern(FLAGS.file_pattern)
  if command == "input":
    result = _run_input()
  elif command == "restart":
    result = _run_restart()
  elif command == "exit":
    result = _run_exit()
  else:
    result = run(command, config, options)
  if FLAGS.json_out:
    with open(FLAGS.json_out, "w") as f:
      json.dump(result, f, indent=1)


if __name__ == "__main__":
  cli.run(main)
