"""Which k frames: learned and training-free selectors against the paper's rows, on one preset.

On a paper-table preset (default `long`: YouTube-8M-length videos, H-RNN), per seed and k:
  * the rows the preset's sweep already ran are read from its cache (`baselines`/cells: Uniform-k,
    Random-k, Feature-change-k, Far-from-mean-k, and the distilled Uniform-k row, Serial L_pred + L_CE;
    a missing one is reported missing, not trained here);
  * new runs: each selector of `SELECTOR_ROWS`, each with and without distillation from the frozen
    teacher of that seed (<baselines>/runs/<family>/seed<s>/teacher). "Distilled" is the sweep's Serial
    L_pred + L_CE; "without" is L_CE alone on the student's own classifier (a ranking-trained scorer still
    learns its ranking from the teacher's single-frame judgements, so it runs in serial mode with the
    distillation weights at 0; an end-to-end scorer without distillation is a student_only run).
Same preset schedule, learning rate and batch for all; real data through `data` (the sweep's overrides).
Each run goes to <out>/runs/<key>, its result cached in <out>/cells/<key>.json (`run_cache.py`). Output:
<out>/tables.md (GAP, mAP, FLOPs per video with the scorer, frames and bytes read) and the Pareto plots.
"""
import dataclasses
import os
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import ml_collections

from fewframes_jax.errors import UserError
from fewframes_jax.paper import grid as grid_lib
from fewframes_jax.paper import run_cache
from fewframes_jax.paper.preset import Preset

LOSS = "pred_ce"  # the distilled rows' loss: the long sweep's best Serial row
# New rows: name -> (student.sampling, student.selector fields, distilled from the teacher?).
FFM = {"prior": "far_from_mean"}
SELECTOR_ROWS = {
    "far_from_mean+distill": ("far_from_mean", {}, True),
    "feature_change+distill": ("feature_change", {}, True),
    # learned scorers starting from the far-from-mean distance (a zero-initialised learned residual)
    "rank_all_ffm+distill": ("learned", {"train": "rank", "streams": "all", **FFM}, True),
    "e2e_all_ffm+distill": ("learned", {"train": "end_to_end", "streams": "all", **FFM}, True),
    "rank_audio_ffm+distill": ("learned", {"train": "rank", "streams": "audio", **FFM}, True),
    "labels_all_ffm+distill": ("learned", {"train": "labels", "streams": "all", **FFM}, True),
    "labels_all_ffm": ("learned", {"train": "labels", "streams": "all", **FFM}, False),
    "labels64_all_ffm+distill": ("learned", {"train": "labels", "streams": "all", "frames_per_video": 64, **FFM}, True),
    "labels_all_ffm_h32+distill": ("learned", {"train": "labels", "streams": "all", "hidden": 32, "mlp": 32, **FFM}, True),
    "rank_all_ffm": ("learned", {"train": "rank", "streams": "all", **FFM}, False),
    "e2e_all_ffm": ("learned", {"train": "end_to_end", "streams": "all", **FFM}, False),
    # learned scorers from scratch
    "rank_all+distill": ("learned", {"train": "rank", "streams": "all"}, True),
    "e2e_all+distill": ("learned", {"train": "end_to_end", "streams": "all"}, True),
    "rank_audio+distill": ("learned", {"train": "rank", "streams": "audio"}, True),
    "rank_all": ("learned", {"train": "rank", "streams": "all"}, False),
    "e2e_all": ("learned", {"train": "end_to_end", "streams": "all"}, False),
}
# Rows read from the paper-table sweep's cache: name -> that sweep's cell name (before _k<k>).
SWEEP_ROWS = {"uniform": "uniform", "random": "random", "feature_change": "feature_change",
              "far_from_mean": "far_from_mean", "uniform+distill": f"serial_{LOSS}"}


def run_key(family: str, seed: int, row: str, k: int) -> str:
  return f"{family}/seed{seed}/{row.replace('+', '_')}_k{k}"


def parse_rows(text: str) -> List[str]:
  """Comma-separated new rows ('' = all of SELECTOR_ROWS), checked."""
  rows = [r for r in text.split(",") if r] or list(SELECTOR_ROWS)
  unknown = sorted(set(rows) - set(SELECTOR_ROWS))
  if unknown:
    raise UserError(f"--rows: unknown {unknown}; expected some of {list(SELECTOR_ROWS)}")
  return rows


@dataclasses.dataclass(frozen=True)
class SelectorStudy:
  """One selector study: where it writes (`out`), the sweep it reads (`baselines`), what it runs.

  cell_config: `(cell, preset, *, workdir_of, data) -> config` (`configs/paper.py:cell_config`);
  data: `config.data` overrides for real data ({} for the preset's bundled data).
  """
  out: str
  baselines: str
  preset: Preset
  cell_config: Callable[..., ml_collections.ConfigDict]
  family: str = "hrnn"
  seeds: Sequence[int] = (0, 1, 2)
  ks: Sequence[int] = (6, 10, 30)
  rows: Sequence[str] = tuple(SELECTOR_ROWS)
  data: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  recompute_stale: bool = False

  @property
  def layout(self) -> run_cache.Layout:
    return run_cache.Layout(os.path.abspath(self.out))

  def teacher_dir(self, seed: int) -> str:
    return os.path.join(os.path.abspath(self.baselines), "runs", self.family, f"seed{seed}", "teacher")

  def config(self, row: str, seed: int, k: int, *, teacher_workdir: str) -> ml_collections.ConfigDict:
    """The config of one run: a new row (see the module docstring) or a row of the preset's sweep."""
    where = lambda key: teacher_workdir  # noqa: E731
    if row in SWEEP_ROWS:
      cell = (grid_lib.distill_cell(self.family, seed, "serial", LOSS, k) if row == "uniform+distill"
              else grid_lib.baseline_cell(self.family, seed, k, SWEEP_ROWS[row]))
      return self.cell_config(cell, self.preset, workdir_of=where, data=self.data)
    sampling, selector, distilled = SELECTOR_ROWS[row]
    judged = selector.get("train") == "rank"  # its scorer learns from the teacher: a serial run
    if distilled or judged:
      cell = grid_lib.distill_cell(self.family, seed, "serial", LOSS, k)
    else:
      cell = grid_lib.baseline_cell(self.family, seed, k, "uniform")
    config = self.cell_config(cell, self.preset, workdir_of=where, data=self.data)
    config.student.sampling = sampling
    for key, value in selector.items():
      config.student.selector[key] = value
    if judged and not distilled:  # CE alone, on the student's own classifier
      config.loss.pred = config.loss.rep = config.loss.rep_intermediate = 0.0
      config.loss.ce = 1.0
      config.share_classifier = False
    return config

  def train(self, *, run_missing: bool = True) -> Dict[str, Dict]:
    """Trains (or reads from the cache) every new run; returns the records by key. `run_missing=False`:
    only the cached ones (a report of what has run)."""
    cache = run_cache.RunCache(self.layout, self.recompute_stale, log=_log)
    teachers = run_cache.Layout(os.path.abspath(self.baselines))  # the sweep's cache, which trained them
    records = {}
    for k in self.ks:
      for seed in self.seeds:
        for row in self.rows:
          key = run_key(self.family, seed, row, k)
          config = self.config(row, seed, k, teacher_workdir=self.teacher_dir(seed))
          reads = run_cache.teacher_reads(config, teachers, grid_lib.teacher_cell(self.family, seed).key)
          record = cache.result(key, config, reads=reads, train=run_missing)
          if record is not None:
            records[key] = record
    return records

  def sweep_records(self) -> Dict[str, Dict]:
    """The rows of the preset's paper-table sweep (cached cells), by this study's keys; teacher under
    '<family>/seed<s>/teacher'. Missing cells are left out."""
    cells = os.path.join(os.path.abspath(self.baselines), "cells", self.family)
    out = {}
    for seed in self.seeds:
      teacher = run_cache.read_json(os.path.join(cells, f"seed{seed}", "teacher.json"))
      if teacher is not None:
        out[f"{self.family}/seed{seed}/teacher"] = teacher
      for row, name in SWEEP_ROWS.items():
        for k in self.ks:
          record = run_cache.read_json(os.path.join(cells, f"seed{seed}", f"{name}_k{k}.json"))
          if record is not None:
            out[run_key(self.family, seed, row, k)] = record
    return out

  def run_dir(self, row: str, seed: int, k: int) -> str:
    """The run folder of a row: this study's, or the preset's sweep's."""
    if row in SWEEP_ROWS:
      return os.path.join(os.path.abspath(self.baselines), "runs", self.family, f"seed{seed}", f"{SWEEP_ROWS[row]}_k{k}")
    return self.layout.run(run_key(self.family, seed, row, k))

  def recalls(self, rows: Sequence[str], seed: int = 0) -> Dict[str, Dict[int, Dict[str, float]]]:
    """{row: {k: evidence recall}} of one seed's runs (`evidence_recall.py`; the bundled data only), cached
    in <out>/recall.json with the runs' `run_cache.result_stamp`. A row whose run folder is gone keeps its cached entry
    (its cell, checked by `train`, vouches for the run); one without either is left out."""
    from fewframes_jax import checkpoint  # pylint: disable=g-import-not-at-top
    from fewframes_jax.paper import evidence_recall  # pylint: disable=g-import-not-at-top
    path = os.path.join(self.layout.out, "recall.json")
    cached = run_cache.read_json(path) or {}
    out = {}
    for row in rows:
      for k in self.ks:
        folder = self.run_dir(row, seed, k)
        entry = cached.get(f"{row}|{k}|{seed}")
        if not os.path.isdir(folder):
          if entry is not None:
            out.setdefault(row, {})[k] = entry
          continue
        restored = checkpoint.restore(folder)
        saved = ml_collections.ConfigDict(restored.spec.saved)
        cell = run_cache.read_json(self.layout.cell(run_key(self.family, seed, row, k))) or {}
        stamp = dict(run_cache.result_stamp(cell), config_hash=run_cache.config_hash(saved))
        if entry is None or not run_cache.same_result(entry, stamp):
          entry = dict(evidence_recall.evidence_recall(restored.network("student"), saved), **stamp)
          cached[f"{row}|{k}|{seed}"] = entry
          run_cache.write_json(path, cached)
        out.setdefault(row, {})[k] = entry
    entry = cached.get(f"judgement|{seed}")
    if entry is None and os.path.isdir(self.teacher_dir(seed)):
      restored = checkpoint.restore(self.teacher_dir(seed))
      entry = cached[f"judgement|{seed}"] = evidence_recall.judgement_auc(
          restored.network("teacher"), ml_collections.ConfigDict(restored.spec.saved))
      run_cache.write_json(path, cached)
    if entry is not None:
      out["judgement"] = entry
    return out

  def costs(self, rows: Sequence[str]) -> Dict[str, Dict[int, Dict[str, float]]]:
    """{row: {k: selection_cost}} at the preset's sizes, lengths from the eval split (cached in
    <out>/costs.json by the configs' hashes)."""
    import numpy as np  # pylint: disable=g-import-not-at-top
    from fewframes_jax import run_config  # pylint: disable=g-import-not-at-top
    from fewframes_jax.benchmark import selection_cost  # pylint: disable=g-import-not-at-top
    path = os.path.join(self.layout.out, "costs.json")
    cached = run_cache.read_json(path) or {}
    lengths = None
    out = {}
    for row in rows:
      for k in self.ks:
        config = run_config.resolve(self.config(row, 0, k, teacher_workdir=""))
        digest = run_cache.config_hash(config)
        entry = cached.get(f"{row}|{k}")
        if entry is None or entry.get("config_hash") != digest:
          if lengths is None:
            lengths = selection_cost.eval_lengths(config)
          entry = dict(selection_cost.selection_cost(
              config, k, mean_frames=float(lengths.mean()), mean_frames_k=float(np.minimum(lengths, k).mean())),
              config_hash=digest)
          cached[f"{row}|{k}"] = entry
          run_cache.write_json(path, cached)
        out.setdefault(row, {})[k] = entry
    return out

  def report(self, records: Dict[str, Dict], *, recall: bool = False, report: str = "",
             command: str = "") -> str:
    """Writes the tables and plots of every row (the sweep's rows first); returns the markdown's path."""
    from fewframes_jax.paper import selector_render  # pylint: disable=g-import-not-at-top
    records = dict(records, **self.sweep_records())
    rows = list(SWEEP_ROWS) + [r for r in SELECTOR_ROWS if r in self.rows]
    return selector_render.write_report(
        self.layout.out, records, family=self.family, seeds=list(self.seeds), ks=list(self.ks), rows=rows,
        key=run_key, costs=self.costs(rows), recall=self.recalls(rows) if recall else None, report=report,
        command=command)


def _log(message: str) -> None:
  print(message, flush=True)


def study_command(out: str, baselines: str, preset: str, seeds: str, ks: str, rows: str = "", report: str = "",
                  extra: Optional[Sequence[str]] = (), family: str = "hrnn") -> str:
  """The command line that reproduces a report (printed in it)."""
  return (f"python -m launch.selector_study --out={out} --baselines={baselines} --preset={preset} --seeds={seeds} "
          f"--ks={ks}" + (f" --family={family}" if family != "hrnn" else "") + (f" --rows={rows}" if rows else "")
          + (f" --report={report}" if report else "") + "".join(f" {e}" for e in extra))
