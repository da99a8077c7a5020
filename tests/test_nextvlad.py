"""NeXtVLAD: numpy per-frame references, masking, dropout, sizes."""
import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.base import model_config
from fewframes_jax.models.classifiers import Logistic
from fewframes_jax.models.common import BN_MOMENTUM, VideoModel
from fewframes_jax.models.nextvlad import NeXtVLAD, NeXtVLADEncoder
from numpy_reference import float64 as _np, frames_with_garbage, np_bn, np_sigmoid, np_softmax, perturb_variables as _perturb

SIZES = (16, 8)
K, G, LAMBDA, H, R, T = 4, 2, 2, 8, 2, 12
LENGTHS = np.array([12, 5, 0, 1], np.int32)


# Compile-bound; XLA's optimisation passes do not change what these tests check.
pytestmark = pytest.mark.usefixtures("fast_compile")


def _frames(seed, lengths=LENGTHS, steps=T, garbage=True):
  """f32[B, T, 24] of real frames, with garbage (or zeros) after each length."""
  return frames_with_garbage(seed, lengths, steps, sum(SIZES), garbage)


def _mask(lengths=LENGTHS, steps=T):
  return np.arange(steps)[None, :] < lengths[:, None]


def np_nextvlad(x, n, p, cluster_stats, groups):
  """Loops over the n real frames, the groups and the clusters of one video x[T, N] -> [K * d],
  the intra-normalised VLAD before `vlad_bn`."""
  c = p["centres"]
  d, k = c.shape
  vlad = np.zeros((d, k))
  for t in range(n):
    xd = x[t] @ p["expansion"]["kernel"] + p["expansion"]["bias"]
    alpha = np_sigmoid(xd @ p["attention"]["kernel"] + p["attention"]["bias"])
    logits = np_bn(xd @ p["cluster_weights"]["kernel"], p["cluster_bn"], cluster_stats)
    for g in range(groups):
      a = np_softmax(logits[g * k:(g + 1) * k]) * alpha[g]
      desc = xd[g * d:(g + 1) * d]
      for j in range(k):
        vlad[:, j] += a[j] * (desc - c[:, j])
  for j in range(k):
    vlad[:, j] /= np.sqrt(max(np.sum(vlad[:, j] ** 2), 1e-12))
  return vlad.reshape(-1)


def np_nextvlad_eval(x, n, p, s, groups):
  return np_bn(np_nextvlad(x, n, p, s["cluster_bn"], groups), p["vlad_bn"], s["vlad_bn"])


def np_encoder(frames, lengths, variables):
  p, s = _np(variables["params"]), _np(variables["batch_stats"])
  out = []
  for x, n in zip(frames.astype(np.float64), lengths):
    vlad = np.concatenate([np_nextvlad_eval(x[:, :SIZES[0]], n, p["video_vlad"], s["video_vlad"], G),
                           np_nextvlad_eval(x[:, SIZES[0]:], n, p["audio_vlad"], s["audio_vlad"], G // 2)])
    h = np_bn(vlad @ p["hidden"]["kernel"], p["hidden_bn"], s["hidden_bn"])
    cg, cs = p["context_gating"], s["context_gating"]
    g = np.maximum(np_bn(h @ cg["gating_1"]["kernel"], cg["gating_bn"], cs["gating_bn"]), 0.0)
    out.append(h * np_sigmoid(g @ cg["gating_2"]["kernel"]))
  return np.stack(out)


def _encoder(**kw):
  return NeXtVLADEncoder(feature_sizes=SIZES, cluster_size=K, hidden_size=H, groups=G, expansion=LAMBDA,
                         gating_reduction=R, **kw)


def _init(module, *args, seed=0):
  return _perturb(module.init(jax.random.PRNGKey(seed), *args, train=False), seed)


def test_nextvlad_layer_matches_numpy_reference_eval():
  layer = NeXtVLAD(SIZES[0], K, G, LAMBDA)
  x = _frames(0)[..., :SIZES[0]]
  variables = _init(layer, x, _mask())
  got = np.asarray(jax.jit(functools.partial(layer.apply, train=False))(variables, x, _mask()))
  p, s = _np(variables["params"]), _np(variables["batch_stats"])
  want = np.stack([np_nextvlad_eval(xi.astype(np.float64), n, p, s, G) for xi, n in zip(x, LENGTHS)])
  assert got.shape == (len(LENGTHS), K * LAMBDA * SIZES[0] // G)
  np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


def test_nextvlad_layer_train_cluster_bn_uses_only_real_frames():
  layer = NeXtVLAD(SIZES[1], K, G, LAMBDA)
  x = _frames(1)[..., SIZES[0]:]
  mask = _mask()
  variables = _init(layer, x, mask)
  got, updates = jax.jit(functools.partial(layer.apply, train=True, mutable=["batch_stats"]))(
      variables, x, mask)
  p, s = _np(variables["params"]), _np(variables["batch_stats"])
  real = x[mask].astype(np.float64)
  logits = (real @ p["expansion"]["kernel"] + p["expansion"]["bias"]) @ p["cluster_weights"]["kernel"]
  cluster = {"mean": logits.mean(0), "var": logits.var(0)}
  # vlad_bn in train mode: statistics over the batch of videos (every video, the empty one included).
  vlad = np.stack([np_nextvlad(xi.astype(np.float64), n, p, cluster, G) for xi, n in zip(x, LENGTHS)])
  want = np_bn(vlad, p["vlad_bn"], {"mean": vlad.mean(0), "var": vlad.var(0)})
  np.testing.assert_allclose(np.asarray(got), want, atol=1e-4, rtol=1e-4)
  new = updates["batch_stats"]["cluster_bn"]
  for key in ("mean", "var"):
    want_stat = BN_MOMENTUM * s["cluster_bn"][key] + (1 - BN_MOMENTUM) * cluster[key]
    np.testing.assert_allclose(new[key], want_stat, rtol=1e-5, atol=1e-6)


def test_encoder_matches_numpy_reference_eval():
  encoder = _encoder()
  frames = _frames(2)
  variables = _init(encoder, frames, LENGTHS)
  representation, intermediates = jax.jit(functools.partial(encoder.apply, train=False))(
      variables, frames, LENGTHS)
  assert intermediates is None
  assert representation.shape == (len(LENGTHS), H)
  np.testing.assert_allclose(np.asarray(representation), np_encoder(frames, LENGTHS, variables),
                             atol=1e-4, rtol=1e-4)


def test_train_mode_padding_and_extra_length_change_nothing():
  encoder = _encoder()
  clean = _frames(3, garbage=False)
  variables = _init(encoder, clean, LENGTHS)
  longer = np.concatenate([_frames(4), _frames(5)], axis=1)  # T = 24, garbage after each length
  longer[:, :T] = np.where(_mask()[..., None], clean, longer[:, :T])
  rngs = {"dropout": jax.random.PRNGKey(7)}
  outs = [encoder.apply(variables, f, LENGTHS, train=True, rngs=rngs, mutable=["batch_stats"])
          for f in (clean, longer)]
  np.testing.assert_allclose(outs[0][0][0], outs[1][0][0], atol=1e-5, rtol=1e-5)
  jax.tree_util.tree_map(functools.partial(np.testing.assert_allclose, atol=1e-6, rtol=1e-5),
                         outs[0][1], outs[1][1])


def test_dropout_only_in_train_mode():
  encoder = _encoder(dropout=0.5)
  frames = _frames(6)
  variables = _init(encoder, frames, LENGTHS)

  def run(key):
    return encoder.apply(variables, frames, LENGTHS, train=True, rngs={"dropout": jax.random.PRNGKey(key)},
                         mutable=["batch_stats"])[0][0]

  a, b, a2 = run(0), run(1), run(0)
  np.testing.assert_array_equal(a, a2)
  assert np.abs(np.asarray(a) - np.asarray(b)).max() > 1e-3
  no_drop = _encoder(dropout=0.0).apply(variables, frames, LENGTHS, train=True,
                                        mutable=["batch_stats"])[0][0]
  assert np.abs(np.asarray(a) - np.asarray(no_drop)).max() > 1e-3
  # Eval needs no dropout rng and does not drop.
  e1 = encoder.apply(variables, frames, LENGTHS, train=False)[0]
  e2 = _encoder(dropout=0.0).apply(variables, frames, LENGTHS, train=False)[0]
  np.testing.assert_allclose(e1, e2, atol=1e-6)


def test_reverse_whitening_equals_prewhitened_frames():
  rng = np.random.default_rng(0)
  scale = rng.uniform(0.5, 2.0, sum(SIZES)).astype(np.float32)
  offset = rng.normal(size=sum(SIZES)).astype(np.float32)
  frames = _frames(8)
  white = _encoder(input_norm="reverse_whitening", whitening=(scale, offset))
  variables = _init(white, frames, LENGTHS)
  got = white.apply(variables, frames, LENGTHS, train=False)[0]
  prewhitened = np.where(_mask()[..., None], (frames - offset) * scale, 0.0)
  want = _encoder(input_norm="none").apply(variables, prewhitened, LENGTHS, train=False)[0]
  np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)


def test_no_btgkd_tensor():
  layer = NeXtVLAD(SIZES[0], K, G, LAMBDA)
  x = _frames(9)[..., :SIZES[0]]
  variables = layer.init(jax.random.PRNGKey(0), x, _mask(), train=False)
  fn = lambda v, a, m: layer.apply(v, a, m, train=True, mutable=["batch_stats"])
  text = jax.jit(fn).lower(variables, x, _mask()).as_text()
  shapes = re.findall(r"tensor<((?:\d+x)+)(?:f32|bf16|f16)>", text)  # e.g. "4x12x16x"
  biggest = max(int(np.prod([int(v) for v in dims.rstrip("x").split("x")])) for dims in shapes)
  d = LAMBDA * SIZES[0] // G
  assert len(LENGTHS) * T * LAMBDA * SIZES[0] <= biggest < len(LENGTHS) * T * G * K * d


def test_rejects_indivisible_groups_and_wrong_width():
  with pytest.raises(ValueError, match="groups"):
    NeXtVLAD(5, K, 3, 1).init(jax.random.PRNGKey(0), np.zeros((1, 2, 5)), np.ones((1, 2), bool), train=False)
  with pytest.raises(ValueError, match="feature_sizes"):
    _encoder().init(jax.random.PRNGKey(0), np.zeros((1, 2, 20), np.float32), np.ones(1, np.int32),
                    train=False)


@pytest.mark.parametrize("num_classes,expected_m", [(3862, 88.9), (4716, 90.6)])
def test_paper_size_parameter_count(num_classes, expected_m):
  cfg = model_config("nextvlad").nextvlad
  k, h, g, lam, r = cfg.cluster_size, cfg.hidden_size, cfg.groups, cfg.expansion, cfg.gating_reduction
  assert (k, h, g, lam, r) == (128, 2048, 8, 2, 8)
  model = VideoModel(
      encoder=NeXtVLADEncoder(feature_sizes=(1024, 128), cluster_size=k, hidden_size=h, groups=g,
                              expansion=lam, gating_reduction=r, dropout=cfg.dropout),
      head=Logistic(num_classes))
  shapes = jax.eval_shape(
      functools.partial(model.init, train=False), jax.random.PRNGKey(0),
      jax.ShapeDtypeStruct((2, 3, 1152), jnp.float32), jax.ShapeDtypeStruct((2,), jnp.int32))
  total = sum(int(np.prod(a.shape)) for a in jax.tree_util.tree_leaves(shapes["params"]))

  def branch(n, kk, gg):
    wide, d = lam * n, lam * n // gg
    return (n * wide + wide        # expansion, with bias
            + wide * gg + gg       # group attention, with bias
            + wide * gg * kk       # cluster logits, no bias
            + 2 * gg * kk          # cluster BN
            + d * kk               # centres
            + 2 * d * kk)          # vlad BN

  vlad_dim = 1024 * lam // g * k + 128 * lam // (g // 2) * (k // 2)
  assert vlad_dim == 36_864
  want = (branch(1024, k, g) + branch(128, k // 2, g // 2)
          + vlad_dim * h + 2 * h                    # hidden (no bias) + BN
          + h * (h // r) + 2 * (h // r) + (h // r) * h  # SE gating
          + h * num_classes + num_classes)          # logistic head
  assert total == want
  assert abs(total / 1e6 - expected_m) < 0.1
