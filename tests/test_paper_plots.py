"""The two figures are readable: axes labelled, a legend naming every series, the teacher as a
horizontal reference line, error bars over seeds, and the Pareto front drawn through the right points."""
import matplotlib.image
import numpy as np
import pytest

from fewframes_jax.paper import plots

SERIES = {"Uniform-k": [(10, 0.70, 0.01), (6, 0.60, 0.02)],
          "Serial, L_rep, L_pred, L_CE": [(6, 0.65, 0.0), (10, 0.75, 0.005)]}


@pytest.fixture
def figures(monkeypatch):
  """Keeps each figure the module closes, to inspect what was drawn."""
  kept = []
  monkeypatch.setattr(plots.plt, "close", kept.append)
  return kept


def test_gap_vs_k_is_labelled_with_legend_and_teacher_line(tmp_path, figures):
  path = plots.plot_gap_vs_k([{"title": "hrnn", "series": SERIES, "teacher": (0.8, 0.004)}],
                             path=str(tmp_path / "g.png"))
  image = matplotlib.image.imread(path)
  assert image.shape[0] > 300 and image[..., :3].std() > 0.01
  (ax,) = figures[0].axes
  assert ax.get_xlabel().startswith("k") and "GAP" in ax.get_ylabel() and ax.get_title() == "hrnn"
  legend = [t.get_text() for t in ax.get_legend().get_texts()]
  assert legend[0].startswith("Teacher-Skyline") and "0.800" in legend[0]
  assert set(legend[1:]) == set(SERIES)
  horizontal = [l for l in ax.get_lines() if len(set(np.ravel(l.get_ydata()))) == 1 and l.get_linestyle() == ":"]
  assert len(horizontal) == 1 and np.ravel(horizontal[0].get_ydata())[0] == pytest.approx(0.8)
  # Each series is drawn sorted by k, with the given values.
  drawn = {c.get_label(): c.lines[0] for c in ax.containers}  # errorbar containers: (data line, caps, bars)
  np.testing.assert_allclose(np.asarray(drawn["Uniform-k"].get_xdata(), float), [6, 10])
  np.testing.assert_allclose(np.asarray(drawn["Uniform-k"].get_ydata(), float), [0.60, 0.70])
  assert drawn["Uniform-k"].get_linestyle() == "--" and drawn["Serial, L_rep, L_pred, L_CE"].get_linestyle() == "-"


def test_pareto_plot_front_axes_and_legend(tmp_path, figures):
  points = [dict(family="hrnn", kind="teacher", k=0, flops=4e7, gap=0.84, gap_std=0.0),
            dict(family="hrnn", kind="student", k=10, flops=7e6, gap=0.80, gap_std=0.0),
            dict(family="hrnn", kind="baseline", k=10, flops=7e6, gap=0.76, gap_std=0.0),
            dict(family="nextvlad", kind="teacher", k=0, flops=1.4e8, gap=0.93, gap_std=0.0),
            dict(family="lstm", kind="student", k=10, flops=9e6, gap=0.70, gap_std=0.0)]  # dominated
  plots.plot_pareto(points, path=str(tmp_path / "p.png"))
  (ax,) = figures[0].axes
  assert ax.get_xscale() == "log" and "FLOPs" in ax.get_xlabel() and "GAP" in ax.get_ylabel()
  legend = {t.get_text() for t in ax.get_legend().get_texts()}
  assert {"hrnn: teacher (all frames)", "hrnn: Serial student", "hrnn: Uniform-k, no teacher",
          "nextvlad: teacher (all frames)", "lstm: Serial student", "Pareto front"} == legend
  (front,) = [l for l in ax.get_lines() if l.get_label() == "Pareto front"]
  np.testing.assert_allclose(front.get_xdata(), [7e6, 4e7, 1.4e8])
  np.testing.assert_allclose(front.get_ydata(), [0.80, 0.84, 0.93])


def test_pareto_front_matches_a_naive_definition():
  rng = np.random.default_rng(1)
  points = [{"flops": float(f), "gap": float(g)} for f, g in zip(rng.integers(1, 20, 40), rng.uniform(0, 1, 40))]
  front = plots.pareto_front(points)
  naive = [p for p in points
           if not any((q["flops"] <= p["flops"] and q["gap"] > p["gap"]) or
                      (q["flops"] < p["flops"] and q["gap"] >= p["gap"]) for q in points)]
  assert sorted(map(id, front)) == sorted(map(id, naive))
  assert [p["flops"] for p in front] == sorted(p["flops"] for p in front)
  gaps = [p["gap"] for p in front]
  assert gaps == sorted(gaps)  # along the front, more compute buys more accuracy


def test_nothing_to_plot_is_an_error(tmp_path):
  with pytest.raises(ValueError, match="nothing to plot"):
    plots.plot_gap_vs_k([{"series": {}, "teacher": None}], path=str(tmp_path / "g.png"))
  with pytest.raises(ValueError, match="no points"):
    plots.plot_pareto([], path=str(tmp_path / "p.png"))
