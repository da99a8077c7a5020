"""Tests of models/recurrent.py: FrameRNN (LSTM/GRU) and the hierarchical HRNN.

The references below are plain numpy loops over time (float64) written from the cell equations in
the module docstring, fed with the params read from the flax variables tree.
"""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.base import model_config
from fewframes_jax import specs
from fewframes_jax.models import build_model
from fewframes_jax.models.recurrent import HRNN, FrameRNN, RNNLayer

D, H, T = 12, 8, 12
FEATURE_SIZES = (8, 4)  # "rgb" 8 + "audio" 4 = D
NUM_CLASSES = 5


# ---------------------------------------------------------------- numpy references


# Compile-bound; XLA's optimisation passes do not change what these tests check.
pytestmark = pytest.mark.usefixtures("fast_compile")


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def _np(tree):
  return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


def _l2_normalize(frames, n):
  x = frames / np.maximum(np.linalg.norm(frames, axis=-1, keepdims=True), 1e-6)
  x[n:] = 0.0
  return x


def _lstm_cell(p, x, state):
  c, h = state
  g = x @ p["input_kernel"] + p["bias"] + h @ p["recurrent_kernel"]
  i, j, f, o = np.split(g, 4)
  c = c * _sigmoid(f + 1.0) + _sigmoid(i) * np.tanh(j)
  return c, np.tanh(c) * _sigmoid(o)


def _gru_cell(p, x, state):
  (h,) = state
  xr, xz, xn = np.split(x @ p["input_kernel"] + p["bias"], 3)
  hr, hz, hn = np.split(h @ p["recurrent_kernel"], 3)
  r, z = _sigmoid(xr + hr), _sigmoid(xz + hz)
  n = np.tanh(xn + r * (hn + p["recurrent_bias"]))
  return (z * h + (1.0 - z) * n,)


def _stacked_rnn(cell_type, layer_params, xs):
  """xs: [n, D_in] (the valid steps only) -> (final state per layer, top h per step [n, H])."""
  cell = _lstm_cell if cell_type == "lstm" else _gru_cell
  states = []
  for p in layer_params:
    size = p["recurrent_kernel"].shape[0]
    state = (np.zeros(size), np.zeros(size)) if cell_type == "lstm" else (np.zeros(size),)
    outputs = []
    for x in xs:
      state = cell(p, x, state)
      outputs.append(state[-1])
    states.append(state)
    xs = np.array(outputs).reshape(len(xs), size)
  return states, xs


def _layers(params, layers):
  return [params[f"layer_{i}"] for i in range(layers)]


def _concat(states):
  return np.concatenate([s for state in states for s in state])


def _hrnn_reference(params, frames, n, num_blocks, layers):
  """One video: frames [T, D] -> (representation, per-frame lower top h [T, H], block states)."""
  steps = frames.shape[0]
  block_len = -(-steps // num_blocks)
  x = _l2_normalize(frames, n)
  lower, upper = _layers(params["lower"], layers), _layers(params["upper"], layers)
  block_states, intermediates = [], np.zeros((steps, H))
  for b in range(num_blocks):
    start, stop = b * block_len, min(n, (b + 1) * block_len)
    states, hs = _stacked_rnn("lstm", lower, x[start:max(start, stop)])
    block_states.append(_concat(states))
    intermediates[start:start + len(hs)] = hs
  used = -(-n // block_len)
  states, _ = _stacked_rnn("lstm", upper, np.array(block_states[:used]).reshape(used, 4 * H))
  return _concat(states), intermediates, np.array(block_states)


# ---------------------------------------------------------------- helpers

def _frames(key, batch, steps=T):
  return jax.random.normal(key, (batch, steps, D), jnp.float32)


def _tiny_config(name, num_blocks=3):
  m = model_config(name)
  m.hrnn.cells = H
  m.hrnn.num_blocks = num_blocks
  m.rnn.cells = H
  return specs.NetworkSpec.from_config(m)


def _tiny_model(name, **kwargs):
  return build_model(_tiny_config(name), num_classes=NUM_CLASSES, feature_sizes=FEATURE_SIZES, **kwargs)


def _init(model, key, frames, num_frames):
  """Random params of the model's shapes (no compile: shapes from eval_shape), scale 0.3, so the
  zero-initialised biases are exercised too."""
  shapes = jax.eval_shape(functools.partial(model.init, train=False), key, frames, num_frames)["params"]
  leaves, treedef = jax.tree.flatten(shapes)
  keys = jax.random.split(jax.random.fold_in(key, 1), len(leaves))
  return {"params": jax.tree.unflatten(
      treedef, [0.3 * jax.random.normal(k, p.shape, p.dtype) for p, k in zip(leaves, keys)])}


def _jit_apply(model, **kwargs):
  """One compiled apply per (model, train): XLA compiles are the slow part of these tests."""
  return jax.jit(functools.partial(model.apply, **kwargs), static_argnames=("train",))


# ---------------------------------------------------------------- FrameRNN

@pytest.mark.parametrize("cell_type", ["lstm", "gru"])
@pytest.mark.parametrize("layers", [1, 2])
def test_frame_rnn_matches_python_loop(cell_type, layers):
  frames = _frames(jax.random.PRNGKey(0), 3)
  num_frames = jnp.array([T, 5, 0], jnp.int32)
  model = FrameRNN(cell_type=cell_type, cells=H, layers=layers, input_norm="l2")
  variables = _init(model, jax.random.PRNGKey(1), frames, num_frames)
  rep, inter = _jit_apply(model)(variables, frames, num_frames, train=False)
  assert rep.shape == (3, H) and inter.shape == (3, T, H)
  params = _layers(_np(variables["params"]["rnn"]), layers)
  for b, n in enumerate(np.asarray(num_frames)):
    x = _l2_normalize(np.asarray(frames[b], np.float64), n)[:n]
    states, hs = _stacked_rnn(cell_type, params, x)
    np.testing.assert_allclose(rep[b], states[-1][-1], atol=1e-5)
    expected = np.zeros((T, H))
    expected[:n] = hs
    np.testing.assert_allclose(inter[b], expected, atol=1e-5)


@pytest.mark.parametrize("cell_type,gates", [("lstm", 4), ("gru", 3)])
def test_init_follows_tf_cells(cell_type, gates):
  """Biases: LSTM zeros (forget_bias is added at each step); GRU r/z at 1.0 like TF1's GRUCell.
  Kernels: glorot-uniform with the fans of TF's combined kernel [D + H, G*H]."""
  x = jnp.zeros((1, 2, D))
  params = jax.jit(RNNLayer(cell_type, H).init)(jax.random.PRNGKey(0), x, jnp.array([2]))["params"]
  expected_bias = np.zeros(gates * H) if cell_type == "lstm" else np.r_[np.ones(2 * H), np.zeros(H)]
  np.testing.assert_array_equal(params["bias"], expected_bias)
  limit = math.sqrt(6.0 / (D + H + gates * H))
  for name, rows in (("input_kernel", D), ("recurrent_kernel", H)):
    w = np.asarray(params[name])
    assert w.shape == (rows, gates * H)
    assert limit * 0.8 < np.abs(w).max() <= limit
  if cell_type == "gru":
    np.testing.assert_array_equal(params["recurrent_bias"], np.zeros(H))


def test_frame_rnn_rejects_unknown_cell():
  model = FrameRNN(cell_type="rnn", cells=H, layers=1)
  with pytest.raises(ValueError, match="cell_type"):
    model.init(jax.random.PRNGKey(0), _frames(jax.random.PRNGKey(0), 1), jnp.array([3]), train=False)


# ---------------------------------------------------------------- HRNN

def test_hrnn_one_block_is_a_plain_two_layer_lstm_then_one_upper_step():
  frames = _frames(jax.random.PRNGKey(2), 3)
  num_frames = jnp.array([T, 7, 0], jnp.int32)
  model = HRNN(num_blocks=1, cells=H, layers=2, input_norm="l2")
  variables = _init(model, jax.random.PRNGKey(3), frames, num_frames)
  (rep, inter), state = _jit_apply(model, mutable=["intermediates"])(variables, frames, num_frames, train=False)
  block_states = state["intermediates"]["block_states"][0]
  assert rep.shape == (3, 4 * H) and inter.shape == (3, T, H) and block_states.shape == (3, 1, 4 * H)
  params = _np(variables["params"])
  lower, upper = _layers(params["lower"], 2), _layers(params["upper"], 2)
  for b, n in enumerate(np.asarray(num_frames)):
    x = _l2_normalize(np.asarray(frames[b], np.float64), n)[:n]
    states, hs = _stacked_rnn("lstm", lower, x)  # a plain 2-layer LSTM over the whole video
    np.testing.assert_allclose(block_states[b, 0], _concat(states), atol=1e-5)
    np.testing.assert_allclose(inter[b, :n], hs.reshape(n, H), atol=1e-5)
    np.testing.assert_array_equal(inter[b, n:], 0.0)
    # One upper step from the zero state, by hand; none for an empty video.
    e = np.asarray(block_states[b, 0], np.float64)
    zero = (np.zeros(H), np.zeros(H))
    c1, h1 = _lstm_cell(upper[0], e, zero)
    c2, h2 = _lstm_cell(upper[1], h1, zero)
    expected = np.concatenate([c1, h1, c2, h2]) if n > 0 else np.zeros(4 * H)
    np.testing.assert_allclose(rep[b], expected, atol=1e-5)


@pytest.mark.parametrize("steps,num_blocks", [(12, 3), (10, 3), (5, 4)])
def test_hrnn_matches_blockwise_reference(steps, num_blocks):
  """Many blocks, including T not divisible by num_blocks (padded) and always-empty last blocks."""
  lengths = sorted({0, 1, 3, 4, 5, steps - 1, steps})
  frames = _frames(jax.random.PRNGKey(4), len(lengths), steps)
  num_frames = jnp.array(lengths, jnp.int32)
  model = HRNN(num_blocks=num_blocks, cells=H, layers=2, input_norm="l2")
  variables = _init(model, jax.random.PRNGKey(5), frames, num_frames)
  (rep, inter), state = _jit_apply(model, mutable=["intermediates"])(variables, frames, num_frames, train=False)
  block_states = state["intermediates"]["block_states"][0]
  params = _np(variables["params"])
  for b, n in enumerate(lengths):
    e, hs, blocks = _hrnn_reference(params, np.asarray(frames[b], np.float64), n, num_blocks, 2)
    np.testing.assert_allclose(rep[b], e, atol=1e-5)
    np.testing.assert_allclose(inter[b], hs, atol=1e-5)
    np.testing.assert_allclose(block_states[b], blocks, atol=1e-5)


def test_hrnn_lower_lstm_is_shared_across_blocks():
  frames, num_frames = _frames(jax.random.PRNGKey(6), 2), jnp.array([T, 4])
  shapes = {}
  for nb in (1, 4):
    variables = jax.eval_shape(HRNN(num_blocks=nb, cells=H, layers=2).init, jax.random.PRNGKey(0),
                               frames, num_frames, train=False)
    shapes[nb] = jax.tree.map(lambda a: a.shape, variables["params"])
  assert shapes[1] == shapes[4]  # the weights do not grow with the number of blocks
  p = shapes[4]
  assert set(p) == {"lower", "upper"}
  assert set(p["lower"]) == {"layer_0", "layer_1"} and set(p["upper"]) == {"layer_0", "layer_1"}
  assert p["lower"]["layer_0"]["input_kernel"] == (D, 4 * H)
  assert p["upper"]["layer_0"]["input_kernel"] == (4 * H, 4 * H)


@pytest.mark.parametrize("num_blocks", [0, T + 1])
def test_hrnn_rejects_bad_num_blocks(num_blocks):
  model = HRNN(num_blocks=num_blocks, cells=H, layers=2)
  with pytest.raises(ValueError, match="num_blocks"):
    model.init(jax.random.PRNGKey(0), _frames(jax.random.PRNGKey(0), 1), jnp.array([3]), train=False)


# ---------------------------------------------------------------- through build_model

@pytest.mark.parametrize("name", ["hrnn", "lstm", "gru"])
def test_garbage_after_num_frames_changes_nothing(name):
  block_len = T // 3  # hrnn: 3 blocks of 4
  lengths = jnp.array([0, 1, block_len - 1, block_len, block_len + 1, T], jnp.int32)
  key = jax.random.PRNGKey(7)
  frames = _frames(key, len(lengths))
  garbage = 100.0 * _frames(jax.random.fold_in(key, 1), len(lengths))
  valid = (jnp.arange(T)[None, :] < lengths[:, None])[..., None]
  dirty = jnp.where(valid, frames, garbage)
  model = _tiny_model(name)
  variables = _init(model, key, frames, lengths)
  b = len(lengths)

  @jax.jit
  def apply_both_modes(frames, num_frames):  # one compile for eval and train mode
    return [model.apply(variables, frames, num_frames, train=train) for train in (False, True)]

  # One call: clean frames, the same frames with garbage appended, and the garbage read as real frames.
  outs = apply_both_modes(jnp.concatenate([frames, dirty, dirty]),
                          jnp.concatenate([lengths, lengths, jnp.full_like(lengths, T)]))
  for out in outs:
    clean_out, dirty_out, leaked = (jax.tree.map(lambda a, i=i: a[i * b:(i + 1) * b], out) for i in range(3))
    np.testing.assert_allclose(dirty_out.representation, clean_out.representation, atol=1e-6)
    np.testing.assert_allclose(dirty_out.probabilities, clean_out.probabilities, atol=1e-6)
    assert clean_out.intermediates.shape == (len(lengths), T, H)
    np.testing.assert_allclose(dirty_out.intermediates, clean_out.intermediates, atol=1e-6)
    np.testing.assert_array_equal(jnp.where(valid, 0.0, dirty_out.intermediates), 0.0)
    # The test can fail: read as real frames, the garbage does change the output.
    assert not np.allclose(leaked.representation[0], clean_out.representation[0], atol=1e-3)


@pytest.mark.parametrize("name", ["hrnn", "lstm", "gru"])
def test_zero_frame_video_forward_and_backward_are_finite(name):
  frames = _frames(jax.random.PRNGKey(8), 2)
  num_frames = jnp.array([0, 5], jnp.int32)  # with a real video beside it: NaNs would spread through the sum
  model = _tiny_model(name)
  variables = _init(model, jax.random.PRNGKey(9), frames, num_frames)

  def loss(params):
    o = model.apply({"params": params}, frames, num_frames, train=True)
    return jnp.sum(o.probabilities) + jnp.sum(o.representation ** 2) + jnp.sum(o.intermediates), o

  (_, out), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(variables["params"])
  np.testing.assert_array_equal(out.representation[0], 0.0)  # the zero initial state
  np.testing.assert_array_equal(out.intermediates[0], 0.0)
  assert np.all(np.isfinite(out.probabilities)) and np.all(np.isfinite(out.logits))
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))


@pytest.mark.parametrize("name", ["hrnn", "lstm", "gru"])
def test_full_unroll_gives_the_same_outputs(name):
  frames = _frames(jax.random.PRNGKey(10), 3)
  num_frames = jnp.array([T, 6, 0], jnp.int32)
  variables = _init(_tiny_model(name), jax.random.PRNGKey(11), frames, num_frames)
  rolled = _jit_apply(_tiny_model(name))(variables, frames, num_frames, train=False)
  unrolled = _jit_apply(_tiny_model(name, unroll=T))(variables, frames, num_frames, train=False)
  for a, b in zip(jax.tree.leaves(rolled), jax.tree.leaves(unrolled)):
    np.testing.assert_allclose(a, b, atol=1e-6)


# bfloat16 matmul inputs (8-bit mantissa, relative step 2^-8 ~ 0.004) with float32 gates and states;
# at these sizes (T=12, |E| < 1) the measured max errors are ~0.003 (states) and ~0.0004 (probabilities).
BF16_ATOL = {"representation": 0.02, "probabilities": 0.005, "intermediates": 0.02}


@pytest.mark.parametrize("name", ["hrnn", "lstm", "gru"])
def test_bfloat16_stays_close_to_float32(name):
  frames = _frames(jax.random.PRNGKey(12), 4)
  num_frames = jnp.array([T, 9, 2, 0], jnp.int32)
  variables = _init(_tiny_model(name), jax.random.PRNGKey(13), frames, num_frames)
  f32 = _jit_apply(_tiny_model(name))(variables, frames, num_frames, train=False)
  bf16 = _jit_apply(_tiny_model(name, dtype="bfloat16"))(variables, frames, num_frames, train=False)
  for field, atol in BF16_ATOL.items():
    a, b = getattr(f32, field), getattr(bf16, field)
    assert b.dtype == jnp.float32
    np.testing.assert_allclose(b, a, atol=atol, err_msg=field)
  assert not np.array_equal(f32.representation, bf16.representation)  # bf16 really was used


# ---------------------------------------------------------------- parameter counts at paper size

def _lstm_params(d_in, h):
  return (d_in + h) * 4 * h + 4 * h  # TF BasicLSTMCell: kernel [d_in + h, 4h] + bias


def _gru_params(d_in, h):
  return (d_in + h) * 3 * h + 3 * h + h  # split kernels, bias, and the candidate's recurrent bias


def _moe_params(e, c, m):
  return e * c * (m + 1) + e * c * m + c * m  # gates (no bias) + experts (with bias)


@pytest.mark.parametrize("name", ["hrnn", "lstm", "gru"])
def test_parameter_count_at_paper_size(name):
  d, h, c = 1152, 1024, 4716
  expected = {
      "hrnn": _lstm_params(d, h) + _lstm_params(h, h)            # lower
              + _lstm_params(4 * h, h) + _lstm_params(h, h)      # upper, input [c1,h1,c2,h2]
              + _moe_params(4 * h, c, 2),
      "lstm": _lstm_params(d, h) + _lstm_params(h, h) + _moe_params(h, c, 2),
      "gru": _gru_params(d, h) + _gru_params(h, h) + _moe_params(h, c, 2),
  }[name]
  model = build_model(specs.NetworkSpec.from_config(model_config(name)), num_classes=c, feature_sizes=(1024, 128))
  frames = jax.ShapeDtypeStruct((1, 30, d), jnp.float32)
  num_frames = jax.ShapeDtypeStruct((1,), jnp.int32)
  variables = jax.eval_shape(lambda f, n: model.init(jax.random.PRNGKey(0), f, n, train=False),
                             frames, num_frames)
  count = sum(math.prod(p.shape) for p in jax.tree.leaves(variables["params"]))
  assert count == expected
