"""End to end: `main` on the bundled data (tiny sizes): the README's command (the teacher trained first in
<workdir>/teacher, then the serial student), checkpoints, TensorBoard, the summary table and its line of
what the student keeps and saves,
the eval / predict / flops modes, the exact re-evaluation of a saved run, and the one-line errors of a
user's mistakes. (Resuming is tested bit for bit in test_resume.py; serial and finetune runs in
test_train.py and test_train_loop.py.)"""
import csv
import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from fewframes_jax import checkpoint as ckpt_lib
from fewframes_jax import metrics as metrics_lib
from fewframes_jax.evaluation import predict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = "--config=configs/nextvlad_k10.py:tiny"


def run_main(*args, timeout=420, check=True):
  env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_DISABLE_MOST_OPTIMIZATIONS="1")
  env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # main itself must keep TensorFlow's start-up lines away
  proc = subprocess.run([sys.executable, "-m", "fewframes_jax.main", *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=timeout)
  if check:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
  return proc


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("main") / "run")
  proc = run_main(TINY, f"--workdir={workdir}", "--config.train.num_steps=4")
  return workdir, proc


def test_main_trains_checkpoints_and_prints_the_table(trained):
  workdir, proc = trained
  out = proc.stdout
  teacher_dir = os.path.join(workdir, "teacher")
  assert f"Stage 1 of 2: the teacher alone, in {teacher_dir}" in out and "Stage 2 of 2" in out
  assert out.count("| network |") == 1  # one table: the student's run, with its frozen teacher
  assert "| teacher | 300 |" in out and "| student | 10 (uniform) |" in out
  for run in (teacher_dir, workdir):
    assert sorted(int(s) for s in os.listdir(os.path.join(run, "checkpoints")) if s.isdigit()) == [2, 4]
    assert glob.glob(os.path.join(run, "tensorboard", "events.out.tfevents*"))
  summary = json.load(open(os.path.join(workdir, "summary.json")))
  assert summary["step"] == 4
  assert ckpt_lib.restore(workdir).spec.mode == "serial"
  teacher = json.load(open(os.path.join(teacher_dir, "summary.json")))["eval"]["teacher"]
  assert summary["eval"]["teacher"]["gap"] == teacher["gap"]  # the frozen teacher is the one trained first
  kept = summary["kept_and_saved"]
  gap = {net: summary["eval"][net]["gap"] for net in ("teacher", "student")}
  assert kept["gap_kept"] == pytest.approx(gap["student"] / gap["teacher"])
  assert kept["flops"] == summary["flops_per_video"] and kept["flop_ratio"] > 1
  assert kept["videos_per_sec"]["teacher"] > 0 and kept["videos_per_sec"]["student"] > 0
  assert kept["line"] in out and f"keeps {100 * kept['gap_kept']:.1f}% of the teacher's GAP" in kept["line"]
  for net in ("teacher", "student"):
    assert summary["eval"][net]["num_videos"] == 24  # the tiny bundled eval split, every video counted
    assert summary["eval"][net]["skipped_records"] == summary["eval"][net]["frame_count_mismatches"] == 0
    assert summary["eval"][net]["ce"] > 0  # mean per-video cross-entropy summed over 8 classes
  # rep_distance: the mean squared L2 between the two representations (same size: NeXtVLAD both)
  assert summary["eval"]["student"]["rep_distance"] > 0 and "rep_distance" not in summary["eval"]["teacher"]


def test_output_starts_clean(trained):
  """No TensorFlow C++ start-up lines, no Orbax warnings, no tracebacks: the progress bar and our lines."""
  _, proc = trained
  for noise in ("oneDNN", "absl::InitializeLog", "cpu_feature_guard", "read only", "Traceback"):
    assert noise not in proc.stderr and noise not in proc.stdout, noise


def test_restore_reproduces_the_logged_eval_exactly(trained, fast_compile):
  """The saved run, re-evaluated through the inference path with the same XLA flags as its training
  (`jax_disable_most_optimizations`), gives the logged metrics bit for bit: one computation."""
  workdir, _ = trained
  restored = ckpt_lib.restore(workdir)
  assert restored.step == 4 and "head" in restored.student_variables["params"]
  logged = json.load(open(os.path.join(workdir, "summary.json")))["eval"]
  again = predict.evaluate_restored(workdir)
  assert again.keys() == logged.keys()
  for net in again:
    assert again[net] == pytest.approx(logged[net], rel=0, abs=0), net


def test_predict_csv_has_the_in_memory_gap(trained, tmp_path):
  workdir, _ = trained
  path = str(tmp_path / "pred.csv")
  assert predict.write_predictions(workdir, None, path) == 24
  rows = list(csv.reader(open(path)))
  assert rows[0] == ["VideoId", "LabelConfidencePairs"] and len(rows) == 25
  num_classes = ckpt_lib.restore(workdir).spec.data.num_classes
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
  logged = json.load(open(os.path.join(workdir, "summary.json")))["eval"]["student"]["gap"]
  np.testing.assert_allclose(csv_gap, logged, atol=1e-4)  # scores printed with 6 digits


def test_eval_predict_and_flops_modes(trained, tmp_path):
  workdir, _ = trained
  logged = json.load(open(os.path.join(workdir, "summary.json")))["eval"]
  out = run_main(TINY, f"--workdir={workdir}", "--mode=eval", "--best").stdout
  for net in ("teacher", "student"):
    assert f"{net}: GAP {logged[net]['gap']:.4f} mAP {logged[net]['map']:.4f}" in out
  path = str(tmp_path / "teacher.csv")
  out = run_main(TINY, f"--workdir={workdir}", "--mode=predict", "--network=teacher", "--step=2",
                 f"--output={path}").stdout
  assert f"wrote 24 videos to {path}" in out
  teacher_rows = list(csv.reader(open(path)))[1:]
  assert len(teacher_rows) == 24
  ids, probs, _ = next(predict.predictions(workdir, network="teacher", step=2))
  assert teacher_rows[0] == predict.format_row(ids[0], probs[0]).split(",", 1)
  flops = run_main(TINY, "--mode=flops").stdout
  assert "| nextvlad teacher | 300 |" in flops and "| nextvlad student | 10 |" in flops


@pytest.mark.parametrize("args, message", [
    (["--config.student.k=400"], "student.k=400: need 1 <= k <= data.max_frames=300"),
    (["--config.student.sampling=bogus"], "student.sampling='bogus': expected one of"),
    (["--config.data.train_pattern=/nonexistent/t*", "--config.data.eval_pattern=/nonexistent/e*"],
     "file pattern '/nonexistent/t*' matched no files"),
    (["--config.student.kk=3"], "no such config field 'kk'"),
])
def test_a_users_mistake_is_one_line(tmp_path, args, message):
  proc = run_main(TINY, f"--workdir={tmp_path / 'run'}", *args, check=False)
  assert proc.returncode == 2, proc.stderr[-3000:]
  assert proc.stderr.strip().splitlines()[-1] == "error: " + proc.stderr.strip().split("error: ", 1)[1]
  assert message in proc.stderr and "Traceback" not in proc.stderr


def test_a_workdir_that_is_a_file_is_one_line(tmp_path):
  path = tmp_path / "afile"
  path.write_text("")
  proc = run_main(TINY, f"--workdir={path}", check=False)
  assert proc.returncode == 2 and proc.stderr.strip() == f"error: workdir='{path}' is a file, not a folder"
