"""Tests of the input-pipeline benchmark (`python -m fewframes_jax.benchmark input`)."""
import json
import os
import subprocess
import sys

import pytest

import fewframes_jax
from fewframes_jax import benchmark
from fewframes_jax.data import synthetic


@pytest.fixture(scope="module")
def pattern(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("bench"))
  synthetic.write_split(out, "train", 12, spec=synthetic.SyntheticSpec(num_classes=5), seed=0,
                        num_shards=3)
  return os.path.join(out, "train-*.tfrecord")


def test_benchmark_input_counts_batches_and_videos(pattern):
  r = benchmark.benchmark_input(pattern, 4, 5, warmup_batches=1, num_classes=5, max_frames=20)
  assert r["batches"] == 5 and r["videos"] == 20  # training mode repeats: every batch is full
  assert r["videos_per_sec"] > 0 and r["batches_per_sec"] == pytest.approx(r["videos_per_sec"] / 4)
  assert r["frame_bytes"] == 1152 and r["max_frames"] == 20 and len(r["load_average"]["before"]) == 3


def test_benchmark_input_eval_pass_counts_valid_videos_only(pattern):
  # 12 videos in batches of 5: 3 batches, the last with 2 valid rows; no warm-up so all are timed.
  r = benchmark.benchmark_input(pattern, 5, 100, warmup_batches=0, num_classes=5, max_frames=20,
                                training=False)
  assert r["batches"] == 3 and r["videos"] == 12


def test_cli_prints_and_writes_json(pattern, tmp_path, capsys):
  out = str(tmp_path / "input.json")
  benchmark.main(["input", f"--file_pattern={pattern}", "--batch_size=4", "--num_batches=3",
                  "--warmup_batches=1", "--num_classes=5", "--max_frames=16", f"--json_out={out}"])
  assert "videos/s" in capsys.readouterr().out
  with open(out) as f:
    result = json.load(f)
  assert result["batches"] == 3 and result["videos"] == 12 and result["file_pattern"] == pattern


def test_cli_needs_a_subcommand():
  with pytest.raises(SystemExit):
    benchmark.main([])
  with pytest.raises(SystemExit):
    benchmark.main(["nonsense"])


def test_module_imports_without_tensorflow():
  repo = os.path.dirname(os.path.dirname(os.path.abspath(fewframes_jax.__file__)))
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH")) if p))
  code = "import sys, fewframes_jax.benchmark; assert 'tensorflow' not in sys.modules"
  subprocess.run([sys.executable, "-c", code], check=True, env=env)
