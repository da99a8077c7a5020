"""Heads: MoE (with its dummy expert and probability gating) and Logistic against numpy references."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fewframes_jax.models.classifiers import MoE, Logistic
from fewframes_jax.models.common import BN_MOMENTUM
from numpy_reference import np_bn, np_sigmoid, perturb_variables as _perturb

B, E, C, M = 5, 6, 10, 2


# Compile-bound; XLA's optimisation passes do not change what these tests check.
pytestmark = pytest.mark.usefixtures("fast_compile")


def _x(seed=0):
  return np.random.default_rng(seed).normal(size=(B, E)).astype(np.float32)


def np_moe(x, p, m):
  """Per video and class: softmax over the m experts and the dummy one, sigmoid experts."""
  x = x.astype(np.float64)
  gate_logits = x @ np.asarray(p["gates"]["kernel"], np.float64)
  expert_logits = x @ np.asarray(p["experts"]["kernel"], np.float64) + np.asarray(p["experts"]["bias"])
  out = np.zeros((x.shape[0], C))
  for b in range(x.shape[0]):
    for c in range(C):
      g = np.exp(gate_logits[b, c * (m + 1):(c + 1) * (m + 1)])
      g /= g.sum()  # m + 1 gates, the last one the dummy expert's
      e = np_sigmoid(expert_logits[b, c * m:(c + 1) * m])
      out[b, c] = np.sum(g[:m] * e)
  return out


@pytest.mark.parametrize("m", [1, M])
def test_moe_matches_numpy_reference(m):
  head = MoE(C, num_mixtures=m)
  variables = _perturb(head.init(jax.random.PRNGKey(0), _x(), train=False), 1)
  assert "bias" not in variables["params"]["gates"]  # [G]: gates without bias
  assert variables["params"]["gates"]["kernel"].shape == (E, C * (m + 1))
  assert variables["params"]["experts"]["kernel"].shape == (E, C * m)
  got = head.apply(variables, _x(1), train=False)
  np.testing.assert_allclose(got, np_moe(_x(1), variables["params"], m), atol=1e-5, rtol=1e-5)


def test_moe_dummy_expert_caps_probability():
  """Experts saturated at 1: p_c = 1 - gate_dummy, strictly below 1 and equal to the numpy gate."""
  head = MoE(C, num_mixtures=M)
  variables = _perturb(head.init(jax.random.PRNGKey(0), _x(), train=False), 2)
  params = dict(variables["params"])
  params["experts"] = {"kernel": jnp.zeros_like(params["experts"]["kernel"]),
                       "bias": jnp.full_like(params["experts"]["bias"], 50.0)}
  got = np.asarray(head.apply({"params": params}, _x(3), train=False), np.float64)
  logits = _x(3).astype(np.float64) @ np.asarray(params["gates"]["kernel"])
  logits = logits.reshape(B, C, M + 1)
  gates = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  np.testing.assert_allclose(got, 1.0 - gates[..., M], atol=1e-5)
  assert got.max() < 1.0


def test_moe_probability_gating_eval_uses_running_stats():
  head = MoE(C, num_mixtures=M, prob_gating=True)
  variables = _perturb(head.init(jax.random.PRNGKey(0), _x(), train=False), 4)
  p, s = variables["params"], variables["batch_stats"]
  assert "bias" not in p["prob_gating"] and p["prob_gating"]["kernel"].shape == (C, C)
  x = _x(5)
  base = np_moe(x, p, M)
  gates = np_bn(base @ np.asarray(p["prob_gating"]["kernel"], np.float64), p["prob_gating_bn"],
                s["prob_gating_bn"])
  want = base * np_sigmoid(gates)
  np.testing.assert_allclose(head.apply(variables, x, train=False), want, atol=1e-5, rtol=1e-5)
  # A video alone gives the same probabilities as inside the batch (running statistics).
  np.testing.assert_allclose(head.apply(variables, x[2:3], train=False), want[2:3], atol=1e-5, rtol=1e-5)


def test_moe_probability_gating_train_uses_batch_stats():
  head = MoE(C, num_mixtures=M, prob_gating=True)
  variables = _perturb(head.init(jax.random.PRNGKey(0), _x(), train=False), 6)
  p, s = variables["params"], variables["batch_stats"]
  x = _x(7)
  got, updates = head.apply(variables, x, train=True, mutable=["batch_stats"])
  base = np_moe(x, p, M)
  z = base @ np.asarray(p["prob_gating"]["kernel"], np.float64)
  want = base * np_sigmoid(np_bn(z, p["prob_gating_bn"], {"mean": z.mean(0), "var": z.var(0)}))
  np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)
  new = updates["batch_stats"]["prob_gating_bn"]
  np.testing.assert_allclose(new["mean"], BN_MOMENTUM * np.asarray(s["prob_gating_bn"]["mean"])
                             + (1 - BN_MOMENTUM) * z.mean(0), atol=1e-6, rtol=1e-5)


def test_logistic_matches_numpy_reference():
  head = Logistic(C)
  variables = _perturb(head.init(jax.random.PRNGKey(0), _x(), train=False), 8)
  p = variables["params"]["logits"]
  want = np_sigmoid(_x(9).astype(np.float64) @ np.asarray(p["kernel"]) + np.asarray(p["bias"]))
  np.testing.assert_allclose(head.apply(variables, _x(9), train=True), want, atol=1e-6, rtol=1e-5)


def test_heads_bfloat16_close_to_float32():
  head32 = MoE(C, num_mixtures=M, prob_gating=True)
  head16 = MoE(C, num_mixtures=M, prob_gating=True, dtype=jnp.bfloat16)
  variables = _perturb(head32.init(jax.random.PRNGKey(0), _x(), train=False), 10)
  p32 = head32.apply(variables, _x(11), train=False)
  p16 = head16.apply(variables, _x(11), train=False)
  assert p16.dtype == jnp.float32
  np.testing.assert_allclose(p16, p32, atol=2e-2)
