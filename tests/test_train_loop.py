"""The training loop: eval on records with a bad one (counted and reported with on_error=skip, an error
naming the file and record with on_error=raise; never dropped silently), the paper's stage-2 fine-tune,
WILLOW's random frame re-sampling through every mode that calls the model, and a serial run that trains
its own teacher first."""
import json
import os

import jax
import numpy as np
import pytest

import runs_testlib as lib
import setup_testlib
from fewframes_jax import checkpoint as ckpt_lib
from fewframes_jax.evaluation import evaluate as eval_lib
from fewframes_jax import parallel
from fewframes_jax import run_config
from fewframes_jax import specs
from fewframes_jax.evaluation import predict
from fewframes_jax.train import run_setup
from fewframes_jax.train import loop
from fewframes_jax.train import preemption

NUM_EVAL = 11  # eval shards of 4, 4, 3 videos; the first record of shard 1 has a label out of range


pytestmark = pytest.mark.usefixtures("fast_compile")


@pytest.fixture(scope="module")
def setup(tmp_path_factory, fast_compile):  # pylint: disable=unused-argument  (set up under fast_compile)
  data = lib.write_dataset(str(tmp_path_factory.mktemp("data")), num_train=8, num_eval=NUM_EVAL,
                           bad_eval_shards=(1,))
  config = lib.tiny_config(data, steps=1, **{"data.on_error": "skip"})
  mesh = parallel.make_mesh()
  setup_, state = setup_testlib.setup_run(config, mesh=mesh)
  return config, setup_, state, eval_lib.make_eval_step(setup_.forwards(), mesh), mesh


def test_eval_skips_are_counted_and_the_rest_evaluated(setup):
  config, setup_, state, eval_step, mesh = setup
  results = loop.run_eval(specs.RunSpec.from_config(config), setup_, state, eval_step, mesh)
  assert set(results) == {"teacher", "student"}
  for metrics in results.values():
    assert metrics["skipped_records"] == 1
    assert metrics["num_videos"] == NUM_EVAL - 1  # every other video, the last partial batch included


def test_eval_bad_record_raises_with_on_error_raise(setup):
  config, setup_, state, eval_step, mesh = setup
  config = config.copy_and_resolve_references()
  config.data.on_error = "raise"
  with pytest.raises(ValueError, match=r"eval-1\.tfrecord.*record 0.*label"):
    loop.run_eval(specs.RunSpec.from_config(config), setup_, state, eval_step, mesh)


def _train(config, workdir):
  return loop.train_and_evaluate(config, str(workdir))


def test_every_mode_that_calls_the_model_with_willow_random_frames(setup, tmp_path, monkeypatch):
  """`model.netvlad.random_frames=True` (WILLOW's re-sampling, which draws at eval too) through the
  trainer: parallel training with its eval, a re-evaluation that repeats the numbers, a serial student
  of that frozen teacher, predict, and the paper's stage 2 (`finetune`) of the parallel student: it is
  restored with a copy of the teacher's head it shared, then student + head train on CE alone."""
  config, *_ = setup
  config = config.copy_and_resolve_references()
  config.data.on_error = "skip"
  for net in ("teacher", "student"):
    config[net].name = "netvlad"
    config[net].netvlad.random_frames = True
    config[net].netvlad.num_random_frames = 8
  stage1_dir = tmp_path / "parallel"
  stage1 = _train(config, stage1_dir)
  assert set(stage1["eval"]) == {"teacher", "student"}
  assert "head" not in stage1["state"].student.params  # it shares the teacher's head
  again = predict.evaluate_restored(str(stage1_dir))
  for net in ("teacher", "student"):
    assert again[net]["gap"] == stage1["eval"][net]["gap"]  # deterministic draws at eval
  rows = sum(len(ids) for ids, _, _ in predict.predictions(str(stage1_dir)))
  assert rows == NUM_EVAL - 1  # the bad record skipped, every other video scored
  serial = config.copy_and_resolve_references()
  serial.mode, serial.teacher_workdir = "serial", str(stage1_dir)
  assert _train(serial, tmp_path / "serial")["step"] == serial.train.num_steps

  teacher_head = ckpt_lib.restore(str(stage1_dir), best=True).variables["params"]["head"]
  finetune = config.copy_and_resolve_references()
  finetune.mode, finetune.init_workdir = "finetune", str(stage1_dir)
  loaded = loop.load_networks(specs.RunSpec.from_config(finetune))
  for a, b in zip(jax.tree.leaves(loaded.student_variables["params"]["head"]), jax.tree.leaves(teacher_head)):
    np.testing.assert_array_equal(a, b)
  setup_ = run_setup.make_setup(specs.RunSpec.from_config(finetune))
  assert not setup_.has_teacher and setup_.train_student and not setup_.shared_head
  assert dict(setup_.loss_weights) == {"ce": 1.0, "pred": 0.0, "rep": 0.0, "rep_intermediate": 0.0}
  out = _train(finetune, tmp_path / "finetune")
  assert set(out["eval"]) == {"student"} and out["state"].teacher is None
  moved = [not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(out["state"].student.params["head"]),
                                                    jax.tree.leaves(teacher_head))]
  assert any(moved)  # the copy is now the student's own, and it trained
  # Re-evaluated alone (no teacher in the run), the student reads only its k frames on the host (the
  # student-only input path): the metrics are the trainer's, exactly.
  paths = []
  evaluate_dataset = eval_lib.evaluate_dataset
  monkeypatch.setattr(eval_lib, "evaluate_dataset",
                      lambda *a, **kw: paths.append(kw.get("input_frames")) or evaluate_dataset(*a, **kw))
  assert predict.evaluate_restored(str(tmp_path / "finetune"))["student"] == out["eval"]["student"]
  assert paths and paths[0] is not None


def test_serial_without_a_teacher_run_trains_its_teacher_first(setup, tmp_path, monkeypatch, capsys):
  """Serial mode with no teacher run: the teacher alone in <workdir>/teacher, then the serial student
  reading it, frozen. A preemption in the teacher stage stops the command there (no student yet); the same
  call resumes the teacher where it stopped, then trains the student; a later call does not retrain the
  finished teacher. An explicit teacher_workdir is one run, the config as given."""
  config, *_ = setup
  config = config.copy_and_resolve_references()
  config.mode, config.train.num_steps, config.loss.rep = "serial", 4, 0.0
  workdir = tmp_path / "run"
  teacher_dir = str(workdir / run_config.TEACHER_SUBDIR)
  should_stop = preemption.PreemptionWatch.should_stop
  monkeypatch.setattr(preemption.PreemptionWatch, "should_stop", lambda self, step: step == 2)
  stopped = _train(config, workdir)
  assert stopped["preempted"] and stopped["step"] == 2
  assert ckpt_lib.complete_steps(teacher_dir) == [2] and not os.path.exists(workdir / "checkpoints")
  monkeypatch.setattr(preemption.PreemptionWatch, "should_stop", should_stop)

  out = _train(config, workdir)
  printed = capsys.readouterr().out
  assert "Stage 1 of 2: the teacher alone" in printed and f"Resumed from {teacher_dir} at step 2" in printed
  assert "Stage 2 of 2" in printed and "The student keeps" in printed
  assert out["step"] == 4 and not out["preempted"] and set(out["eval"]) == {"teacher", "student"}
  assert ckpt_lib.restore(str(workdir)).spec.teacher_workdir == teacher_dir
  teacher_run = json.load(open(os.path.join(teacher_dir, "summary.json")))
  assert out["eval"]["teacher"]["gap"] == teacher_run["eval"]["teacher"]["gap"]  # the student's teacher is it
  assert out["kept_and_saved"]["gap_kept"] == pytest.approx(out["eval"]["student"]["gap"] /
                                                           out["eval"]["teacher"]["gap"])

  calls = []
  monkeypatch.setattr(loop, "_train_one", lambda c, w, **kw: calls.append((c.mode, c.teacher_workdir, w)))
  _train(config, workdir)
  assert "is trained (step 4); not retrained" in capsys.readouterr().out
  assert calls == [("serial", teacher_dir, str(workdir))]
  calls.clear()
  config.teacher_workdir = teacher_dir
  _train(config, tmp_path / "explicit")
  assert calls == [("serial", teacher_dir, str(tmp_path / "explicit"))]
  assert not os.path.exists(tmp_path / "explicit" / run_config.TEACHER_SUBDIR)
