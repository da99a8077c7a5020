"""Registry-level contract tests over every family in MODEL_NAMES, built by `build_model` from
`configs.base.model_config` with the dimensions shrunk."""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.base import model_config
from fewframes_jax import specs
from fewframes_jax.models import MODEL_NAMES, build_model, input_norm_of

C, T, SIZES = 10, 12, (16, 8)
LENGTHS = np.array([12, 5, 0, 1], np.int32)
RNGS = {"dropout": jax.random.PRNGKey(11), "frames": jax.random.PRNGKey(12)}
# bfloat16 vs float32 compute on the same float32 params: max |dp| on probabilities, and
# ||r16 - r32|| / ||r32|| on the representation (bfloat16 keeps 8 mantissa bits, ~4e-3 per rounding).
BF16_PROB_ATOL = 5e-3
BF16_REP_RTOL = 2e-2


def tiny_config(name):
  m = model_config(name)
  m.hrnn.num_blocks, m.hrnn.cells = 3, 8
  m.rnn.cells = 8
  m.netvlad.cluster_size, m.netvlad.hidden_size = 4, 8
  m.nextvlad.cluster_size, m.nextvlad.hidden_size, m.nextvlad.groups = 4, 8, 2
  m.nextvlad.gating_reduction = 2
  return specs.NetworkSpec.from_config(m)


def _frames(seed, lengths=LENGTHS, garbage=True):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(len(lengths), T, sum(SIZES))).astype(np.float32)
  pad = np.arange(T)[None, :] >= lengths[:, None]
  x[pad] = rng.normal(scale=50.0, size=x[pad].shape) if garbage else 0.0
  return x


def _perturb_stats(variables, seed):
  """Non-trivial running statistics, so eval-mode tests exercise them."""
  if "batch_stats" not in variables:
    return variables
  rng = np.random.default_rng(seed)

  def new(path, leaf):
    if jax.tree_util.keystr(path).endswith("['var']"):
      return jnp.asarray(rng.uniform(0.5, 1.5, leaf.shape), jnp.float32)
    return jnp.asarray(rng.normal(scale=0.3, size=leaf.shape), jnp.float32)

  return {**variables, "batch_stats": jax.tree_util.tree_map_with_path(new, variables["batch_stats"])}


@functools.lru_cache(maxsize=None)
def _model(name, dtype="float32"):
  return build_model(tiny_config(name), num_classes=C, feature_sizes=SIZES, dtype=dtype)


# Compile-bound (about 35 small programs); XLA's optimisation passes do not change what they check.
pytestmark = pytest.mark.usefixtures("fast_compile")


@functools.lru_cache(maxsize=None)
def _variables(name):
  init = jax.jit(functools.partial(_model(name).init, train=False))
  variables = init({"params": jax.random.PRNGKey(0), **RNGS}, _frames(0), LENGTHS)
  return _perturb_stats(variables, 1)


@functools.lru_cache(maxsize=None)
def _apply(name, train, dtype="float32"):
  """jitted (variables, frames, num_frames) -> (ModelOutput, batch_stats updates)."""
  model = _model(name, dtype)

  def fn(variables, frames, num_frames):
    return model.apply(variables, frames, num_frames, train=train, rngs=RNGS, mutable=["batch_stats"])

  return jax.jit(fn)


def _close(a, b, **kw):
  jax.tree_util.tree_map(functools.partial(np.testing.assert_allclose, **kw), a, b)


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_garbage_after_num_frames_changes_nothing(name, train):
  clean, noisy = _frames(2, garbage=False), _frames(2, garbage=True)
  (out_clean, upd_clean), (out_noisy, upd_noisy) = [
      _apply(name, train)(_variables(name), f, LENGTHS) for f in (clean, noisy)]
  _close(out_clean.representation, out_noisy.representation, atol=1e-5, rtol=1e-5)
  _close(out_clean.probabilities, out_noisy.probabilities, atol=1e-6, rtol=1e-5)
  _close(out_clean.logits, out_noisy.logits, atol=1e-4, rtol=1e-5)
  if out_clean.intermediates is not None:  # recurrent families: zeros at t >= num_frames
    _close(out_clean.intermediates, out_noisy.intermediates, atol=1e-5, rtol=1e-5)
  _close(upd_clean, upd_noisy, atol=1e-6, rtol=1e-5)  # running statistics too


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_appending_padding_frames_changes_nothing(name, train):
  """T -> 2T with garbage frames appended. (normalize_frames zeroes padding rows, so this is the test
  that catches padding entering batch statistics: the zero rows would.) H-RNN cuts T into num_blocks
  blocks, so its num_blocks doubles with T: the real frames keep their blocks, the new ones are empty."""
  cfg = tiny_config(name)
  cfg = dataclasses.replace(cfg, hrnn=dataclasses.replace(cfg.hrnn, num_blocks=2 * cfg.hrnn.num_blocks))
  model = build_model(cfg, num_classes=C, feature_sizes=SIZES)
  clean = _frames(8, garbage=False)
  longer = np.concatenate([_frames(8), _frames(9, np.zeros_like(LENGTHS))], axis=1)
  fn = jax.jit(lambda v, f, n: model.apply(v, f, n, train=train, rngs=RNGS, mutable=["batch_stats"]))
  out_clean, upd_clean = _apply(name, train)(_variables(name), clean, LENGTHS)
  out_long, upd_long = fn(_variables(name), longer, LENGTHS)
  _close(out_clean.representation, out_long.representation, atol=1e-5, rtol=1e-5)
  _close(out_clean.probabilities, out_long.probabilities, atol=1e-6, rtol=1e-5)
  if out_clean.intermediates is not None:
    _close(out_clean.intermediates, out_long.intermediates[:, :T], atol=1e-5, rtol=1e-5)
    np.testing.assert_array_equal(out_long.intermediates[:, T:], 0.0)
  _close(upd_clean, upd_long, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_eval_output_does_not_depend_on_the_batch(name):
  frames = _frames(3)
  batch, _ = _apply(name, False)(_variables(name), frames, LENGTHS)
  for i in (0, 1):
    alone, _ = _apply(name, False)(_variables(name), frames[i:i + 1], LENGTHS[i:i + 1])
    _close(alone.representation, batch.representation[i:i + 1], atol=1e-5, rtol=1e-5)
    _close(alone.probabilities, batch.probabilities[i:i + 1], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_zero_frame_video_forward_and_backward_finite(name):
  model, variables = _model(name), _variables(name)

  def loss(params, frames, num_frames):
    out, _ = model.apply({**variables, "params": params}, frames, num_frames, train=True, rngs=RNGS,
                         mutable=["batch_stats"])
    return jnp.sum(out.probabilities) + jnp.sum(out.representation ** 2)

  grad = jax.jit(jax.value_and_grad(loss))
  for lengths in (np.array([0, 5, 0, 1], np.int32), np.zeros(4, np.int32)):
    frames = _frames(4, lengths)
    for train in (False, True):
      out, _ = _apply(name, train)(variables, frames, lengths)
      assert all(np.isfinite(a).all() for a in jax.tree_util.tree_leaves(out)), (name, train, lengths)
    value, grads = grad(variables["params"], frames, lengths)
    assert np.isfinite(value)
    assert all(np.isfinite(g).all() for g in jax.tree_util.tree_leaves(grads)), (name, lengths)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_bfloat16_compute_close_to_float32(name):
  frames, variables = _frames(5), _variables(name)
  out32, _ = _apply(name, False)(variables, frames, LENGTHS)
  out16, _ = _apply(name, False, "bfloat16")(variables, frames, LENGTHS)
  assert out16.probabilities.dtype == jnp.float32
  np.testing.assert_allclose(out16.probabilities, out32.probabilities, atol=BF16_PROB_ATOL)
  r16, r32 = np.asarray(out16.representation), np.asarray(out32.representation)
  assert np.linalg.norm(r16 - r32) <= BF16_REP_RTOL * np.linalg.norm(r32), name


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_encode_then_classify_equals_call(name):
  model, variables, frames = _model(name), _variables(name), _frames(6)
  full, _ = _apply(name, False)(variables, frames, LENGTHS)

  @jax.jit
  def encode_then_classify(variables, frames, num_frames):
    representation, intermediates = model.apply(variables, frames, num_frames, train=False, method="encode")
    return representation, intermediates, model.apply(variables, representation, train=False,
                                                      method="classify")

  representation, intermediates, probabilities = encode_then_classify(variables, frames, LENGTHS)
  _close(representation, full.representation, atol=1e-6, rtol=1e-6)
  _close(probabilities, full.probabilities, atol=1e-6, rtol=1e-6)
  assert (intermediates is None) == (full.intermediates is None)
  if intermediates is not None:
    _close(intermediates, full.intermediates, atol=1e-6, rtol=1e-6)
  assert full.representation.shape[0] == len(LENGTHS) and full.probabilities.shape == (len(LENGTHS), C)
  np.testing.assert_allclose(jax.nn.sigmoid(full.logits), np.clip(full.probabilities, 1e-6, 1 - 1e-6),
                             atol=1e-5)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_default_input_norm_is_wired(name):
  """L2 families are blind to a per-frame rescaling of the input; NeXtVLAD ('none') is not."""
  frames, variables = _frames(7), _variables(name)
  a, _ = _apply(name, False)(variables, frames, LENGTHS)
  b, _ = _apply(name, False)(variables, frames * 3.0, LENGTHS)
  diff = np.abs(np.asarray(a.representation) - np.asarray(b.representation)).max()
  if input_norm_of(tiny_config(name)) == "l2":
    assert diff < 1e-4
  else:
    assert input_norm_of(tiny_config(name)) == "none" and diff > 1e-3


def test_unknown_model_name_raises():
  cfg = dataclasses.replace(tiny_config("netvlad"), name="transformer")
  with pytest.raises(ValueError, match="model.name"):
    build_model(cfg, num_classes=C, feature_sizes=SIZES)


@pytest.mark.parametrize("name", ["netvlad", "nextvlad"])
def test_vlad_families_reject_frames_of_the_wrong_width(name):
  model = _model(name)
  with pytest.raises(ValueError, match=rf"{name}: frames have 23 features, feature_sizes=\(16, 8\) sum to 24"):
    model.init({"params": jax.random.PRNGKey(0), **RNGS}, _frames(0)[..., :23], LENGTHS, train=False)
  three = build_model(tiny_config(name), num_classes=C, feature_sizes=(8, 8, 8))
  with pytest.raises(ValueError, match=rf"{name}: feature_sizes=\(8, 8, 8\): expected 1 or 2 streams"):
    three.init({"params": jax.random.PRNGKey(0), **RNGS}, _frames(0), LENGTHS, train=False)
