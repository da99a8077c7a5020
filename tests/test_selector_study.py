"""The selector study (`paper/selector_study.py`): its rows' configs, its keys, its cached recall, and real
data reaching every run's config; its command line takes the real-data flags of `launch.paper_tables`."""
import dataclasses
import os
import subprocess
import sys

import pytest

from configs import paper as paper_configs
from fewframes_jax.errors import UserError
from fewframes_jax.paper import run_cache
from fewframes_jax.paper import selector_study

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STUDY = selector_study.SelectorStudy(out="/tmp/unused", baselines="/tmp/base", preset=paper_configs.PRESETS["long"],
                                     cell_config=paper_configs.cell_config)


def test_rows_are_configured_as_named():
  distilled = STUDY.config("rank_all_ffm+distill", 1, 10, teacher_workdir="/t")
  assert (distilled.mode, distilled.student.sampling, distilled.student.selector.train,
          distilled.student.selector.prior, distilled.teacher_workdir, distilled.seed) == (
              "serial", "learned", "rank", "far_from_mean", "/t", 1)
  judged = STUDY.config("rank_all", 0, 10, teacher_workdir="/t")  # ranked by the teacher, CE alone
  assert judged.mode == "serial" and judged.loss.pred == judged.loss.rep == 0.0 and not judged.share_classifier
  alone = STUDY.config("e2e_all", 0, 6, teacher_workdir="/t")
  assert alone.mode == "student_only" and alone.student.k == 6
  by_labels = STUDY.config("labels_all_ffm", 0, 10, teacher_workdir="/t")  # its judge needs no teacher
  assert (by_labels.mode, by_labels.student.selector.train) == ("student_only", "labels")
  assert STUDY.config("labels_all_ffm+distill", 0, 10, teacher_workdir="/t").mode == "serial"
  assert STUDY.config("uniform+distill", 0, 30, teacher_workdir="/t").student.sampling == "uniform"
  assert selector_study.run_key("hrnn", 2, "rank_all+distill", 30) == "hrnn/seed2/rank_all_distill_k30"
  assert STUDY.teacher_dir(1) == "/tmp/base/runs/hrnn/seed1/teacher"
  with pytest.raises(UserError, match="unknown"):
    selector_study.parse_rows("rank_all,nope")


def test_real_data_reaches_every_run():
  data = dict(train_pattern="/yt8m/train*.tfrecord", eval_pattern="/yt8m/validate*.tfrecord", num_classes=3862,
              num_train_examples=3888919)
  study = dataclasses.replace(STUDY, data=data)
  for row in list(selector_study.SELECTOR_ROWS) + list(selector_study.SWEEP_ROWS):
    config = study.config(row, 0, 10, teacher_workdir="/t")
    assert {key: config.data[key] for key in data} == data, row


@pytest.mark.parametrize("script", ["launch.selector_study", "launch.anyk_study", "launch.paper_tables"])
def test_every_study_command_takes_the_real_data_flags(script):
  out = subprocess.run([sys.executable, "-m", script, "--help"], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
  assert out.returncode == 0, out.stderr
  for flag in ("--train_pattern", "--eval_pattern", "--num_classes", "--num_train_examples"):
    assert flag in out.stdout, (script, flag)


def test_a_deleted_run_keeps_its_cached_recall_and_an_unknown_one_is_left_out(tmp_path):
  study = selector_study.SelectorStudy(out=str(tmp_path), baselines=str(tmp_path / "base"),
                                       preset=paper_configs.PRESETS["long"], cell_config=paper_configs.cell_config,
                                       ks=(10,))
  entry = {"burst": 0.5, "long": 0.9, "config_hash": "abc"}
  run_cache.write_json(str(tmp_path / "recall.json"), {"rank_all|10|0": entry})
  assert study.recalls(["rank_all", "e2e_all"], seed=0) == {"rank_all": {10: entry}}


def test_the_report_command_names_a_family_other_than_the_default():
  args = ("results/x", "results/base", "realistic", "0,1,2", "10")
  assert "--family" not in selector_study.study_command(*args)
  command = selector_study.study_command(*args, rows="rank_all", family="nextvlad")
  assert "--family=nextvlad --rows=rank_all" in command and command.startswith("python -m launch.selector_study")
