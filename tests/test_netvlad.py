"""WILLOW gated NetVLAD: numpy per-frame references, masked batch norm, random frames, sizes."""
import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.base import model_config
from fewframes_jax.models.classifiers import MoE
from fewframes_jax.models.common import BN_MOMENTUM, VideoModel
from fewframes_jax.models.netvlad import GatedNetVLAD, NetVLAD, sample_random_frames
from numpy_reference import float64 as _np, frames_with_garbage, np_bn, np_l2, np_sigmoid, np_softmax, perturb_variables as _perturb

SIZES = (16, 8)
K, H, T = 4, 8, 12
LENGTHS = np.array([12, 5, 0, 1], np.int32)


# Compile-bound; XLA's optimisation passes do not change what these tests check.
pytestmark = pytest.mark.usefixtures("fast_compile")


def _frames(seed, lengths=LENGTHS, steps=T, garbage=True):
  """f32[B, T, 24] of real frames, with garbage (or zeros) after each length."""
  return frames_with_garbage(seed, lengths, steps, sum(SIZES), garbage)


def np_netvlad(x, n, params, stats):
  """Per-frame, per-cluster loop over the n real frames of one video x[T, D] -> [D*K]."""
  w, c = params["cluster_weights"]["kernel"], params["centres"]
  d, k = c.shape
  vlad = np.zeros((d, k))
  for t in range(n):
    a = np_softmax(np_bn(x[t] @ w, params["cluster_bn"], stats["cluster_bn"]))
    for j in range(k):
      vlad[:, j] += a[j] * (x[t] - c[:, j])
  for j in range(k):
    vlad[:, j] = np_l2(vlad[:, j])
  return np_l2(vlad.reshape(-1))


def np_gated_netvlad(frames, lengths, variables):
  p, s = _np(variables["params"]), _np(variables["batch_stats"])
  out = []
  for x, n in zip(frames.astype(np.float64), lengths):
    x = x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-6)
    x = np_bn(x, p["input_bn"], s["input_bn"])
    vlad = np.concatenate([np_netvlad(x[:, :SIZES[0]], n, p["video_vlad"], s["video_vlad"]),
                           np_netvlad(x[:, SIZES[0]:], n, p["audio_vlad"], s["audio_vlad"])])
    h = vlad @ p["hidden"]["kernel"] + p["hidden"]["bias"]
    cg, cs = p["context_gating"], s["context_gating"]
    gates = np_bn(h @ cg["gating"]["kernel"], cg["gating_bn"], cs["gating_bn"])
    out.append(h * np_sigmoid(gates))
  return np.stack(out)


def _init(module, frames, lengths, seed=0):
  rngs = {"params": jax.random.PRNGKey(seed), "frames": jax.random.PRNGKey(seed + 1)}
  return _perturb(module.init(rngs, frames, lengths, train=False), seed)


def test_netvlad_layer_matches_numpy_reference_eval():
  layer = NetVLAD(SIZES[0], K)
  x = _frames(0)[..., :SIZES[0]]
  mask = np.arange(T)[None] < LENGTHS[:, None]
  variables = _init(layer, x, mask)
  got = np.asarray(layer.apply(variables, x, mask, train=False))
  p, s = _np(variables["params"]), _np(variables["batch_stats"])
  want = np.stack([np_netvlad(xi.astype(np.float64), n, p, s) for xi, n in zip(x, LENGTHS)])
  assert got.shape == (len(LENGTHS), SIZES[0] * K)
  np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)
  np.testing.assert_array_equal(got[2], 0.0)  # the zero-frame video


def test_netvlad_layer_train_batch_norm_uses_only_real_frames():
  layer = NetVLAD(SIZES[0], K)
  x = _frames(1)[..., :SIZES[0]]
  mask = np.arange(T)[None] < LENGTHS[:, None]
  variables = _init(layer, x, mask)
  got, updates = layer.apply(variables, x, mask, train=True, mutable=["batch_stats"])
  # Numpy: cluster-BN statistics over the real frames only (biased variance, as flax).
  p = _np(variables["params"])
  logits = x[mask].astype(np.float64) @ p["cluster_weights"]["kernel"]
  batch = {"mean": logits.mean(0), "var": logits.var(0)}
  want = np.stack([np_netvlad(xi.astype(np.float64), n, p, {"cluster_bn": batch})
                   for xi, n in zip(x, LENGTHS)])
  np.testing.assert_allclose(np.asarray(got), want, atol=1e-4, rtol=1e-4)
  old = _np(variables["batch_stats"]["cluster_bn"])
  new = updates["batch_stats"]["cluster_bn"]
  for key in ("mean", "var"):
    np.testing.assert_allclose(new[key], BN_MOMENTUM * old[key] + (1 - BN_MOMENTUM) * batch[key],
                               rtol=1e-5, atol=1e-6)


def test_gated_netvlad_encoder_matches_numpy_reference_eval():
  encoder = GatedNetVLAD(feature_sizes=SIZES, cluster_size=K, hidden_size=H)
  frames = _frames(2)
  variables = _init(encoder, frames, LENGTHS)
  representation, intermediates = encoder.apply(variables, frames, LENGTHS, train=False)
  assert intermediates is None
  assert representation.shape == (len(LENGTHS), H)
  np.testing.assert_allclose(np.asarray(representation), np_gated_netvlad(frames, LENGTHS, variables),
                             atol=1e-4, rtol=1e-4)


def test_train_mode_padding_and_extra_length_change_nothing():
  encoder = GatedNetVLAD(feature_sizes=SIZES, cluster_size=K, hidden_size=H)
  clean = _frames(3, garbage=False)
  variables = _init(encoder, clean, LENGTHS)
  longer = np.concatenate([_frames(4), _frames(5)], axis=1)  # T = 24, garbage after each length
  longer[:, :T] = np.where((np.arange(T)[None] < LENGTHS[:, None])[..., None], clean, longer[:, :T])
  outs = [encoder.apply(variables, f, LENGTHS, train=True, mutable=["batch_stats"]) for f in (clean, longer)]
  np.testing.assert_allclose(outs[0][0][0], outs[1][0][0], atol=1e-5, rtol=1e-5)
  jax.tree_util.tree_map(functools.partial(np.testing.assert_allclose, atol=1e-6, rtol=1e-5),
                         outs[0][1], outs[1][1])


def test_all_empty_batch_is_finite_in_train_mode():
  encoder = GatedNetVLAD(feature_sizes=SIZES, cluster_size=K, hidden_size=H)
  frames, lengths = _frames(6, np.zeros(2, np.int32)), np.zeros(2, np.int32)
  variables = _init(encoder, frames, lengths)

  def loss(params):
    (r, _), upd = encoder.apply({**variables, "params": params}, frames, lengths, train=True,
                                mutable=["batch_stats"])
    return jnp.sum(r), upd

  (value, upd), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(variables["params"])
  assert np.isfinite(value)
  assert all(np.isfinite(g).all() for g in jax.tree_util.tree_leaves((grads, upd)))


def _hlo_max_tensor_size(fn, *args):
  text = jax.jit(fn).lower(*args).as_text()
  shapes = re.findall(r"tensor<((?:\d+x)+)(?:f32|bf16|f16)>", text)  # e.g. "4x12x16x"
  return max(int(np.prod([int(v) for v in dims.rstrip("x").split("x")])) for dims in shapes)


def test_no_btkd_tensor():
  layer = NetVLAD(SIZES[0], K)
  x = _frames(7)[..., :SIZES[0]]
  mask = np.arange(T)[None] < LENGTHS[:, None]
  variables = layer.init(jax.random.PRNGKey(0), x, mask, train=False)
  biggest = _hlo_max_tensor_size(lambda v, a, m: layer.apply(v, a, m, train=True, mutable=["batch_stats"]),
                                 variables, x, mask)
  assert biggest < len(LENGTHS) * T * K * SIZES[0]
  assert biggest >= len(LENGTHS) * T * SIZES[0]  # the check can see the frame tensor itself


def test_sample_random_frames_draws_real_frames_with_replacement():
  frames = np.zeros((3, 10, 2), np.float32)
  frames[:, :, 0] = np.arange(10)  # frame index as a feature
  lengths = np.array([3, 10, 0], np.int32)
  sampled, n = sample_random_frames(frames, lengths, 3000, jax.random.PRNGKey(0))
  np.testing.assert_array_equal(n, [3000, 3000, 0])
  idx = np.asarray(sampled[..., 0]).astype(int)
  counts = np.bincount(idx[0], minlength=10)
  assert counts[3:].sum() == 0 and counts[:3].min() > 900  # uniform over the 3 real frames
  assert idx[1].max() == 9 and idx[1].min() == 0
  again, _ = sample_random_frames(frames, lengths, 3000, jax.random.PRNGKey(0))
  np.testing.assert_array_equal(again, sampled)


def test_random_frames_option_ignores_padding_and_needs_frames_rng():
  encoder = GatedNetVLAD(feature_sizes=SIZES, cluster_size=K, hidden_size=H, random_frames=True,
                         num_random_frames=20)
  clean, noisy = _frames(8, garbage=False), _frames(8)
  variables = _init(encoder, clean, LENGTHS)
  rngs = {"frames": jax.random.PRNGKey(3)}
  a, _ = encoder.apply(variables, clean, LENGTHS, train=False, rngs=rngs)
  b, _ = encoder.apply(variables, noisy, LENGTHS, train=False, rngs=rngs)
  np.testing.assert_allclose(a, b, atol=1e-6)
  # [W]'s eval is random: another 'frames' key gives another output for a video with several frames.
  c, _ = encoder.apply(variables, clean, LENGTHS, train=False, rngs={"frames": jax.random.PRNGKey(4)})
  assert np.abs(np.asarray(a[0]) - np.asarray(c[0])).max() > 1e-4
  with pytest.raises(Exception, match="frames"):
    encoder.apply(variables, clean, LENGTHS, train=False)


def test_rejects_wrong_feature_width():
  encoder = GatedNetVLAD(feature_sizes=(16, 4), cluster_size=K, hidden_size=H)
  with pytest.raises(ValueError, match="feature_sizes"):
    encoder.init(jax.random.PRNGKey(0), _frames(0), LENGTHS, train=False)


def test_single_stream_has_only_video_branch():
  encoder = GatedNetVLAD(feature_sizes=(24,), cluster_size=K, hidden_size=H)
  variables = encoder.init(jax.random.PRNGKey(0), _frames(0), LENGTHS, train=False)
  assert "audio_vlad" not in variables["params"]
  assert variables["params"]["hidden"]["kernel"].shape == (24 * K, H)


def _param_count(model, feature_dim):
  shapes = jax.eval_shape(
      functools.partial(model.init, train=False), jax.random.PRNGKey(0),
      jax.ShapeDtypeStruct((2, 3, feature_dim), jnp.float32), jax.ShapeDtypeStruct((2,), jnp.int32))
  return sum(int(np.prod(a.shape)) for a in jax.tree_util.tree_leaves(shapes["params"])), shapes


def test_paper_size_parameter_count():
  cfg = model_config("netvlad").netvlad
  c, k, h, m = 4716, cfg.cluster_size, cfg.hidden_size, cfg.moe_mixtures
  assert (k, h, m) == (256, 1024, 2)
  model = VideoModel(
      encoder=GatedNetVLAD(feature_sizes=(1024, 128), cluster_size=k, hidden_size=h),
      head=MoE(c, num_mixtures=m, prob_gating=cfg.prob_gating))
  total, shapes = _param_count(model, 1152)
  vlad_dim = 1024 * k + 128 * (k // 2)
  assert vlad_dim == 278_528
  assert shapes["params"]["encoder"]["hidden"]["kernel"].shape == (vlad_dim, h)

  def branch(d, kk):  # assignment weights + cluster BN + centres
    return d * kk + 2 * kk + d * kk

  want = (2 * 1152                              # input BN
          + branch(1024, k) + branch(128, k // 2)
          + vlad_dim * h + h                      # hidden, with bias
          + h * h + 2 * h                         # context gating + its BN
          + h * c * (m + 1) + h * c * m + c * m   # MoE gates (no bias), experts (bias)
          + c * c + 2 * c)                        # probability gating + its BN
  assert total == want
  assert abs(total - 333.2e6) < 0.1e6
