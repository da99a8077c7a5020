"""Runs the paper's experiment grid and writes its tables (markdown) and two plots (PNG).

  python -m launch.paper_tables --preset=small --out=results/small                 # CPU, bundled data
  python -m launch.paper_tables --preset=small --out=results/small --seeds=0,1,2   # + seed spread
  python -m launch.paper_tables --preset=paper --out=results/paper \\
      --train_pattern='/data/yt8m/frame/train*.tfrecord' --eval_pattern='/data/yt8m/frame/validate*.tfrecord' \\
      --num_classes=4716 --num_train_examples=5738718                             # paper sizes (GPU)

Every cell of the grid (the paper's Tables 1-4 and the cross-family / multi-teacher rows) is one training
run in <out>/runs/<cell key>/, its result cached in <out>/cells/<cell key>.json: a rerun reads the
cache, an interrupted sweep resumes, and a cached cell whose config changed is an error (or is retrained
with --recompute_stale). Outputs: <out>/tables.md, <out>/gap_vs_k.png, <out>/pareto.png. How it works:
`fewframes_jax/paper/sweep.py`; the presets and each cell's config: `configs/paper.py` (which also
reruns one cell by hand with `python -m fewframes_jax.main --config=configs/paper.py:...`).

Presets (--preset): `paper` = the paper's sizes and schedules (5 epochs; a GPU job); `small` = the
same grid with small models on the bundled data, max_frames 60 and a fixed number of steps, which
finishes in under an hour on 2 CPU cores; `tiny` = a few steps at test sizes (the unit test).
"""
import dataclasses
from typing import Sequence

from fewframes_jax import cli

cli.quiet_start()

from absl import app, flags  # pylint: disable=g-import-not-at-top,wrong-import-position

from fewframes_jax.configs import paper as paper_configs  # pylint: disable=g-import-not-at-top,wrong-import-position
from fewframes_jax.paper import grid as grid_lib  # pylint: disable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS
flags.DEFINE_string("preset", "small", f"One of {', '.join(sorted(paper_configs.PRESETS))}.")
flags.DEFINE_string("out", None, "Output folder (cells, runs, tables.md, PNGs).")
flags.DEFINE_string("seeds", None, "Comma-separated seeds (default 0).")
flags.DEFINE_string("families", None, "Table 1 families, comma-separated (default hrnn).")
flags.DEFINE_string("sections", None, f"Some of {','.join(grid_lib.SECTIONS)} (default all).")
flags.DEFINE_string("ks", None, "k values of Table 1, comma-separated (default "
                    f"{','.join(map(str, grid_lib.PAPER_KS))}).")
flags.DEFINE_string("rows", None, "Teacher-student rows: 'paper' (the paper's 8, default), 'all' (10: adds "
                    "Parallel L_pred rows), or a list mode:loss,... (mode parallel|serial, loss one of "
                    f"{','.join(grid_lib.LOSSES)}).")
flags.DEFINE_string("baselines", None, f"k-frame baselines of Table 1 (default the paper's: "
                    f"{','.join(grid_lib.BASELINES)}; also {','.join(grid_lib.SELECTOR_BASELINES)}).")
flags.DEFINE_float("schedule_scale", 1.0, "Every run this many times longer than the preset's (use another --out).")
flags.DEFINE_integer("anchor_k", None, "k of Tables 2, 4 and the cross-family rows.")
cli.define_data_flags()
flags.adopt_module_key_flags(cli)  # --help lists the real-data flags
flags.DEFINE_bool("recompute_stale", False,
                  "Retrain cached cells whose config (or a dependency's) changed, instead of failing.")
flags.DEFINE_string("report", "", "Name of this grid's outputs: <out>/<report>_tables.md, ..._gap_vs_k.png, "
                    "..._pareto.png.")
flags.DEFINE_string("jax_cache_dir", None,
                    "JAX compilation cache; default <bundled cache root>/jax_compilation; '' for none.")


def main(argv: Sequence[str]):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not FLAGS.out:
    raise app.UsageError("--out is required (the output folder)")
  if FLAGS.preset not in paper_configs.PRESETS:
    raise app.UsageError(f"--preset={FLAGS.preset!r}: expected one of {sorted(paper_configs.PRESETS)}")
  if not FLAGS.schedule_scale > 0:
    raise app.UsageError(f"--schedule_scale={FLAGS.schedule_scale}: must be > 0")
  preset = dataclasses.replace(paper_configs.PRESETS[FLAGS.preset], schedule_scale=FLAGS.schedule_scale)
  rows = None if FLAGS.rows is None else grid_lib.parse_rows(FLAGS.rows)
  grid = preset.make_grid(seeds=cli.ints("seeds"), families=cli.words("families"), sections=cli.words("sections"),
                          ks=cli.ints("ks"), rows=rows, anchor_k=FLAGS.anchor_k, baselines=cli.words("baselines"))
  data = cli.data_overrides()
  from fewframes_jax.paper import sweep  # pylint: disable=g-import-not-at-top  (JAX, TensorFlow)
  sweep.run(preset=preset, cell_config=paper_configs.cell_config, out=FLAGS.out, grid=grid, data=data,
            jax_cache_dir=FLAGS.jax_cache_dir, recompute_stale=FLAGS.recompute_stale, report_name=FLAGS.report)


if __name__ == "__main__":
  cli.run(main)
