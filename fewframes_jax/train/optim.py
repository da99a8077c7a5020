"""The optimizer of one network: L2 on the classifier, gradient clipping, Adam with staircase decay.

Order (as the TF1 anchors): gradient of (loss + L2) -> clip -> Adam step with the decayed learning rate.
  * L2: `optim.l2 * w` is added to the gradient of the classifier's gate and expert kernels (MoE) or
    its logits kernel (logistic), i.e. the gradient of `l2/2 * ||w||^2` (TF's `l2_loss`): the anchors
    ([G]/[CODE] MoeModel, [W], [L] LogisticModel) put `weights_regularizer` on exactly those layers, not
    on biases, batch-norm parameters or WILLOW's probability-gating weights. Weight decay is coupled
    (before Adam), like a loss term.
  * clipping: `per_tensor` clips each gradient tensor to norm `clip_norm` ([G]/[W]/[L] TF1
    `clip_gradient_norms`); `global` clips by the global norm ([CODE], [MG]); `none` disables.
  * learning rate: `lr * decay_rate ** floor(examples_seen / decay_examples)`, with examples counted
    as `step * global_batch_size` ([W]/[L] count `global_step * batch_size * num_towers`).
"""
from typing import Any

import jax
import jax.numpy as jnp
import optax

from fewframes_jax.specs import CLIP_MODES, OptimSpec


def clip_each_by_norm(max_norm: float) -> optax.GradientTransformation:
  """Clips every gradient tensor separately to L2 norm <= max_norm (TF's `clip_by_norm` per tensor)."""

  def init_fn(params):
    del params
    return optax.EmptyState()

  def update_fn(updates, state, params=None):
    del params

    def clip(g):
      norm = jnp.sqrt(jnp.sum(jnp.square(g.astype(jnp.float32))))
      scale = jnp.minimum(1.0, max_norm / jnp.maximum(norm, 1e-12))
      return (g * scale).astype(g.dtype)

    return jax.tree.map(clip, updates), state

  return optax.GradientTransformation(init_fn, update_fn)


def learning_rate_schedule(optim: OptimSpec, global_batch_size: int) -> optax.Schedule:
  """Staircase exponential decay counted in examples. Returns step -> learning rate."""
  transition_steps = max(1, int(round(optim.decay_examples / global_batch_size)))
  return optax.exponential_decay(optim.learning_rate, transition_steps=transition_steps,
                                 decay_rate=optim.decay_rate, staircase=True)


# The classifier layers the anchors regularise (models/classifiers.py names them so).
DECAYED_HEAD_LAYERS = ("gates", "experts", "logits")


def head_mask(params: Any) -> Any:
  """True for the kernel of each `DECAYED_HEAD_LAYERS` layer of the top-level 'head' (the classifier),
  False for every other leaf."""

  def mask(path, _):
    names = [getattr(key, "key", None) for key in path]
    return (len(names) == 3 and names[0] == "head" and names[1] in DECAYED_HEAD_LAYERS
            and names[2] == "kernel")

  return jax.tree_util.tree_map_with_path(mask, params)


def make_optimizer(optim: OptimSpec, global_batch_size: int) -> optax.GradientTransformation:
  """L2 on the head -> clipping -> Adam(staircase-decayed learning rate)."""
  if optim.clip_mode not in CLIP_MODES:
    raise ValueError(f"optim.clip_mode={optim.clip_mode!r}: expected one of {CLIP_MODES}")
  parts = []
  if optim.l2 > 0:
    parts.append(optax.add_decayed_weights(optim.l2, mask=head_mask))
  if optim.clip_mode == "per_tensor":
    parts.append(clip_each_by_norm(optim.clip_norm))
  elif optim.clip_mode == "global":
    parts.append(optax.clip_by_global_norm(optim.clip_norm))
  parts.append(optax.adam(learning_rate_schedule(optim, global_batch_size), b1=optim.b1, b2=optim.b2,
                          eps=optim.eps))
  return optax.chain(*parts)
