"""The paper's experiment grid, its sweep runner, its tables and figures, and the studies beyond it.

  grid.py             which runs a table needs: `Cell` (one training run, with a key), `Grid` (the sections
                      and their k values, seeds, rows), `build_cells` (every cell once, dependencies first).
  preset.py           `Preset`: the sizes, schedules and timing settings that every cell of one sweep shares.
  run_cache.py        training runs cached by config hash: the one cache of the sweep and the studies
                      (resume, preemption, the stale-result policy).
  sweep.py            `run`: trains (or reads from the cache) every cell, times Table 3, writes the report.
  eval_time.py        Table 3's measurement: the eval forward pass of trained networks, timed.
  render.py, plots.py the markdown tables and the two figures (GAP vs k, GAP vs FLOPs).
  selector_study.py   learned and training-free frame selectors against the paper's rows;
  selector_render.py  its tables and Pareto plots; evidence_recall.py: which frames a selector chose
                      against where the generated data's evidence is.
  anyk_study.py       the any-k student and early exit against fixed-k students; anyk_render.py: its
                      tables and the exit-curve plot.

Each is given the function that turns a cell into its training config (`configs/paper.py:cell_config`):
the library never imports the top-level `configs`. The command lines are `python -m launch.paper_tables`,
`launch.selector_study` and `launch.anyk_study` (RESULTS.md).
"""
