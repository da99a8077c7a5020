"""The any-k student and early exit against fixed-k students (RESULTS.md, "One student for every budget").

  python -m launch.anyk_study --out=results/long_anyk --teachers=results/long/runs --seeds=0,1,2
  python -m launch.anyk_study --out=/runs/yt8m_anyk --teachers=/runs/yt8m_long/runs --preset=paper \\
      --train_pattern='/data/yt8m/frame/train*.tfrecord' --eval_pattern='/data/yt8m/frame/validate*.tfrecord' \\
      --num_classes=3862 --num_train_examples=3888919                              # real data

What it runs and writes: `fewframes_jax/paper/anyk_study.py`. The real-data flags are those of
`launch.paper_tables` (its sweep of the same data holds `--teachers`).
"""
from fewframes_jax import cli

cli.quiet_start()

from absl import app, flags  # pylint: disable=g-import-not-at-top,wrong-import-position

from fewframes_jax.configs import paper as paper_configs  # pylint: disable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS
flags.DEFINE_string("out", None, "Output folder (cells, runs, curves, tables.md).")
flags.DEFINE_string("teachers", "results/long/runs", "The preset sweep's runs folder (its teachers).")
flags.DEFINE_string("preset", "long", f"The paper-table preset, one of {', '.join(sorted(paper_configs.PRESETS))}; "
                    "another than long is reported apart (suffix _<preset>).")
flags.DEFINE_enum("family", "hrnn", ["hrnn", "lstm", "gru", "netvlad", "nextvlad"],
                  "The teacher's and students' family; another than hrnn is keyed and reported apart (suffix _<family>).")
flags.DEFINE_bool("train_teachers", False, "Train a missing teacher as the sweep's teacher cell (and cache it "
                  "in that sweep's cells).")
flags.DEFINE_string("seeds", "0,1,2", "Comma-separated seeds.")
flags.DEFINE_string("ks", "6,10,15,20,30", "Budgets: the fixed-k students and the any-k student's range "
                    "(its smallest and largest) and exit points.")
flags.DEFINE_string("phases", "train,curves,report", "Which phases to run.")
flags.DEFINE_integer("gate_videos", 1000, "Training videos the exit gate is fitted on.")
flags.DEFINE_integer("budgets_per_step", 0, "The any-k student's budgets per step (0: the default, 4); another value "
                     "trains a variant any-k run (key suffix _p<n>) and writes tables_p<n>.md, reusing the fixed-k runs.")
flags.DEFINE_enum("order", "coarse_to_fine", ["coarse_to_fine", "far_from_mean", "learned"],
                  "The nested frame order of every run (fixed-k and any-k); another than coarse_to_fine is keyed "
                  "and reported apart (suffix _<order>). learned: each student's own scorer (LEARNED_SELECTOR).")
flags.DEFINE_bool("benchmark", True, "report: also time batched early exit against the fixed k_max student "
                  "from TFRecords (seed 0); --nobenchmark keeps the last measured figures.")
flags.DEFINE_bool("recompute_stale", False, "Retrain cached runs whose config changed, instead of failing.")
cli.define_data_flags()
flags.adopt_module_key_flags(cli)  # --help lists the real-data flags
flags.mark_flags_as_required(["out"])


def _command() -> str:
  """The command line that reproduces the report (printed in it)."""
  parts = [f"python -m launch.anyk_study --out={FLAGS.out} --teachers={FLAGS.teachers} --seeds={FLAGS.seeds}"]
  for name, default in (("preset", "long"), ("family", "hrnn"), ("budgets_per_step", 0), ("order", "coarse_to_fine")):
    if FLAGS[name].value != default:
      parts.append(f"--{name}={FLAGS[name].value}")
  return " ".join(parts + list(cli.data_flag_args()))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from fewframes_jax.paper import anyk_study  # pylint: disable=g-import-not-at-top  (JAX)
  from fewframes_jax.paper import preset as preset_lib  # pylint: disable=g-import-not-at-top
  study = anyk_study.AnyKStudy(
      out=FLAGS.out, teachers=FLAGS.teachers, preset=preset_lib.named(paper_configs.PRESETS, FLAGS.preset),
      cell_config=paper_configs.cell_config, family=FLAGS.family, seeds=cli.ints("seeds"), ks=cli.ints("ks"),
      order=FLAGS.order, budgets_per_step=FLAGS.budgets_per_step, gate_videos=FLAGS.gate_videos,
      train_teachers=FLAGS.train_teachers, data=cli.data_overrides(), recompute_stale=FLAGS.recompute_stale)
  phases = FLAGS.phases.split(",")
  records = study.train() if {"train", "curves", "report"} & set(phases) else {}
  curve_results = study.curves(records) if {"curves", "report"} & set(phases) else {}
  if "report" in phases:
    print(f"wrote {study.report(records, curve_results, benchmark=FLAGS.benchmark, command=_command())}")


if __name__ == "__main__":
  cli.run(main)
