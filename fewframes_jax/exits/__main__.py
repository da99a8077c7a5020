"""Fits an any-k student's exit gate and writes its exit curve (GAP against frames read).

  python -m fewframes_jax.exits --workdir=<an any-k run> [--output=curve.json] [--gate_videos=1000]

The gate is fitted on the run's training videos and saved with the run (`exit_gate.json`), then every
rule's curve over a threshold sweep is measured on the eval split (`exit_curve.run`) and printed.
"""
import json

from fewframes_jax import cli

cli.quiet_start()

from absl import app, flags  # pylint: disable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "An any-k student's run.")
flags.DEFINE_string("output", "", "Write the curve (rows, FLOPs) as JSON here.")
flags.DEFINE_integer("gate_videos", 1000, "Training videos the gate is fitted on.")
flags.DEFINE_string("eval_pattern", "", "Eval files (default: the run's).")
flags.mark_flags_as_required(["workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from fewframes_jax.exits import exit_curve  # pylint: disable=g-import-not-at-top  (JAX, after the quiet start)
  result = exit_curve.run(FLAGS.workdir, gate_videos=FLAGS.gate_videos, eval_pattern=FLAGS.eval_pattern)
  print(exit_curve.format_rows(result["rows"]), flush=True)
  if FLAGS.output:
    with open(FLAGS.output, "w") as out:
      json.dump(result, out, indent=1, default=float)


if __name__ == "__main__":
  cli.run(main)
