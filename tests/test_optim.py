"""The optimizer: per-tensor vs global clipping, staircase decay counted in examples, L2 on the head only."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import base
from fewframes_jax.train import optim


# Compile-bound; XLA's optimisation passes do not change what these tests check.
pytestmark = pytest.mark.usefixtures("fast_compile")


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


def test_l2_reaches_only_the_classifier_kernels_the_anchors_regularise():
  """[G]/[CODE] MoeModel, [W] and [L] LogisticModel decay the gate and expert (or logits) kernels only:
  not biases, batch-norm parameters, WILLOW's probability gating, or the encoder."""
  ones = jnp.ones(3)
  params = {"encoder": {"dense": {"kernel": ones}},
            "head": {"gates": {"kernel": ones}, "experts": {"kernel": ones, "bias": ones},
                     "prob_gating": {"kernel": ones}, "prob_gating_bn": {"scale": ones, "bias": ones},
                     "logits": {"kernel": ones, "bias": ones}}}
  zero = jax.tree.map(jnp.zeros_like, params)
  tx = optim.make_optimizer(optim_config(learning_rate=0.1, l2=0.5, clip_mode="none"), 10)
  updates, _ = tx.update(zero, tx.init(params), params)
  moved = {"/".join(str(getattr(k, "key", k)) for k in path): bool(np.any(np.asarray(u) != 0))
           for path, u in jax.tree_util.tree_leaves_with_path(updates)}
  assert {name for name, m in moved.items() if m} == {"head/gates/kernel", "head/experts/kernel",
                                                      "head/logits/kernel"}
  assert np.all(np.asarray(updates["head"]["gates"]["kernel"]) < 0)  # decays toward zero


def test_the_l2_mask_matches_the_real_classifiers():
  """The decayed layer names are the ones models/classifiers.py creates."""
  from fewframes_jax.models.classifiers import Logistic, MoE
  x = jnp.ones([2, 4])
  for head in (MoE(5, prob_gating=True), Logistic(5)):
    params = head.init(jax.random.PRNGKey(0), x, train=False)["params"]
    mask = optim.head_mask({"head": params})
    decayed = {"/".join(str(getattr(k, "key", k)) for k in path)
               for path, m in jax.tree_util.tree_leaves_with_path(mask) if m}
    expected = {"head/gates/kernel", "head/experts/kernel"} if isinstance(head, MoE) else {"head/logits/kernel"}
    assert decayed == expected


@pytest.mark.parametrize("family", ["hrnn", "lstm", "gru", "netvlad", "nextvlad"])
def test_every_family_clips_each_tensor_like_the_official_code(family):
  """[CODE]'s slim.create_train_op(clip_gradient_norm=1.0) clips each gradient tensor separately (slim's
  clip_gradient_norms), as the starter's utils.clip_gradient_norms that [W] and [L] use."""
  config = base.experiment(family, k=10)
  assert config.optim.clip_mode == "per_tensor" and config.optim.clip_norm == 1.0


def test_unknown_clip_mode_is_an_error():
  with pytest.raises(ValueError, match="optim.clip_mode"):
    optim.make_optimizer(optim_config(clip_mode="bogus"), 10)
