"""Tables and the figure of the any-k / early-exit study (`launch/anyk_study.py`, RESULTS.md).

Inputs are plain structures: `fixed[k]` the per-seed GAP of the fixed-k students, `curves[seed]` each
seed's `exit_curve.run` result (rows of rule, threshold, gap, mean_frames, mean_flops, gap_<group>),
`uniform[k]` the per-seed GAP of the long sweep's Uniform-k Serial students (same loss) where they exist.
"""
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from fewframes_jax.paper.render import fmt, mean_std

TARGET_GAP_DROP = 0.003   # the any-k target: within 0.003 GAP of the fixed k = 30 student ...
TARGET_FRAMES = 15.0      # ... reading at most 15 frames per video on average


def _rows_by_point(curves: Mapping[int, Mapping]) -> Dict[Tuple[str, float], List[Mapping]]:
  """{(rule, threshold): [row of each seed]} in the first seed's row order."""
  out: Dict[Tuple[str, float], List[Mapping]] = {}
  for seed in sorted(curves):
    for row in curves[seed]["rows"]:
      out.setdefault((row["rule"], float(row["threshold"])), []).append(row)
  return out


def budget_table(ks: Sequence[int], fixed: Mapping[int, Sequence[float]], curves: Mapping[int, Mapping],
                 uniform: Mapping[int, Sequence[float]], order: str = "coarse_to_fine") -> str:
  """Per budget k: the fixed-k students (of the nested `order`), the any-k student at k, their per-seed
  difference, the Uniform-k reference and the any-k student's FLOPs (its order's ranking included)."""
  points = _rows_by_point(curves)
  lines = [f"| k | fixed-k students ({order.replace('_', '-')}) | any-k student at k | any-k − fixed | seeds any-k ≥ fixed "
           "| Uniform-k Serial (long sweep) | any-k FLOPs/video |",
           "|---:|---:|---:|---:|---:|---:|---:|"]
  for k in ks:
    anyk = [r["gap"] for r in points.get(("budget", float(k)), [])]
    fix = list(fixed.get(k, []))
    diffs = [a - f for a, f in zip(anyk, fix)]
    flops = points.get(("budget", float(k)), [{}])[0].get("mean_flops")
    flops_text = f"{flops / 1e6:.2f} M" if flops else "–"
    lines.append(f"| {k} | {fmt(fix)} | {fmt(anyk)} | {fmt(diffs)} | {sum(d >= 0 for d in diffs)}/{len(diffs)} | "
                 f"{fmt(list(uniform.get(k, [])))} | {flops_text} |")
  return "\n".join(lines)


def exit_table(curves: Mapping[int, Mapping], fixed_max: Sequence[float], groups: Sequence[str] = ()) -> str:
  """Every operating point: GAP, its difference to the fixed k_max student (per seed), frames, FLOPs."""
  points = _rows_by_point(curves)
  head = "| rule | threshold | GAP | − fixed k_max | mean frames read | FLOPs/video |" + "".join(
      f" GAP {g} classes |" for g in groups) + "".join(f" frames, videos with {g} labels |" for g in groups)
  lines = [head, "|:---|---:|---:|---:|---:|---:|" + "---:|" * 2 * len(groups)]
  for (rule, threshold), rows in points.items():
    gaps = [r["gap"] for r in rows]
    diffs = [g - f for g, f in zip(gaps, fixed_max)]
    frames = float(np.mean([r["mean_frames"] for r in rows]))
    flops = float(np.mean([r["mean_flops"] for r in rows]))
    mark = " ✓" if diffs and mean_std(diffs)[0] >= -TARGET_GAP_DROP and frames <= TARGET_FRAMES else ""
    extra = "".join(f" {fmt([r.get(f'gap_{g}', float('nan')) for r in rows])} |" for g in groups) + "".join(
        f" {np.mean([r.get(f'frames_{g}', float('nan')) for r in rows]):.1f} |" for g in groups)
    lines.append(f"| {rule} | {threshold:g} | {fmt(gaps)} | {fmt(diffs)}{mark} | {frames:.1f} | "
                 f"{flops / 1e6:.2f} M |{extra}")
  return "\n".join(lines)


def best_points(curves: Mapping[int, Mapping], fixed_max: Sequence[float]) -> Dict[str, Optional[Mapping]]:
  """Per rule, the point with the fewest mean frames whose mean GAP is within TARGET_GAP_DROP of the fixed
  k_max student ('within'), and the best-GAP point at <= TARGET_FRAMES frames ('at_budget')."""
  points = _rows_by_point(curves)
  out: Dict[str, Optional[Mapping]] = {}
  for rule in sorted({r for r, _ in points} - {"budget"}):
    candidates = []
    for (r, threshold), rows in points.items():
      if r != rule:
        continue
      diffs = [row["gap"] - f for row, f in zip(rows, fixed_max)]
      candidates.append({"rule": rule, "threshold": threshold, "gap": mean_std([x["gap"] for x in rows]),
                         "diff": mean_std(diffs), "frames": float(np.mean([x["mean_frames"] for x in rows])),
                         "flops": float(np.mean([x["mean_flops"] for x in rows]))})
    within = [c for c in candidates if c["diff"][0] >= -TARGET_GAP_DROP]
    at_budget = [c for c in candidates if c["frames"] <= TARGET_FRAMES]
    out[f"{rule}/within"] = min(within, key=lambda c: c["frames"]) if within else None
    out[f"{rule}/at_budget"] = max(at_budget, key=lambda c: c["gap"][0]) if at_budget else None
  return out


def plot(path: str, ks: Sequence[int], fixed: Mapping[int, Sequence[float]], curves: Mapping[int, Mapping]) -> str:
  """GAP against mean frames read: the fixed-k students, the any-k student's budgets, each exit rule."""
  from fewframes_jax.paper.plots import plt, _save  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(7, 4.5))
  xs = [k for k in ks if fixed.get(k)]
  ys = [mean_std(fixed[k]) for k in xs]
  ax.errorbar(xs, [m for m, _ in ys], yerr=[s for _, s in ys], fmt="ks--", capsize=3, label="fixed-k students")
  points = _rows_by_point(curves)
  for rule, style in (("budget", "o-"), ("stable", "^-"), ("confident", "v-"), ("gate", "D-")):
    pts = sorted(((np.mean([r["mean_frames"] for r in rows]), mean_std([r["gap"] for r in rows]))
                  for (r, _), rows in points.items() if r == rule), key=lambda p: p[0])
    if pts:
      ax.errorbar([p[0] for p in pts], [p[1][0] for p in pts], yerr=[p[1][1] for p in pts], fmt=style,
                  capsize=2, label="any-k at each budget" if rule == "budget" else f"early exit: {rule}")
  ax.axvline(TARGET_FRAMES, color="grey", lw=0.8, ls=":")
  ax.set_xlabel("mean frames read per video")
  ax.set_ylabel("GAP")
  ax.set_title("One student for every budget, and early exit (long split, H-RNN)")
  ax.legend(fontsize=8)
  return _save(fig, path)
