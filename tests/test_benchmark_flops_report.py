"""The FLOPs table of a config (`main --mode=flops`): its rows are the teacher and the student at each
k, each costed like `flops.model_cost` of the same network; H-RNN students get ceil(k / 6) blocks."""
import math

import pytest

from configs import base
from fewframes_jax.metrics import flops as flops_lib
from fewframes_jax.benchmark import flops_report
from fewframes_jax import specs
from fewframes_jax.models import build_model

T, D, C = 24, 16, 6


def tiny_config(family):
  c = base.experiment(family, k=4, arg="tiny")
  c.data.max_frames, c.data.feature_sizes, c.data.num_classes = T, (12, 4), C
  c.teacher.hrnn.num_blocks = 4
  return c


def _cost(model_config, frames):
  return flops_lib.model_cost(build_model(specs.NetworkSpec.from_config(model_config), num_classes=C, feature_sizes=(12, 4)), frames=frames,
                              feature_dim=D)


def test_hrnn_rows_match_model_cost_with_ceil_k_over_6_blocks(fast_compile):
  config = tiny_config("hrnn")
  config.student.k = 7
  config.student.hrnn.num_blocks = 0  # unresolved ("derived from k"): each student gets its own
  rows = flops_report.flops_rows(config, ks=(13,))
  assert [r["frames"] for r in rows] == [T, 13, 7]  # the teacher, then the students by decreasing k
  assert [r["name"] for r in rows] == ["hrnn teacher", "hrnn student", "hrnn student"]
  teacher_flops, teacher_params = _cost(config.teacher, T)
  assert (rows[0]["flops"], rows[0]["params"]) == (teacher_flops, teacher_params)
  student = config.student.copy_and_resolve_references()
  student.hrnn.num_blocks = 3  # ceil(13 / 6)
  flops_13, params_13 = _cost(student, 13)
  assert (rows[1]["flops"], rows[1]["params"]) == (flops_13, params_13)
  student.hrnn.num_blocks = 1
  assert _cost(student, 13)[0] < flops_13  # the block count matters: 3 upper-LSTM steps, not 1
  for r in rows:
    assert r["ratio"] == pytest.approx(teacher_flops / r["flops"])
    assert math.isfinite(r["per_video"]) and r["per_frame"] > 0  # fitted over the 2 students


def test_default_ks_are_the_papers_and_the_report_prints_every_row(monkeypatch):
  costed = []

  def fake_cost(model, *, frames, feature_dim):  # 2 MFLOP per frame + 50 MFLOP per video
    costed.append((type(model.encoder).__name__, frames, feature_dim))
    return 2e6 * frames + 5e7, 1000

  monkeypatch.setattr(flops_lib, "model_cost", fake_cost)
  config = tiny_config("nextvlad")
  config.student.name = "netvlad"  # cross-family
  rows = flops_report.flops_rows(config)
  # The paper's (6, 10, 15, 20, 30) below T=24, and the config's k=4; the teacher at T.
  assert [r["frames"] for r in rows] == [T, 20, 15, 10, 6, 4]
  assert costed[0] == ("NeXtVLADEncoder", T, D) and {c[0] for c in costed[1:]} == {"GatedNetVLAD"}
  assert rows[-1]["ratio"] == pytest.approx((2e6 * T + 5e7) / (2e6 * 4 + 5e7))
  assert rows[-1]["per_video"] == pytest.approx(5e7) and rows[-1]["per_frame_ratio"] == pytest.approx(T / 4)
  text = flops_report.flops_report(config, ks=(10,))
  assert text.startswith(f"FLOPs per video (XLA cost analysis, eval forward, {C} classes, dtype float32)")
  table = [line.split("|")[1:3] for line in text.splitlines() if line.startswith("| nextvlad->netvlad")]
  assert [(name.strip(), int(frames)) for name, frames in table] == [
      ("nextvlad->netvlad teacher", T), ("nextvlad->netvlad student", 10), ("nextvlad->netvlad student", 4)]
