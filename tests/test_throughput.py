"""Benchmark rows (every field, consistent numbers, scans counted in full) and the bfloat16 compute path."""
import collections
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import base
from fewframes_jax import metrics as metrics_lib
from fewframes_jax import throughput as tp
from fewframes_jax import train as train_lib
from fewframes_jax import train_loop
from fewframes_jax.data.quantization import dequantize, quantize
from fewframes_jax.models import build_model

T, D, C = 12, 16, 6


def tiny_config(family="nextvlad", mode="parallel"):
  c = base.experiment(family, k=4, arg=f"tiny,mode={mode}")
  c.data.max_frames = T
  c.data.num_classes = C
  c.data.feature_sizes = (12, 4)
  c.data.batch_size = 4
  c.data.eval_batch_size = 4
  c.teacher.hrnn.num_blocks = 3
  return c


def test_peak_table():
  assert tp.peak_tflops("NVIDIA H100 80GB HBM3", "bfloat16") == 989.0
  assert tp.peak_tflops("NVIDIA H100 80GB HBM3", "float32") == 494.0
  assert tp.peak_tflops("NVIDIA H100 PCIe", "bfloat16") == 756.0
  assert tp.peak_tflops("NVIDIA H200", "bfloat16") == 989.0
  assert tp.peak_tflops("NVIDIA A100-SXM4-80GB", "bfloat16") == 312.0
  assert tp.peak_tflops("cpu", "bfloat16") is None


def test_time_steps_waits_and_counts():
  calls = []
  times = tp.time_steps(lambda: calls.append(1) or jnp.ones(3), warmup=2, steps=3)
  assert len(calls) == 5 and len(times) == 3 and all(t >= 0 for t in times)
  with pytest.raises(ValueError, match="steps"):
    tp.time_steps(lambda: None, warmup=0, steps=0)


@pytest.fixture
def fast_compile():
  """Compile time dominates these tests; XLA's optimisations do not change what they check."""
  jax.config.update("jax_disable_most_optimizations", True)
  yield
  jax.config.update("jax_disable_most_optimizations", False)


def test_recurrent_flops_count_every_scan_step():
  """H-RNN's FLOPs are at least its LSTM matmuls over ALL frames and blocks (a plain XLA count sees
  one step of each scan, about a quarter of this here)."""
  config = tiny_config("hrnn")
  model = build_model(config.teacher, num_classes=C, feature_sizes=(12, 4))
  variables = train_lib.init_variables(model, jax.random.PRNGKey(0), frames=T, feature_dim=D)
  row = tp.benchmark_forward(model, variables, name="teacher", network="hrnn", frames=T, batch_size=2,
                             feature_dim=D, num_classes=C, dtype="float32", warmup=0, steps=1)
  h, blocks = config.teacher.hrnn.cells, config.teacher.hrnn.num_blocks
  lstm = lambda d_in, steps: steps * 2 * (d_in * 4 * h + h * 4 * h)  # noqa: E731
  matmuls = lstm(D, T) + lstm(h, T) + lstm(4 * h, blocks) + lstm(h, blocks)
  assert row["flops_per_video"] >= matmuls
  assert row["flops_per_video"] < 3 * matmuls


# ---- the bfloat16 compute path ----


def _dot_dtypes(jaxpr, acc):
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "dot_general":
      acc[tuple(str(v.aval.dtype) for v in eqn.invars)] += 1
    for sub in jax.extend.core.jaxprs_in_params(eqn.params):
      _dot_dtypes(sub, acc)
  return acc


@pytest.mark.parametrize("family", ["nextvlad", "netvlad", "hrnn"])
def test_bfloat16_path_runs_every_matmul_in_bfloat16(family):
  """Traced only (shapes, no compile): forward and backward matmuls all take bfloat16 operands."""
  config = tiny_config(family)
  model = build_model(config.teacher, num_classes=C, feature_sizes=(12, 4), dtype="bfloat16")
  x, n = jax.ShapeDtypeStruct((2, T, D), jnp.float32), jax.ShapeDtypeStruct((2,), jnp.int32)
  rng = jax.random.PRNGKey(0)
  variables = jax.eval_shape(
      lambda x, n: model.init({"params": rng, "dropout": rng}, x, n, train=False), x, n)
  assert {v.dtype for v in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}  # params stay float32

  def forward(v, x, n):
    return model.apply(v, x, n, train=True, rngs={"dropout": rng}, mutable=["batch_stats"])[0]

  grad = jax.grad(lambda v, x, n: forward(v, x, n).probabilities.sum())
  dots = _dot_dtypes(jax.make_jaxpr(grad)(variables, x, n).jaxpr, collections.Counter())
  assert dots and set(dots) == {("bfloat16", "bfloat16")}, dict(dots)  # forward and backward
  out = jax.eval_shape(forward, variables, x, n)
  assert out.probabilities.dtype == jnp.float32 and out.representation.dtype == jnp.float32


def test_cast_params_for_inference_is_bit_identical():
  config = tiny_config("nextvlad")
  model = build_model(config.teacher, num_classes=C, feature_sizes=(12, 4), dtype="bfloat16")
  variables = train_lib.init_variables(model, jax.random.PRNGKey(0), frames=T, feature_dim=D)
  cast = tp.cast_params_for_inference(model, variables, frames=T, feature_dim=D, dtype="bfloat16")
  enc = cast["params"]["encoder"]
  assert enc["hidden"]["kernel"].dtype == jnp.bfloat16
  assert cast["params"]["head"]["logits"]["kernel"].dtype == jnp.bfloat16
  # Used in float32 by the forward: kept.
  assert enc["video_vlad"]["centres"].dtype == jnp.float32 and enc["hidden_bn"]["scale"].dtype == jnp.float32
  assert {x.dtype for x in jax.tree.leaves(cast["batch_stats"])} == {jnp.dtype(jnp.float32)}
  x = jax.random.normal(jax.random.PRNGKey(1), (3, T, D))
  n = jnp.array([T, 5, 0])
  forward = jax.jit(lambda v: model.apply(v, x, n, train=False).probabilities)
  np.testing.assert_array_equal(forward(cast), forward(variables))
  assert tp.cast_params_for_inference(model, variables, frames=T, feature_dim=D, dtype="float32") is variables


def _learnable_batch(rng, prototypes, batch):
  """Frames near their class prototype (plus noise), one label per video."""
  cls = rng.integers(0, C, batch)
  x = 0.9 * prototypes[cls][:, None, :] + 0.6 * rng.standard_normal((batch, T, D))
  labels = np.zeros((batch, C), np.uint8)
  labels[np.arange(batch), cls] = 1
  return {"frames": quantize(x), "num_frames": rng.integers(3, T + 1, batch).astype(np.int32),
          "labels": labels, "valid": np.ones([batch], bool)}


# |GAP(bfloat16) - GAP(float32)| on the same trained parameters: bfloat16 keeps 8 bits of mantissa,
# so probabilities move by about 1e-2 at most here, and the ranking of 96 x 6 scores barely changes.
BF16_GAP_TOLERANCE = 0.02


def test_bfloat16_eval_gap_matches_float32():
  config = tiny_config("nextvlad", mode="teacher")
  config.data.batch_size = 32
  config.optim.learning_rate = 0.01
  nets = train_loop.build(config)
  state = train_loop.create_state(config, nets, feature_dim=D, rng=jax.random.PRNGKey(0))
  rng = np.random.default_rng(0)
  prototypes = rng.standard_normal((C, D))
  step = train_lib.jit_train_step(nets)
  for _ in range(25):
    state, _ = step(state, _learnable_batch(rng, prototypes, 32))
  test = _learnable_batch(rng, prototypes, 96)
  frames = dequantize(test["frames"], test["num_frames"])
  gaps, probs = {}, {}
  for dtype in ("float32", "bfloat16"):
    model = build_model(config.teacher, num_classes=C, feature_sizes=(12, 4), dtype=dtype)
    probs[dtype] = np.asarray(jax.jit(lambda v, x, n, m=model: m.apply(v, x, n, train=False).probabilities)(
        state.teacher.variables, frames, test["num_frames"]))
    gaps[dtype] = metrics_lib.global_average_precision(probs[dtype], test["labels"])
  assert gaps["float32"] > 0.6  # trained well above chance (about 0.3 for 6 classes)
  assert 0 < np.max(np.abs(probs["bfloat16"] - probs["float32"])) < 0.05  # bfloat16 did run
  assert abs(gaps["bfloat16"] - gaps["float32"]) <= BF16_GAP_TOLERANCE, gaps


# ---- the command line ----


def test_benchmark_all_command_writes_every_field(fast_compile, tmp_path):
  from fewframes_jax import benchmark
  from fewframes_jax.data import records
  rng = np.random.default_rng(0)
  videos = [records.encode_sequence_example(
      video_id=f"v{i}".encode(), labels=[i % C],
      features={"rgb": rng.integers(0, 256, (n, 12), dtype=np.uint8),
                "audio": rng.integers(0, 256, (n, 4), dtype=np.uint8)})
            for i, n in enumerate([T, 3, 20, 7, 1, 12])]
  records.write_tfrecord(str(tmp_path / "eval.tfrecord"), videos)
  out = str(tmp_path / "all.json")
  benchmark.main(["all", "--config=configs/nextvlad_k10.py:tiny,k=4", "--ks=4", "--no_sampled", "--steps=1",
                  "--train_which=parallel", "--rounds=1", f"--file_pattern={tmp_path / 'eval.tfrecord'}",
                  f"--json_out={out}", f"--config.data.max_frames={T}", "--config.data.feature_sizes=12,4",
                  f"--config.data.num_classes={C}", "--config.data.eval_batch_size=4"])
  with open(out) as f:
    result = json.load(f)
  assert result["config"]["dtype"] == "float32" and result["config"]["max_frames"] == T
  assert set(result["machine"]) >= {"device_kind", "cpu_model", "load_average", "date"}
  assert [r["name"] for r in result["infer"]["rows"]] == ["teacher", "student_k4"]
  assert [r["name"] for r in result["train"]["rows"]] == ["train_parallel_k4"]
  for r in result["infer"]["rows"] + result["train"]["rows"]:
    assert set(r) == set(tp.ROW_FIELDS)
    assert r["videos_per_sec"] > 0 and r["flops_per_video"] > 0
    assert r["videos_per_sec"] == pytest.approx(r["batch_size"] * 1e3 / r["ms_per_step"])
    assert r["tflops_per_sec"] == pytest.approx(r["flops_per_video"] * r["videos_per_sec"] / 1e12)
    assert r["mfu"] is None and r["peak_memory_bytes"] is None  # CPU: no known peak, no allocator stats
    assert r["compiled_memory_bytes"] > 0
  teacher, student = result["infer"]["rows"]
  assert student["flops_per_video"] < teacher["flops_per_video"]  # 4 of 12 frames
  # The joint train step (forward + backward of both networks) costs more than twice both forwards.
  assert result["train"]["rows"][0]["flops_per_video"] > 2 * (teacher["flops_per_video"] +
                                                             student["flops_per_video"])
  (ratio,) = result["infer"]["ratios"]
  assert set(ratio) == set(tp.RATIO_FIELDS)
  assert ratio["flop_ratio"] == pytest.approx(teacher["flops_per_video"] / student["flops_per_video"])
  # Inference rows are timed in the same rounds: the median of the per-round ratios.
  per_round = sorted(t / s for t, s in zip(teacher["step_ms"], student["step_ms"]))
  assert ratio["throughput_ratio"] == pytest.approx(per_round[len(per_round) // 2])
  assert [(r["name"], r["pipeline"], r["videos"]) for r in result["eval"]["rows"]] == [
      ("teacher", "full", 6), ("student_k4", "student", 6)]
  assert [r["student_frames"] for r in result["input"]] == [None, [4, "uniform"]]  # --rounds=1
  # 6 videos in batches of 4: the first batch warms the pipeline up, the second (2 videos) is timed.
  assert all(r["videos"] == 2 and r["videos_per_sec"] > 0 for r in result["input"])


def test_benchmark_config_overrides_are_checked():
  from fewframes_jax import benchmark
  config = benchmark.load_config("configs/hrnn.py:k=10,tiny", ["--config.dtype=bfloat16",
                                                             "--config.data.feature_sizes=12,4"])
  assert config.dtype == "bfloat16" and config.student.k == 10 and tuple(config.data.feature_sizes) == (12, 4)
  with pytest.raises(ValueError, match="unknown field 'nope'"):
    benchmark.load_config("configs/hrnn.py", ["--config.data.nope=1"])
  with pytest.raises(ValueError, match="no such file"):
    benchmark.load_config("configs/missing.py")
