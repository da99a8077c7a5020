"""End to end: `main` on the bundled data (tiny sizes): train, checkpoint, TensorBoard, summary table,
resume, restore, predict CSV, and a serial run that uses the first run's teacher."""
import csv
import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from configs import nextvlad_k10
from fewframes_jax import checkpoint as ckpt_lib
from fewframes_jax import metrics as metrics_lib
from fewframes_jax import predict
from fewframes_jax import train_loop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_main(*args, timeout=420):
  env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_DISABLE_MOST_OPTIMIZATIONS="1")
  proc = subprocess.run([sys.executable, "-m", "fewframes_jax.main", *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=timeout)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
  return proc.stdout


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("main") / "run")
  out = run_main("--config=configs/nextvlad_k10.py:tiny", f"--workdir={workdir}", "--config.train.num_steps=4")
  return workdir, out


def test_main_trains_checkpoints_and_prints_the_table(trained):
  workdir, out = trained
  assert "| teacher | 300 |" in out and "| student | 10 (uniform) |" in out
  assert "FLOP ratio teacher/student:" in out
  assert sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints")) if s.isdigit()) == [2, 4]
  assert glob.glob(os.path.join(workdir, "tensorboard", "events.out.tfevents*"))
  summary = json.load(open(os.path.join(workdir, "summary.json")))
  assert summary["step"] == 4
  for net in ("teacher", "student"):
    assert summary["eval"][net]["num_videos"] == 24  # the tiny bundled eval split, every video counted


def test_restore_reproduces_the_logged_eval_and_predicts(trained, tmp_path):
  workdir, _ = trained
  restored = ckpt_lib.restore(workdir)
  assert restored.step == 4 and "head" in restored.student_variables["params"]
  logged = json.load(open(os.path.join(workdir, "summary.json")))["eval"]
  again = predict.evaluate_restored(workdir)
  for net in ("teacher", "student"):
    assert again[net]["num_videos"] == logged[net]["num_videos"]
    np.testing.assert_allclose(again[net]["gap"], logged[net]["gap"], atol=2e-3)
    np.testing.assert_allclose(again[net]["hit_at_one"], logged[net]["hit_at_one"], atol=0.05)
  # The Kaggle CSV: header, 24 rows of 20 "label score" pairs sorted by score; its GAP equals the in-memory one.
  path = str(tmp_path / "pred.csv")
  assert predict.write_predictions(workdir, None, path) == 24
  rows = list(csv.reader(open(path)))
  assert rows[0] == ["VideoId", "LabelConfidencePairs"] and len(rows) == 25
  num_classes = restored.config.data.num_classes
  labels = {}
  for ids, _, y in predict.predictions(workdir):
    labels.update({i.decode(): y_i for i, y_i in zip(ids, y)})
  scores = np.zeros([24, num_classes], np.float32)
  truth = np.zeros([24, num_classes], np.float32)
  for r, (vid, pairs) in enumerate(rows[1:]):
    items = pairs.split()
    classes, values = [int(c) for c in items[::2]], [float(v) for v in items[1::2]]
    assert len(classes) == min(20, num_classes) and values == sorted(values, reverse=True)
    scores[r, classes] = values
    truth[r] = labels[vid]
  csv_gap = metrics_lib.global_average_precision(scores, truth)
  np.testing.assert_allclose(csv_gap, again["student"]["gap"], atol=1e-4)


def test_rerun_resumes_from_the_checkpoint(trained):
  workdir, _ = trained
  out = run_main("--config=configs/nextvlad_k10.py:tiny", f"--workdir={workdir}", "--config.train.num_steps=6")
  assert f"Resumed from {workdir} at step 4" in out
  assert json.load(open(os.path.join(workdir, "summary.json")))["step"] == 6


def test_serial_mode_uses_the_previous_runs_teacher(trained, tmp_path):
  workdir, _ = trained
  config = nextvlad_k10.get_config("tiny,mode=serial")
  config.teacher_workdir = workdir
  config.train.num_steps = 2
  result = train_loop.train_and_evaluate(config, str(tmp_path / "serial"))
  teacher = ckpt_lib.restore(workdir, best=True).variables
  state = result["state"]
  for a, b in zip(jax_leaves(teacher["params"]), jax_leaves(state.teacher.params)):
    np.testing.assert_array_equal(a, b)
  assert result["step"] == 2 and "student" in result["eval"] and "teacher" in result["eval"]


def jax_leaves(tree):
  import jax
  return [np.asarray(x) for x in jax.tree.leaves(tree)]
