"""In-memory compute benchmarks: the timed forward is the inference path, its FLOPs are the model's (every
scan step counted), train rows; and the bfloat16 compute path they measure."""
import collections

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import base
from fewframes_jax import inference
from fewframes_jax import metrics as metrics_lib
from fewframes_jax import parallel
from fewframes_jax.train import trainer as train_lib
from fewframes_jax.train import run_setup
from fewframes_jax.benchmark import compute
from fewframes_jax.metrics import flops as flops_lib
from fewframes_jax.benchmark import timing
from fewframes_jax.data.quantization import dequantize, quantize
from fewframes_jax import specs
from fewframes_jax.models import build_model

T, D, C, B = 12, 16, 6, 4


# Compile-bound; XLA's optimisation passes do not change what these tests check.
pytestmark = pytest.mark.usefixtures("fast_compile")


def tiny_config(family="nextvlad", mode="parallel", k=4):
  c = base.experiment(family, k=k, arg=f"tiny,mode={mode}")
  c.data.max_frames, c.data.feature_sizes, c.data.num_classes = T, (12, 4), C
  c.data.batch_size = c.data.eval_batch_size = B
  c.teacher.hrnn.num_blocks = 3
  c.student.hrnn.num_blocks = 0  # derived from each k
  return c


def _model_flops(scorer, frames):
  """`flops.forward_flops_per_video` of the scorer's model on `frames` float frames, unroll=1."""
  variables = flops_lib.abstract_variables(scorer.model, frames=frames, feature_dim=D)
  return flops_lib.forward_flops_per_video(scorer.model, variables, num_frames_T=frames, feature_dim=D,
                                           batch_size=B)


def test_timed_forward_is_the_scorers_eval_forward():
  config = tiny_config(k=5)
  common = dict(network="nextvlad", batch_size=B, feature_dim=D, num_classes=C, dtype="float32", seed=3)
  teacher, student = compute.teacher_forward(config), compute.student_forward(config, 5)
  assert student.selection == inference.Selection(k=5, method="uniform")
  variables = {id(s): compute.served_variables(config, s) for s in (teacher, student)}
  for scorer, frames, preselected in ((teacher, T, False), (student, 5, True), (student, T, False)):
    f = compute.compile_forward(scorer, variables[id(scorer)], name="x", frames=frames, preselected=preselected,
                                **common)
    assert f.args[1].shape == (B, frames, D) and f.args[1].dtype == jnp.uint8
    want = jax.jit(lambda *a, s=scorer, p=preselected: s.apply(*a, preselected=p).probabilities)(*f.args)
    np.testing.assert_array_equal(f.compiled(*f.args), want)
    assert f.meta["k"] == (None if scorer is teacher else 5) and f.meta["frames"] == frames


def test_inference_rows_count_the_models_flops_with_every_scan_step():
  """H-RNN rows (a scan per level; the teacher's unrolled by 2, counted on its unroll=1 twin) against
  `forward_flops_per_video` of the same networks plus the dequantization of their input: a scan counted
  once would lose most of a row's FLOPs; the rows add only the head's probabilities on top."""
  config = tiny_config("hrnn", k=8)
  config.teacher.hrnn.unroll = 2
  rows = compute.run_infer(config, ks=[8], warmup=0, steps=1, sampled=False)
  assert [(r["name"], r["frames"], r["k"]) for r in rows] == [("teacher", T, None), ("student_k8", 8, 8)]
  for row, forward in zip(rows, (compute.teacher_forward(config, unroll=1), compute.student_forward(config, 8))):
    assert set(row) == set(timing.ROW_FIELDS) and row["batch_size"] == B
    frames_u8 = jax.ShapeDtypeStruct((B, row["frames"], D), jnp.uint8)
    dequantize_flops = flops_lib.compiled_flops(dequantize, frames_u8, jax.ShapeDtypeStruct((B,), jnp.int32)) / B
    expected = _model_flops(forward, row["frames"]) + dequantize_flops
    assert expected <= row["flops_per_video"] <= 1.01 * expected
  h = config.teacher.hrnn.cells
  lstm = lambda d_in, steps: steps * 2 * (d_in * 4 * h + h * 4 * h)  # noqa: E731
  # At least the teacher's LSTM matmuls over all 12 frames and 3 blocks (one step of each scan: a quarter).
  assert rows[0]["flops_per_video"] >= lstm(D, T) + lstm(h, T) + lstm(4 * h, 3) + lstm(h, 3)


def test_train_config_is_complete_for_each_benchmark():
  config = tiny_config("hrnn", k=8)
  c = compute.train_config(config, mode="student_only", k=13, batch_size=32)
  assert (c.mode, c.student.k, c.student.hrnn.num_blocks, c.data.batch_size) == ("student_only", 13, 3, 32)
  c = compute.train_config(config, mode="parallel")
  assert (c.student.k, c.student.hrnn.num_blocks, c.data.batch_size) == (8, 2, B)
  assert config.mode == "parallel" and config.student.hrnn.num_blocks == 0  # the original is unchanged
  with pytest.raises(ValueError, match="unknown train benchmarks"):
    compute.run_train(config, ks=[4], which=("students",))


def test_parallel_train_row():
  config = tiny_config(k=4)
  (row,) = compute.run_train(config, ks=[4], warmup=0, steps=1, which=("parallel",))
  assert set(row) == set(timing.ROW_FIELDS)
  assert (row["name"], row["kind"], row["network"], row["k"], row["frames"]) == (
      "train_parallel_k4", "train", "nextvlad+nextvlad", 4, T)
  assert row["compiled_memory_bytes"] > 0 and row["mfu"] is None  # CPU: no known peak
  # Forward + backward of both networks (and the optimizer) cost more than twice both forwards.
  forwards = _model_flops(compute.teacher_forward(config), T) + _model_flops(compute.student_forward(config, 4), 4)
  assert row["flops_per_video"] > 2 * forwards


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
  model = build_model(specs.NetworkSpec.from_config(config.teacher), num_classes=C, feature_sizes=(12, 4),
                      dtype="bfloat16")
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


def test_served_bfloat16_weights_store_the_cast_kernels():
  """What `inference.cast_for_inference` stores (its outputs are bit-identical: tests/test_inference.py)."""
  config = tiny_config()
  config.dtype = "bfloat16"
  cast = compute.served_variables(config, compute.student_forward(config, 4))  # initialised in float32
  enc = cast["params"]["encoder"]
  assert enc["hidden"]["kernel"].dtype == jnp.bfloat16
  assert cast["params"]["head"]["logits"]["kernel"].dtype == jnp.bfloat16
  # Used in float32 by the forward: kept.
  assert enc["video_vlad"]["centres"].dtype == jnp.float32 and enc["hidden_bn"]["scale"].dtype == jnp.float32
  assert {x.dtype for x in jax.tree.leaves(cast["batch_stats"])} == {jnp.dtype(jnp.float32)}


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
  config = tiny_config(mode="teacher")
  config.data.batch_size = 32
  config.optim.learning_rate = 0.01
  setup = run_setup.make_setup(specs.RunSpec.from_config(config))
  state = run_setup.create_state(setup, jax.random.PRNGKey(0), parallel.make_mesh())
  rng = np.random.default_rng(0)
  prototypes = rng.standard_normal((C, D))
  step = train_lib.jit_train_step(setup)
  for _ in range(25):
    state, _ = step(state, _learnable_batch(rng, prototypes, 32))
  test = _learnable_batch(rng, prototypes, 96)
  gaps, probs = {}, {}
  for dtype in ("float32", "bfloat16"):
    config.dtype = dtype
    forward = compute.teacher_forward(config)
    probs[dtype] = np.asarray(jax.jit(lambda v, x, n, s=forward: s.apply(v, x, n).probabilities)(
        state.teacher.variables, test["frames"], test["num_frames"]))
    gaps[dtype] = metrics_lib.global_average_precision(probs[dtype], test["labels"])
  assert gaps["float32"] > 0.6  # trained well above chance (about 0.3 for 6 classes)
  assert 0 < np.max(np.abs(probs["bfloat16"] - probs["float32"])) < 0.05  # bfloat16 did run
  assert abs(gaps["bfloat16"] - gaps["float32"]) <= BF16_GAP_TOLERANCE, gaps
