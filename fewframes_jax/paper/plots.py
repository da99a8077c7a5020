"""The two figures of the paper's sweep (matplotlib, Agg backend: no display needed).

`plot_gap_vs_k`: GAP against k for each method (baselines dashed, teacher-student rows solid), the
Teacher-Skyline as a horizontal reference line, error bars over seeds when there are several.
`plot_pareto`: GAP against FLOPs per video (log scale) for every family and k, with the Pareto front
(the points that no other point beats on both GAP and FLOPs).
The inputs are the plain structures of `render.gap_vs_k_series` and `render.pareto_points`.
"""
from typing import Dict, List, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  pylint: disable=g-import-not-at-top

_MARKERS = "osD^v<>phX*P"


def _save(fig, path: str) -> str:
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def _draw_gap_vs_k(ax, series, teacher, title: str) -> None:
  # Baselines and teacher-student rows get colours from two different palettes, so no two lines share
  # a colour and a line style.
  palettes = {True: plt.get_cmap("tab10").colors, False: plt.get_cmap("Dark2").colors}
  used = {True: 0, False: 0}
  for i, (label, points) in enumerate(series.items()):
    points = sorted(points)
    baseline = label.endswith("-k")
    colour = palettes[baseline][used[baseline] % len(palettes[baseline])]
    used[baseline] += 1
    ax.errorbar([p[0] for p in points], [p[1] for p in points], yerr=[p[2] for p in points], label=label,
                color=colour, marker=_MARKERS[i % len(_MARKERS)], markersize=4, capsize=2,
                linestyle="--" if baseline else "-", linewidth=1.0 if baseline else 1.6)
  if teacher is not None:
    ax.axhline(teacher[0], color="black", linestyle=":", linewidth=1.8,
               label=f"Teacher-Skyline (all frames), GAP {teacher[0]:.3f}")
  all_ks = sorted({p[0] for points in series.values() for p in points})
  if all_ks:
    ax.set_xticks(all_ks)
  ax.set_xlabel("k (frames seen by the student)")
  ax.set_ylabel("GAP@20 (eval set)")
  ax.set_title(title)
  ax.grid(True, alpha=0.3)
  ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)


def plot_gap_vs_k(panels: Sequence[Mapping], *, path: str) -> str:
  """Writes the GAP-vs-k figure (one panel per family) to `path` (PNG) and returns `path`.

  Each panel: {'title', 'series': label -> [(k, mean GAP, sd over seeds), ...], 'teacher': (mean GAP,
  sd) or None}. Labels ending in '-k' are the no-teacher baselines (dashed); the Teacher-Skyline is a
  horizontal dotted line.
  """
  if not panels or not any(p["series"] or p["teacher"] is not None for p in panels):
    raise ValueError("plot_gap_vs_k: nothing to plot (no series and no teacher)")
  fig, axes = plt.subplots(1, len(panels), figsize=(11.5 * len(panels), 5.5), squeeze=False)
  for ax, panel in zip(axes[0], panels):
    _draw_gap_vs_k(ax, panel["series"], panel["teacher"], panel.get("title") or "GAP vs number of frames k")
  return _save(fig, path)


def pareto_front(points: Sequence[Mapping]) -> List[Mapping]:
  """The points not dominated by another (fewer-or-equal FLOPs and higher-or-equal GAP, one strictly),
  sorted by FLOPs."""
  front = []
  for p in points:
    dominated = any(q["flops"] <= p["flops"] and q["gap"] >= p["gap"] and
                    (q["flops"] < p["flops"] or q["gap"] > p["gap"]) for q in points)
    if not dominated:
      front.append(p)
  return sorted(front, key=lambda p: p["flops"])


def plot_pareto(points: Sequence[Mapping], *, path: str, title: str = "") -> str:
  """Writes the GAP-vs-FLOPs figure to `path` (PNG) and returns `path`.

  points: {'family', 'kind' ('teacher' | 'student' | 'baseline'), 'k', 'flops', 'gap', 'gap_std'}.
  Families get a colour, kinds a marker (teacher: star, distilled student: filled circle, Uniform-k
  baseline without teacher: hollow square); students are annotated with k.
  """
  if not points:
    raise ValueError("plot_pareto: no points (no cell has both a GAP and a FLOPs count)")
  fig, ax = plt.subplots(figsize=(11.5, 5.5))
  colours: Dict[str, str] = {}
  cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  styles = {"teacher": dict(marker="*", s=160), "student": dict(marker="o", s=45),
            "baseline": dict(marker="s", s=40, facecolors="none")}
  names = {"teacher": "teacher (all frames)", "student": "Serial student", "baseline": "Uniform-k, no teacher"}
  for p in points:
    colour = colours.setdefault(p["family"], cycle[len(colours) % len(cycle)])
    style = dict(styles[p["kind"]])
    face = style.pop("facecolors", colour)
    ax.scatter(p["flops"], p["gap"], color=colour, facecolors=face, edgecolors=colour, zorder=3,
               label=f"{p['family']}: {names[p['kind']]}", **style)
    if p["kind"] != "teacher":
      ax.annotate(f"k={p['k']}", (p["flops"], p["gap"]), textcoords="offset points", xytext=(4, 3), fontsize=6)
  front = pareto_front(points)
  ax.plot([p["flops"] for p in front], [p["gap"] for p in front], color="grey", linestyle="--",
          linewidth=1.0, zorder=2, label="Pareto front")
  handles, labels = ax.get_legend_handles_labels()
  unique = dict(zip(labels, handles))  # one legend entry per (family, kind)
  ax.legend(unique.values(), unique.keys(), fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0),
            borderaxespad=0.0)
  ax.set_xscale("log")
  ax.set_xlabel("FLOPs per video (XLA cost analysis, eval forward pass)")
  ax.set_ylabel("GAP@20 (eval set)")
  ax.set_title(title or "Accuracy vs compute across families and k")
  ax.grid(True, which="both", alpha=0.3)
  return _save(fig, path)
