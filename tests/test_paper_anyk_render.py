"""Tests for fewframes_jax.paper.anyk_render: the study's tables and operating points from synthetic curves."""
import os

from fewframes_jax.paper import anyk_render


def _curves():
  """Two seeds; budgets 6 and 30; a stable rule at two thresholds."""
  def rows(shift):
    return [
        {"rule": "budget", "threshold": 6, "gap": 0.50 + shift, "mean_frames": 6.0, "mean_flops": 4e6,
         "gap_burst": 0.1, "frames_burst": 6.0},
        {"rule": "budget", "threshold": 30, "gap": 0.60 + shift, "mean_frames": 30.0, "mean_flops": 2e7,
         "gap_burst": 0.2, "frames_burst": 30.0},
        {"rule": "stable", "threshold": 0.8, "gap": 0.598 + shift, "mean_frames": 12.0, "mean_flops": 1e7,
         "gap_burst": 0.15, "frames_burst": 14.0},
        {"rule": "stable", "threshold": 0.9, "gap": 0.59 + shift, "mean_frames": 9.0, "mean_flops": 8e6,
         "gap_burst": 0.12, "frames_burst": 10.0},
    ]
  return {0: {"rows": rows(0.0)}, 1: {"rows": rows(0.002)}}


def test_budget_table_pairs_each_seed_with_its_fixed_student():
  text = anyk_render.budget_table([6, 30], {6: [0.49, 0.49], 30: [0.61, 0.60]}, _curves(), {6: [0.52, 0.53]})
  row6 = next(line for line in text.splitlines() if line.startswith("| 6 |"))
  assert "0.490±0.000" in row6 and "0.501±0.001" in row6 and "2/2" in row6 and "0.525±0.007" in row6
  row30 = next(line for line in text.splitlines() if line.startswith("| 30 |"))
  assert "1/2" in row30 and "20.00 M" in row30  # seed 0: 0.600 < 0.61; seed 1: 0.602 >= 0.60
  assert "fixed-k students (coarse-to-fine)" in text
  assert "fixed-k students (far-from-mean)" in anyk_render.budget_table([6], {6: [0.5]}, _curves(), {}, "far_from_mean")


def test_exit_table_marks_the_points_that_meet_the_target_and_best_points_finds_them():
  fixed = [0.60, 0.60]
  text = anyk_render.exit_table(_curves(), fixed, groups=("burst",))
  stable08 = next(line for line in text.splitlines() if line.startswith("| stable | 0.8 |"))
  assert "✓" in stable08 and "| 12.0 |" in stable08 and "| 14.0 |" in stable08  # −0.001 on the mean, 12 frames
  stable09 = next(line for line in text.splitlines() if line.startswith("| stable | 0.9 |"))
  assert "✓" not in stable09  # −0.009
  best = anyk_render.best_points(_curves(), fixed)
  assert best["stable/within"]["threshold"] == 0.8 and best["stable/at_budget"]["threshold"] == 0.8


def test_the_figure_is_written(tmp_path):
  path = anyk_render.plot(str(tmp_path / "curve.png"), [6, 30], {6: [0.49, 0.5], 30: [0.6, 0.61]}, _curves())
  assert os.path.getsize(path) > 1000
