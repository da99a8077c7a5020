"""The cached runs shared by the paper sweep and the studies: config hashes, the cache's stale policy, the
layout, and a run cached, served, refused when stale and stopped by a preemption signal."""
import dataclasses
import json
import os

import ml_collections
import pytest

from configs import paper as paper_configs
from fewframes_jax import specs
from fewframes_jax.errors import UserError
from fewframes_jax.paper import grid as grid_lib
from fewframes_jax.paper import run_cache

SMALL = paper_configs.PRESETS["small"]


def _config(cell, where=lambda key: "/runs/" + key):
  return paper_configs.cell_config(cell, SMALL, workdir_of=where)


def test_config_hash_ignores_where_dependencies_live_not_what_the_cell_is():
  serial = grid_lib.distill_cell("hrnn", 2, "serial", "rep", 10)
  moved = _config(serial, lambda key: "/x/" + key)
  same = _config(serial)
  other = _config(grid_lib.distill_cell("hrnn", 3, "serial", "rep", 10))
  assert moved.teacher_workdir != same.teacher_workdir
  assert run_cache.config_hash(moved) == run_cache.config_hash(same) != run_cache.config_hash(other)
  # ... and a retrained teacher (another dependency hash) invalidates its students.
  assert run_cache.config_hash(same, ["aaaa"]) != run_cache.config_hash(same, ["bbbb"]) != run_cache.config_hash(same)


def test_config_hash_keeps_cells_valid_when_an_unset_field_is_added():
  """A config field added later with an unset default (None or '': a feature that is off) leaves every
  cached cell's hash as it was; a set value of it, or a changed existing value, does not."""
  config = _config(grid_lib.baseline_cell("hrnn", 0, 10, "uniform"))
  before = run_cache.config_hash(config)
  config.student.new_feature = ""
  config.data.another = None
  config.student.new_group = ml_collections.ConfigDict({"mode": "", "width": None})  # a group, all unset
  assert run_cache.config_hash(config) == before
  config.student.new_group.width = 3
  assert run_cache.config_hash(config) != before
  config.student.new_group.width = None
  config.student.new_feature = "on"
  assert run_cache.config_hash(config) != before
  config.student.new_feature = ""
  config.data.tfds_eval_split = "test"  # a setting of the TFDS source, which is off
  assert run_cache.config_hash(config) == before
  config.data.tfds_name = "yt8m_frame_level/2018"  # on: it and its settings shape the run
  with_tfds = run_cache.config_hash(config)
  config.data.tfds_eval_split = "validation"
  assert before != with_tfds != run_cache.config_hash(config)
  config.data.tfds_name = ""
  config.optim.clip_mode = "global"
  assert run_cache.config_hash(config) != before


def test_run_cache_serves_matching_records_and_refuses_or_clears_stale_ones(tmp_path):
  layout = run_cache.Layout(str(tmp_path))
  cell = grid_lib.baseline_cell("hrnn", 0, 10, "uniform")
  logs = []
  cache = run_cache.RunCache(layout, log=logs.append)
  assert cache.lookup(cell.key, "abc") is None
  stored = cache.store(cell.key, "abc", {"gap": 0.5}, cell=dataclasses.asdict(cell))
  assert stored["key"] == cell.key and stored["cell"]["sampling"] == "uniform"
  as_json = json.loads(json.dumps(stored))  # tuples read back as lists
  assert json.load(open(layout.cell(cell.key))) == as_json == cache.lookup(cell.key, "abc")
  os.makedirs(os.path.join(layout.run(cell.key), "checkpoints"))
  with pytest.raises(UserError, match="uniform_k10.json: cached result of another config"):
    cache.lookup(cell.key, "def")
  assert os.path.exists(layout.cell(cell.key))  # refusing deletes nothing
  recompute = run_cache.RunCache(layout, recompute_stale=True, log=logs.append)
  assert recompute.lookup(cell.key, "def") is None
  assert not os.path.exists(layout.cell(cell.key)) and not os.path.exists(layout.run(cell.key))
  assert logs == [f"{cell.key}: stale cache entry, recomputing"]


def test_layout_prefixes_only_the_report_files(tmp_path):
  named = run_cache.Layout(str(tmp_path), "seeds3")
  assert named.report("tables.md") == str(tmp_path / "seeds3_tables.md")
  assert named.cell("a/b") == str(tmp_path / "cells" / "a/b.json")
  assert run_cache.Layout(str(tmp_path)).report("pareto.png") == str(tmp_path / "pareto.png")


def _fake_loop(monkeypatch, calls, *, preempted=False):
  from fewframes_jax.train import loop  # pylint: disable=g-import-not-at-top

  def train_and_evaluate(config, workdir):
    calls.append(workdir)
    return {"preempted": preempted, "step": 7, "eval": {"student": {"gap": 0.25 + len(calls)},
                                                         "teacher": {"gap": 0.75}}}

  monkeypatch.setattr(loop, "train_and_evaluate", train_and_evaluate)


def test_a_run_is_trained_once_then_served_and_a_report_trains_nothing(tmp_path, monkeypatch):
  calls = []
  _fake_loop(monkeypatch, calls)
  logs = []
  cache = run_cache.RunCache(run_cache.Layout(str(tmp_path)), log=logs.append)
  config = _config(grid_lib.baseline_cell("hrnn", 0, 10, "uniform"))
  assert cache.result("hrnn/seed0/a", config, train=False) is None and calls == [] and logs == []
  first = cache.result("hrnn/seed0/a", config, extend=lambda r: dict(r, flops=5.0))
  assert (first["gap"], first["teacher_gap"], first["steps"], first["frames"], first["flops"]) == (1.25, 0.75, 7, 10, 5.0)
  assert calls == [str(tmp_path / "runs" / "hrnn/seed0/a")]
  assert cache.result("hrnn/seed0/a", config) == first and len(calls) == 1  # served from the cache
  assert logs == ["hrnn/seed0/a: GAP 1.2500 (0 s)", "hrnn/seed0/a: cached, GAP 1.2500"]
  config.optim.learning_rate *= 2
  with pytest.raises(UserError, match="cached result of another config"):
    cache.result("hrnn/seed0/a", config)


def test_a_preempted_run_is_not_cached(tmp_path, monkeypatch):
  calls = []
  _fake_loop(monkeypatch, calls, preempted=True)
  cache = run_cache.RunCache(run_cache.Layout(str(tmp_path)))
  config = _config(grid_lib.baseline_cell("hrnn", 0, 10, "uniform"))
  with pytest.raises(run_cache.RunPreempted, match="preemption signal at step 7"):
    cache.result("k", config)
  assert not os.path.exists(cache.layout.cell("k"))


def _as_placeholders(config):
  """`config` as configs/base.py built it before its formerly unset defaults became values."""
  old = ml_collections.ConfigDict(config.to_dict())
  for path in specs.FORMERLY_UNSET:
    *parents, name = path.split(".")
    block = old
    for parent in parents:
      block = block[parent]
    if block[name] == specs.FORMERLY_UNSET[path]:
      with block.ignore_type():
        block[name] = "" if isinstance(block[name], str) else None
  return old


def test_defaults_that_were_once_unset_keep_the_hash_of_the_cells_cached_then():
  uniform = _config(grid_lib.baseline_cell("hrnn", 0, 10, "uniform"))
  assert run_cache.config_hash(uniform) == run_cache.config_hash(_as_placeholders(uniform))
  # A learned row names its training and streams (as every cached learned run did); the rest at defaults.
  learned = _config(grid_lib.distill_cell("hrnn", 0, "serial", "pred_ce", 10))
  learned.student.sampling = "learned"
  old = _as_placeholders(learned)
  old.student.selector.train, old.student.selector.streams = "rank", "all"
  assert run_cache.config_hash(learned) == run_cache.config_hash(old)
  for field, value in (("hidden", 32), ("prior", "far_from_mean"), ("train", "labels")):
    changed = ml_collections.ConfigDict(learned.to_dict())
    changed.student.selector[field] = value
    assert run_cache.config_hash(changed) != run_cache.config_hash(learned), field
  anyk = _config(grid_lib.distill_cell("hrnn", 0, "serial", "pred_ce", 30))
  anyk.student.k_min, anyk.student.sampling = 6, "coarse_to_fine"
  assert run_cache.config_hash(anyk) == run_cache.config_hash(_as_placeholders(anyk))
  anyk.student.budgets_per_step = 6
  assert run_cache.config_hash(anyk) != run_cache.config_hash(_with_per_step(anyk, 4))
  # A selector's settings shape nothing while the student's frames are not learned.
  uniform.student.selector.hidden = 32
  assert run_cache.config_hash(uniform) == run_cache.config_hash(_as_placeholders(uniform))


def _with_per_step(config, per_step):
  copy = ml_collections.ConfigDict(config.to_dict())
  copy.student.budgets_per_step = per_step
  return copy


def test_a_result_records_the_teacher_it_read_and_is_stale_once_that_teacher_changes(tmp_path, monkeypatch):
  """A study's run reads the sweep's teacher from another cache: its hash is kept beside the config hash;
  a result cached before it was recorded is served as before; a retrained teacher makes a result stale,
  and what was computed from the old result (an exit curve) no longer belongs to the new one."""
  sweep = run_cache.Layout(str(tmp_path / "sweep"))
  teacher_key = grid_lib.teacher_cell("hrnn", 0).key
  student = _config(grid_lib.distill_cell("hrnn", 0, "serial", "pred_ce", 10))
  baseline = _config(grid_lib.baseline_cell("hrnn", 0, 10, "uniform"))
  assert run_cache.teacher_reads(student, sweep, teacher_key) == []  # no teacher cached there
  run_cache.write_json(sweep.cell(teacher_key), {"config_hash": "t1", "gap": 0.6})
  assert run_cache.teacher_reads(student, sweep, teacher_key) == ["t1"]
  assert run_cache.teacher_reads(baseline, sweep, teacher_key) == []  # a run without a teacher reads none
  trained = []
  monkeypatch.setattr(run_cache, "train_run", lambda config, workdir, evaluated: trained.append(workdir) or
                      {"gap": 0.5, "seconds": 1.0})
  study = run_cache.Layout(str(tmp_path / "study"))
  cache = run_cache.RunCache(study, log=lambda message: None)
  digest = run_cache.config_hash(student)
  legacy = cache.store("s", digest, {"gap": 0.4})  # cached before teachers were recorded
  assert cache.result("s", student, reads=["t1"]) == legacy and not trained
  assert run_cache.READ_HASHES not in run_cache.read_json(study.cell("s"))  # a read writes nothing
  curve = dict(run_cache.result_stamp(legacy), points=[])  # computed from it
  recompute = run_cache.RunCache(study, recompute_stale=True, log=lambda message: None)
  os.remove(study.cell("s"))
  first = recompute.result("s", student, reads=["t1"])
  assert trained == [study.run("s")] and first[run_cache.READ_HASHES] == ["t1"]
  assert cache.result("s", student, reads=["t1"]) == first and len(trained) == 1
  assert run_cache.same_result(curve, first)  # an entry from before read hashes: the config hash decides
  curve = dict(run_cache.result_stamp(first), points=[])
  with pytest.raises(UserError, match="a teacher it reads was retrained"):
    cache.result("s", student, reads=["t2"])
  second = recompute.result("s", student, reads=["t2"])
  assert len(trained) == 2 and second[run_cache.READ_HASHES] == ["t2"]
  assert second["config_hash"] == first["config_hash"] == digest  # the config hash never holds the teacher's
  assert not run_cache.same_result(curve, second) and run_cache.same_result(curve, first)
