"""The summary's line of what the student keeps and saves: the numbers it is given, in one line."""
import pytest

from fewframes_jax.train import summary

RESULTS = {"teacher": {"gap": 0.8}, "student": {"gap": 0.78}}
FLOPS = {"teacher": 700e6, "student": 25e6}


def test_kept_and_saved_holds_the_given_numbers():
  kept = summary.kept_and_saved(RESULTS, FLOPS, {"teacher": 1000.0, "student": 12500.0})
  assert kept["gap_kept"] == pytest.approx(0.975)
  assert kept["flop_ratio"] == pytest.approx(28.0)
  assert kept["speedup"] == pytest.approx(12.5)
  assert kept["gap"] == {"teacher": 0.8, "student": 0.78}
  assert kept["videos_per_sec"] == {"teacher": 1000.0, "student": 12500.0}
  assert kept["line"] == (
      "The student keeps 97.5% of the teacher's GAP (0.7800 vs 0.8000) with 28.0x fewer FLOPs per video "
      "(25.0 M vs 700.0 M) and runs 12.5x as many videos/s (12,500 vs 1,000, eval forward measured on this "
      "machine).")
  assert "\n" not in kept["line"]


def test_kept_and_saved_without_a_measured_speed_or_a_second_network():
  kept = summary.kept_and_saved(RESULTS, FLOPS)
  assert kept["speedup"] is None and kept["videos_per_sec"] is None
  assert kept["line"].endswith("(25.0 M vs 700.0 M).") and "videos/s" not in kept["line"]
  assert summary.kept_and_saved({"teacher": {"gap": 0.8}}, {"teacher": 700e6}) is None
  assert summary.kept_and_saved({"student": {"gap": 0.7}}, {"student": 25e6}) is None
