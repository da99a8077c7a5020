"""Entry point: `python -m fewframes_jax.main --config=configs/nextvlad_k10.py --workdir=runs/x`.

Modes:
  train   (default) train and evaluate, resuming from `workdir` if it holds checkpoints.
  eval    evaluate the latest (or `--best`) checkpoint of `workdir` on `config.data.eval_pattern`.
  predict write the Kaggle CSV (`VideoId,LabelConfidencePairs`, top 20) of the student (or teacher).
  flops   print FLOPs per video and parameter counts, teacher (all frames) vs students (k frames).

Config values are overridden on the command line, e.g. `--config.student.k=20`, and a config file
takes an argument after a colon, e.g. `--config=configs/hrnn.py:k=10`.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax  # pylint: disable=g-import-not-at-top
from absl import app, flags, logging  # pylint: disable=g-import-not-at-top
from ml_collections import config_flags  # pylint: disable=g-import-not-at-top

MODES = ("train", "eval", "predict", "flops")

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py[:arg]).", lock_config=True)
flags.DEFINE_string("workdir", None, "Folder for checkpoints, TensorBoard files and the summary.")
flags.DEFINE_enum("mode", "train", MODES, "What to run.")
flags.DEFINE_bool("best", False, "eval/predict: use the checkpoint with the best eval GAP, not the latest.")
flags.DEFINE_string("output", "", "predict: the CSV path (default: <workdir>/predictions.csv).")
flags.DEFINE_enum("network", "student", ("student", "teacher"), "predict: which network scores the videos.")


def _hide_gpus_from_tensorflow() -> None:
  """TensorFlow (the input pipeline) must not reserve accelerator memory that JAX needs."""
  try:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
  except ImportError:
    return
  tf.config.set_visible_devices([], "GPU")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from fewframes_jax import parallel  # pylint: disable=g-import-not-at-top
  parallel.maybe_initialize_distributed()
  if not FLAGS["verbosity"].present:
    # Orbax and TensorFlow log every step of a save at INFO; -v 0 (or --verbosity=0) brings them back.
    logging.set_verbosity(logging.WARNING)
  config = FLAGS.config
  if config is None:
    raise app.UsageError("--config is required, e.g. --config=configs/nextvlad_k10.py")
  logging.info("JAX process %d/%d, devices: %s", jax.process_index(), jax.process_count(), jax.devices())
  if FLAGS.mode == "flops":
    from fewframes_jax import report  # pylint: disable=g-import-not-at-top
    print(report.flops_report(config), flush=True)
    return
  if not FLAGS.workdir:
    raise app.UsageError(f"--workdir is required for --mode={FLAGS.mode}")
  _hide_gpus_from_tensorflow()
  if FLAGS.mode == "train":
    from fewframes_jax import train_loop  # pylint: disable=g-import-not-at-top
    train_loop.train_and_evaluate(config, FLAGS.workdir)
  elif FLAGS.mode == "eval":
    from fewframes_jax import predict  # pylint: disable=g-import-not-at-top
    print(predict.evaluate_workdir(FLAGS.workdir, config, best=FLAGS.best), flush=True)
  else:
    from fewframes_jax import predict  # pylint: disable=g-import-not-at-top
    output = FLAGS.output or os.path.join(FLAGS.workdir, "predictions.csv")
    n = predict.write_predictions(FLAGS.workdir, config, output, network=FLAGS.network, best=FLAGS.best)
    print(f"wrote {n} videos to {output}", flush=True)


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  app.run(main)
