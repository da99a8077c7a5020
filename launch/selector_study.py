"""Which k frames: learned and training-free selectors against the paper's rows (RESULTS.md).

  python -m launch.selector_study --out=results/long_select --baselines=results/long --seeds=0,1,2
  python -m launch.selector_study --out=/runs/yt8m_select --baselines=/runs/yt8m_long --preset=paper \\
      --train_pattern='/data/yt8m/frame/train*.tfrecord' --eval_pattern='/data/yt8m/frame/validate*.tfrecord' \\
      --num_classes=3862 --num_train_examples=3888919                              # real data

What it runs and writes: `fewframes_jax/paper/selector_study.py`. The real-data flags are those of
`launch.paper_tables` (its sweep of the same data is `--baselines`).
"""
from fewframes_jax import cli

cli.quiet_start()

from absl import app, flags  # pylint: disable=g-import-not-at-top,wrong-import-position

from fewframes_jax.configs import paper as paper_configs  # pylint: disable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS
flags.DEFINE_string("out", None, "Output folder (cells, runs, tables.md, plots).")
flags.DEFINE_string("baselines", "results/long", "The preset's paper-table sweep folder (its cells and teachers).")
flags.DEFINE_string("preset", "long", f"The paper-table preset, one of {', '.join(sorted(paper_configs.PRESETS))}.")
flags.DEFINE_string("family", "hrnn", "Teacher and student family.")
flags.DEFINE_string("seeds", "0,1,2", "Comma-separated seeds.")
flags.DEFINE_string("ks", "6,10,30", "Comma-separated k.")
flags.DEFINE_string("rows", "", "Comma-separated new rows to train (default: every row of SELECTOR_ROWS).")
flags.DEFINE_string("phases", "train,report", "Which phases to run: train, report, recall (with report: the "
                    "seed-0 runs' recall of the generator's evidence frames, bundled data only).")
flags.DEFINE_string("report", "", "Name of this report: <out>/<report>_tables.md and its plots (default tables.md).")
flags.DEFINE_bool("recompute_stale", False, "Retrain cached runs whose config changed, instead of failing.")
cli.define_data_flags()
flags.adopt_module_key_flags(cli)  # --help lists the real-data flags
flags.mark_flags_as_required(["out"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from fewframes_jax.paper import preset as preset_lib  # pylint: disable=g-import-not-at-top
  from fewframes_jax.paper import selector_study  # pylint: disable=g-import-not-at-top  (JAX)
  study = selector_study.SelectorStudy(
      out=FLAGS.out, baselines=FLAGS.baselines, preset=preset_lib.named(paper_configs.PRESETS, FLAGS.preset),
      cell_config=paper_configs.cell_config, family=FLAGS.family, seeds=cli.ints("seeds"), ks=cli.ints("ks"),
      rows=selector_study.parse_rows(FLAGS.rows), data=cli.data_overrides(), recompute_stale=FLAGS.recompute_stale)
  phases = FLAGS.phases.split(",")
  records = study.train(run_missing="train" in phases)
  if "report" in phases:
    command = selector_study.study_command(FLAGS.out, FLAGS.baselines, FLAGS.preset, FLAGS.seeds, FLAGS.ks,
                                           FLAGS.rows, FLAGS.report, extra=cli.data_flag_args(),
                                           family=FLAGS.family)
    print(f"wrote {study.report(records, recall='recall' in phases, report=FLAGS.report, command=command)}")


if __name__ == "__main__":
  cli.run(main)
