"""Trains, evaluates, predicts with, or counts the FLOPs of a teacher and its k-frame student.

  python -m fewframes_jax.main --config=configs/nextvlad_k10.py:cpu --workdir=runs/nextvlad_k10_cpu

With the README's configs this trains the best recipe, Serial L_pred + L_CE, in one command: the teacher
alone in <workdir>/teacher, then the k-frame student against it, frozen, in <workdir>; the summary says what
the student keeps (GAP) and saves (FLOPs, measured videos/s) against the teacher. `:mode=parallel` in the
config argument trains both together instead.

Modes (--mode):
  train   (default) train and evaluate, resuming from --workdir if it holds checkpoints (a serial run with
          no --config.teacher_workdir trains its teacher first in <workdir>/teacher, unless it is trained).
  eval    evaluate the latest (--best: best eval GAP; --step=N) checkpoint of --workdir on
          config.data.eval_pattern (default: the run's own eval data), both networks (a student alone reads
          only its k frames when the host can pick them).
  predict write the Kaggle CSV (`VideoId,LabelConfidencePairs`, top 20) of the --network (student by
          default) to --output (default <workdir>/predictions.csv).
  flops   print FLOPs per video and parameter counts, teacher (all frames) vs students (k frames).
  export  write the --network (student by default) of a checkpoint (latest, --best or --step=N) as a
          TensorFlow SavedModel that serves serialized YouTube-8M records, a `jax.export` artifact and
          export_info.json, into --output (default <workdir>/export/<network>).

Config values are overridden on the command line, e.g. `--config.student.k=20`, and a config file takes
an argument after a colon, e.g. `--config=configs/hrnn.py:k=10`. A mistake in the config or the data
(an unknown field, k=400, a pattern that matches no file, a bad record) prints one line and exits 2.
"""
import os

from fewframes_jax import cli

cli.quiet_start()

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import app, flags, logging  # pylint: disable=g-import-not-at-top,wrong-import-position
from ml_collections import config_flags  # pylint: disable=g-import-not-at-top,wrong-import-position

MODES = ("train", "eval", "predict", "flops", "export")

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py[:arg]).", lock_config=True)
flags.DEFINE_string("workdir", None, "Folder for checkpoints, TensorBoard files and the summary.")
flags.DEFINE_enum("mode", "train", MODES, "What to run.")
flags.DEFINE_bool("best", False, "eval/predict/export: use the checkpoint with the best eval GAP, not the latest.")
flags.DEFINE_integer("step", None, "eval/predict/export: use the checkpoint of this step, not the latest.")
flags.DEFINE_string("output", "", "predict: the CSV path (default: <workdir>/predictions.csv); export: the "
                    "folder (default: <workdir>/export/<network>).")
flags.DEFINE_enum("network", "student", ("student", "teacher"), "predict/export: which network.")
flags.mark_flags_as_required(["config"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from fewframes_jax import parallel  # pylint: disable=g-import-not-at-top
  parallel.maybe_initialize_distributed()
  config = FLAGS.config
  logging.info("JAX process %d/%d, devices: %s", jax.process_index(), jax.process_count(), jax.devices())
  if FLAGS.mode == "flops":
    from fewframes_jax.benchmark import flops_report  # pylint: disable=g-import-not-at-top
    print(flops_report.flops_report(config), flush=True)
    return
  if not FLAGS.workdir:
    raise app.UsageError(f"--workdir is required for --mode={FLAGS.mode}")
  # TensorFlow (the input pipeline) is imported later, where data is read, with every GPU hidden from
  # it (`data.records.tensorflow`): JAX keeps the accelerators' memory.
  if FLAGS.mode == "train":
    from fewframes_jax.train import loop  # pylint: disable=g-import-not-at-top
    loop.train_and_evaluate(config, FLAGS.workdir, measure_speed=True)
    return
  if FLAGS.mode == "export":
    from fewframes_jax.serve import export  # pylint: disable=g-import-not-at-top
    output = FLAGS.output or os.path.join(FLAGS.workdir, "export", FLAGS.network)
    export.export_workdir(FLAGS.workdir, output, network=FLAGS.network, best=FLAGS.best, step=FLAGS.step)
    print(f"exported the {FLAGS.network} of {FLAGS.workdir} to {output}", flush=True)
    return
  from fewframes_jax.evaluation import predict  # pylint: disable=g-import-not-at-top
  if FLAGS.mode == "eval":
    print(predict.evaluate_workdir(FLAGS.workdir, config, best=FLAGS.best, step=FLAGS.step), flush=True)
  else:
    output = FLAGS.output or os.path.join(FLAGS.workdir, "predictions.csv")
    n = predict.write_predictions(FLAGS.workdir, config, output, network=FLAGS.network, best=FLAGS.best,
                                  step=FLAGS.step)
    print(f"wrote {n} videos to {output}", flush=True)


if __name__ == "__main__":
  cli.run(main)
