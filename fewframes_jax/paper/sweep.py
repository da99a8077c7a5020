"""Runs the paper's grid: every cell trained (or read from its cache), Table 3 timed, the report written.

`run(preset=..., cell_config=..., out=...)`:
* every cell (`grid.build_cells`) is one `loop.train_and_evaluate` run, in this process, in
  `<out>/runs/<cell key>/`; compiled programs are reused through JAX's persistent compilation cache
  (`jax_options`), so a second seed or a rerun compiles little;
* a family's Teacher-Skyline is trained once per seed (and per data fraction for Table 2); every
  serial row restores it (frozen, best checkpoint) instead of training its own;
* each finished cell's result is cached as `<out>/cells/<cell key>.json` with a hash of its config
  (`run_cache.py`, shared with the studies): a rerun reads it instead of training, and an interrupted
  sweep resumes (a cell killed mid-training resumes from its checkpoints). A cached cell whose config no
  longer matches is an error, or, with `recompute_stale`, is deleted with its run and retrained;
* Table 3 times the eval forward pass of the teacher and the Serial students (`eval_time.py`), cached
  as `<out>/timing/<cell key>.json`;
* outputs: `<out>/tables.md`, `<out>/gap_vs_k.png`, `<out>/pareto.png` and `<out>/last_run.json`
  (trained/cached counts, minutes, the grid), prefixed `<report_name>_` when one is given.

The library never imports the top-level `configs` package: `run` is given the function that turns a
cell into its training config (`configs/paper.py:cell_config`).
"""
import contextlib
import dataclasses
import functools
import os
import shutil
import time
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

import jax
import ml_collections

from fewframes_jax import run_config
from fewframes_jax import specs
from fewframes_jax.paper import eval_time
from fewframes_jax.paper import plots
from fewframes_jax.paper import render
from fewframes_jax.paper import run_cache
from fewframes_jax.paper.run_cache import Layout, Record, RunCache, config_hash, read_json, write_json
from fewframes_jax.paper.grid import BEST_ROW, Cell, Grid, build_cells, reported_cell, teacher_cell
from fewframes_jax.paper.preset import Preset

# (cell, preset, *, workdir_of: cell key -> its run folder, data: config.data overrides) -> config
CellConfig = Callable[..., ml_collections.ConfigDict]
# ------------------------------------------------------------------------------------------------
# One cell




def network_cost(spec: specs.RunSpec, net: str) -> Tuple[float, int]:
  """(FLOPs per video, parameters) of a resolved run's teacher (all frames) or student (k frames),
  from `metrics.flops.model_cost` (memoised there by architecture)."""
  from fewframes_jax.metrics import flops  # pylint: disable=g-import-not-at-top
  from fewframes_jax.models import build_model  # pylint: disable=g-import-not-at-top
  d = spec.data
  frames = d.max_frames if net == "teacher" else spec.student.k
  model = build_model(spec.teacher if net == "teacher" else spec.student, num_classes=d.num_classes,
                      feature_sizes=d.feature_sizes, dtype=spec.dtype)
  return flops.model_cost(model, frames=frames, feature_dim=d.feature_dim)


def evaluated_network(cell: Cell) -> str:
  """The network a cell reports: its teacher for a Teacher-Skyline cell, else its student."""
  return "teacher" if cell.mode == "teacher" else "student"


def run_cell(cell: Cell, config: ml_collections.ConfigDict, workdir: str) -> Record:
  """Trains and evaluates one cell; returns its result record: the evaluated network's eval metrics
  (`render` reads gap, map_all_classes, ...), flops, params, steps, seconds, frames, and for a student
  its teacher's GAP (`run_cache.train_run`)."""
  net = evaluated_network(cell)
  record = run_cache.train_run(config, workdir, evaluated=net)
  flops, params = network_cost(specs.RunSpec.from_config(run_config.resolve(config)), net)
  return dict(record, flops=float(flops), params=int(params))


# ------------------------------------------------------------------------------------------------
# The caches


def default_jax_cache_dir() -> str:
  """`jax_compilation` in the bundled data's cache root."""
  from fewframes_jax.data import bundled  # pylint: disable=g-import-not-at-top
  return os.path.join(bundled.cache_root(), "jax_compilation")


@contextlib.contextmanager
def jax_options(cache_dir: str, fast_compile: bool):
  """Sets JAX's persistent compilation cache ('' leaves it as is) and `jax_disable_most_optimizations`
  for the sweep, restoring them after."""
  names, values = ["jax_disable_most_optimizations"], [fast_compile]
  if cache_dir:
    os.makedirs(cache_dir, exist_ok=True)
    names += ["jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs"]
    values += [cache_dir, 0.0]
  old = [jax.config.values[n] for n in names]
  for n, v in zip(names, values):
    jax.config.update(n, v)
  try:
    yield
  finally:
    for n, v in zip(names, old):
      jax.config.update(n, v)


# ------------------------------------------------------------------------------------------------
# The sweep's parts


@dataclasses.dataclass
class Sweep:
  """What `run` produced: results by cell key, Table 3 timings, output paths, counts."""
  results: Dict[str, Record]
  timings: Dict[str, Record]
  markdown_path: str
  plot_paths: Tuple[str, str]
  trained: int
  cached: int
  seconds: float


def train_cells(cells: Sequence[Cell], config_of: Callable[[Cell], ml_collections.ConfigDict], cache: RunCache,
                log: Callable[[str], None]) -> Tuple[Dict[str, Record], int]:
  """Each cell's record, from the cache or from `run_cell`, in order (dependencies first; a cached
  dependency without its run folder is retrained first: `ensure_run`). Returns (results by key, number
  trained)."""
  results: Dict[str, Record] = {}
  hashes: Dict[str, str] = {}
  by_key = {cell.key: cell for cell in cells}
  trained = 0
  for i, cell in enumerate(cells, 1):
    where = f"[{i}/{len(cells)}] {cell.key}"
    config = config_of(cell)
    digest = hashes[cell.key] = config_hash(config, [hashes[d] for d in cell.deps])
    record = cache.lookup(cell.key, digest)
    if record is not None:
      results[cell.key] = record
      log(f"{where}: cached, GAP {record['gap']:.4f}")
      continue
    trained += sum(ensure_run(dep, by_key, config_of, cache, results, log) for dep in cell.deps)
    record = results[cell.key] = cache.store(cell.key, digest, run_cell(cell, config, cache.layout.run(cell.key)),
                                             cell=dataclasses.asdict(cell))
    trained += 1
    log(f"{where}: GAP {record['gap']:.4f} mAP† {record['map_all_classes']:.4f} ({record['seconds']:.0f} s)")
  return results, trained


def ensure_run(key: str, by_key: Mapping[str, Cell], config_of: Callable[[Cell], ml_collections.ConfigDict],
               cache: RunCache, results: Dict[str, Record], log: Callable[[str], None]) -> int:
  """Retrains cell `key` if its result is cached but its run folder has no checkpoint (a cache is
  committed, runs are not) and another cell or Table 3 reads that run, its own dependencies first.
  Training is deterministic, so it gives the cached result again; if it does not, the new record
  replaces the cached one and the log says so. Returns the number of cells retrained."""
  from fewframes_jax import checkpoint  # pylint: disable=g-import-not-at-top  (Orbax)
  run_dir = cache.layout.run(key)
  if checkpoint.has_checkpoint(run_dir):
    return 0
  cell, cached = by_key[key], results[key]
  retrained = sum(ensure_run(dep, by_key, config_of, cache, results, log) for dep in cell.deps)
  log(f"{key}: its run folder has no checkpoint and is read: retraining it")
  shutil.rmtree(run_dir, ignore_errors=True)
  record = run_cell(cell, config_of(cell), run_dir)
  if record["gap"] != cached["gap"]:
    log(f"{key}: retrained GAP {record['gap']:.6f} != cached {cached['gap']:.6f}; the cache now holds the "
        "retrained result")
    results[key] = cache.store(key, cached["config_hash"], record, cell=dataclasses.asdict(cell))
  return retrained + 1


def time_table3(grid: Grid, preset: Preset, layout: Layout, config_of: Callable[[Cell], ml_collections.ConfigDict],
                log: Callable[[str], None], ensure: Callable[[str], int] = lambda key: 0) -> Dict[str, Record]:
  """Table 3: the eval-forward time, FLOPs and parameters of each seed's teacher and Serial students
  (cached per cell; the uncached ones are measured together, interleaved). `ensure(key)` makes a cell's
  run folder hold its checkpoints (`ensure_run`) before it is timed."""
  from fewframes_jax import checkpoint  # pylint: disable=g-import-not-at-top
  family = grid.families[0]
  todo = []
  for seed in grid.seeds:
    todo.append((teacher_cell(family, seed), "teacher"))
    todo += [(reported_cell(*BEST_ROW, family, seed, k), "student") for k in grid.table3_ks]
  timings = {cell.key: read_json(layout.timing(cell.key)) for cell, _ in todo}
  missing = [(cell, which) for cell, which in todo if timings[cell.key] is None]
  if not missing:
    return timings
  for cell, _ in missing:
    ensure(cell.key)
  networks = {cell.key: checkpoint.restore(layout.run(cell.key), best=True).network(which)
              for cell, which in missing}
  data = specs.RunSpec.from_config(run_config.resolve(config_of(missing[0][0]))).data
  batches = eval_time.load_eval_batches(data, preset.timing_videos)
  for key, record in eval_time.time_eval(networks, batches, repeats=preset.timing_repeats).items():
    flops, params = network_cost(networks[key].spec, networks[key].which)
    record = timings[key] = dict(record, flops=float(flops), params=int(params))
    write_json(layout.timing(key), record)
    log(f"timed {key}: {record['seconds']:.3f} s for {record['videos']} videos")
  return timings


def fraction_labels(config: ml_collections.ConfigDict, fractions: Sequence[float]) -> Dict[float, str]:
  """'10% (500 videos = 12.5%)': the training videos each fraction actually uses (whole files are kept)."""
  from fewframes_jax.data import yt8m  # pylint: disable=g-import-not-at-top
  pattern = run_config.resolve(config).data.train_pattern
  files = yt8m.list_files(pattern)
  counts = {f: yt8m.count_records(f) for f in files}
  total = sum(counts.values())
  labels = {}
  for fraction in tuple(fractions) + (1.0,):
    if len(files) == 1:
      n = int(total * fraction)
    else:
      n = sum(counts[f] for f in yt8m.select_fraction(files, fraction))
    labels[fraction] = f"{fraction:.0%} ({n} videos = {n / max(total, 1):.1%})"
  return labels


def write_report(results: Mapping[str, Record], timings: Mapping[str, Record], grid: Grid, preset: Preset,
                 layout: Layout, config_of: Callable[[Cell], ml_collections.ConfigDict]) -> Tuple[str, str, str]:
  """Writes the markdown and the two figures; returns their paths (markdown, GAP vs k, Pareto)."""
  labels = {}
  if "table2" in grid.sections:
    labels = fraction_labels(config_of(teacher_cell(grid.families[0], grid.seeds[0])), grid.fractions)
  markdown = render.render_markdown(results, timings, grid, title=preset.title, fraction_labels=labels)
  md_path = layout.report("tables.md")
  with open(md_path, "w") as f:
    f.write(markdown)
  panels = []
  for family in grid.families:
    s = render.gap_vs_k_series(results, grid, family)
    panels.append({"title": f"{family}: GAP vs k", "series": s["series"], "teacher": s["teacher"]})
  gap_path = plots.plot_gap_vs_k(panels, path=layout.report("gap_vs_k.png"))
  pareto_path = plots.plot_pareto(render.pareto_points(results, grid), path=layout.report("pareto.png"))
  return md_path, gap_path, pareto_path


# ------------------------------------------------------------------------------------------------
# The sweep


def run(*, preset: Preset, cell_config: CellConfig, out: str, grid: Optional[Grid] = None,
        data: Mapping[str, Any] = (), jax_cache_dir: Optional[str] = None, recompute_stale: bool = False,
        report_name: str = "", log: Callable[[str], None] = functools.partial(print, flush=True)) -> Sweep:
  """Runs (or reads from the cache) every cell of `grid`, times Table 3, writes the markdown and plots.

  preset: sizes, schedules (its `schedule_scale` included) and timing settings of every cell.
  cell_config: `(cell, preset, *, workdir_of, data) -> config` (`configs/paper.py:cell_config`).
  out: the output folder; grid: defaults to the preset's; data: `config.data` overrides (real data).
  jax_cache_dir: JAX's persistent compilation cache (None: `default_jax_cache_dir()`; '' to leave
    JAX's setting as is).
  recompute_stale: a cached cell whose config (or a dependency's) changed is deleted with its run and
    recomputed; by default it is a `UserError`.
  report_name: a name for this grid's outputs (`<out>/<report_name>_tables.md`, ...), so that several grids
    sharing one folder's cells (e.g. a 3-seed subset of the full grid) keep their own report; '' for
    the plain names.
  """
  grid = grid or preset.make_grid()
  layout = Layout(os.path.abspath(out), report_name)
  os.makedirs(layout.out, exist_ok=True)
  cache_dir = default_jax_cache_dir() if jax_cache_dir is None else jax_cache_dir
  start = time.perf_counter()
  cells = build_cells(grid)

  def config_of(cell: Cell) -> ml_collections.ConfigDict:
    return cell_config(cell, preset, workdir_of=layout.run, data=data)

  with jax_options(cache_dir, preset.fast_compile):
    cache = RunCache(layout, recompute_stale, log)
    results, trained = train_cells(cells, config_of, cache, log)
    by_key = {cell.key: cell for cell in cells}
    ensure = lambda key: ensure_run(key, by_key, config_of, cache, results, log)  # noqa: E731
    timings = time_table3(grid, preset, layout, config_of, log, ensure) if "table3" in grid.sections else {}
  md_path, gap_path, pareto_path = write_report(results, timings, grid, preset, layout, config_of)
  seconds = time.perf_counter() - start
  cached = len(cells) - trained
  write_json(layout.report("last_run.json"), {"trained": trained, "cached": cached, "seconds": round(seconds, 1),
                                              "preset": preset.name, "grid": dataclasses.asdict(grid)})
  log(f"{len(cells)} cells ({trained} trained, {cached} cached) in {seconds / 60:.1f} min -> {md_path}")
  return Sweep(results, timings, md_path, (gap_path, pareto_path), trained, cached, seconds)
