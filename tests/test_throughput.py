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


def test_rows_have_every_field_and_consistent_numbers(fast_compile):
  config = tiny_config()
  rows = tp.run_infer(config, ks=(4,), warmup=1, steps=2)
  rows += tp.run_train(config, ks=(4,), warmup=1, steps=1, which=("parallel",))
  ratios = tp.ratio_rows(rows)
  blob = json.loads(json.dumps({"machine": tp.machine_info(), "rows": rows, "ratios": ratios}))
  assert [r["name"] for r in blob["rows"]] == ["teacher", "student_k4", "student_k4_sampled",
                                              "train_parallel_k4"]
  for r in blob["rows"]:
    assert set(r) == set(tp.ROW_FIELDS)
    assert r["videos_per_sec"] > 0 and r["flops_per_video"] > 0
    assert r["videos_per_sec"] == pytest.approx(r["batch_size"] * 1e3 / r["ms_per_step"])
    assert r["tflops_per_sec"] == pytest.approx(r["flops_per_video"] * r["videos_per_sec"] / 1e12)
    assert r["mfu"] is None and r["peak_memory_bytes"] is None  # CPU: no known peak, no allocator stats
    assert r["compiled_memory_bytes"] > 0
  by_name = {r["name"]: r for r in blob["rows"]}
  # The student sees 4 of 12 frames, whether picked on the host or on the device.
  assert by_name["student_k4"]["flops_per_video"] < by_name["teacher"]["flops_per_video"]
  assert by_name["student_k4_sampled"]["flops_per_video"] == pytest.approx(
      by_name["student_k4"]["flops_per_video"], rel=0.15)  # plus the gather
  # The joint train step (forward + backward of both networks) costs more than twice both forwards.
  assert by_name["train_parallel_k4"]["flops_per_video"] > 2 * (
      by_name["teacher"]["flops_per_video"] + by_name["student_k4"]["flops_per_video"])
  assert [q["student"] for q in blob["ratios"]] == ["student_k4", "student_k4_sampled"]
  for q in blob["ratios"]:
    assert set(q) == set(tp.RATIO_FIELDS)
    s = by_name[q["student"]]
    assert q["flop_ratio"] == pytest.approx(by_name["teacher"]["flops_per_video"] / s["flops_per_video"])
    assert q["throughput_ratio"] == pytest.approx(s["videos_per_sec"] / by_name["teacher"]["videos_per_sec"])
  assert "| student_k4 |" in tp.format_table(rows, ratios)


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
  variables = jax.eval_shape(lambda x, n: model.init({"params": rng, "dropout": rng}, x, n, train=False), x, n)
  assert {v.dtype for v in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}  # params stay float32

  def forward(v, x, n):
    return model.apply(v, x, n, train=True, rngs={"dropout": rng}, mutable=["batch_stats"])[0]

  grad = jax.grad(lambda v, x, n: forward(v, x, n).probabilities.sum())
  dots = _dot_dtypes(jax.make_jaxpr(grad)(variables, x, n).jaxpr, collections.Counter())
  assert dots and set(dots) == {("bfloat16", "bfloat16")}, dict(dots)  # forward and backward
  out = jax.eval_shape(forward, variables, x, n)
  assert out.probabilities.dtype == jnp.float32 and out.representation.dtype == jnp.float32


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
