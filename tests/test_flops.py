"""Tests for fewframes_jax.metrics.flops: XLA counts against analytic counts, loops counted in full."""
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fewframes_jax.metrics import flops as flops_lib
from fewframes_jax.metrics.flops import (compiled_flops, family_rows, flops_table, forward_flops_per_video,
                                      param_count, per_video_flops_split, scan_aware_flops)

# XLA's convention (HloCostAnalysis): a multiply-add is 2 FLOPs, an elementwise add/mul/compare is 1
# per output element, a sum over n elements is n - 1 per output; transcendentals are not FLOPs.
STEPS, B, H = 50, 8, 16
X = jnp.ones((B, H))
W = jnp.ones((H, H))


def _matmul_chain(x, w, unroll=1):
  def body(c, _):
    return c @ w, None
  return jax.lax.scan(body, x, None, length=STEPS, unroll=unroll)[0]


def test_plain_count_sees_one_scan_step_and_scan_aware_sees_all():
  analytic = 2 * B * H * H * STEPS
  plain = compiled_flops(_matmul_chain, X, W)
  assert plain == pytest.approx(analytic / STEPS, rel=1e-2)  # the pitfall this module exists for
  assert compiled_flops(_matmul_chain, X, W, unroll=STEPS) == pytest.approx(analytic, rel=1e-6)
  for method in flops_lib.SCAN_FLOPS_METHODS:
    assert scan_aware_flops(_matmul_chain, X, W, method=method) == pytest.approx(analytic, rel=1e-4)


def _nested(x, w, xs):
  def outer(c, xs_t):
    def inner(c2, x_t):
      return jnp.tanh(c2 @ w + x_t), c2.sum()
    return jax.lax.scan(inner, c, xs_t)
  return jax.lax.scan(outer, x, xs, reverse=True)


def test_nested_scans_and_unrolled_evaluation():
  xs = jax.random.normal(jax.random.key(0), (3, 4, B, H))
  per_step = 2 * B * H * H + B * H + (B * H - 1)  # matmul, add, sum
  analytic = 3 * 4 * per_step
  for method in flops_lib.SCAN_FLOPS_METHODS:
    assert scan_aware_flops(_nested, X, W, xs, method=method) == pytest.approx(analytic, rel=1e-3)
  assert compiled_flops(_nested, X, W, xs) < analytic / 8
  # The unrolled re-evaluation computes the same values as the scans.
  x = jax.random.normal(jax.random.key(1), (B, H)) * 0.1
  closed = jax.make_jaxpr(_nested)(x, W * 0.1, xs)
  got = jax.jit(lambda *a: flops_lib._eval_unrolled(closed.jaxpr, closed.consts, a))(x, W * 0.1, xs)
  want = jax.tree.leaves(_nested(x, W * 0.1, xs))
  for g, w in zip(got, want):
    np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def test_scans_inside_jit_checkpoint_and_custom_jvp_are_found():
  @jax.custom_jvp
  def cj(x, w):
    return _matmul_chain(x, w)

  @cj.defjvp
  def _cj_jvp(primals, tangents):  # pragma: no cover - never differentiated here
    return cj(*primals), tangents[0]

  analytic = 2 * B * H * H * STEPS
  fns = {
      "jit": jax.jit(_matmul_chain),
      "checkpoint": jax.checkpoint(_matmul_chain),
      "custom_jvp": cj,
      "twice": lambda x, w: _matmul_chain(x, w) + jax.jit(_matmul_chain)(x + 1.0, w),
  }
  for name, fn in fns.items():
    want = analytic * (2 if name == "twice" else 1)
    for method in flops_lib.SCAN_FLOPS_METHODS:
      assert scan_aware_flops(fn, X, W, method=method) == pytest.approx(want, rel=1e-3), (name, method)


def test_scans_merged_by_xla_are_detected():
  # Two identical scans on the same inputs: XLA computes one (CSE). Scaling both would double count.
  def same_twice(x, w):
    return _matmul_chain(x, w) + _matmul_chain(x, w)

  with pytest.raises(ValueError, match="do not match its scans"):
    scan_aware_flops(same_twice, X, W)
  assert scan_aware_flops(same_twice, X, W, method="unroll") == pytest.approx(
      2 * B * H * H * STEPS + B * H, rel=1e-3)


def test_uncounted_loops_raise():
  def while_fn(x, w):
    return jax.lax.while_loop(lambda c: c.sum() < 1e6, lambda c: c @ w, x)

  with pytest.raises(ValueError, match="allow_loops"):
    scan_aware_flops(while_fn, X, W)
  assert scan_aware_flops(while_fn, X, W, allow_loops=True) == compiled_flops(while_fn, X, W)

  def dropout_like(x, key):  # threefry random bits compile to a 5-step while loop on CPU
    return jnp.where(jax.random.bernoulli(key, 0.5, x.shape), x, 0.0)

  with pytest.raises(ValueError, match="unsafe_rbg"):
    scan_aware_flops(dropout_like, X, jax.random.key(0))
  scan_aware_flops(dropout_like, X, jax.random.key(0, impl="unsafe_rbg"))  # no loop
  with pytest.raises(ValueError, match="scale"):
    scan_aware_flops(_matmul_chain, X, W, method="count")


def test_compiled_call_flops_reads_the_compiled_program_unless_it_has_loops():
  def matmul(x, w):
    return x @ w

  compiled = jax.jit(matmul).lower(X, W).compile()
  assert flops_lib.compiled_call_flops(matmul, (X, W), compiled) == 2 * B * H * H
  # A scan: the compiled program's count sees one step; the call is counted in full instead.
  compiled = jax.jit(_matmul_chain).lower(X, W).compile()
  assert flops_lib.compiled_call_flops(_matmul_chain, (X, W), compiled) == pytest.approx(
      2 * B * H * H * STEPS, rel=1e-4)

  def dropout_like(x, key):  # timed with a threefry key (a loop on CPU), counted on an 'unsafe_rbg' one
    return jnp.where(jax.random.bernoulli(key, 0.5, x.shape), x @ W, 0.0)

  args = (X, jax.random.key(0))
  compiled = jax.jit(dropout_like).lower(*args).compile()
  flops = flops_lib.compiled_call_flops(dropout_like, args, compiled,
                                        flops_args=(X, jax.random.key(0, impl="unsafe_rbg")))
  assert flops >= 2 * B * H * H


def test_cost_analysis_return_forms():
  class Fake:
    def __init__(self, cost):
      self.cost = cost

    def cost_analysis(self):
      return self.cost

  assert flops_lib._cost_flops(Fake({"flops": 12.0})) == 12.0
  assert flops_lib._cost_flops(Fake([{"flops": 7.0}])) == 7.0  # older jax
  assert flops_lib._cost_flops(Fake({"bytes accessed": 4.0})) == 0.0  # XLA omits zero flops
  with pytest.raises(ValueError, match="not available"):
    flops_lib._cost_flops(Fake(None))


def test_compiled_flops_takes_abstract_args_and_static_kwargs():
  def f(x, w, *, times):
    for _ in range(times):
      x = x @ w
    return x

  spec = jax.ShapeDtypeStruct((B, H), jnp.float32)
  assert compiled_flops(f, spec, W, times=3) == 3 * 2 * B * H * H


class Out(NamedTuple):
  representation: Any
  logits: Any
  intermediates: Any


class DenseOverFrames(nn.Module):
  """Per-frame dense, masked sum over frames, classifier: flops(T) = a*T + b with known a, b."""
  hidden: int = 32
  classes: int = 8

  @nn.compact
  def __call__(self, frames, num_frames, *, train):
    h = nn.Dense(self.hidden)(frames)
    mask = (jnp.arange(frames.shape[1])[None, :] < num_frames[:, None]).astype(h.dtype)
    rep = (h * mask[:, :, None]).sum(axis=1)
    return Out(rep, nn.Dense(self.classes)(rep), h)


def _dense_flops(t, d, hid, c):
  per_frame = 2 * d * hid + hid + hid + hid + 1  # matmul, bias, mask multiply, sum, compare
  per_video = 2 * hid * c + c - hid  # classifier matmul and bias; the sum has T - 1 adds per unit
  return per_frame * t + per_video, per_frame, per_video


def test_dense_model_flops_and_linear_split():
  d, model = 64, DenseOverFrames(classes=64)
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 4, d)), jnp.array([4]),
                                                train=False))
  measured = {}
  for t in (2, 5, 10, 20, 30):
    measured[t] = forward_flops_per_video(model, variables, num_frames_T=t, feature_dim=d)
    assert measured[t] == pytest.approx(_dense_flops(t, d, 32, 64)[0], rel=0.01), t
  batched = forward_flops_per_video(model, variables, num_frames_T=10, feature_dim=d, batch_size=4)
  assert batched == pytest.approx(measured[10], rel=0.02)
  a, b = per_video_flops_split(measured)
  _, want_a, want_b = _dense_flops(1, d, 32, 64)
  assert a == pytest.approx(want_a, rel=0.01)
  assert b == pytest.approx(want_b, rel=0.05)


class ToyLSTM(nn.Module):
  cells: int = 32
  unroll: int = 1

  @nn.compact
  def __call__(self, frames, num_frames, *, train):
    # No elementwise op on `frames` before the RNN: with unrolled steps, XLA fuses such an op into each
    # step's slice and its cost analysis counts it at full [B, T, D] size per step (see the next test).
    h = nn.RNN(nn.LSTMCell(self.cells), unroll=self.unroll)(frames, seq_lengths=num_frames)
    last = h[jnp.arange(h.shape[0]), num_frames - 1]
    last = nn.BatchNorm(use_running_average=not train)(last)
    last = nn.Dropout(0.5, deterministic=not train)(last)
    return Out(last, nn.Dense(4)(last), h)


@pytest.mark.parametrize("train", [False, True])
def test_recurrent_model_counts_every_step(train):
  t, d, cells = 6, 32, 32
  model = ToyLSTM(cells=cells)
  variables = model.init(jax.random.key(0), jnp.zeros((2, t, d)), jnp.full((2,), t), train=False)
  kw = dict(num_frames_T=t, feature_dim=d, batch_size=2, train=train)
  scaled = forward_flops_per_video(model, variables, **kw)
  unrolled = forward_flops_per_video(model, variables, scan_method="unroll", **kw)
  built_unrolled = forward_flops_per_video(ToyLSTM(cells=cells, unroll=t), variables, scan_aware=False, **kw)
  plain = forward_flops_per_video(model, variables, scan_aware=False, **kw)
  assert scaled == pytest.approx(unrolled, rel=1e-3)
  assert scaled == pytest.approx(built_unrolled, rel=1e-3)
  # Dominant term: the 4 gate matmuls per step, [d + cells] -> 4 * cells.
  assert scaled == pytest.approx(t * 2 * (d + cells) * 4 * cells, rel=0.08)
  assert plain < scaled / (t / 2)


def test_unrolled_counts_inflate_elementwise_producers_of_step_inputs():
  # Documents why method="scale" is the default: once unrolled, x * 2 over all T steps is fused into
  # every step's input slice and counted at full size per step (T^2 growth), though only one slice
  # of it is computed there. The loop keeps it outside, counted once.
  t, d = 16, 32

  def f(x, w):
    return jax.lax.scan(lambda c, x_t: (jnp.tanh(c @ w + x_t), None), jnp.zeros((1, d)), x * 2.0)[0]

  x, w = jnp.ones((t, 1, d)), jnp.ones((d, d))
  honest = t * d + t * (2 * d * d + d)
  assert scan_aware_flops(f, x, w) == pytest.approx(honest, rel=1e-2)
  # Each of the T steps counts the whole x * 2 (T * d) where the loop counts it once.
  assert scan_aware_flops(f, x, w, method="unroll") == pytest.approx(honest + (t - 1) * t * d, rel=1e-3)


def test_param_count():
  class Known(nn.Module):
    @nn.compact
    def __call__(self, x):
      x = nn.Dense(4)(x)  # 3*4 + 4
      x = nn.BatchNorm(use_running_average=True)(x)  # scale + bias: 8 (mean/var are batch_stats)
      return nn.Dense(5)(x)  # 4*5 + 5

  variables = Known().init(jax.random.key(0), jnp.zeros((1, 3)))
  assert param_count(variables) == 16 + 8 + 25
  assert param_count(jax.eval_shape(lambda: variables)) == 49
  with pytest.raises(ValueError, match="params"):
    param_count({"batch_stats": variables["batch_stats"]})


def test_linear_split_recovers_synthetic_line():
  a, b = per_video_flops_split({t: 3.5e6 * t + 7.5e7 for t in (6, 10, 15, 20, 30, 300)})
  assert a == pytest.approx(3.5e6) and b == pytest.approx(7.5e7)
  with pytest.raises(ValueError, match=">= 2"):
    per_video_flops_split({30: 1.0})


def test_family_rows_and_table():
  flops = {t: 2e6 * t + 1e8 for t in (300, 30, 10)}
  rows = family_rows("toy", flops, {300: 1_500_000, 30: 1_500_000}, teacher_frames=300)
  assert [r["frames"] for r in rows] == [300, 30, 10]
  assert rows[0]["name"] == "toy teacher" and rows[1]["name"] == "toy student"
  assert rows[1]["ratio"] == pytest.approx(flops[300] / flops[30])
  assert rows[1]["per_frame_ratio"] == pytest.approx(10.0)
  assert rows[2]["per_video"] == pytest.approx(1e8)
  table = flops_table(rows)
  lines = table.splitlines()
  assert len(lines) == 2 + 3 and all(line.startswith("|") and line.endswith("|") for line in lines)
  assert "| toy student | 30 | 160.000 M | 1.500 M | 4.38x | 10.00x | 2.000 M | 100.000 M | 62.5% |" in lines
  assert lines[-1].split("|")[4].strip() == "-"  # no params given for T=10
  with pytest.raises(ValueError, match="flops"):
    flops_table([{"name": "x", "frames": 3}])
  with pytest.raises(ValueError, match="teacher"):
    family_rows("toy", {30: 1.0}, {}, teacher_frames=300)
