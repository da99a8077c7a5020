"""Tests for launch/anyk_study.py: the default study keeps the keys of its committed cells, and each
variant (budgets per step, order, family) is keyed and reported apart with the config it names."""
from absl import flags
from absl.testing import flagsaver
import pytest

from launch import anyk_study

FLAGS = flags.FLAGS


@pytest.fixture(autouse=True)
def parsed_flags():
  if not FLAGS.is_parsed():
    FLAGS(["anyk_study", "--out=/tmp/unused"])
  with flagsaver.flagsaver():
    yield


def test_the_default_study_keeps_its_committed_keys():
  assert anyk_study.run_key(0, 30, 6) == "hrnn/seed0/serial_pred_ce_coarse_to_fine_anyk6-30"
  assert anyk_study.run_key(2, 10) == "hrnn/seed2/serial_pred_ce_coarse_to_fine_k10"
  assert anyk_study._variant() == ""  # pylint: disable=protected-access
  FLAGS.budgets_per_step = 6
  assert anyk_study.run_key(0, 30, 6) == "hrnn/seed0/serial_pred_ce_coarse_to_fine_anyk6-30_p6"
  assert anyk_study.run_key(0, 30) == "hrnn/seed0/serial_pred_ce_coarse_to_fine_k30"  # fixed runs are shared
  assert anyk_study._variant() == "_p6"  # pylint: disable=protected-access


@pytest.mark.parametrize("order,family", [("far_from_mean", "hrnn"), ("coarse_to_fine", "nextvlad"),
                                          ("far_from_mean", "nextvlad"), ("learned", "hrnn")])
def test_each_variant_has_its_own_keys_outputs_and_config(order, family):
  FLAGS.order, FLAGS.family = order, family
  key = anyk_study.run_key(1, 30, 6)
  assert key == f"{family}/seed1/serial_pred_ce_{order}_anyk6-30"
  suffix = anyk_study._variant()  # pylint: disable=protected-access
  assert suffix == ("" if order == "coarse_to_fine" else f"_{order}") + ("" if family == "hrnn" else f"_{family}")
  anyk = anyk_study.study_config(1, 30, k_min=6, teacher_workdir="/teacher")
  fixed = anyk_study.study_config(1, 10, k_min=0, teacher_workdir="/teacher")
  for config in (anyk, fixed):
    assert config.student.name == config.teacher.name == family and config.student.sampling == order
    assert config.mode == "serial" and config.teacher_workdir == "/teacher" and config.seed == 1
  assert anyk.student.k_min == 6 and anyk.student.k == 30 and anyk.student.exits == "6,10,15,20,30"
  assert fixed.student.get("k_min") is None and fixed.student.k == 10
  for config in (anyk, fixed):  # the learned order: the selector study's best learned scorer
    want = anyk_study.LEARNED_SELECTOR if order == "learned" else {}
    assert {key: config.student.selector[key] for key in want} == want
    assert order == "learned" or not any(config.student.selector[key] for key in ("train", "streams", "prior"))
