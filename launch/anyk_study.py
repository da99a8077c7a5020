"""The any-k student and early exit against fixed-k students (RESULTS.md, "One student for every budget").

  python -m launch.anyk_study --out=results/long_anyk --teachers=results/long/runs --seeds=0,1,2

On the `long` preset (YouTube-8M-length videos, `configs/paper.py`), one family (`--family`, H-RNN by
default), per seed:
  * five fixed-k students, k = 6, 10, 15, 20, 30, each trained on its k frames of the nested order
    (`--order`: coarse_to_fine, FrameExit's, or far_from_mean, the content rule of `selection/content.py`);
  * one any-k student for every k in [6, 30] (`fewframes_jax/anyk.py`, 4 budgets per step), same order;
both Serial L_pred + L_CE from the preset's frozen teacher of that family and seed (`--teachers`: the
`launch.paper_tables --preset=long` sweep's runs, <teachers>/<family>/seed<s>/teacher; with
`--train_teachers` a missing one is trained there as the sweep would, its result cached in the sweep's
cells folder next to <teachers>; otherwise a missing one is an
error), with the preset's schedule (300 steps of 32 videos) and learning rate: the same loss and schedule
per budget for both. Then, per any-k run, the exit gate is fitted on training videos and the exit curve
measured on the eval split (`fewframes_jax/exit_curve.py`).

Each training run goes to <out>/runs/<key>, its result cached in <out>/cells/<key>.json (with its config
hash: a rerun reads the cache, a changed config retrains). Outputs: <out>/tables.md and
<out>/exit_curve.png; each any-k run's curve JSON in <out>/curves/.
"""
import os
from typing import Dict, List, Sequence

from fewframes_jax import cli

cli.quiet_start()

from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position

from fewframes_jax.configs import paper as paper_configs  # pylint: disable=g-import-not-at-top,wrong-import-position
from fewframes_jax.paper import grid as grid_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from fewframes_jax.paper import sweep  # pylint: disable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS
flags.DEFINE_string("out", None, "Output folder (cells, runs, curves, tables.md).")
flags.DEFINE_string("teachers", "results/long/runs", "The long preset sweep's runs folder (its teachers).")
flags.DEFINE_enum("family", "hrnn", ["hrnn", "lstm", "gru", "netvlad", "nextvlad"],
                  "The teacher's and students' family; another than hrnn is keyed and reported apart (suffix _<family>).")
flags.DEFINE_bool("train_teachers", False, "Train a missing teacher as the long sweep's teacher cell (and cache it "
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
                  "from TFRecords (seed 0).")
flags.mark_flags_as_required(["out"])

LOSS = "pred_ce"
PRESET = "long"
# The learned order's scorer: the selector study's best learned row (launch/selector_study.py's
# rank_audio_ffm+distill: teacher-ranked, audio only, far-from-mean prior), so its fixed-k runs are that row's.
LEARNED_SELECTOR = {"train": "rank", "streams": "audio", "prior": "far_from_mean"}


def _per_step() -> str:
  return f"_p{FLAGS.budgets_per_step}" if FLAGS.budgets_per_step else ""


def _variant() -> str:
  """The output suffix of a variant study: `_p<n>` (budgets per step), `_<order>` (not coarse-to-fine),
  `_<family>` (not H-RNN)."""
  order = "" if FLAGS.order == "coarse_to_fine" else f"_{FLAGS.order}"
  family = "" if FLAGS.family == "hrnn" else f"_{FLAGS.family}"
  return _per_step() + order + family


def run_key(seed: int, k: int, k_min: int = 0) -> str:
  name = f"anyk{k_min}-{k}{_per_step()}" if k_min else f"k{k}"
  return f"{FLAGS.family}/seed{seed}/serial_{LOSS}_{FLAGS.order}_{name}"


def study_config(seed: int, k: int, *, k_min: int, teacher_workdir: str):
  """A serial L_pred + L_CE student of the long preset on the study's nested order (any-k if k_min)."""
  cell = grid_lib.distill_cell(FLAGS.family, seed, "serial", LOSS, k)
  config = paper_configs.cell_config(cell, paper_configs.PRESETS[PRESET], workdir_of=lambda key: teacher_workdir)
  config.student.sampling = FLAGS.order
  if FLAGS.order == "learned":
    for key, value in LEARNED_SELECTOR.items():
      config.student.selector[key] = value
  if k_min:
    config.student.k_min = k_min
    config.student.exits = ",".join(map(str, _ks()))
    if FLAGS.budgets_per_step:
      config.student.budgets_per_step = FLAGS.budgets_per_step
  return config


def _ks() -> List[int]:
  return [int(k) for k in FLAGS.ks.split(",")]


def _runs(seeds: Sequence[int]):
  ks = _ks()
  for seed in seeds:
    teacher = _teacher(seed)
    yield run_key(seed, ks[-1], ks[0]), study_config(seed, ks[-1], k_min=ks[0], teacher_workdir=teacher)
    for k in ks:
      yield run_key(seed, k), study_config(seed, k, k_min=0, teacher_workdir=teacher)


def _teacher(seed: int) -> str:
  """The workdir of the family's long-preset teacher of `seed` (trained first with --train_teachers)."""
  from fewframes_jax import checkpoint  # pylint: disable=g-import-not-at-top
  workdir = os.path.join(FLAGS.teachers, FLAGS.family, f"seed{seed}", "teacher")
  if not FLAGS.train_teachers or (os.path.isdir(checkpoint.checkpoint_dir(workdir))
                                  and checkpoint.complete_steps(workdir)):
    return workdir
  cell = grid_lib.teacher_cell(FLAGS.family, seed)
  config = paper_configs.cell_config(cell, paper_configs.PRESETS[PRESET], workdir_of=lambda key: "")
  layout = sweep.Layout(os.path.dirname(os.path.abspath(FLAGS.teachers)))
  assert layout.run(cell.key) == os.path.abspath(workdir), (layout.run(cell.key), workdir)
  record = sweep.run_cell(cell, config, workdir)
  sweep.CellCache(layout).store(cell, sweep.config_hash(config), record)
  print(f"{cell.key}: teacher GAP {record['gap']:.4f} ({record['seconds']:.0f} s)", flush=True)
  return workdir


def train(seeds: Sequence[int]) -> Dict[str, Dict]:
  """Trains (or reads from the cache) every run; returns the records by key."""
  from fewframes_jax import train_loop  # pylint: disable=g-import-not-at-top
  import time  # pylint: disable=g-import-not-at-top
  layout = _layout()
  records = {}
  for key, config in _runs(seeds):
    digest = sweep.config_hash(config)
    cached = sweep.read_json(layout.cell(key))
    if cached is not None and cached.get("config_hash") == digest:
      records[key] = cached
      print(f"{key}: cached, GAP {cached['gap']:.4f}", flush=True)
      continue
    start = time.perf_counter()
    out = train_loop.train_and_evaluate(config, layout.run(key))
    record = {k: float(v) for k, v in out["eval"]["student"].items()}
    record.update(seconds=round(time.perf_counter() - start, 1), config_hash=digest, key=key,
                  teacher_gap=float(out["eval"]["teacher"]["gap"]) if "teacher" in out["eval"] else None)
    sweep.write_json(layout.cell(key), record)
    records[key] = record
    print(f"{key}: GAP {record['gap']:.4f} ({record['seconds']:.0f} s)", flush=True)
  return records


def _layout():
  return sweep.Layout(os.path.abspath(FLAGS.out))


def class_groups():
  """The bundled long data's burst and long classes (`data/synthetic.py`): for the breakdown only."""
  from fewframes_jax.data import synthetic  # pylint: disable=g-import-not-at-top
  spec = synthetic.named_spec("long", paper_configs.base.get_config().data.bundled.num_classes)
  burst = synthetic.is_burst_class(spec)
  return {"burst": burst, "long": ~burst}


def curves(seeds: Sequence[int], records: Dict[str, Dict]) -> Dict[int, Dict]:
  """The exit curve of each seed's any-k run (cached in <out>/curves/seed<s>.json with the run's hash)."""
  from fewframes_jax import exit_curve  # pylint: disable=g-import-not-at-top
  ks = _ks()
  out = {}
  for seed in seeds:
    key = run_key(seed, ks[-1], ks[0])
    path = os.path.join(_layout().out, "curves", f"seed{seed}{_variant()}.json")
    cached = sweep.read_json(path)
    if cached is not None and cached.get("config_hash") == records[key]["config_hash"]:
      out[seed] = cached
      continue
    result = exit_curve.run(_layout().run(key), gate_videos=FLAGS.gate_videos, class_groups=class_groups())
    result["config_hash"] = records[key]["config_hash"]
    sweep.write_json(path, jsonable(result))
    out[seed] = sweep.read_json(path)
    print(f"{key}: exit curve written to {path}", flush=True)
  return out


def jsonable(tree):
  import numpy as np  # pylint: disable=g-import-not-at-top
  if isinstance(tree, dict):
    return {k: jsonable(v) for k, v in tree.items()}
  if isinstance(tree, (list, tuple)):
    return [jsonable(v) for v in tree]
  if isinstance(tree, (np.generic, np.ndarray)):
    return tree.tolist()
  return tree


def benchmark(best: Dict) -> Dict:
  """Batched early exit (seed 0's any-k run, the gate's point with the fewest frames within the target,
  else the stable rule's) against the fixed k_max student, videos/s from the eval TFRecords."""
  from fewframes_jax import checkpoint  # pylint: disable=g-import-not-at-top
  from fewframes_jax import early_exit, exit_gate  # pylint: disable=g-import-not-at-top
  from fewframes_jax.cost import exit_pipeline, timing  # pylint: disable=g-import-not-at-top
  ks = _ks()
  point = next((best[key] for key in ("gate/within", "stable/within", "gate/at_budget") if best.get(key)), None)
  if point is None:
    return {}
  anyk_dir, fixed_dir = _layout().run(run_key(0, ks[-1], ks[0])), _layout().run(run_key(0, ks[-1]))
  policy = early_exit.ExitPolicy(point["rule"], point["threshold"])
  gate = exit_gate.load(anyk_dir) if policy.rule == "gate" else None
  result = exit_pipeline.benchmark_exit(checkpoint.restore(anyk_dir).network("student"),
                                        checkpoint.restore(fixed_dir).network("student"), policy=policy, gate=gate)
  result["machine"] = timing.machine_info()
  sweep.write_json(os.path.join(_layout().out, f"exit_benchmark{_variant()}.json"), jsonable(result))
  return result


def report(seeds: Sequence[int], records: Dict[str, Dict], curve_results: Dict[int, Dict]) -> str:
  from fewframes_jax.cost import exit_pipeline  # pylint: disable=g-import-not-at-top
  from fewframes_jax.paper import anyk_render  # pylint: disable=g-import-not-at-top
  ks = _ks()
  fixed = {k: [records[run_key(s, k)]["gap"] for s in seeds] for k in ks}
  cells = os.path.join(os.path.dirname(os.path.abspath(FLAGS.teachers)), "cells")
  uniform = {}
  for k in ks:
    found = [sweep.read_json(os.path.join(cells, FLAGS.family, f"seed{s}", f"serial_{LOSS}_k{k}.json"))
             for s in seeds]
    if all(found):
      uniform[k] = [r["gap"] for r in found]
  # the frozen teacher's GAP, as each seed's runs logged it (a reused cell may not carry it)
  teacher = [next(r["teacher_gap"] for r in (records[run_key(s, ks[-1], ks[0])], *(records[run_key(s, k)] for k in ks))
                  if r.get("teacher_gap") is not None) for s in seeds]
  best = anyk_render.best_points(curve_results, fixed[ks[-1]])
  groups = ("burst", "long")
  per_step = FLAGS.budgets_per_step or 4
  parts = [f"# One student for every budget, and early exit: preset `{PRESET}`, {FLAGS.family}, seeds "
           f"{', '.join(map(str, seeds))}, {per_step} budgets per step", "",
           f"Serial L_pred + L_CE students of the frozen {FLAGS.family} teacher (GAP {anyk_render.fmt(teacher)}), frames of "
           f"the {FLAGS.order} order. Command: `python -m launch.anyk_study --out={FLAGS.out} --teachers="
           f"{FLAGS.teachers} --seeds={FLAGS.seeds}" + (f" --family={FLAGS.family}" if FLAGS.family != "hrnn" else "") + (f" --budgets_per_step={FLAGS.budgets_per_step}"
                                                 if FLAGS.budgets_per_step else "")
           + (f" --order={FLAGS.order}" if FLAGS.order != "coarse_to_fine" else "") + "`.", "",
           "## The any-k student at each budget against fixed-k students", "",
           anyk_render.budget_table(ks, fixed, curve_results, uniform, FLAGS.order), "",
           "Mean±sd over seeds; 'any-k − fixed' is the per-seed difference. Uniform-k Serial: the long sweep's "
           "students with the same loss and schedule on uniform frames (RESULTS.md), where it ran that k.", "",
           f"## Early exit (exits {', '.join(map(str, ks))}), against the fixed k = {ks[-1]} student", "",
           anyk_render.exit_table(curve_results, fixed[ks[-1]], groups), "",
           f"'− fixed k_max': per-seed GAP difference to the fixed k = {ks[-1]} student ({anyk_render.fmt(fixed[ks[-1]])}); "
           f"✓: within {anyk_render.TARGET_GAP_DROP} on the mean and at most {anyk_render.TARGET_FRAMES:g} frames "
           "read on average. FLOPs/video: every exit taken (H-RNN and LSTM/GRU recompute each exit's forward; "
           "NetVLAD and NeXtVLAD add only the new frames to their carried sums) plus the gate. "
           "GAP burst / long classes: the GAP over the labels of the data's burst classes (2-6 frames of evidence) "
           "or long classes (30-70% of the video) alone.", ""]
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
  # --nobenchmark keeps the last measured figures (<out>/exit_benchmark<variant>.json) in the report
  result = benchmark(best) if FLAGS.benchmark else sweep.read_json(
      os.path.join(_layout().out, f"exit_benchmark{_variant()}.json"))
  if result:
    parts += ["## Measured throughput from TFRecords (seed 0, one run)", "",
              exit_pipeline.format_exit(result, result["machine"].get("cpu_model")), ""]
  path = os.path.join(_layout().out, f"tables{_variant()}.md")
  with open(path, "w") as f:
    f.write("\n".join(parts))
  anyk_render.plot(os.path.join(_layout().out, f"exit_curve{_variant()}.png"), ks, fixed, curve_results)
  return path


def main(argv):
  del argv
  seeds = [int(s) for s in FLAGS.seeds.split(",")]
  phases = FLAGS.phases.split(",")
  records = train(seeds) if "train" in phases or "curves" in phases or "report" in phases else {}
  curve_results = curves(seeds, records) if "curves" in phases or "report" in phases else {}
  if "report" in phases:
    print(f"wrote {report(seeds, records, curve_results)}")


if __name__ == "__main__":
  cli.run(main)
