"""The end-of-training summary: GAP, both mAPs, Hit@1, PERR and FLOPs per video of each network, and the
teacher/student FLOP ratio (printed by `main` and saved in `summary.json`). A student's FLOPs are its
model's on its k frames, plus a learned selector's scorer on every frame slot."""
from typing import Dict, Optional

import ml_collections

from fewframes_jax.metrics import flops as flops_lib
from fewframes_jax.sampling import learned


def summary_table(config: ml_collections.ConfigDict, setup, step: int, results: Dict[str, Dict[str, float]]) -> str:
  """A markdown table of `results` ({'teacher'|'student': metrics}) for a run of `setup`
  (`run_setup.TrainSetup`) at `step`, with XLA's FLOPs per video of each network's eval forward."""
  d = config.data
  feature_dim = sum(d.feature_sizes)
  costs: Dict[str, Optional[float]] = {}
  if setup.has_teacher:
    costs["teacher"] = flops_lib.model_cost(setup.teacher_model, frames=d.max_frames, feature_dim=feature_dim)[0]
  if setup.has_student:
    forward = setup.student_forward  # an any-k student at its eval budget
    slots = forward.selection.slots or forward.selection.k
    costs["student"] = flops_lib.model_cost(forward.model, frames=slots, feature_dim=feature_dim)[0]
    if forward.selection.learned:  # its frame scorer runs on every frame slot: part of the student's cost
      costs["student"] += learned.scorer_flops(learned.SelectorSpec.from_config(config.student), d.feature_sizes,
                                               d.max_frames)
  lines = ["| network | frames | GAP | mAP | mAP (all classes) | Hit@1 | PERR | FLOPs/video |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"]
  for net in ("teacher", "student"):
    if net not in results:
      continue
    r = results[net]
    frames = d.max_frames if net == "teacher" else setup.student_forward.selection.describe()
    if net == "student" and setup.budgets is not None:
      frames = f"{frames}, any-k {setup.budgets.k_min}-{setup.budgets.k_max}"
    lines.append(f"| {net} | {frames} | {r['gap']:.4f} | {r['map']:.4f} | {r['map_all_classes']:.4f} | "
                 f"{r['hit_at_one']:.4f} | {r['perr']:.4f} | {costs.get(net, float('nan')) / 1e6:.1f} M |")
  videos = next(iter(results.values()))["num_videos"] if results else 0
  footer = [f"mode={config.mode}, teacher={config.teacher.name}, student={config.student.name}, step={step}, "
            f"eval videos={videos}. mAP: classes with >= 1 positive (current starter); mAP (all classes): the "
            "2017 code's, as the paper."]
  if "teacher" in costs and "student" in costs:
    footer.append(f"FLOP ratio teacher/student: {costs['teacher'] / costs['student']:.2f}x")
  return "\n".join(lines + [""] + footer)
