"""Which k frames: learned and training-free selectors against the paper's rows (RESULTS.md, issue 12).

  python -m launch.selector_study --out=results/long_select --baselines=results/long --seeds=0,1,2

On a paper-table preset (`--preset`, default `long`: YouTube-8M-length videos, H-RNN), per seed and k:
  * the rows the preset's sweep already ran are read from its cache (`--baselines`/cells: Uniform-k,
    Random-k, Feature-change-k, Far-from-mean-k, and the distilled Uniform-k row, Serial L_pred + L_CE;
    a missing one is reported missing, not trained here);
  * new runs: each selector of `SELECTOR_ROWS`, each with and without distillation from the frozen
    teacher of that seed (<baselines>/runs/<family>/seed<s>/teacher). "Distilled" is the sweep's Serial
    L_pred + L_CE; "without" is L_CE alone on the student's own classifier (a ranking-trained scorer still
    learns its ranking from the teacher's single-frame judgements, so it runs in serial mode with the
    distillation weights at 0; an end-to-end scorer without distillation is a student_only run).
Same preset schedule, learning rate and batch for all. Each run goes to <out>/runs/<key>, its result
cached in <out>/cells/<key>.json with its config hash. Output: <out>/tables.md (GAP, mAP, FLOPs per video
with the scorer, frames and bytes read) and the Pareto plots.
"""
import os
from typing import Dict, List, Sequence

from fewframes_jax import cli

cli.quiet_start()

from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position

from fewframes_jax.configs import paper as paper_configs  # pylint: disable=g-import-not-at-top,wrong-import-position
from fewframes_jax.paper import grid as grid_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from fewframes_jax.paper import sweep  # pylint: disable=g-import-not-at-top,wrong-import-position
from fewframes_jax.errors import UserError  # pylint: disable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS
flags.DEFINE_string("out", None, "Output folder (cells, runs, tables.md, plots).")
flags.DEFINE_string("baselines", "results/long", "The preset's paper-table sweep folder (its cells and teachers).")
flags.DEFINE_string("preset", "long", "The paper-table preset (configs/paper.py).")
flags.DEFINE_string("family", "hrnn", "Teacher and student family.")
flags.DEFINE_string("seeds", "0,1,2", "Comma-separated seeds.")
flags.DEFINE_string("ks", "6,10,30", "Comma-separated k.")
flags.DEFINE_string("rows", "", "Comma-separated new rows to train (default: all of SELECTOR_ROWS).")
flags.DEFINE_string("phases", "train,report", "Which phases to run: train, report, recall (with report: the "
                    "seed-0 runs' recall of the generator's evidence frames, bundled data only).")
flags.DEFINE_string("report", "", "Name of this report: <out>/<report>_tables.md and its plots (default tables.md).")
flags.mark_flags_as_required(["out"])

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


def study_config(row: str, seed: int, k: int, *, teacher_workdir: str):
  """The config of one run: a new row (see the module docstring) or a row of the preset's sweep."""
  family, preset = FLAGS.family, paper_configs.PRESETS[FLAGS.preset]
  if row in SWEEP_ROWS:
    cell = (grid_lib.distill_cell(family, seed, "serial", LOSS, k) if row == "uniform+distill"
            else grid_lib.baseline_cell(family, seed, k, SWEEP_ROWS[row]))
    return paper_configs.cell_config(cell, preset, workdir_of=lambda key: teacher_workdir)
  sampling, selector, distilled = SELECTOR_ROWS[row]
  judged = selector.get("train") == "rank"  # its scorer learns from the teacher: a serial run
  if distilled or judged:
    cell = grid_lib.distill_cell(family, seed, "serial", LOSS, k)
  else:
    cell = grid_lib.baseline_cell(family, seed, k, "uniform")
  config = paper_configs.cell_config(cell, preset, workdir_of=lambda key: teacher_workdir)
  config.student.sampling = sampling
  for key, value in selector.items():
    config.student.selector[key] = value
  if judged and not distilled:  # CE alone, on the student's own classifier
    config.loss.pred = config.loss.rep = config.loss.rep_intermediate = 0.0
    config.loss.ce = 1.0
    config.share_classifier = False
  return config


def _ints(text: str) -> List[int]:
  return [int(x) for x in text.split(",") if x]


def _rows() -> List[str]:
  rows = [r for r in FLAGS.rows.split(",") if r] or list(SELECTOR_ROWS)
  unknown = sorted(set(rows) - set(SELECTOR_ROWS))
  if unknown:
    raise UserError(f"--rows: unknown {unknown}; expected some of {list(SELECTOR_ROWS)}")
  return rows


def _layout():
  return sweep.Layout(os.path.abspath(FLAGS.out))


def train(seeds: Sequence[int], ks: Sequence[int], *, run_missing: bool = True) -> Dict[str, Dict]:
  """Trains (or reads from the cache) every new run; returns the records by key. `run_missing=False`:
  only the cached ones (a report of what has run)."""
  import time  # pylint: disable=g-import-not-at-top
  from fewframes_jax import train_loop  # pylint: disable=g-import-not-at-top
  layout, records = _layout(), {}
  for k in ks:
    for seed in seeds:
      teacher = os.path.join(os.path.abspath(FLAGS.baselines), "runs", FLAGS.family, f"seed{seed}", "teacher")
      for row in _rows():
        key = run_key(FLAGS.family, seed, row, k)
        config = study_config(row, seed, k, teacher_workdir=teacher)
        digest = sweep.config_hash(config)
        cached = sweep.read_json(layout.cell(key))
        if cached is not None and cached.get("config_hash") == digest:
          records[key] = cached
          continue
        if not run_missing:
          continue
        start = time.perf_counter()
        out = train_loop.train_and_evaluate(config, layout.run(key))
        if out["preempted"]:  # its checkpoint is saved: the same command resumes it
          raise SystemExit(f"{key}: stopped by a preemption signal at step {out['step']}")
        record = {name: float(v) for name, v in out["eval"]["student"].items()}
        record.update(seconds=round(time.perf_counter() - start, 1), config_hash=digest, key=key)
        sweep.write_json(layout.cell(key), record)
        records[key] = record
        print(f"{key}: GAP {record['gap']:.4f} ({record['seconds']:.0f} s)", flush=True)
  return records


def sweep_records(seeds: Sequence[int], ks: Sequence[int]) -> Dict[str, Dict]:
  """The rows of the preset's paper-table sweep (cached cells), by this study's keys; teacher under
  '<family>/seed<s>/teacher'. Missing cells are left out."""
  cells = os.path.join(os.path.abspath(FLAGS.baselines), "cells", FLAGS.family)
  out = {}
  for seed in seeds:
    teacher = sweep.read_json(os.path.join(cells, f"seed{seed}", "teacher.json"))
    if teacher is not None:
      out[f"{FLAGS.family}/seed{seed}/teacher"] = teacher
    for row, name in SWEEP_ROWS.items():
      for k in ks:
        record = sweep.read_json(os.path.join(cells, f"seed{seed}", f"{name}_k{k}.json"))
        if record is not None:
          out[run_key(FLAGS.family, seed, row, k)] = record
  return out


def main(argv):
  del argv
  seeds, ks = _ints(FLAGS.seeds), _ints(FLAGS.ks)
  phases = FLAGS.phases.split(",")
  records = train(seeds, ks, run_missing="train" in phases)
  if "report" in phases:
    from fewframes_jax.paper import selector_render  # pylint: disable=g-import-not-at-top
    records.update(sweep_records(seeds, ks))
    rows = list(SWEEP_ROWS) + [r for r in SELECTOR_ROWS if r in _rows()]
    path = selector_render.write_report(
        _layout().out, records, family=FLAGS.family, seeds=seeds, ks=ks, rows=rows, key=run_key,
        costs=costs(rows, ks), recall=recalls(rows, ks) if "recall" in phases else None, report=FLAGS.report,
        command=(f"python -m launch.selector_study --out={FLAGS.out} --baselines={FLAGS.baselines} "
                 f"--preset={FLAGS.preset} --seeds={FLAGS.seeds} --ks={FLAGS.ks}"
                 + (f" --rows={FLAGS.rows}" if FLAGS.rows else "")
                 + (f" --report={FLAGS.report}" if FLAGS.report else "")))
    print(f"wrote {path}")


def run_dir(row: str, seed: int, k: int) -> str:
  """The run folder of a row: this study's, or the preset's sweep's."""
  if row in SWEEP_ROWS:
    name = SWEEP_ROWS[row]
    return os.path.join(os.path.abspath(FLAGS.baselines), "runs", FLAGS.family, f"seed{seed}", f"{name}_k{k}")
  return _layout().run(run_key(FLAGS.family, seed, row, k))


def recalls(rows: Sequence[str], ks: Sequence[int], seed: int = 0) -> Dict[str, Dict[int, Dict[str, float]]]:
  """{row: {k: evidence recall}} of one seed's runs (`paper/evidence_recall.py`; the bundled data only),
  cached in <out>/recall.json by the runs' config hashes; rows without a run folder are left out."""
  from fewframes_jax import checkpoint  # pylint: disable=g-import-not-at-top
  from fewframes_jax.paper import evidence_recall  # pylint: disable=g-import-not-at-top
  path = os.path.join(_layout().out, "recall.json")
  cached = sweep.read_json(path) or {}
  out = {}
  for row in rows:
    for k in ks:
      folder = run_dir(row, seed, k)
      if not os.path.isdir(folder):
        continue
      restored = checkpoint.restore(folder)
      digest = sweep.config_hash(restored.config)
      entry = cached.get(f"{row}|{k}|{seed}")
      if entry is None or entry.get("config_hash") != digest:
        entry = dict(evidence_recall.evidence_recall(restored.network("student"), restored.config), config_hash=digest)
        cached[f"{row}|{k}|{seed}"] = entry
        sweep.write_json(path, cached)
      out.setdefault(row, {})[k] = entry
  teacher_dir = os.path.join(os.path.abspath(FLAGS.baselines), "runs", FLAGS.family, f"seed{seed}", "teacher")
  entry = cached.get(f"judgement|{seed}")
  if entry is None and os.path.isdir(teacher_dir):
    restored = checkpoint.restore(teacher_dir)
    entry = cached[f"judgement|{seed}"] = evidence_recall.judgement_auc(restored.network("teacher"), restored.config)
    sweep.write_json(path, cached)
  if entry is not None:
    out["judgement"] = entry
  return out


def costs(rows: Sequence[str], ks: Sequence[int]) -> Dict[str, Dict[int, Dict[str, float]]]:
  """{row: {k: selection_cost}} at the preset's sizes, lengths from the eval split (cached in
  <out>/costs.json by the configs' hashes)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from fewframes_jax import configs_lib  # pylint: disable=g-import-not-at-top
  from fewframes_jax.cost import selection_cost  # pylint: disable=g-import-not-at-top
  path = os.path.join(_layout().out, "costs.json")
  cached = sweep.read_json(path) or {}
  lengths = None
  out = {}
  for row in rows:
    for k in ks:
      config = configs_lib.resolve(study_config(row, 0, k, teacher_workdir=""))
      digest = sweep.config_hash(config)
      entry = cached.get(f"{row}|{k}")
      if entry is None or entry.get("config_hash") != digest:
        if lengths is None:
          lengths = selection_cost.eval_lengths(config)
        entry = dict(selection_cost.selection_cost(
            config, k, mean_frames=float(lengths.mean()), mean_frames_k=float(np.minimum(lengths, k).mean())),
            config_hash=digest)
        cached[f"{row}|{k}"] = entry
        sweep.write_json(path, cached)
      out.setdefault(row, {})[k] = entry
  return out


if __name__ == "__main__":
  cli.run(main)
