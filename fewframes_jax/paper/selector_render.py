"""The frame-selector study's report (`launch/selector_study.py`): accuracy over seeds, whole cost, targets.

  write_report(out, records, ...) -> <out>/tables.md, <out>/pareto_flops.png, <out>/pareto_bytes.png

Tables: GAP and mAP (mean±sd over seeds) per row and k with the all-frame teacher and the paper's rows in
the same table; per k the cost of each row (XLA FLOPs per video of the whole forward, scorer included;
frames and bytes read per video, `benchmark/selection_cost.py`); the issue's targets, computed from the per-seed
values (gap closed between the distilled Uniform-k student and the teacher; best learned vs best
training-free selector, per-seed difference against the seed spread).
"""
import os
from typing import Any, Callable, Dict, List, Mapping, Sequence

import numpy as np

from fewframes_jax.paper import plots
from fewframes_jax.paper.render import fmt, mean_std

ROW_NAMES = {
    "uniform": "Uniform-k", "random": "Random-k", "feature_change": "Feature-change-k (MGSampler)",
    "far_from_mean": "Far-from-mean-k", "uniform+distill": "Uniform-k, distilled (Serial L_pred, L_CE)",
    "far_from_mean+distill": "Far-from-mean-k, distilled", "feature_change+distill": "Feature-change-k, distilled",
    "rank_all_ffm+distill": "Learned: ranked by teacher, all features, far-from-mean prior, distilled",
    "e2e_all_ffm+distill": "Learned: end to end, all features, far-from-mean prior, distilled",
    "rank_audio_ffm+distill": "Learned: ranked by teacher, audio only, far-from-mean prior, distilled",
    "labels_all_ffm+distill": "Learned: ranked by a label judge, all features, far-from-mean prior, distilled",
    "labels_all_ffm": "Learned: ranked by a label judge, all features, far-from-mean prior (CE only)",
    "labels64_all_ffm+distill": "Learned: ranked by a label judge (64 frames judged per video), prior, distilled",
    "labels_all_ffm_h32+distill": "Learned: ranked by a label judge, a 32-unit scorer, prior, distilled",
    "rank_all_ffm": "Learned: ranked by teacher, all features, far-from-mean prior (CE only)",
    "e2e_all_ffm": "Learned: end to end, all features, far-from-mean prior (CE only)",
    "rank_all+distill": "Learned: ranked by teacher, all features, from scratch, distilled",
    "e2e_all+distill": "Learned: end to end, all features, from scratch, distilled",
    "rank_audio+distill": "Learned: ranked by teacher, audio only, from scratch, distilled",
    "rank_all": "Learned: ranked by teacher, all features, from scratch (CE only)",
    "e2e_all": "Learned: end to end, all features, from scratch (CE only)",
}
TRAINING_FREE = ("feature_change", "far_from_mean", "feature_change+distill", "far_from_mean+distill")
TARGET_CLOSED = 0.9


def name(row: str) -> str:
  return ROW_NAMES.get(row, row)


def is_learned(row: str) -> bool:
  return row.startswith(("rank_", "e2e_", "labels"))


def values(records: Mapping[str, Mapping], key: Callable, family: str, seeds: Sequence[int], row: str, k: int,
           metric: str = "gap") -> List[float]:
  """The per-seed values of one row at k (only the seeds that ran)."""
  out = []
  for s in seeds:
    record = records.get(key(family, s, row, k))
    if record is not None and metric in record:
      out.append(float(record[metric]))
  return out


def accuracy_table(records, key, family, seeds, ks, rows) -> str:
  teacher = [float(records[f"{family}/seed{s}/teacher"]["gap"]) for s in seeds if f"{family}/seed{s}/teacher" in records]
  header = "| Row | " + " | ".join(f"k={k} GAP | k={k} mAP" for k in ks) + " |"
  lines = [header, "|:---|" + "---:|" * (2 * len(ks))]
  cells = []
  for k in ks:
    cells += [fmt(teacher) if k == ks[-1] else "", ""]
  lines.append("| Teacher-Skyline (all frames) | " + " | ".join(cells) + " |")
  for row in rows:
    cells = []
    for k in ks:
      cells += [fmt(values(records, key, family, seeds, row, k)),
                fmt(values(records, key, family, seeds, row, k, "map"))]
    lines.append(f"| {name(row)} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def cost_table(costs: Mapping[str, Mapping[int, Mapping[str, float]]], rows, ks) -> str:
  lines = ["| Row | k | FLOPs/video (whole forward) | of which scorer | frames read/video | KB read/video |",
           "|:---|---:|---:|---:|---:|---:|"]
  for row in rows:
    for k in ks:
      c = costs.get(row, {}).get(k)
      if c is None:
        continue
      lines.append(f"| {name(row)} | {k} | {c['flops'] / 1e6:.2f} M | {c['scorer_flops'] / 1e6:.2f} M | "
                   f"{c['frames_read']:.1f} | {c['bytes_read'] / 1024:.1f} |")
  return "\n".join(lines)


def paired(a: Sequence[float], b: Sequence[float]):
  """mean±sd of the per-seed difference a - b (same seeds, same order)."""
  n = min(len(a), len(b))
  return mean_std([x - y for x, y in zip(a[:n], b[:n])]) if n else (float("nan"), float("nan"))


def targets(records, key, family, seeds, ks, rows, *, anchor_k: int = 10) -> List[str]:
  """The issue's targets, each as one line with its figures."""
  out = []
  teacher = [float(records[f"{family}/seed{s}/teacher"]["gap"]) for s in seeds if f"{family}/seed{s}/teacher" in records]
  uniform_d = values(records, key, family, seeds, "uniform+distill", anchor_k)
  distilled = [r for r in rows if r.endswith("+distill") and r != "uniform+distill"]
  if teacher and uniform_d and distilled:
    best = max(distilled, key=lambda r: np.mean(values(records, key, family, seeds, r, anchor_k) or [-1]))
    gaps = values(records, key, family, seeds, best, anchor_k)
    t, u, g = np.mean(teacher), np.mean(uniform_d), np.mean(gaps)
    closed = (g - u) / (t - u) if t > u else float("inf")
    verdict = "passes the teacher" if g > t else f"closes {100 * closed:.0f}% of the gap"
    ok = g > t or closed >= TARGET_CLOSED
    out.append(f"- k={anchor_k}: best distilled selector row, {name(best)}: GAP {fmt(gaps)} vs distilled "
               f"Uniform-k {fmt(uniform_d)} and the teacher {fmt(teacher)}: {verdict} "
               f"({'met' if ok else 'missed'}: >= {100 * TARGET_CLOSED:.0f}% or above the teacher).")
  learned_rows = [r for r in rows if is_learned(r)]
  free_rows = [r for r in rows if r in TRAINING_FREE]
  for k in ks:
    if not learned_rows or not free_rows:
      break
    score = lambda r: np.mean(values(records, key, family, seeds, r, k) or [-1])  # pylint: disable=cell-var-from-lambda
    best_l, best_f = max(learned_rows, key=score), max(free_rows, key=score)
    la, fa = values(records, key, family, seeds, best_l, k), values(records, key, family, seeds, best_f, k)
    if not la or not fa:
      continue
    diff, sd = paired(la, fa)
    spread = max(mean_std(la)[1], mean_std(fa)[1])
    verdict = "beats it by more than the seed spread" if diff > spread else (
        "within the seed spread" if abs(diff) <= spread else "is below it by more than the seed spread")
    out.append(f"- k={k}: best learned row, {name(best_l)} ({fmt(la)}), vs best training-free row, {name(best_f)} "
               f"({fmt(fa)}): per-seed difference {diff:+.3f}±{sd:.3f}, seed spread {spread:.3f}: {verdict}.")
  return out


def recall_table(recall: Mapping[str, Mapping[int, Mapping[str, float]]], rows, ks) -> str:
  """Per row and k: the chosen frames' recall of the burst (event) and long (sustained) labels' evidence,
  and, on data with label-free segments, the share of the chosen frames that are label-free against the
  share of all real frames that are ('chosen / all')."""
  label_free = any(r.get("label_free_all") for row in recall.values() if isinstance(row, Mapping)
                   for r in row.values() if isinstance(r, Mapping))
  per_k = 3 if label_free else 2
  head = "".join(f" k={k} burst | k={k} long |" + (f" k={k} label-free chosen / all |" if label_free else "")
                 for k in ks)
  lines = ["| Row |" + head, "|:---|" + "---:|" * (per_k * len(ks))]
  for row in rows:
    if row not in recall:
      continue
    cells = []
    for k in ks:
      r = recall[row].get(k)
      if not r:
        cells += [""] * per_k
        continue
      cells += [f"{r['burst']:.2f}", f"{r['long']:.2f}"]
      if label_free:
        cells.append(f"{r.get('label_free_chosen', float('nan')):.2f} / {r.get('label_free_all', float('nan')):.2f}")
    lines.append(f"| {name(row)} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def pareto_points(records, key, family, seeds, ks, rows, costs, cost: str) -> List[Dict[str, Any]]:
  points = []
  for row in rows:
    for k in ks:
      gaps = values(records, key, family, seeds, row, k)
      c = costs.get(row, {}).get(k)
      if gaps and c:
        points.append({"row": row, "k": k, "gap": float(np.mean(gaps)), "cost": float(c[cost])})
  return points


def plot_pareto(points: Sequence[Mapping], *, path: str, xlabel: str, title: str) -> str:
  """GAP against a cost (log x), one colour per row, k annotated, the Pareto front dashed."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(12, 6))
  cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  colours: Dict[str, str] = {}
  for p in points:
    colour = colours.setdefault(p["row"], cycle[len(colours) % len(cycle)])
    marker = "o" if "+distill" in p["row"] else "s"
    ax.scatter(p["cost"], p["gap"], color=colour, marker=marker, label=name(p["row"]), zorder=3)
    ax.annotate(f"k={p['k']}", (p["cost"], p["gap"]), textcoords="offset points", xytext=(4, 3), fontsize=6)
  front = plots.pareto_front([dict(p, flops=p["cost"]) for p in points])
  ax.plot([p["cost"] for p in front], [p["gap"] for p in front], color="grey", linestyle="--", linewidth=1.0,
          label="Pareto front")
  handles, labels = ax.get_legend_handles_labels()
  unique = dict(zip(labels, handles))
  ax.legend(unique.values(), unique.keys(), fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))
  ax.set_xscale("log")
  ax.set_xlabel(xlabel)
  ax.set_ylabel("GAP@20 (eval set)")
  ax.set_title(title)
  ax.grid(True, which="both", alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=130)
  plt.close(fig)
  return path


def write_report(out: str, records: Mapping[str, Mapping], *, family: str, seeds: Sequence[int], ks: Sequence[int],
                 rows: Sequence[str], key: Callable, costs: Mapping[str, Mapping[int, Mapping[str, float]]],
                 command: str, preamble: Sequence[str] = (),
                 recall: Mapping[str, Mapping[int, Mapping[str, float]]] = None, report: str = "") -> str:
  """Writes <out>/[<report>_]tables.md and the two Pareto plots (same prefix); returns the tables' path."""
  prefix = f"{report}_" if report else ""
  rows = [r for r in rows if any(values(records, key, family, seeds, r, k) for k in ks)]
  parts = [f"# Which k frames: selectors on preset data, {family}, seeds {', '.join(map(str, seeds))}", "",
           f"Command: `{command}`.", *preamble, "",
           "## Accuracy (mean±sd over seeds)", "", accuracy_table(records, key, family, seeds, ks, rows), "",
           "## Cost per video (one network, this preset's sizes)", "", cost_table(costs, rows, ks), "",
           "FLOPs: XLA's count of the whole eval forward from uint8 frames (dequantize, select, scorer, model). "
           "Frames/bytes read: a fixed rule reads its k frames; a rule that looks at the frames reads every "
           "real frame (an audio-only scorer: the audio of every frame and the rest of the k chosen).", "",
           "## Targets", "", *targets(records, key, family, seeds, ks, rows), ""]
  if recall:
    parts += ["## Why: the chosen frames' recall of the evidence (seed 0, the bundled generator's plans)", "",
              recall_table(recall, rows, ks), "",
              "The share of (video, label) pairs whose label's evidence frames include at least one of the k "
              "frames the student sees: burst classes (one burst of 2-6 frames) and long classes (30-70% of the "
              "video). A diagnostic of this generator only (`paper/evidence_recall.py`).", ""]
    judged = recall.get("judgement")
    if judged:
      parts += [f"How well a frame judgement tells a burst's evidence frames from the other frames of its video "
                f"(AUC within a video, mean over {judged['videos']} eval videos with a burst label; 0.5 is chance): "
                f"the frozen teacher's single-frame agreement with the labels (the `rank` scorer's target) "
                f"{judged['teacher']:.3f}; the distance to the video's mean frame (`far_from_mean`) "
                f"{judged['far_from_mean']:.3f}.", ""]
  path = os.path.join(out, f"{prefix}tables.md")
  os.makedirs(out, exist_ok=True)
  with open(path, "w") as f:
    f.write("\n".join(parts))
  for cost, label, file in (("flops", "FLOPs per video (XLA, whole forward incl. scorer)", "pareto_flops.png"),
                            ("bytes_read", "bytes read per video", "pareto_bytes.png")):
    points = pareto_points(records, key, family, seeds, ks, rows, costs, cost)
    if points:
      plot_pareto(points, path=os.path.join(out, prefix + file), xlabel=label, title=f"GAP vs {label}")
  return path
