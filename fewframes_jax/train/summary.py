"""The end-of-training summary: GAP, both mAPs, Hit@1, PERR and FLOPs per video of each network, and one
line of what the student keeps and what it saves against the teacher (GAP kept; FLOPs per video and the
measured videos/s of each network's eval forward, with their ratios), printed by `main` and saved in
`summary.json`. A student's FLOPs are its model's on its k frames, plus a learned selector's scorer on
every frame slot."""
from typing import Any, Dict, Mapping, Optional

from fewframes_jax import specs


def flops_per_video(spec: specs.RunSpec, setup) -> Dict[str, float]:
  """{'teacher'|'student': XLA's FLOPs per video of the network's eval forward} for a run of `setup`
  (`run_setup.TrainSetup`): the teacher on every frame slot, the student on its k (an any-k student at its
  eval budget), plus a learned selector's scorer on every slot (`inference.Forward.cost`)."""
  d = spec.data
  return {which: forward.cost(max_frames=d.max_frames, feature_dim=d.feature_dim)[0]
          for which, forward in setup.forwards().items()}


def kept_and_saved(results: Mapping[str, Mapping[str, float]], flops: Mapping[str, float],
                   videos_per_sec: Optional[Mapping[str, float]] = None) -> Optional[Dict[str, Any]]:
  """What the student keeps and saves against the teacher, or None unless both were evaluated.

  Args:
    results: {'teacher'|'student': metrics with 'gap'}; flops: {network: FLOPs per video};
    videos_per_sec: {network: measured videos/s of its eval forward} (`forward_speed`), or None.

  Returns:
    {'gap_kept' (student GAP / teacher GAP), 'gap', 'flops', 'flop_ratio' (teacher / student),
    'videos_per_sec' and 'speedup' (student / teacher; None when not measured), 'line': one sentence}.
  """
  if not {"teacher", "student"} <= set(results) or not {"teacher", "student"} <= set(flops):
    return None
  gap = {net: float(results[net]["gap"]) for net in ("teacher", "student")}
  gap_kept = gap["student"] / gap["teacher"] if gap["teacher"] > 0 else float("nan")
  flop_ratio = flops["teacher"] / flops["student"]
  line = (f"The student keeps {100 * gap_kept:.1f}% of the teacher's GAP ({gap['student']:.4f} vs "
          f"{gap['teacher']:.4f}) with {flop_ratio:.1f}x fewer FLOPs per video ({flops['student'] / 1e6:.1f} M vs "
          f"{flops['teacher'] / 1e6:.1f} M)")
  speed = speedup = None
  if videos_per_sec and {"teacher", "student"} <= set(videos_per_sec):
    speed = {net: float(videos_per_sec[net]) for net in ("teacher", "student")}
    speedup = speed["student"] / speed["teacher"]
    line += (f" and runs {speedup:.1f}x as many videos/s ({speed['student']:,.0f} vs {speed['teacher']:,.0f}, "
             "eval forward measured on this machine)")
  return {"gap_kept": gap_kept, "gap": gap, "flops": dict(flops), "flop_ratio": flop_ratio,
          "videos_per_sec": speed, "speedup": speedup, "line": line + "."}


def summary_table(spec: specs.RunSpec, setup, step: int, results: Dict[str, Dict[str, float]],
                  *, flops: Optional[Mapping[str, float]] = None, kept: Optional[Mapping[str, Any]] = None) -> str:
  """A markdown table of `results` ({'teacher'|'student': metrics}) for a run of `setup`
  (`run_setup.TrainSetup`) at `step`, with the FLOPs per video of each network's eval forward (`flops`, or
  `flops_per_video`), and the line of `kept` (`kept_and_saved`) when given."""
  d = spec.data
  costs = flops if flops is not None else flops_per_video(spec, setup)
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
  footer = [f"mode={spec.mode}, teacher={spec.teacher.name}, student={spec.student.name}, step={step}, "
            f"eval videos={videos}. mAP: classes with >= 1 positive (current starter); mAP (all classes): the "
            "2017 code's, as the paper."]
  if kept is not None:
    footer.append(kept["line"])
  return "\n".join(lines + [""] + footer)
