"""Tests for fewframes_jax.specs: the run's typed specs read every setting of a config once, cover every
field of its blocks, round-trip through the saved JSON, and name a field a saved run lacks."""
import dataclasses
import json

import pytest

from configs import base
from fewframes_jax import specs
from fewframes_jax.errors import ConfigError

# Config fields that `run_config.resolve` turns into others (the bundled and TFDS data become patterns
# and counts), so no spec holds them.
RESOLVED_AWAY = {"data": {"bundled", "tfds_name", "tfds_data_dir", "tfds_train_split", "tfds_eval_split"}}
# The student's settings that its spec holds typed (parsed, or derived from several fields).
STUDENT_TYPED = {"k_min": "budgets", "budgets_per_step": "budgets", "exits": "exits", "exit": "exit"}


def _names(cls):
  return {f.name for f in dataclasses.fields(cls)}


@pytest.mark.parametrize("family", ["hrnn", "nextvlad", "netvlad", "lstm"])
def test_every_field_of_every_block_is_in_its_spec_with_the_configs_value(family):
  c = base.experiment(family, k=10, arg="tiny")
  spec = specs.RunSpec.from_config(c)
  for block, cls in (("data", specs.DataSpec), ("loss", specs.LossSpec), ("optim", specs.OptimSpec),
                     ("train", specs.TrainSpec)):
    assert set(c[block].keys()) - RESOLVED_AWAY.get(block, set()) == _names(cls), block
    for name in _names(cls):
      want = c[block][name]
      assert getattr(getattr(spec, block), name) == (tuple(want) if isinstance(want, (list, tuple)) else want)
  assert set(c.teacher.keys()) == _names(specs.NetworkSpec)
  assert set(c.student.keys()) == (_names(specs.StudentSpec) - {"budgets", "budget", "exits", "exit"}
                                   | set(STUDENT_TYPED) | {"budget"})
  for net in ("teacher", "student"):
    for fam, cls in specs.FAMILY_SPECS.items():
      assert dataclasses.asdict(getattr(getattr(spec, net), fam)) == c[net][fam].to_dict()
  assert (spec.mode, spec.seed, spec.dtype, spec.student.k, spec.student.sampling) == (
      c.mode, c.seed, c.dtype, 10, c.student.sampling)


def test_a_fixed_k_student_has_no_budgets_and_an_anyk_one_has_them_with_its_exits():
  fixed = specs.RunSpec.from_config(base.experiment("hrnn", k=30, arg="tiny")).student
  assert (fixed.budgets, fixed.exits, fixed.exit, fixed.budget) == (None, (), None, None)
  c = base.experiment("hrnn", k=30, arg="tiny,k_min=6,sampling=far_from_mean")
  c.student.exit, c.student.budget = "stable:0.9", 10
  anyk = specs.RunSpec.from_config(c).student
  assert anyk.budgets == specs.Budgets(6, 30, c.student.budgets_per_step, "far_from_mean")
  assert anyk.exits == (6, 10, 15, 20, 30) and anyk.exit == specs.ExitPolicy("stable", 0.9) and anyk.budget == 10
  c.student.exits, c.student.budgets_per_step = "8,30", 3
  anyk = specs.RunSpec.from_config(c).student
  assert anyk.exits == (8, 30) and anyk.budgets.per_step == 3
  c.student.exits = "30,8"
  with pytest.raises(ValueError, match="strictly increasing"):
    specs.RunSpec.from_config(c)


def test_the_selector_reads_the_config_and_a_run_saved_with_unset_fields_reads_what_they_meant():
  c = base.experiment("hrnn", k=10, arg="tiny,sampling=judged")
  selector = specs.RunSpec.from_config(c).student.selector
  assert (selector.train, selector.prior, selector.hidden, selector.streams) == ("labels", "far_from_mean", 4, "all")
  assert specs.RunSpec.from_config(c).student.learned
  # A run saved when these fields were placeholders: None / '' (or no selector at all) read as then.
  old = c.to_dict()
  old["student"]["selector"] = {"train": "labels", "prior": "far_from_mean", "streams": "", "hidden": None}
  old["student"]["budgets_per_step"] = None
  old["student"]["k_min"] = 4
  spec = specs.RunSpec.from_config(old).student
  assert spec.selector == selector and spec.budgets.per_step == c.student.budgets_per_step
  del old["student"]["selector"]
  assert specs.RunSpec.from_config(old).student.selector == specs.RunSpec.from_config(
      base.experiment("hrnn", k=10, arg="tiny,sampling=learned")).student.selector


def test_what_unset_fields_meant_is_what_configs_base_gives_now():
  c = base.experiment("nextvlad", k=10, arg="tiny")
  for path, value in specs.FORMERLY_UNSET.items():
    block = c
    for name in path.split("."):
      block = block[name]
    assert block == value and type(block) is type(value), path


def test_the_saved_config_rebuilds_the_same_spec():
  c = base.experiment("nextvlad", k=12, arg="tiny,mode=serial,k_min=4,sampling=coarse_to_fine")
  c.teacher_workdirs = "/a, /b"
  spec = specs.RunSpec.from_config(c)
  assert spec.teacher_workdirs == ("/a", "/b")
  again = specs.RunSpec.from_config(json.loads(json.dumps(spec.saved)))  # as a checkpoint stores it
  assert again == spec and again.saved == json.loads(json.dumps(spec.saved))
  assert hash(again) == hash(spec)  # frozen all the way down (usable as a static jit argument)
  with pytest.raises(dataclasses.FrozenInstanceError):
    spec.student.k = 3  # pylint: disable=assignment-from-no-return


def test_a_saved_run_without_a_field_names_it():
  saved = specs.RunSpec.from_config(base.experiment("hrnn", k=10, arg="tiny")).saved
  del saved["data"]["check_release"]
  with pytest.raises(ConfigError, match="no check_release for DataSpec"):
    specs.RunSpec.from_config(saved)


def test_the_number_of_steps_is_num_steps_or_the_epochs_over_the_examples():
  c = base.experiment("hrnn", k=10, arg="tiny")
  c.train.num_steps, c.train.num_epochs, c.data.batch_size = 0, 2.0, 8
  c.data.num_train_examples, c.data.train_fraction = 100, 0.5  # 2 x 50 / 8 -> 13 steps
  assert specs.RunSpec.from_config(c).num_train_steps == 13
  c.train.num_steps = 5
  assert specs.RunSpec.from_config(c).num_train_steps == 5
