"""The any-k student and early exit against fixed-k students, on one preset (default `long`).

For one family (H-RNN by default), per seed:
  * fixed-k students at every budget of `ks` (6, 10, 15, 20, 30), each trained on its k frames of the nested
    `order` (coarse_to_fine, FrameExit's; far_from_mean, the content rule of `sampling/content.py`; or
    learned, each student's own teacher-ranked scorer, `LEARNED_SELECTOR`);
  * one any-k student for every k in [min(ks), max(ks)] (`budgets_per_step` budgets per step), same order;
both Serial L_pred + L_CE from the preset's frozen teacher of that family and seed (`teachers`: the
`launch.paper_tables` sweep's runs, <teachers>/<family>/seed<s>/teacher; with `train_teachers` a missing
one is trained there as the sweep would, its result cached in the sweep's cells folder next to
<teachers>; otherwise a missing one is an error), with the preset's schedule and learning rate: the same
loss and schedule per budget for both. Then, per any-k run, the exit gate is fitted on training videos and
the exit curve measured on the eval split (`exits/exit_curve.py`).

Each training run goes to <out>/runs/<key>, its result cached in <out>/cells/<key>.json (`run_cache.py`).
Outputs: <out>/tables.md and <out>/exit_curve.png (suffixed for a variant: `variant`); each any-k run's
curve JSON in <out>/curves/.
"""
import dataclasses
import os
from typing import Any, Callable, Dict, Mapping, Optional, Sequence

import ml_collections
import numpy as np

from fewframes_jax import specs
from fewframes_jax.paper import grid as grid_lib
from fewframes_jax.paper import run_cache
from fewframes_jax.paper.preset import Preset

LOSS = "pred_ce"
# The learned order's scorer: the selector study's best learned row (`selector_study.py`'s
# rank_audio_ffm+distill: teacher-ranked, audio only, far-from-mean prior), so its fixed-k runs are that row's.
LEARNED_SELECTOR = {"train": "rank", "streams": "audio", "prior": "far_from_mean"}


@dataclasses.dataclass(frozen=True)
class AnyKStudy:
  """One any-k study. cell_config: `(cell, preset, *, workdir_of, data) -> config` (`configs/paper.py`);
  data: `config.data` overrides for real data ({} for the preset's bundled data)."""
  out: str
  teachers: str
  preset: Preset
  cell_config: Callable[..., ml_collections.ConfigDict]
  family: str = "hrnn"
  seeds: Sequence[int] = (0, 1, 2)
  ks: Sequence[int] = (6, 10, 15, 20, 30)
  order: str = "coarse_to_fine"
  budgets_per_step: int = 0  # 0: the default (configs/base.py)
  gate_videos: int = 1000
  train_teachers: bool = False
  data: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  recompute_stale: bool = False

  @property
  def layout(self) -> run_cache.Layout:
    return run_cache.Layout(os.path.abspath(self.out))

  @property
  def variant(self) -> str:
    """The output suffix of a variant study: `_p<n>` (budgets per step), `_<order>` (not coarse-to-fine),
    `_<family>` (not H-RNN), `_<preset>` (not long)."""
    order = "" if self.order == "coarse_to_fine" else f"_{self.order}"
    family = "" if self.family == "hrnn" else f"_{self.family}"
    preset = "" if self.preset.name == "long" else f"_{self.preset.name}"
    return self._per_step + order + family + preset

  @property
  def _per_step(self) -> str:
    return f"_p{self.budgets_per_step}" if self.budgets_per_step else ""

  def run_key(self, seed: int, k: int, k_min: int = 0) -> str:
    name = f"anyk{k_min}-{k}{self._per_step}" if k_min else f"k{k}"
    return f"{self.family}/seed{seed}/serial_{LOSS}_{self.order}_{name}"

  def config(self, seed: int, k: int, *, k_min: int, teacher_workdir: str) -> ml_collections.ConfigDict:
    """A serial L_pred + L_CE student of the preset on the study's nested order (any-k if k_min)."""
    cell = grid_lib.distill_cell(self.family, seed, "serial", LOSS, k)
    config = self.cell_config(cell, self.preset, workdir_of=lambda key: teacher_workdir, data=self.data)
    config.student.sampling = self.order
    if self.order == "learned":
      for key, value in LEARNED_SELECTOR.items():
        config.student.selector[key] = value
    if k_min:
      config.student.k_min = k_min
      config.student.exits = ",".join(map(str, self.ks))
      if self.budgets_per_step:
        config.student.budgets_per_step = self.budgets_per_step
    return config

  def runs(self):
    """(key, config) of every run: per seed, the any-k student, then the fixed-k students."""
    ks = list(self.ks)
    for seed in self.seeds:
      teacher = self.teacher(seed)
      yield self.run_key(seed, ks[-1], ks[0]), self.config(seed, ks[-1], k_min=ks[0], teacher_workdir=teacher)
      for k in ks:
        yield self.run_key(seed, k), self.config(seed, k, k_min=0, teacher_workdir=teacher)

  def teacher(self, seed: int) -> str:
    """The workdir of the family's teacher of `seed` in the preset's sweep (trained first with
    `train_teachers`, as the sweep's teacher cell, its result cached in the sweep's cells)."""
    from fewframes_jax import checkpoint  # pylint: disable=g-import-not-at-top  (Orbax)
    workdir = os.path.join(self.teachers, self.family, f"seed{seed}", "teacher")
    if not self.train_teachers or checkpoint.has_checkpoint(workdir):
      return workdir
    from fewframes_jax.paper import sweep  # pylint: disable=g-import-not-at-top
    cell = grid_lib.teacher_cell(self.family, seed)
    config = self.cell_config(cell, self.preset, workdir_of=lambda key: "", data=self.data)
    cache = run_cache.RunCache(run_cache.Layout(os.path.dirname(os.path.abspath(self.teachers))),
                               self.recompute_stale, log=_log)
    assert cache.layout.run(cell.key) == os.path.abspath(workdir), (cache.layout.run(cell.key), workdir)
    record = cache.store(cell.key, run_cache.config_hash(config), sweep.run_cell(cell, config, workdir),
                         cell=dataclasses.asdict(cell))
    _log(f"{cell.key}: teacher GAP {record['gap']:.4f} ({record['seconds']:.0f} s)")
    return workdir

  def train(self) -> Dict[str, Dict]:
    """Trains (or reads from the cache) every run; returns the records by key."""
    cache = run_cache.RunCache(self.layout, self.recompute_stale, log=_log)
    teachers = run_cache.Layout(os.path.dirname(os.path.abspath(self.teachers)))  # the sweep's cache
    records = {}
    for key, config in self.runs():
      teacher_key = grid_lib.teacher_cell(self.family, config.seed).key
      records[key] = cache.result(key, config, reads=run_cache.teacher_reads(config, teachers, teacher_key))
    return records

  def class_groups(self) -> Optional[Dict[str, np.ndarray]]:
    """The bundled data's burst and long classes (`data/synthetic.py`) for the breakdown; None on real data."""
    if self.data:
      return None
    from fewframes_jax.data import synthetic  # pylint: disable=g-import-not-at-top
    config = self.config(self.seeds[0], self.ks[-1], k_min=0, teacher_workdir="")
    b = config.data.bundled
    burst = synthetic.is_burst_class(synthetic.named_spec(b.spec or "short", b.num_classes))
    return {"burst": burst, "long": ~burst}

  def curves(self, records: Dict[str, Dict]) -> Dict[int, Dict]:
    """The exit curve of each seed's any-k run (cached in <out>/curves/seed<s>.json with the run's
    `run_cache.result_stamp`)."""
    from fewframes_jax.exits import exit_curve  # pylint: disable=g-import-not-at-top
    ks = list(self.ks)
    out = {}
    for seed in self.seeds:
      key = self.run_key(seed, ks[-1], ks[0])
      path = os.path.join(self.layout.out, "curves", f"seed{seed}{self.variant}.json")
      cached = run_cache.read_json(path)
      if cached is not None and run_cache.same_result(cached, records[key]):
        out[seed] = cached
        continue
      result = exit_curve.run(self.layout.run(key), gate_videos=self.gate_videos, class_groups=self.class_groups())
      result.update(run_cache.result_stamp(records[key]))
      run_cache.write_json(path, jsonable(result))
      out[seed] = run_cache.read_json(path)
      _log(f"{key}: exit curve written to {path}")
    return out

  def benchmark(self, best: Dict) -> Dict:
    """Batched early exit (seed 0's any-k run, the gate's point with the fewest frames within the target,
    else the stable rule's) against the fixed k_max student, videos/s from the eval TFRecords."""
    from fewframes_jax import checkpoint  # pylint: disable=g-import-not-at-top
    from fewframes_jax.benchmark import exit_pipeline, timing  # pylint: disable=g-import-not-at-top
    from fewframes_jax.exits import exit_gate  # pylint: disable=g-import-not-at-top
    ks = list(self.ks)
    point = next((best[key] for key in ("gate/within", "stable/within", "gate/at_budget") if best.get(key)), None)
    if point is None:
      return {}
    anyk_dir, fixed_dir = self.layout.run(self.run_key(0, ks[-1], ks[0])), self.layout.run(self.run_key(0, ks[-1]))
    policy = specs.ExitPolicy(point["rule"], point["threshold"])
    gate = exit_gate.load(anyk_dir) if policy.rule == "gate" else None
    result = exit_pipeline.benchmark_exit(checkpoint.restore(anyk_dir).network("student"),
                                          checkpoint.restore(fixed_dir).network("student"), policy=policy, gate=gate)
    result["machine"] = timing.machine_info()
    run_cache.write_json(os.path.join(self.layout.out, f"exit_benchmark{self.variant}.json"), jsonable(result))
    return result

  def report(self, records: Dict[str, Dict], curve_results: Dict[int, Dict], *, benchmark: bool = True,
             command: str = "") -> str:
    """Writes <out>/tables<variant>.md and the exit-curve plot; returns the markdown's path.
    `benchmark=False` keeps the last measured throughput (<out>/exit_benchmark<variant>.json)."""
    from fewframes_jax.benchmark import exit_pipeline  # pylint: disable=g-import-not-at-top
    from fewframes_jax.paper import anyk_render  # pylint: disable=g-import-not-at-top
    ks, seeds = list(self.ks), list(self.seeds)
    fixed = {k: [records[self.run_key(s, k)]["gap"] for s in seeds] for k in ks}
    cells = os.path.join(os.path.dirname(os.path.abspath(self.teachers)), "cells")
    uniform = {}
    for k in ks:
      found = [run_cache.read_json(os.path.join(cells, self.family, f"seed{s}", f"serial_{LOSS}_k{k}.json"))
               for s in seeds]
      if all(found):
        uniform[k] = [r["gap"] for r in found]
    # the frozen teacher's GAP, as each seed's runs logged it (a reused cell may not carry it)
    teacher = [next(r["teacher_gap"] for r in (records[self.run_key(s, ks[-1], ks[0])],
                                               *(records[self.run_key(s, k)] for k in ks))
                    if r.get("teacher_gap") is not None) for s in seeds]
    best = anyk_render.best_points(curve_results, fixed[ks[-1]])
    groups = tuple(self.class_groups() or ())
    per_step = self.config(seeds[0], ks[-1], k_min=ks[0], teacher_workdir="").student.budgets_per_step
    parts = [f"# One student for every budget, and early exit: preset `{self.preset.name}`, {self.family}, seeds "
             f"{', '.join(map(str, seeds))}, {per_step} budgets per step", "",
             f"Serial L_pred + L_CE students of the frozen {self.family} teacher (GAP {anyk_render.fmt(teacher)}), "
             f"frames of the {self.order} order. Command: `{command}`.", "",
             "## The any-k student at each budget against fixed-k students", "",
             anyk_render.budget_table(ks, fixed, curve_results, uniform, self.order), "",
             f"Mean±sd over seeds; 'any-k − fixed' is the per-seed difference. Uniform-k Serial: the "
             f"{self.preset.name} sweep's students with the same loss and schedule on uniform frames (RESULTS.md), "
             "where it ran that k.", "",
             f"## Early exit (exits {', '.join(map(str, ks))}), against the fixed k = {ks[-1]} student", "",
             anyk_render.exit_table(curve_results, fixed[ks[-1]], groups), "",
             f"'− fixed k_max': per-seed GAP difference to the fixed k = {ks[-1]} student "
             f"({anyk_render.fmt(fixed[ks[-1]])}); ✓: within {anyk_render.TARGET_GAP_DROP} on the mean and at most "
             f"{anyk_render.TARGET_FRAMES:g} frames read on average. FLOPs/video: every exit taken (H-RNN and "
             "LSTM/GRU recompute each exit's forward; NetVLAD and NeXtVLAD add only the new frames to their carried "
             "sums) plus the gate."
             + (f" GAP {' / '.join(groups)} classes: the GAP over the labels of each class group of the generated "
                "data alone (`data/synthetic.py`)." if groups else ""), ""]
    lines = []
    for key, point in best.items():
      if point is not None:
        lines.append(f"- {key}: threshold {point['threshold']:g}: GAP {point['gap'][0]:.4f}±{point['gap'][1]:.4f}, "
                     f"− fixed {point['diff'][0]:+.4f}±{point['diff'][1]:.4f}, {point['frames']:.1f} frames, "
                     f"{point['flops'] / 1e6:.2f} MFLOPs")
      else:
        lines.append(f"- {key}: no such point")
    parts += ["Operating points ('within': fewest frames within the target drop; 'at_budget': best GAP at <= 15 "
              "frames):", ""] + lines + [""]
    result = self.benchmark(best) if benchmark else run_cache.read_json(
        os.path.join(self.layout.out, f"exit_benchmark{self.variant}.json"))
    if result:
      parts += ["## Measured throughput from TFRecords (seed 0, one run)", "",
                exit_pipeline.format_exit(result, result["machine"].get("cpu_model")), ""]
    path = os.path.join(self.layout.out, f"tables{self.variant}.md")
    with open(path, "w") as f:
      f.write("\n".join(parts))
    anyk_render.plot(os.path.join(self.layout.out, f"exit_curve{self.variant}.png"), ks, fixed, curve_results)
    return path


def jsonable(tree):
  """numpy scalars and arrays -> plain lists and numbers, at any depth."""
  if isinstance(tree, dict):
    return {k: jsonable(v) for k, v in tree.items()}
  if isinstance(tree, (list, tuple)):
    return [jsonable(v) for v in tree]
  if isinstance(tree, (np.generic, np.ndarray)):
    return tree.tolist()
  return tree


def _log(message: str) -> None:
  print(message, flush=True)
