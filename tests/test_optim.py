"""The optimizer: per-tensor vs global clipping, staircase decay counted in examples, L2 on the head only."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from configs import base
from fewframes_jax import optim


def optim_config(**kw):
  o = base.get_config().optim
  o.update(kw)
  return o


def test_clip_each_by_norm_clips_tensors_separately():
  grads = {"a": jnp.array([3.0, 4.0]), "b": jnp.array([0.3, 0.4])}  # norms 5 and 0.5
  clipped, _ = optim.clip_each_by_norm(1.0).update(grads, optax.EmptyState())
  np.testing.assert_allclose(clipped["a"], [0.6, 0.8], rtol=1e-6)
  np.testing.assert_allclose(clipped["b"], [0.3, 0.4], rtol=1e-6)  # under the limit: unchanged
  global_clipped, _ = optax.clip_by_global_norm(1.0).update(grads, optax.clip_by_global_norm(1.0).init(grads))
  assert not np.allclose(global_clipped["b"], clipped["b"])  # the two modes differ


def test_schedule_is_staircase_in_examples():
  o = optim_config(learning_rate=0.01, decay_rate=0.5, decay_examples=1000)
  schedule = optim.learning_rate_schedule(o, global_batch_size=100)  # decays every 10 steps
  np.testing.assert_allclose([schedule(s) for s in (0, 9, 10, 19, 20)], [0.01, 0.01, 0.005, 0.005, 0.0025],
                             rtol=1e-6)


def test_l2_reaches_only_the_head():
  params = {"encoder": {"w": jnp.ones(3)}, "head": {"w": jnp.ones(3)}}
  zero = jax.tree.map(jnp.zeros_like, params)
  o = optim_config(learning_rate=0.1, l2=0.5, clip_mode="none")
  tx = optim.make_optimizer(o, 10)
  updates, _ = tx.update(zero, tx.init(params), params)
  assert np.all(np.asarray(updates["encoder"]["w"]) == 0)
  assert np.all(np.asarray(updates["head"]["w"]) < 0)  # decays toward zero


def test_unknown_clip_mode_is_an_error():
  with pytest.raises(ValueError, match="optim.clip_mode"):
    optim.make_optimizer(optim_config(clip_mode="bogus"), 10)
