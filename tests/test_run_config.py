"""Config validation: every invalid setting gives a ConfigError whose message names the field.

Checks against other runs (resume, serial teacher, finetune init) read real Orbax checkpoints saved
here from fresh tiny states, and fail before anything is compiled.
"""
import os
import shutil

import jax
import pytest

import runs_testlib as lib
import setup_testlib
from configs import base
from fewframes_jax import checkpoint as ckpt_lib
from fewframes_jax import specs
from fewframes_jax import run_config
from fewframes_jax.train import run_setup
from fewframes_jax.train import loop
from fewframes_jax.run_config import ConfigError

T = 20
NUM_CLASSES = 8


# Compile-bound; XLA's optimisation passes do not change what these tests check.
pytestmark = pytest.mark.usefixtures("fast_compile")


def tiny(mode="parallel", family="nextvlad", k=4):
  return _as_test_data(base.experiment(family, k=k, arg=f"tiny,mode={mode}"))


def _as_test_data(c):
  """Test-sized data fields (the files are never read: validation fails or passes first), resolved."""
  c.data.train_pattern = c.data.eval_pattern = "/nonexistent/unused-*"
  c.data.num_classes, c.data.max_frames, c.data.feature_sizes = NUM_CLASSES, T, (16, 8)
  return run_config.resolve(c)


def test_hrnn_student_blocks_follow_the_final_k():
  """`configs/hrnn.py:k=10` and `configs/hrnn.py --config.student.k=10` give the same student (2 blocks
  of 5 frames), an explicit `student.hrnn.num_blocks` wins, and the teacher keeps its blocks."""
  from configs import hrnn  # pylint: disable=g-import-not-at-top
  by_arg = _as_test_data(hrnn.get_config("k=10"))
  by_override = hrnn.get_config()
  by_override.student.k = 10
  by_override = _as_test_data(by_override)
  assert by_arg.student.to_dict() == by_override.student.to_dict()
  assert by_arg.student.hrnn.num_blocks == 2 and by_arg.teacher.hrnn.num_blocks == 20
  explicit = hrnn.get_config()
  explicit.student.k, explicit.student.hrnn.num_blocks = 10, 5
  assert _as_test_data(explicit).student.hrnn.num_blocks == 5


def test_tiny_config_is_valid():
  for mode in ("teacher", "student_only", "parallel"):
    for family in ("nextvlad", "netvlad", "hrnn", "lstm"):
      run_config.validate(tiny(mode, family))


def test_readme_configs_default_to_serial_pred_ce_and_parallel_is_an_argument_away():
  """The README's configs: serial L_pred + L_CE with no teacher run (the teacher trained first); `mode=parallel`
  is `base.experiment`'s parallel run, with the family's loss weights."""
  from configs import hrnn, netvlad_k10, netvlad_k30, nextvlad_k10, nextvlad_k30  # pylint: disable=g-import-not-at-top
  for module, family, k in ((nextvlad_k10, "nextvlad", 10), (nextvlad_k30, "nextvlad", 30),
                            (netvlad_k10, "netvlad", 10), (netvlad_k30, "netvlad", 30), (hrnn, "hrnn", 30)):
    c = module.get_config("tiny")
    assert (c.mode, c.teacher_workdir, c.student.k) == ("serial", "", k)
    assert {term: c.loss[term] for term in base.SERIAL_PRED_CE} == base.SERIAL_PRED_CE
    if k <= T:  # the test data's videos have T frames
      c = _as_test_data(c)
      run_config.validate(c)
      assert run_config.trains_teacher_first(c)
    parallel = module.get_config("tiny,mode=parallel")
    assert parallel.to_dict() == base.experiment(family, k=k, arg="tiny,mode=parallel").to_dict()
    assert parallel.loss.rep == base.FAMILY_LOSS[family]["rep"]


# (family, {field: value}, message regex)
CASES = [
    ("nextvlad", {"student.k": 0}, r"student.k=0: need 1 <= k <= data.max_frames=20"),
    ("nextvlad", {"student.k": 21}, r"student.k=21: need 1 <= k <= data.max_frames=20"),
    ("nextvlad", {"teacher.name": "transformer"}, r"teacher.name='transformer': expected one of \('hrnn'"),
    ("nextvlad", {"student.name": "vit"}, r"student.name='vit': expected one of"),
    ("nextvlad", {"student.sampling": "every_other"}, r"student.sampling='every_other': expected one of \('uniform'"),
    ("nextvlad", {"mode": "distill"}, r"mode='distill': expected one of"),
    ("nextvlad", {"dtype": "float16"}, r"dtype='float16': expected one of"),
    ("nextvlad", {"data.num_classes": 0}, r"data.num_classes=0: must be >= 1"),
    ("nextvlad", {"data.max_frames": 0}, r"data.max_frames=0: must be >= 1"),
    ("nextvlad", {"data.feature_names": ("rgb",)}, r"data.feature_names \('rgb',\) and data.feature_sizes \(16, 8\)"),
    ("nextvlad", {"data.feature_sizes": (16, 0)}, r"data.feature_sizes=\(16, 0\): must be positive"),
    ("nextvlad", {"data.on_error": "ignore"}, r"data.on_error='ignore': expected one of \('raise', 'skip'\)"),
    ("nextvlad", {"data.id_key": "vid"}, r"data.id_key='vid'"),
    ("nextvlad", {"data.batch_size": 0}, r"data.batch_size and data.eval_batch_size must be >= 1"),
    ("nextvlad", {"data.eval_batch_size": 0}, r"data.batch_size and data.eval_batch_size must be >= 1"),
    ("nextvlad", {"data.train_fraction": 0.0}, r"data.train_fraction=0.0: need 0 < f <= 1"),
    ("nextvlad", {"data.train_fraction": 1.5}, r"data.train_fraction=1.5"),
    # H-RNN blocks must fit the frames each network sees: max_frames (teacher), k (student).
    ("hrnn", {"teacher.hrnn.num_blocks": 21}, r"teacher.hrnn.num_blocks=21 does not fit the 20 frames"),
    ("hrnn", {"teacher.hrnn.num_blocks": 0}, r"teacher.hrnn.num_blocks=0 does not fit"),
    ("hrnn", {"student.hrnn.num_blocks": 5}, r"student.hrnn.num_blocks=5 does not fit the 4 frames"),
    ("hrnn", {"data.max_frames": 10, "teacher.hrnn.num_blocks": 20},
     r"teacher.hrnn.num_blocks=20 does not fit the 10 frames this network sees: need 1 <= num_blocks <= 10"),
    ("hrnn", {"teacher.hrnn.cells": 0}, r"teacher.hrnn.cells/layers must be positive"),
    ("lstm", {"student.rnn.layers": 0}, r"student.rnn.cells/layers must be positive"),
    ("netvlad", {"teacher.netvlad.cluster_size": 1}, r"teacher.netvlad.cluster_size must be >= 2"),
    ("nextvlad", {"student.nextvlad.groups": 3}, r"student.nextvlad.groups=3: need an even number >= 2"),
    ("nextvlad", {"teacher.nextvlad.cluster_size": 1}, r"teacher.nextvlad.cluster_size must be >= 2"),
    ("nextvlad", {"teacher.nextvlad.dropout": 1.0}, r"teacher.nextvlad.dropout=1.0: need 0 <= dropout < 1"),
    ("nextvlad", {"teacher.input_norm": "reverse_whitening", "teacher.whitening_eigenvalues": "/nonexistent.npy"},
     r"teacher.whitening_eigenvalues='/nonexistent.npy': reverse whitening needs a readable .npy"),
    ("nextvlad", {"loss.rep": -1.0}, r"loss.rep=-1.0: weights must be >= 0"),
    ("nextvlad", {"loss.pred_distance": "l1"}, r"loss.pred_distance='l1': expected one of"),
    ("nextvlad", {"loss.ce": 0.0, "loss.rep": 0.0, "loss.pred": 0.0}, r"loss: every student loss weight is 0"),
    ("nextvlad", {"loss.rep_intermediate": 1.0},
     r"loss.rep_intermediate>0 needs recurrent teacher and student .*teacher.name='nextvlad'"),
    ("nextvlad", {"teacher_workdirs": "/a,/b"}, r"teacher_workdirs \(an ensemble\) needs mode=serial"),
    ("nextvlad", {"mode": "serial", "teacher_workdir": "/nonexistent/run"},
     r"teacher_workdir='/nonexistent/run': no checkpoints folder there"),
    ("nextvlad", {"mode": "finetune"}, r"mode=finetune needs init_workdir"),
    ("nextvlad", {"mode": "finetune", "init_workdir": "/nonexistent/run"},
     r"init_workdir='/nonexistent/run': no checkpoints folder there"),
    ("nextvlad", {"optim.learning_rate": 0.0}, r"optim: learning_rate > 0"),
    ("nextvlad", {"optim.decay_rate": 1.5}, r"0 < decay_rate <= 1"),
    ("nextvlad", {"optim.clip_mode": "by_value"}, r"optim.clip_mode='by_value'"),
    ("nextvlad", {"train.num_steps": 0, "train.num_epochs": 0.0}, r"train: set num_steps > 0 or num_epochs > 0"),
    ("nextvlad", {"train.checkpoint_every": 0}, r"train.log_every and train.checkpoint_every must be >= 1"),
    ("nextvlad", {"train.keep_checkpoints": 0}, r"train.keep_checkpoints=0: must be >= 1"),
]


@pytest.mark.parametrize("family, changes, message", CASES, ids=[" ".join(c[1]) for c in CASES])
def test_invalid_setting_names_the_field(family, changes, message):
  c = tiny("parallel", family)
  for path, value in changes.items():
    lib.set_field(c, path, value)
  with pytest.raises(ConfigError, match=message):
    run_config.validate(c)


def test_resolve_needs_eval_files():
  c = tiny()
  c.data.eval_pattern = ""
  with pytest.raises(ConfigError, match=r"data.eval_pattern is empty"):
    run_config.resolve(c)


def test_num_train_steps():
  c = tiny()
  c.train.num_steps = 0
  c.train.num_epochs = 2.0
  c.data.num_train_examples = 0
  with pytest.raises(ConfigError, match=r"train.num_epochs needs data.num_train_examples"):
    run_config.validate(c)
  with pytest.raises(ConfigError, match=r"train.num_epochs needs data.num_train_examples"):
    specs.RunSpec.from_config(c).num_train_steps
  c.data.num_train_examples = 100  # 2 epochs x 100 / batch 8 = 25 steps
  assert specs.RunSpec.from_config(c).num_train_steps == 25


def test_shared_classifier_needs_equal_representation_sizes():
  c = tiny("parallel")
  run_setup.check_representation_sizes(c, 16, 16)
  with pytest.raises(ConfigError, match=r"share_classifier=True needs equal representation sizes, got teacher "
                                        r"16 and student 64 \(cross-family: set share_classifier=False\)"):
    run_setup.check_representation_sizes(c, 16, 64)
  c.share_classifier = False
  run_setup.check_representation_sizes(c, 16, 64)


def test_check_finite_names_step_and_terms():
  run_config.check_finite({"teacher/ce": 1.0, "student/loss": 2.0}, 7)
  with pytest.raises(FloatingPointError, match=r"non-finite loss at step 7: student/rep=inf, teacher/ce=nan; "
                                               r"training stopped, the last good checkpoint is kept"):
    run_config.check_finite({"teacher/ce": float("nan"), "student/ce": 1.0, "student/rep": float("inf")}, 7)


# ------------------------------------------------------------------------------------------------
# Checks against saved runs.


def _save_fresh_run(workdir, config):
  _, state = setup_testlib.setup_run(config)
  manager = ckpt_lib.make_manager(workdir)
  ckpt_lib.save(manager, state, specs.RunSpec.from_config(config), metrics={"gap": 0.5}, force=True)
  manager.wait_until_finished()
  manager.close()
  return workdir


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  root = tmp_path_factory.mktemp("runs")
  return {"teacher": _save_fresh_run(str(root / "teacher"), tiny("teacher")),
          "student": _save_fresh_run(str(root / "student"), tiny("student_only")),
          "root": root}


def test_serial_teacher_checks(runs):
  c = tiny("serial")
  c.teacher_workdir = runs["teacher"]
  run_config.validate(c)  # the matching teacher passes

  c.teacher.nextvlad.cluster_size = 6
  with pytest.raises(ConfigError, match=r"teacher checkpoint in '.*teacher' does not match config.teacher: "
                                        r"checkpoint .*'cluster_size': 4.* vs config .*'cluster_size': 6"):
    run_config.validate(c)

  c = tiny("serial", "hrnn")
  c.teacher_workdir = runs["teacher"]
  with pytest.raises(ConfigError, match=r"does not match config.teacher: checkpoint \{'name': 'nextvlad'"):
    run_config.validate(c)

  c = tiny("serial")
  c.teacher_workdir = runs["teacher"]
  c.data.num_classes = 9
  with pytest.raises(ConfigError, match=r"data.num_classes=9 differs from the teacher checkpoint's \(8\)"):
    run_config.validate(c)

  c = tiny("serial")
  c.teacher_workdir = runs["student"]
  with pytest.raises(ConfigError, match=r"teacher_workdir='.*student' has no teacher \(a student_only run\)"):
    run_config.validate(c)


def test_unreadable_or_incomplete_teacher_workdir(runs):
  # Only a torn save (Orbax's temporary folder): no complete checkpoint.
  torn = runs["root"] / "torn"
  shutil.copytree(os.path.join(runs["teacher"], "checkpoints", "0"),
                  torn / "checkpoints" / "0.orbax-checkpoint-tmp-123")
  c = tiny("serial")
  c.teacher_workdir = str(torn)
  with pytest.raises(ConfigError, match=r"teacher_workdir='.*torn': no complete checkpoint in"):
    run_config.validate(c)

  # A checkpoint whose saved config is not readable JSON.
  broken = runs["root"] / "broken"
  shutil.copytree(runs["teacher"], broken)
  with open(broken / "checkpoints" / "0" / "config" / "metadata", "w") as f:
    f.write("{not json")
  c.teacher_workdir = str(broken)
  with pytest.raises(ConfigError, match=r"teacher_workdir='.*broken': cannot read the config of checkpoint 0"):
    run_config.validate(c)


def test_finetune_init_checks(runs):
  c = tiny("finetune")
  c.init_workdir = runs["student"]
  run_config.validate(c)
  c.student.nextvlad.hidden_size = 32
  with pytest.raises(ConfigError, match=r"student checkpoint in '.*student' does not match config.student"):
    run_config.validate(c)
  c = tiny("finetune")
  c.init_workdir = runs["teacher"]
  with pytest.raises(ConfigError, match=r"init_workdir='.*teacher' has no student \(a teacher run\)"):
    run_config.validate(c)


@pytest.mark.parametrize("mode, changes, message", [
    ("teacher", {"data.num_classes": 9}, r"data.num_classes=9 differs from the checkpoint's \(8\) in '.*teacher'"),
    ("teacher", {"data.feature_sizes": (16, 4)}, r"data.feature_sizes=\(16, 4\) differs from the checkpoint's"),
    ("parallel", {}, r"mode='parallel' differs from the checkpoint's \('teacher'\)"),
    ("teacher", {"teacher.nextvlad.groups": 4}, r"config.teacher architecture differs from the checkpoint's"),
])
def test_resume_must_fit_the_checkpoint(runs, mode, changes, message):
  c = tiny(mode)
  run_config.validate(c, workdir=runs["teacher"] + "_missing")  # no checkpoint there: a fresh run
  for path, value in changes.items():
    lib.set_field(c, path, value)
  with pytest.raises(ConfigError, match=message):
    run_config.validate(c, workdir=runs["teacher"])


def test_train_and_evaluate_rejects_before_compiling(runs):
  """The checks run inside train_and_evaluate before any trace or compile."""
  events = []

  def listener(event, secs, **kwargs):
    del secs, kwargs
    if event.startswith("/jax/core/compile/"):
      events.append(event)

  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    jax.jit(lambda x: x * 3)(1.0)
    assert events  # the listener sees compiles
    events.clear()
    c = tiny("teacher")
    c.data.num_classes = 9
    with pytest.raises(ConfigError, match=r"data.num_classes=9 differs from the checkpoint's \(8\)"):
      loop.train_and_evaluate(c, runs["teacher"])
    c = tiny("serial")
    c.teacher_workdir = runs["teacher"]
    c.teacher.nextvlad.hidden_size = 32
    with pytest.raises(ConfigError, match=r"teacher checkpoint in '.*teacher' does not match config.teacher"):
      loop.train_and_evaluate(c, str(runs["root"] / "serial_run"))
    assert events == []
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)


def test_cross_family_and_ensemble_configs(runs):
  from configs import cross_family, ensemble  # pylint: disable=g-import-not-at-top
  c = _as_test_data(cross_family.get_config("tiny"))
  assert (c.mode, c.teacher.name, c.student.name, c.student.k, c.share_classifier) == (
      "serial", "nextvlad", "hrnn", 10, False)
  assert c.loss.rep == base.FAMILY_LOSS["hrnn"]["rep"]  # the student family's weights
  run_config.validate(c)  # no teacher run: it trains its NeXtVLAD teacher first
  assert run_config.trains_teacher_first(c)
  c.teacher_workdir = runs["teacher"]
  c.teacher.nextvlad.update(tiny("teacher").teacher.nextvlad)
  run_config.validate(c)
  lstm = cross_family.get_config("tiny,student=lstm,k=6,mode=parallel")
  assert (lstm.mode, lstm.student.name, lstm.student.k) == ("parallel", "lstm", 6)

  e = _as_test_data(ensemble.get_config("tiny"))
  assert (e.mode, e.student.name, e.share_classifier) == ("serial", "hrnn", False)
  assert not run_config.trains_teacher_first(e)  # an ensemble reads the teacher runs of its docstring
  with pytest.raises(ConfigError, match=r"teacher_workdirs='runs/nextvlad_t': no checkpoints folder there"):
    run_config.validate(e)
  e.teacher_workdirs = f"{runs['teacher']},{runs['root'] / 'missing'}"
  with pytest.raises(ConfigError, match=r"teacher_workdirs='.*missing': no checkpoints folder there"):
    run_config.validate(e)
  e.teacher_workdirs = f"{runs['teacher']},{runs['student']}"
  with pytest.raises(ConfigError, match=r"teacher_workdirs: '.*student' has no teacher"):
    run_config.validate(e)
  e.teacher_workdirs = f"{runs['teacher']},{runs['teacher']}"
  run_config.validate(e)


def test_the_long_argument_uses_the_youtube8m_length_data():
  c = base.experiment("hrnn", k=10, arg="long,cpu")
  assert (c.data.bundled.spec, c.data.bundled.num_train, c.data.bundled.num_eval) == ("long", 1800, 400)
  assert c.data.max_frames == 300 and c.teacher.hrnn.num_blocks == 20  # the paper's 20 x 15 teacher
  c.data.bundled.spec = "medium"
  with pytest.raises(ConfigError, match=r"data.bundled.spec='medium': expected one of \('short', 'long', 'realistic'\)"):
    run_config.resolve(c)


def test_the_judged_argument_asks_for_the_label_judged_scorer_in_every_mode():
  for mode in ("student_only", "serial", "parallel"):
    c = run_config.resolve(base.experiment("hrnn", k=10, arg=f"tiny,mode={mode},sampling=judged"))
    assert (c.student.sampling, c.student.selector.train, c.student.selector.prior) == (
        "learned", "labels", "far_from_mean")
    run_config.validate(c)  # a label judge needs no teacher
  anyk = run_config.resolve(base.experiment("hrnn", k=10, arg="tiny,sampling=judged,k_min=4"))
  run_config.validate(anyk)
  plain = base.experiment("hrnn", k=10, arg="tiny,sampling=learned")
  assert (plain.student.selector.train, plain.student.selector.prior) == ("rank", "none")  # the defaults
