"""Runs the paper's experiment grid and writes its tables (markdown) and two plots (PNG).

  python -m launch.paper_tables --preset=small --out=results/small                 # CPU, bundled data
  python -m launch.paper_tables --preset=small --out=results/small --seeds=0,1,2   # + seed spread
  python -m launch.paper_tables --preset=paper --out=results/paper \
      --train_pattern='/data/yt8m/frame/train*.tfrecord' --eval_pattern='/data/yt8m/frame/validate*.tfrecord' \
      --num_classes=4716 --num_train_examples=5738718                             # paper sizes (GPU)

What it does (the grid is `fewframes_jax.tables.Grid`; its sections are the paper's Tables 1-4 and
the cross-family / multi-teacher rows):
* every cell is one `train_loop.train_and_evaluate` run, in this process, in `<out>/runs/<cell key>/`;
  compiled programs are reused through JAX's persistent compilation cache (`<cache>/jax_compilation`,
  the bundled data's cache root), so a second seed or a rerun compiles little;
* a family's Teacher-Skyline is trained once per seed (and per data fraction for Table 2); every
  serial row restores it (frozen, best checkpoint) instead of training its own;
* each finished cell's result is cached as `<out>/cells/<cell key>.json`: a rerun reads it instead of
  training, and an interrupted sweep resumes (a cell killed mid-training resumes from its checkpoints).
  A cached cell whose config no longer matches raises an error (use another --out or delete the file);
* Table 3 times the eval forward pass of the teacher and the Serial students (`<out>/timing/`);
* outputs: `<out>/tables.md`, `<out>/gap_vs_k.png` (GAP vs k per method, teacher line), and
  `<out>/pareto.png` (GAP vs FLOPs per video across families and k).

Presets (`PRESETS`): `paper` = the paper's sizes and schedules (5 epochs; a GPU job); `small` = the
same grid with small models on the bundled data, max_frames 60 and a fixed number of steps, which
finishes in under an hour on 2 CPU cores; `tiny` = a few steps at test sizes (the unit test).
"""
import argparse
import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import shutil
import statistics
import sys
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import jax
import ml_collections
import numpy as np

from configs import base
from fewframes_jax import tables
from fewframes_jax.tables import Cell, Grid

# ------------------------------------------------------------------------------------------------
# Presets


@dataclasses.dataclass(frozen=True)
class Preset:
  """Sizes and schedules of every cell, plus the grid defaults that suit them.

  size: `configs.base.apply_size` argument (paper | cpu | tiny).
  overrides: dotted config key -> value, applied to every cell after `base.experiment`.
  family_overrides: family of the trained network -> overrides (for a serial/baseline/fine-tune cell
    the student's family, else the teacher's).
  finetune_steps: train.num_steps of the stage-2 fine-tunes (0: the cells' own schedule).
  teacher_steps: train.num_steps of the Teacher-Skyline runs (0: the cells' own schedule).
  grid: `tables.Grid` field defaults (the command line overrides families, seeds and sections).
  timing_videos / timing_repeats: Table 3's timed eval passes (0 videos: the whole eval set).
  fast_compile: `jax_disable_most_optimizations` (compile time dominates tiny runs).
  schedule_scale: every run's length (steps, or epochs where a preset counts epochs) times this, e.g.
    3 to check whether an ordering survives longer training (command line `--schedule_scale`).
  """
  name: str
  size: str
  overrides: Tuple[Tuple[str, Any], ...] = ()
  family_overrides: Tuple[Tuple[str, Tuple[Tuple[str, Any], ...]], ...] = ()
  finetune_steps: int = 0
  teacher_steps: int = 0
  grid: Tuple[Tuple[str, Any], ...] = ()
  timing_videos: int = 0
  timing_repeats: int = 3
  fast_compile: bool = False
  schedule_scale: float = 1.0


_QUIET = (("train.progress_bar", False), ("train.eval_every", 0))

PRESETS = {
    # The paper's sizes, 5 epochs (train.num_epochs), per-family batch and optimizer (configs/base.py).
    "paper": Preset(
        name="paper", size="paper",
        overrides=_QUIET + (("train.log_every", 500), ("train.checkpoint_every", 5000)),
        grid=(("anchor_k", 30),), timing_videos=4096),
    # The same grid on 2 CPU cores: the bundled data (4000 train / 1000 eval videos, 64 classes) cut
    # to 60 frames; 64-cell H-RNN/LSTM (H-RNN teacher 10 blocks x 6 frames, students ceil(k/6) blocks),
    # NeXtVLAD at the `cpu` size; 300 steps of 32 videos (2.4 epochs; stage-2 fine-tunes 100) at a larger
    # learning rate than the paper's, which keeps the sweep under an hour on 2 cores. Teachers train
    # 600 steps: a network over all 60 frames learns more slowly than one over k, and at 300 steps the
    # H-RNN teacher fell below Uniform-k (the paper trains every model to convergence).
    # anchor_k = 10: the bundled videos are short (median ~12 frames), so k = 30 sees most of them whole;
    # k = 10 of at most 60 frames is closer to the paper's k = 30 of ~200.
    "small": Preset(
        name="small", size="cpu",
        overrides=_QUIET + (
            ("data.max_frames", 60), ("data.batch_size", 32), ("data.eval_batch_size", 250),
            ("teacher.hrnn.num_blocks", 10), ("teacher.hrnn.cells", 64), ("student.hrnn.cells", 64),
            ("teacher.rnn.cells", 64), ("student.rnn.cells", 64),
            ("train.num_steps", 300), ("train.log_every", 100), ("train.checkpoint_every", 300),
            ("train.keep_checkpoints", 1)),
        family_overrides=(("hrnn", (("optim.learning_rate", 0.01),)),
                          ("lstm", (("optim.learning_rate", 0.01),)),
                          ("nextvlad", (("optim.learning_rate", 0.002),)),
                          ("netvlad", (("optim.learning_rate", 0.002),))),
        finetune_steps=100, teacher_steps=600, grid=(("anchor_k", 10),), timing_repeats=3),
    # Unit tests: test sizes (8 classes, 64/24 videos), 20 frames, a few steps.
    "tiny": Preset(
        name="tiny", size="tiny",
        overrides=_QUIET + (("data.max_frames", 20), ("teacher.hrnn.num_blocks", 4), ("train.num_steps", 3),
                            ("train.checkpoint_every", 3), ("train.keep_checkpoints", 1)),
        finetune_steps=2, grid=(("anchor_k", 10), ("table3_ks", (10,))), timing_repeats=1, fast_compile=True),
}


def make_grid(preset: Preset, **fields) -> Grid:
  """The preset's grid with `fields` (non-None) overriding it."""
  kw = dict(preset.grid)
  kw.update({k: v for k, v in fields.items() if v is not None})
  return Grid(**kw)


# ------------------------------------------------------------------------------------------------
# Cell -> config


def _set(config: ml_collections.ConfigDict, dotted: str, value: Any) -> None:
  *path, leaf = dotted.split(".")
  node = config
  for part in path:
    node = node[part]
  if leaf not in node:
    raise KeyError(f"preset override {dotted!r}: no such config field")
  node[leaf] = value


def cell_config(cell: Cell, preset: Preset, *, workdir_of: Callable[[str], str],
                data: Mapping[str, Any] = ()) -> ml_collections.ConfigDict:
  """The full training config of one cell. `workdir_of(key)` locates a dependency's run; `data`
  overrides `config.data` fields (real-data patterns, class count)."""
  size = {"paper": "", "cpu": ",cpu", "tiny": ",tiny"}[preset.size]
  k = cell.k or dict(preset.grid).get("anchor_k", 30)
  mode = "serial" if cell.mode == "finetune" and cell.teachers else cell.mode
  if len(cell.teachers) > 1:  # an ensemble: the config's own teacher is unused
    config = base.experiment(cell.student, k=k, arg=f"mode={mode}{size}")
  else:
    config = base.experiment(cell.family, k=k, arg=f"mode={mode},sampling={cell.sampling},"
                                                   f"student={cell.student}{size}")
  trained = cell.family if cell.mode in ("teacher", "parallel") else cell.student
  if trained != cell.family:  # only the student trains: its family's optimizer, not the teacher's
    opt = dict(base.FAMILY_OPTIM[trained])
    if preset.size == "paper":
      config.data.batch_size = opt["batch_size"]
    opt.pop("batch_size")
    config.optim.update(opt)
  for key, value in preset.overrides + dict(preset.family_overrides).get(trained, ()):
    _set(config, key, value)
  for key, value in dict(data).items():
    config.data[key] = value
  config.seed = cell.seed
  config.data.train_fraction = cell.fraction
  if cell.mode in ("parallel", "serial") or cell.init:
    weights = base.FAMILY_LOSS[cell.student]
    loss = tables.LOSSES[cell.loss]
    config.loss.ce = weights["ce"] if loss.ce else 0.0
    config.loss.pred = weights["pred"] if loss.pred else 0.0
    rep = weights["rep"] if loss.rep else 0.0
    config.loss.rep, config.loss.rep_intermediate = (0.0, rep) if cell.intermediate else (rep, 0.0)
  if len(cell.teachers) == 1:
    config.teacher_workdir = workdir_of(cell.teachers[0])
  elif cell.teachers:
    config.teacher_workdirs = ",".join(workdir_of(t) for t in cell.teachers)
    config.share_classifier = False
  if cell.mode == "finetune":
    config.mode = "finetune"
    config.init_workdir = workdir_of(cell.init)
    config.teacher_workdir = config.teacher_workdirs = ""
    if preset.finetune_steps:
      config.train.num_steps = preset.finetune_steps
  if cell.mode == "teacher" and preset.teacher_steps:
    config.train.num_steps = preset.teacher_steps
  if preset.schedule_scale != 1.0:
    if config.train.num_steps:
      config.train.num_steps = max(1, round(config.train.num_steps * preset.schedule_scale))
    else:
      config.train.num_epochs *= preset.schedule_scale
  return config


def config_hash(config: ml_collections.ConfigDict, dep_hashes: Sequence[str] = ()) -> str:
  """A hash of everything that shapes a cell's result: its config (dependency locations excluded, the
  output folder may move) and the hashes of the cells it reads (a retrained teacher invalidates its
  serial students)."""
  d = config.to_dict()
  for field in ("teacher_workdir", "teacher_workdirs", "init_workdir"):
    d.pop(field, None)
  if dep_hashes:
    d = {"config": d, "deps": list(dep_hashes)}
  return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------------------
# Running cells


_COST_CACHE: Dict[str, Tuple[float, int]] = {}


def network_cost(config: ml_collections.ConfigDict, net: str) -> Tuple[float, int]:
  """(FLOPs per video, parameters) of the cell's evaluated network (`report.model_cost`), memoised."""
  from fewframes_jax import report  # pylint: disable=g-import-not-at-top
  from fewframes_jax.models import build_model  # pylint: disable=g-import-not-at-top
  d = config.data
  frames = d.max_frames if net == "teacher" else config.student.k
  model_config = config.teacher if net == "teacher" else config.student
  memo = json.dumps([model_config.to_dict(), frames, d.num_classes, list(d.feature_sizes), config.dtype],
                    sort_keys=True, default=str)
  if memo not in _COST_CACHE:
    model = build_model(model_config, num_classes=d.num_classes, feature_sizes=tuple(d.feature_sizes),
                        dtype=config.dtype)
    _COST_CACHE[memo] = report.model_cost(model, frames=frames, feature_dim=sum(d.feature_sizes))
  return _COST_CACHE[memo]


def run_cell(cell: Cell, config: ml_collections.ConfigDict, workdir: str) -> Dict[str, Any]:
  """Trains and evaluates one cell; returns its result record (see `tables` for the fields)."""
  from fewframes_jax import configs_lib  # pylint: disable=g-import-not-at-top
  from fewframes_jax import train_loop  # pylint: disable=g-import-not-at-top
  start = time.perf_counter()
  out = train_loop.train_and_evaluate(config, workdir)
  seconds = time.perf_counter() - start
  net = "teacher" if cell.mode == "teacher" else "student"
  if net not in out["eval"]:
    raise RuntimeError(f"cell {cell.key}: the run in {workdir} returned no {net} evaluation")
  flops, params = network_cost(configs_lib.resolve(config), net)
  record = {key: float(value) for key, value in out["eval"][net].items()}
  record.update(flops=float(flops), params=int(params), steps=int(out["step"]), seconds=round(seconds, 2),
                frames=int(config.data.max_frames if net == "teacher" else config.student.k))
  if net == "student" and "teacher" in out["eval"]:
    record["teacher_gap"] = float(out["eval"]["teacher"]["gap"])
  return record


# ------------------------------------------------------------------------------------------------
# Table 3: eval-time measurement


def load_eval_batches(config: ml_collections.ConfigDict, max_videos: int = 0) -> List[Dict[str, np.ndarray]]:
  """The eval set as host numpy batches (frames u8[B, T, D], num_frames i32[B], valid bool[B]; the last
  batch is padded), up to `max_videos` (whole batches)."""
  from fewframes_jax import configs_lib  # pylint: disable=g-import-not-at-top
  from fewframes_jax.data import yt8m  # pylint: disable=g-import-not-at-top
  config = configs_lib.resolve(config)
  d = config.data
  ds = yt8m.make_dataset(d.eval_pattern, d.eval_batch_size, num_classes=d.num_classes, max_frames=d.max_frames,
                         training=False, feature_names=tuple(d.feature_names),
                         feature_sizes=tuple(d.feature_sizes), id_key=d.id_key)
  batches, seen = [], 0
  for batch in yt8m.as_numpy_batches(ds):
    batches.append({"frames": batch["frames"], "num_frames": batch["num_frames"].astype(np.int32),
                    "valid": batch["valid"]})
    seen += int(batch["valid"].sum())
    if max_videos and seen >= max_videos:
      break
  return batches


class TimedForward:
  """The jitted eval forward pass (dequantize, the student's frame selection, model) of one trained
  network over batches held on the device; `one_pass()` returns its wall time in seconds."""

  def __init__(self, workdir: str, which: str, batches: Sequence[Mapping[str, np.ndarray]]):
    from fewframes_jax import checkpoint as ckpt_lib  # pylint: disable=g-import-not-at-top
    from fewframes_jax import sampling  # pylint: disable=g-import-not-at-top
    from fewframes_jax.data.quantization import dequantize  # pylint: disable=g-import-not-at-top
    restored = ckpt_lib.restore(workdir, best=True)
    self.config, self.which = restored.config, which
    if which == "teacher":
      model, self.variables, frames_k, method = restored.model, restored.variables, None, None
    else:
      model, self.variables = restored.student_model, restored.student_variables
      frames_k, method = int(self.config.student.k), str(self.config.student.sampling)
    self.frames = int(self.config.data.max_frames) if frames_k is None else frames_k

    @jax.jit
    def forward(variables, frames, num_frames):
      x = dequantize(frames, num_frames)
      if frames_k is not None:
        x, num_frames = sampling.sample_frames(x, num_frames, frames_k, method, rng=jax.random.PRNGKey(0))
      return model.apply(variables, x, num_frames, train=False).probabilities

    self._forward = forward
    self._batches = [(jax.device_put(b["frames"]), jax.device_put(b["num_frames"])) for b in batches]
    self.videos = int(sum(b["valid"].sum() for b in batches))

  def one_pass(self) -> float:
    start = time.perf_counter()
    for frames, num_frames in self._batches:
      out = self._forward(self.variables, frames, num_frames)
    jax.block_until_ready(out)
    return time.perf_counter() - start


def time_eval(runs: Mapping[str, Tuple[str, str]], batches: Sequence[Mapping[str, np.ndarray]], *,
              repeats: int) -> Dict[str, Dict[str, Any]]:
  """Table 3's measurement. runs: key -> (workdir, 'teacher' | 'student').

  Each network runs one untimed warm-up pass (compile), then `repeats` rounds time every network once
  per round, interleaved, so that a change in machine load hits all of them alike; a network's time is
  its median. Returns key -> {seconds, videos, flops, params, frames}.
  """
  timed = {key: TimedForward(workdir, which, batches) for key, (workdir, which) in runs.items()}
  for t in timed.values():
    t.one_pass()
  samples = {key: [] for key in timed}
  for _ in range(max(1, repeats)):
    for key, t in timed.items():
      samples[key].append(t.one_pass())
  records = {}
  for key, t in timed.items():
    flops, params = network_cost(t.config, t.which)
    records[key] = {"seconds": round(statistics.median(samples[key]), 4), "videos": t.videos,
                    "flops": float(flops), "params": int(params), "frames": t.frames}
  return records


# ------------------------------------------------------------------------------------------------
# The sweep


@contextlib.contextmanager
def _jax_options(cache_dir: str, fast_compile: bool):
  """Sets JAX's persistent compilation cache and compile options for the sweep, restoring them after."""
  names = ["jax_disable_most_optimizations"]
  values = [fast_compile]
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


def _read_json(path: str) -> Optional[Dict[str, Any]]:
  try:
    with open(path) as f:
      return json.load(f)
  except FileNotFoundError:
    return None


def _write_json(path: str, obj: Any) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=1, sort_keys=True)
  os.replace(tmp, path)  # atomic: a killed sweep never leaves a half-written cache entry


@dataclasses.dataclass
class Sweep:
  """What `run` produced: results by cell key, Table 3 timings, output paths, counts."""
  results: Dict[str, Dict[str, Any]]
  timings: Dict[str, Dict[str, Any]]
  markdown_path: str
  plot_paths: Tuple[str, str]
  trained: int
  cached: int
  seconds: float


def fraction_labels(config: ml_collections.ConfigDict, fractions: Sequence[float]) -> Dict[float, str]:
  """'10% (500 videos)': the training videos each fraction actually uses (whole files are kept)."""
  from fewframes_jax import configs_lib  # pylint: disable=g-import-not-at-top
  from fewframes_jax.data import yt8m  # pylint: disable=g-import-not-at-top
  pattern = configs_lib.resolve(config).data.train_pattern
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


def run(*, preset: str, out: str, grid: Optional[Grid] = None, data: Mapping[str, Any] = (),
        jax_cache_dir: Optional[str] = None, recompute_stale: bool = False, report_name: str = "",
        schedule_scale: float = 1.0,
        log: Callable[[str], None] = functools.partial(print, flush=True)) -> Sweep:
  """Runs (or reads from the cache) every cell of `grid`, times Table 3, writes the markdown and plots.

  preset: a `PRESETS` name; grid: defaults to the preset's; data: `config.data` overrides (real data);
  jax_cache_dir: JAX's persistent compilation cache (None: `jax_compilation` in the bundled data's
    cache root; '' to leave JAX's setting as is).
  recompute_stale: a cached cell whose config (or a dependency's) changed is deleted with its run and
    recomputed; by default it is an error.
  report_name: a name for this grid's outputs (`<out>/<report_name>_tables.md`, ...), so that several grids
    sharing one folder's cells (e.g. a 3-seed subset of the full grid) keep their own report; '' for
    the plain names.
  schedule_scale: every run `schedule_scale` times longer than the preset's (see `Preset`).
  """
  from fewframes_jax import plots  # pylint: disable=g-import-not-at-top
  p = PRESETS[preset]
  if schedule_scale <= 0:
    raise ValueError(f"schedule_scale must be > 0, got {schedule_scale}")
  p = dataclasses.replace(p, schedule_scale=schedule_scale)
  grid = grid or make_grid(p)
  out = os.path.abspath(out)
  os.makedirs(out, exist_ok=True)
  if jax_cache_dir is None:
    from fewframes_jax.data import bundled  # pylint: disable=g-import-not-at-top
    jax_cache_dir = os.path.join(bundled.cache_root(), "jax_compilation")
  cache_dir = jax_cache_dir
  start = time.perf_counter()
  cells = tables.build_cells(grid)
  workdir_of = lambda key: os.path.join(out, "runs", key)
  results: Dict[str, Dict[str, Any]] = {}
  timings: Dict[str, Dict[str, Any]] = {}
  trained = cached = 0
  with _jax_options(cache_dir, p.fast_compile):
    hashes: Dict[str, str] = {}
    for i, cell in enumerate(cells, 1):
      config = cell_config(cell, p, workdir_of=workdir_of, data=data)
      digest = hashes[cell.key] = config_hash(config, [hashes[d] for d in cell.deps])
      path = os.path.join(out, "cells", cell.key + ".json")
      record = _read_json(path)
      if record is not None and record.get("config_hash") != digest:
        if not recompute_stale:
          raise ValueError(f"{path}: cached result of another config (hash {record.get('config_hash')} != "
                           f"{digest}); delete it, or its whole folder, or use another --out (or "
                           "--recompute_stale)")
        log(f"[{i}/{len(cells)}] {cell.key}: stale cache entry, recomputing")
        os.remove(path)
        shutil.rmtree(workdir_of(cell.key), ignore_errors=True)
        record = None
      if record is not None:
        cached += 1
        results[cell.key] = record
        log(f"[{i}/{len(cells)}] {cell.key}: cached, GAP {record['gap']:.4f}")
        continue
      record = run_cell(cell, config, workdir_of(cell.key))
      record.update(config_hash=digest, cell=dataclasses.asdict(cell), key=cell.key)
      _write_json(path, record)
      results[cell.key] = record
      trained += 1
      log(f"[{i}/{len(cells)}] {cell.key}: GAP {record['gap']:.4f} mAP† {record['map_all_classes']:.4f} "
          f"({record['seconds']:.0f} s)")
    if "table3" in grid.sections:
      timings = _run_timings(grid, p, out, cells, workdir_of, data, log)
  family = grid.families[0]
  labels = {}
  if "table2" in grid.sections:
    labels = fraction_labels(cell_config(tables.teacher_cell(family, grid.seeds[0]), p, workdir_of=workdir_of,
                                         data=data), grid.fractions)
  markdown = render_markdown(results, timings, grid, preset=p, fraction_labels=labels)
  named = lambda name: os.path.join(out, f"{report_name}_{name}" if report_name else name)
  md_path = named("tables.md")
  with open(md_path, "w") as f:
    f.write(markdown)
  panels = []
  for fam in grid.families:
    s = tables.gap_vs_k_series(results, grid, fam)
    panels.append({"title": f"{fam}: GAP vs k", "series": s["series"], "teacher": s["teacher"]})
  gap_path = plots.plot_gap_vs_k(panels, path=named("gap_vs_k.png"))
  pareto_path = plots.plot_pareto(tables.pareto_points(results, grid), path=named("pareto.png"))
  seconds = time.perf_counter() - start
  _write_json(named("last_run.json"), {"trained": trained, "cached": cached, "seconds": round(seconds, 1),
                                                   "preset": preset, "grid": dataclasses.asdict(grid)})
  log(f"{len(cells)} cells ({trained} trained, {cached} cached) in {seconds / 60:.1f} min -> {md_path}")
  return Sweep(results, timings, md_path, (gap_path, pareto_path), trained, cached, seconds)


def _run_timings(grid, preset, out, cells, workdir_of, data, log) -> Dict[str, Dict[str, Any]]:
  """Table 3: eval-forward time of each seed's teacher and Serial students (cached like the cells;
  the uncached ones are measured together, interleaved)."""
  family = grid.families[0]
  by_key = {c.key: c for c in cells}
  todo = []
  for seed in grid.seeds:
    todo.append((tables.teacher_cell(family, seed), "teacher"))
    todo += [(tables.reported_cell(*tables.BEST_ROW, family, seed, k), "student") for k in grid.table3_ks]
  path = lambda key: os.path.join(out, "timing", key + ".json")
  timings = {cell.key: _read_json(path(cell.key)) for cell, _ in todo}
  missing = {cell.key: (workdir_of(cell.key), which) for cell, which in todo if timings[cell.key] is None}
  if missing:
    first = next(iter(missing))
    batches = load_eval_batches(cell_config(by_key[first], preset, workdir_of=workdir_of, data=data),
                                preset.timing_videos)
    for key, record in time_eval(missing, batches, repeats=preset.timing_repeats).items():
      _write_json(path(key), record)
      timings[key] = record
      log(f"timed {key}: {record['seconds']:.3f} s for {record['videos']} videos")
  return timings


def render_markdown(results, timings, grid: Grid, *, preset: Preset,
                    fraction_labels: Optional[Mapping[float, str]] = None) -> str:
  """All the grid's sections as one markdown document."""
  scale = f" x {preset.schedule_scale:g} schedule" if preset.schedule_scale != 1.0 else ""
  parts = [f"# Paper tables: preset `{preset.name}`{scale}, seeds {', '.join(map(str, grid.seeds))}", ""]
  if "table1" in grid.sections:
    for family in grid.families:
      parts += [f"## Table 1 ({family})", "", tables.table1_markdown(results, grid, family), "",
                f"### Which of the paper's orderings hold ({family})", "",
                tables.orderings_markdown(results, grid, family), ""]
  if "table2" in grid.sections:
    parts += ["## Table 2: limited training data", "", tables.table2_markdown(results, grid, fraction_labels), ""]
  if "table3" in grid.sections:
    parts += ["## Table 3: FLOPs and eval time", "", tables.table3_markdown(timings, grid, grid.families[0]), ""]
  if "table4" in grid.sections and grid.table4_family:
    parts += ["## Table 4: intermediate vs final representation matching", "",
              tables.table4_markdown(results, grid), ""]
  if "cross" in grid.sections:
    parts += ["## Cross-family and multi-teacher distillation", "", tables.cross_markdown(results, grid), ""]
  return "\n".join(parts)


# ------------------------------------------------------------------------------------------------
# Command line


def _ints(text: str) -> Tuple[int, ...]:
  return tuple(int(x) for x in text.split(",") if x)


def _words(text: str) -> Tuple[str, ...]:
  return tuple(x for x in text.split(",") if x)


def _rows(text: str) -> Tuple[Tuple[str, str], ...]:
  """'paper', 'all', or 'serial:pred_ce,parallel:rep_ce,...' (checked by `tables.Grid`)."""
  named = {"paper": tables.TABLE1_ROWS, "all": tables.ALL_ROWS}
  if text in named:
    return named[text]
  rows = tuple(tuple(item.split(":", 1)) for item in _words(text))
  if not rows or any(len(r) != 2 for r in rows):
    raise argparse.ArgumentTypeError(f"--rows {text!r}: expected 'paper', 'all' or mode:loss,...")
  return rows


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(prog="python -m launch.paper_tables", description=__doc__.split("\n\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--preset", default="small", choices=sorted(PRESETS))
  parser.add_argument("--out", required=True, help="output folder (cells, runs, tables.md, PNGs)")
  parser.add_argument("--seeds", type=_ints, default=None, help="comma-separated, default 0")
  parser.add_argument("--families", type=_words, default=None, help="Table 1 families, default hrnn")
  parser.add_argument("--sections", type=_words, default=None, help=f"some of {','.join(tables.SECTIONS)}")
  parser.add_argument("--ks", type=_ints, default=None, help="k values of Table 1, default 6,10,15,20,30")
  parser.add_argument("--rows", default=None, type=_rows,
                      help="teacher-student rows: 'paper' (the paper's 8, default), 'all' (10: adds Parallel L_pred "
                           f"rows), or a list mode:loss,... (mode parallel|serial, loss one of {','.join(tables.LOSSES)})")
  parser.add_argument("--baselines", type=_words, default=None,
                      help=f"k-frame baselines of Table 1, default all of {','.join(tables.BASELINES)}")
  parser.add_argument("--schedule_scale", type=float, default=1.0,
                      help="every run this many times longer than the preset's (use another --out)")
  parser.add_argument("--anchor_k", type=int, default=None, help="k of Tables 2, 4 and the cross-family rows")
  parser.add_argument("--train_pattern", default="", help="real data (default: the bundled dataset)")
  parser.add_argument("--eval_pattern", default="")
  parser.add_argument("--num_classes", type=int, default=0)
  parser.add_argument("--num_train_examples", type=int, default=0)
  parser.add_argument("--recompute_stale", action="store_true",
                      help="retrain cached cells whose config (or a dependency's) changed, instead of failing")
  parser.add_argument("--report", default="",
                      help="name of this grid's outputs: <out>/<report>_tables.md, ..._gap_vs_k.png, ..._pareto.png")
  parser.add_argument("--jax_cache_dir", default=None, help="JAX compilation cache; default <bundled cache root>/jax_compilation; '' for none")
  return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> Sweep:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  grid = make_grid(PRESETS[args.preset], seeds=args.seeds, families=args.families, sections=args.sections,
                   ks=args.ks, rows=args.rows, anchor_k=args.anchor_k, baselines=args.baselines)
  data = {}
  if args.train_pattern or args.eval_pattern:
    if not (args.train_pattern and args.eval_pattern and args.num_classes):
      raise SystemExit("real data needs --train_pattern, --eval_pattern and --num_classes together")
    data = dict(train_pattern=args.train_pattern, eval_pattern=args.eval_pattern, num_classes=args.num_classes,
                num_train_examples=args.num_train_examples)
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  from absl import logging  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.WARNING)
  return run(preset=args.preset, out=args.out, grid=grid, data=data, jax_cache_dir=args.jax_cache_dir,
             recompute_stale=args.recompute_stale, report_name=args.report, schedule_scale=args.schedule_scale)


if __name__ == "__main__":
  main()
