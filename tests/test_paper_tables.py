"""The command line `python -m launch.paper_tables`: --help says what it does, and a user's mistake
prints one line and exits 2 (no traceback) before anything trains."""
import json
import os
import re
import subprocess
import sys

import pytest

from fewframes_jax import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args, cwd=ROOT):
  return subprocess.run([sys.executable, "-m", "launch.paper_tables", *args], cwd=cwd, capture_output=True,
                        text=True, timeout=120)


def test_help_lists_what_it_does_and_the_flags():
  done = _run("--help")
  assert done.returncode == 0, done.stderr
  assert done.stdout.startswith("Runs the paper's experiment grid")
  for flag in ("--preset", "--out", "--seeds", "--families", "--sections", "--ks", "--rows", "--baselines",
               "--schedule_scale", "--anchor_k", "--train_pattern", "--eval_pattern", "--num_classes",
               "--num_train_examples", "--recompute_stale", "--report", "--jax_cache_dir"):
    assert re.search(rf"--(\[no\])?{flag[2:]}:", done.stdout), flag  # a bool flag reads --[no]name


@pytest.mark.parametrize("args, message", [
    (["--preset=huge"], "--preset='huge': expected one of ['long', 'paper', 'realistic', 'small', 'tiny']"),
    (["--rows=serial"], "rows 'serial': expected 'paper', 'all' or mode:loss"),
    (["--rows=serial:kd"], "unknown row ('serial', 'kd')"),
    (["--sections=table9"], "unknown section 'table9'"),
    (["--seeds=0,one"], "--seeds='0,one': expected comma-separated integers"),
    (["--schedule_scale=0"], "--schedule_scale=0.0: must be > 0"),
    (["--train_pattern=/data/train*"], "real data needs --train_pattern, --eval_pattern and --num_classes together"),
    ([], "--out is required"),
])
def test_a_mistake_is_one_line_and_exit_code_2(tmp_path, args, message):
  out = [f"--out={tmp_path}"] if args else []
  done = _run(*out, *args)
  assert done.returncode == cli.USER_ERROR_EXIT_CODE, done.stderr
  assert done.stderr.startswith("error: ") and message in done.stderr
  assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
  assert not os.listdir(tmp_path)  # nothing was written


def test_a_stale_cached_cell_is_one_line_that_says_what_to_do(tmp_path):
  os.makedirs(tmp_path / "cells" / "hrnn" / "seed0")
  with open(tmp_path / "cells" / "hrnn" / "seed0" / "teacher.json", "w") as f:
    json.dump({"config_hash": "0" * 16, "gap": 0.5}, f)
  done = _run("--preset=tiny", f"--out={tmp_path}", "--sections=table3", "--jax_cache_dir=")
  assert done.returncode == cli.USER_ERROR_EXIT_CODE, done.stderr
  assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
  assert "teacher.json: cached result of another config" in done.stderr and "--recompute_stale" in done.stderr
