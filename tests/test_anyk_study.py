"""The any-k study (`paper/anyk_study.py`): the default study keeps the keys of its committed cells, each
variant (budgets per step, order, family, preset) is keyed and reported apart with the config it names,
and real data reaches every run's config."""
import dataclasses

import pytest

from configs import base
from configs import paper as paper_configs
from fewframes_jax.paper import anyk_study

STUDY = anyk_study.AnyKStudy(out="/tmp/unused", teachers="/tmp/unused/runs", preset=paper_configs.PRESETS["long"],
                             cell_config=paper_configs.cell_config)


def test_the_default_study_keeps_its_committed_keys():
  assert STUDY.run_key(0, 30, 6) == "hrnn/seed0/serial_pred_ce_coarse_to_fine_anyk6-30"
  assert STUDY.run_key(2, 10) == "hrnn/seed2/serial_pred_ce_coarse_to_fine_k10"
  assert STUDY.variant == ""
  p6 = dataclasses.replace(STUDY, budgets_per_step=6)
  assert p6.run_key(0, 30, 6) == "hrnn/seed0/serial_pred_ce_coarse_to_fine_anyk6-30_p6"
  assert p6.run_key(0, 30) == "hrnn/seed0/serial_pred_ce_coarse_to_fine_k30"  # fixed runs are shared
  assert p6.variant == "_p6"
  assert dataclasses.replace(STUDY, preset=paper_configs.PRESETS["small"]).variant == "_small"


@pytest.mark.parametrize("order,family", [("far_from_mean", "hrnn"), ("coarse_to_fine", "nextvlad"),
                                          ("far_from_mean", "nextvlad"), ("learned", "hrnn")])
def test_each_variant_has_its_own_keys_outputs_and_config(order, family):
  study = dataclasses.replace(STUDY, order=order, family=family)
  key = study.run_key(1, 30, 6)
  assert key == f"{family}/seed1/serial_pred_ce_{order}_anyk6-30"
  assert study.variant == ("" if order == "coarse_to_fine" else f"_{order}") + ("" if family == "hrnn" else f"_{family}")
  anyk = study.config(1, 30, k_min=6, teacher_workdir="/teacher")
  fixed = study.config(1, 10, k_min=0, teacher_workdir="/teacher")
  for config in (anyk, fixed):
    assert config.student.name == config.teacher.name == family and config.student.sampling == order
    assert config.mode == "serial" and config.teacher_workdir == "/teacher" and config.seed == 1
  assert anyk.student.k_min == 6 and anyk.student.k == 30 and anyk.student.exits == "6,10,15,20,30"
  assert fixed.student.get("k_min") is None and fixed.student.k == 10
  for config in (anyk, fixed):  # the learned order: the selector study's best learned scorer
    want = anyk_study.LEARNED_SELECTOR if order == "learned" else {}
    assert {key: config.student.selector[key] for key in want} == want
    defaults = base.student_config(family, k=config.student.k).selector.to_dict()
    assert order == "learned" or config.student.selector.to_dict() == defaults  # no selector of its own


def test_real_data_reaches_every_run_and_drops_the_generator_breakdown(tmp_path):
  data = dict(train_pattern="/yt8m/train*.tfrecord", eval_pattern="/yt8m/validate*.tfrecord", num_classes=3862,
              num_train_examples=3888919)
  study = dataclasses.replace(STUDY, data=data, seeds=(0, 1), teachers=str(tmp_path / "runs"))
  runs = list(study.runs())
  assert len(runs) == 2 * (1 + len(study.ks))
  for _, config in runs:
    assert {key: config.data[key] for key in data} == data
    assert config.teacher_workdir.startswith(str(tmp_path / "runs" / "hrnn"))
  assert study.class_groups() is None
  groups = STUDY.class_groups()  # the bundled data: its burst and long classes
  assert set(groups) == {"burst", "long"} and not (groups["burst"] & groups["long"]).any()
