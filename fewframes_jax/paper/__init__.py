"""The paper's experiment grid, its sweep runner, its tables and its figures.

  grid.py    which runs a table needs: `Cell` (one training run, with a key), `Grid` (the sections and
             their k values, seeds, rows), `build_cells` (every cell once, dependencies first); the
             paper's k values (`PAPER_KS`), baselines, loss combinations and rows.
  preset.py  `Preset`: the sizes, schedules and timing settings that every cell of one sweep shares.
  sweep.py   `run`: trains (or reads from the per-cell cache) every cell, times Table 3, writes the
             markdown and the figures. It builds each cell's config with a function it is given
             (`configs/paper.py:cell_config`): the library never imports the top-level `configs`.
  eval_time.py  Table 3's measurement: the eval forward pass of trained networks, timed.
  render.py  the markdown tables (Tables 1-4, the orderings, the cross-family rows) and the plain
             series the figures draw.
  plots.py   the two figures (GAP vs k, GAP vs FLOPs with its Pareto front).

The command line is `python -m launch.paper_tables` (RESULTS.md); one cell alone is
`python -m fewframes_jax.main --config=configs/paper.py:preset=small,family=hrnn,mode=serial,...`.
"""
