"""The command line `python -m fewframes_jax.benchmark`: help, a tiny `infer` run's JSON, the `input`
subcommand, and one clear line (exit 2, no traceback) for each user mistake."""
import json
import os
import subprocess
import sys

import pytest

from fewframes_jax.data import synthetic

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
T, C = 12, 6
TINY = ["--config=configs/nextvlad_k10.py:tiny,k=4", f"--config.data.max_frames={T}",
        "--config.data.feature_sizes=12,4", f"--config.data.num_classes={C}", "--config.data.eval_batch_size=4"]


def benchmark(*args, timeout=300):
  env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_DISABLE_MOST_OPTIMIZATIONS="1")
  env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # the command itself keeps TensorFlow quiet
  return subprocess.run([sys.executable, "-m", "fewframes_jax.benchmark", *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=timeout)


def test_help_describes_every_subcommand():
  proc = benchmark("--help")
  assert proc.returncode == 0, proc.stderr
  for command in ("infer", "train", "input", "eval", "export", "all"):
    assert f"\n  {command} " in proc.stdout
  assert "--ks" in proc.stdout and "--json_out" in proc.stdout


def test_infer_writes_every_row_and_ratio(tmp_path):
  out = str(tmp_path / "infer.json")
  proc = benchmark("infer", *TINY, "--ks=4,2", "--no_sampled", "--steps=2", "--warmup=0", f"--json_out={out}")
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
  assert "| teacher | nextvlad | 12 |" in proc.stdout
  with open(out) as f:
    result = json.load(f)
  assert result["command"] == "infer" and set(result) == {"command", "machine", "config", "infer", "machine_end"}
  assert result["config"]["max_frames"] == T and result["config"]["num_classes"] == C
  assert set(result["machine"]) >= {"device_kind", "cpu_model", "load_average", "date"}
  rows = result["infer"]["rows"]
  assert [r["name"] for r in rows] == ["teacher", "student_k4", "student_k2"]
  for r in rows:
    assert r["batch_size"] == 4 and len(r["step_ms"]) == 2 and r["flops_per_video"] > 0
    assert r["videos_per_sec"] == pytest.approx(r["batch_size"] * 1e3 / r["ms_per_step"])
    assert r["tflops_per_sec"] == pytest.approx(r["flops_per_video"] * r["videos_per_sec"] / 1e12)
    assert r["mfu"] is None and r["peak_memory_bytes"] is None  # CPU: no known peak, no allocator stats
    assert r["compiled_memory_bytes"] > 0
  flops = {r["name"]: r["flops_per_video"] for r in rows}
  assert flops["teacher"] > flops["student_k4"] > flops["student_k2"]  # 12, 4 and 2 frames
  ratios = {q["student"]: q for q in result["infer"]["ratios"]}
  assert set(ratios) == set(flops) - {"teacher"}
  teacher = rows[0]
  for r in rows[1:]:
    q = ratios[r["name"]]
    assert q["flop_ratio"] == pytest.approx(teacher["flops_per_video"] / r["flops_per_video"])
    # Timed in the same rounds: the median of the per-round ratios (two rounds: their mean).
    per_round = [t / s for t, s in zip(teacher["step_ms"], r["step_ms"])]
    assert q["throughput_ratio"] == pytest.approx(sum(per_round) / 2)


def test_input_prints_and_writes_json(tmp_path):
  synthetic.write_split(str(tmp_path), "train", 12, spec=synthetic.SyntheticSpec(num_classes=5), seed=0,
                        num_shards=3)
  pattern, out = str(tmp_path / "train-*.tfrecord"), str(tmp_path / "input.json")
  proc = benchmark("input", f"--file_pattern={pattern}", "--batch_size=4", "--num_batches=3",
                   "--warmup_batches=1", "--num_classes=5", "--max_frames=16", f"--json_out={out}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "input pipeline (16 frames):" in proc.stdout and "videos/s" in proc.stdout
  assert proc.stderr.strip() == ""  # no TensorFlow start-up lines
  with open(out) as f:
    result = json.load(f)
  assert result["batches"] == 3 and result["videos"] == 12 and result["file_pattern"] == pattern


@pytest.mark.parametrize("args, field", [
    (["nonsense", *TINY], "subcommand"),
    ([], "subcommand"),
    (["infer"], "--config"),
    (["infer", *TINY, "--ks=4,400"], "--ks=4,400"),
    (["train", *TINY, "--ks=0"], "--ks=0"),
    (["infer", *TINY, "--ks=4", "--config.student.sampling=bogus"], "student.sampling='bogus'"),
    (["train", *TINY, "--ks=4", "--train_which=teacher,students"], "--train_which"),
    (["eval", *TINY, "--ks=4", "--file_pattern=/nonexistent/eval*.tfrecord"], "--file_pattern"),
    (["export", *TINY, "--ks=4", "--file_pattern=/nonexistent/eval*.tfrecord"], "--file_pattern"),
    (["input", "--student_k=4", "--sampling=bogus"], "--sampling='bogus'"),
    (["restart", "--fraction=1.5"], "--fraction=1.5"),
    (["eval", *TINY, "--ks=4", "--selectors=uniform,learned:video"], "--selectors"),
])
def test_user_mistakes_print_one_line_and_exit_2(args, field):
  proc = benchmark(*args)
  assert proc.returncode == 2, proc.stderr
  assert "Traceback" not in proc.stderr
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: ") and field in lines[0], proc.stderr


def test_module_imports_without_tensorflow():
  code = "import sys, fewframes_jax.benchmark; assert 'tensorflow' not in sys.modules"
  subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT,
                 env=dict(os.environ, PYTHONPATH=ROOT))
