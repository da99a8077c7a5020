"""Tests of fewframes_jax.losses against naive numpy loops."""
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import base
from fewframes_jax import losses

B, C, E, S = 5, 7, 6, 4


# Compile-bound; XLA's optimisation passes do not change what these tests check.
pytestmark = pytest.mark.usefixtures("fast_compile")


def probs(seed, shape=(B, C)):
  return np.random.default_rng(seed).uniform(0.01, 0.99, shape).astype(np.float32)


def labels(seed):
  return np.random.default_rng(seed).random((B, C)) < 0.3


def weighted_mean(values, weights):
  if weights is None:
    return sum(values) / len(values)
  return sum(w * v for w, v in zip(weights, values)) / sum(weights)


def ref_cross_entropy(p, y, eps=1e-5, weights=None):
  rows = []
  for b in range(p.shape[0]):
    total = 0.0
    for c in range(p.shape[1]):
      total -= y[b, c] * math.log(p[b, c] + eps) + (1 - y[b, c]) * math.log(1 - p[b, c] + eps)
    rows.append(total)
  return weighted_mean(rows, weights)


def ref_binary_kl(pt, ps, eps=1e-6):
  rows = []
  for b in range(pt.shape[0]):
    total = 0.0
    for c in range(pt.shape[1]):
      t = min(max(float(pt[b, c]), eps), 1 - eps)
      s = min(max(float(ps[b, c]), eps), 1 - eps)
      total += t * math.log(t / s) + (1 - t) * math.log((1 - t) / (1 - s))
    rows.append(total)
  return weighted_mean(rows, None)


def ref_categorical_kl(pt, ps):
  rows = []
  for b in range(pt.shape[0]):
    qt = pt[b] / pt[b].sum()
    qs = ps[b] / ps[b].sum()
    rows.append(sum(qt[c] * math.log(qt[c] / qs[c]) for c in range(pt.shape[1])))
  return weighted_mean(rows, None)


WEIGHTS = np.array([1.0, 0.0, 1.0, 0.5, 0.0], np.float32)


@pytest.mark.parametrize("weights", [None, WEIGHTS])
def test_cross_entropy_matches_loop(weights):
  p, y = probs(0), labels(1)
  got = losses.cross_entropy(p, y, weights=weights)
  assert got.dtype == jnp.float32
  assert float(got) == pytest.approx(ref_cross_entropy(p, y, weights=weights), rel=1e-5)


def test_cross_entropy_is_summed_over_classes():
  p = np.full((2, 10), 0.5, np.float32)
  y = np.zeros((2, 10), bool)
  # -log(0.5 + 1e-5) per class, 10 classes, mean over 2 identical rows.
  assert float(losses.cross_entropy(p, y)) == pytest.approx(-10 * math.log(0.5 + 1e-5), rel=1e-6)


@pytest.mark.parametrize("weights", [None, WEIGHTS])
def test_representation_loss_matches_loop(weights):
  t, s = probs(2, (B, E)) * 3, probs(3, (B, E)) * 3
  rows = [sum((float(t[b, e]) - float(s[b, e])) ** 2 for e in range(E)) for b in range(B)]
  got = losses.representation_loss(t, s, weights=weights)
  assert float(got) == pytest.approx(weighted_mean(rows, weights), rel=1e-5)


@pytest.mark.parametrize("weights", [None, WEIGHTS])
def test_intermediate_representation_loss_matches_loop(weights):
  t, s = probs(4, (B, S, E)), probs(5, (B, S, E))
  num_steps = np.array([4, 0, 2, 1, 3])
  rows = []
  for b in range(B):
    rows.append(sum((float(t[b, i, e]) - float(s[b, i, e])) ** 2
                    for i in range(num_steps[b]) for e in range(E)))
  got = losses.intermediate_representation_loss(t, s, num_steps, weights=weights)
  assert float(got) == pytest.approx(weighted_mean(rows, weights), rel=1e-5)
  # Steps beyond num_steps do not matter.
  s_garbage = s.copy()
  s_garbage[2, 2:] = 1e3
  s_garbage[1] = 1e3
  assert float(losses.intermediate_representation_loss(t, s_garbage, num_steps, weights=weights)) \
      == pytest.approx(float(got), rel=1e-6)


def test_prediction_loss_matches_loops():
  pt, ps = probs(6), probs(7)
  mse = [sum((float(pt[b, c]) - float(ps[b, c])) ** 2 for c in range(C)) for b in range(B)]
  assert float(losses.prediction_loss(pt, ps, d="mse")) == pytest.approx(np.mean(mse), rel=1e-5)
  assert float(losses.prediction_loss(pt, ps, d="binary_kl")) == pytest.approx(
      ref_binary_kl(pt, ps), rel=1e-4)
  assert float(losses.prediction_loss(pt, ps, d="categorical_kl")) == pytest.approx(
      ref_categorical_kl(pt, ps), rel=1e-4)
  # Both KLs vanish when the student equals the teacher, and only then.
  for d in ("binary_kl", "categorical_kl"):
    assert float(losses.prediction_loss(pt, pt, d=d)) == pytest.approx(0.0, abs=1e-6)
    assert float(losses.prediction_loss(pt, ps, d=d)) > 1e-3


def test_categorical_kl_ignores_a_common_scale():
  # Renormalisation: scaling the student's probabilities does not change the categorical KL.
  pt, ps = probs(8), probs(9)
  a = losses.prediction_loss(pt, ps, d="categorical_kl")
  b = losses.prediction_loss(pt, ps * 0.5, d="categorical_kl")
  assert float(a) == pytest.approx(float(b), rel=1e-4)
  assert float(losses.prediction_loss(pt, ps * 0.5, d="binary_kl")) != pytest.approx(
      float(losses.prediction_loss(pt, ps, d="binary_kl")))


def test_unknown_distance_raises():
  with pytest.raises(ValueError, match="mse.*binary_kl.*categorical_kl"):
    losses.prediction_loss(probs(0), probs(1), d="l1")


def test_gradients_finite_at_zero_and_one():
  extreme = np.array([[0.0, 1.0, 0.0, 1.0, 0.5]], np.float32)
  other = np.array([[1.0, 0.0, 0.0, 1.0, 0.5]], np.float32)
  y = np.array([[1, 0, 0, 1, 1]], bool)
  grads = [jax.grad(losses.cross_entropy)(extreme, y)]
  for d in losses.PREDICTION_DISTANCES:
    grads += list(jax.grad(lambda t, s, d=d: losses.prediction_loss(t, s, d=d), argnums=(0, 1))(
        extreme, other))
    grads += list(jax.grad(lambda t, s, d=d: losses.prediction_loss(t, s, d=d), argnums=(0, 1))(
        other, extreme))
  for g in grads:
    assert np.all(np.isfinite(g)), g
  assert float(losses.cross_entropy(extreme, y)) < 1e3


def test_weights_exclude_rows():
  p, y = probs(10), labels(11)
  t, s = probs(12, (B, E)), probs(13, (B, E))
  keep = WEIGHTS > 0
  garbage_p = p.copy()
  garbage_p[~keep] = np.nan  # padding rows may hold anything
  assert float(losses.cross_entropy(garbage_p, y, weights=keep)) == pytest.approx(
      float(losses.cross_entropy(p[keep], y[keep])), rel=1e-6)
  garbage_s = s.copy()
  garbage_s[~keep] = 1e6
  assert float(losses.representation_loss(t, garbage_s, weights=keep)) == pytest.approx(
      float(losses.representation_loss(t[keep], s[keep])), rel=1e-6)
  student = probs(14)
  garbage_student = student.copy()
  garbage_student[~keep] = np.nan
  for d in losses.PREDICTION_DISTANCES:
    assert float(losses.prediction_loss(p, garbage_student, d=d, weights=keep)) == pytest.approx(
        float(losses.prediction_loss(p[keep], student[keep], d=d)), rel=1e-6)
  assert float(losses.cross_entropy(p, y, weights=np.zeros(B))) == 0.0


def test_losses_do_not_stop_gradients():
  t, s = probs(15, (B, E)), probs(16, (B, E))
  grad_t, grad_s = jax.grad(losses.representation_loss, argnums=(0, 1))(t, s)
  np.testing.assert_allclose(grad_t, -grad_s, rtol=1e-6)
  assert np.abs(grad_t).sum() > 0
  stopped = jax.grad(lambda t, s: losses.representation_loss(jax.lax.stop_gradient(t), s))(t, s)
  assert np.all(stopped == 0)


def test_float32_and_jit():
  p = jnp.asarray(probs(17), jnp.bfloat16)
  y = labels(18)
  assert losses.cross_entropy(p, y).dtype == jnp.float32
  jitted = jax.jit(losses.prediction_loss, static_argnames="d")
  for d in losses.PREDICTION_DISTANCES:
    got = jitted(p, jnp.asarray(probs(19)), d=d)
    assert got.dtype == jnp.float32 and np.isfinite(got)


def test_shape_mismatch_raises():
  with pytest.raises(ValueError, match="same shape"):
    losses.cross_entropy(probs(0), np.zeros((B, C + 1)))
  with pytest.raises(ValueError, match="num_steps"):
    losses.intermediate_representation_loss(
        probs(0, (B, S, E)), probs(1, (B, S, E)), np.ones(B + 1))
  with pytest.raises(ValueError, match="weights"):
    losses.representation_loss(probs(0, (B, E)), probs(1, (B, E)), weights=np.ones(B + 1))


def test_combine_with_config_weights():
  config = base.get_config()
  config.loss.ce, config.loss.rep = 1.0, 0.5
  config.loss.rep_intermediate, config.loss.pred = 0.0, 2.0
  terms = {"ce": jnp.float32(3.0), "rep": jnp.float32(4.0), "pred": jnp.float32(0.25)}
  total, weighted = losses.combine_student_losses(terms, config.loss)
  assert float(total) == pytest.approx(3.0 + 2.0 + 0.5)
  assert set(weighted) == {"ce", "rep", "pred"}
  assert float(weighted["rep"]) == pytest.approx(2.0)
  # A zero-weight term is ignored even when present (and even if NaN).
  total, weighted = losses.combine_student_losses(
      {**terms, "rep_intermediate": jnp.float32(np.nan)}, config.loss)
  assert np.isfinite(total) and "rep_intermediate" not in weighted


def test_combine_errors():
  weights = ml_collections.ConfigDict({"ce": 1.0, "rep": 0.0, "rep_intermediate": 0.0, "pred": 1.0,
                                       "pred_distance": "mse"})
  with pytest.raises(ValueError, match="config.loss.pred"):
    losses.combine_student_losses({"ce": 1.0}, weights)
  with pytest.raises(ValueError, match="unknown"):
    losses.combine_student_losses({"ce": 1.0, "pred": 1.0, "kd": 1.0}, weights)
  with pytest.raises(ValueError, match="every loss weight is 0"):
    losses.combine_student_losses({"ce": 1.0}, {"ce": 0.0})
  with pytest.raises(ValueError, match="negative"):
    losses.combine_student_losses({"ce": 1.0}, {"ce": -1.0})
  with pytest.raises(ValueError, match="no weight"):
    losses.combine_student_losses({"ce": 1.0, "rep": 1.0}, {"ce": 1.0})
  total, _ = losses.combine_student_losses({"ce": 2.0}, {"ce": 1.5})
  assert float(total) == 3.0
