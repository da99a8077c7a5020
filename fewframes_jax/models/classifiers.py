"""Video-level classifiers (heads): they map a representation `[B, E]` to probabilities `f32[B, C]`.

* `MoE`: the YouTube-8M starter's `MoeModel` ([G] video_level_models.py), used by H-RNN ([CODE]) and,
  with `prob_gating=True`, WILLOW's gated MoE for NetVLAD ([W]).
* `Logistic`: a dense layer with bias and a sigmoid ([L]'s `LogisticModel`, NeXtVLAD's head).

Regularisation (the anchors' per-layer L2) is applied by the optimizer to the head's kernels,
see `fewframes_jax/train/trainer.py`.
"""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from fewframes_jax.models.common import batch_norm


class MoE(nn.Module):
  """Mixture of `num_mixtures` sigmoid experts plus a dummy (always 0) expert, per class.

  gates  = softmax over M+1 of Dense(x -> C*(M+1)), no bias  ([G]: biases_initializer=None)
  experts= sigmoid of Dense(x -> C*M), with bias
  p_c    = sum_{m < M} gate_{c,m} * expert_{c,m}
  With `prob_gating` (WILLOW's `moe_prob_gating`): p <- p * sigmoid(BN(p @ W_p)), W_p [C, C] no bias.

  x: [B, E] -> probabilities f32[B, C].
  """
  num_classes: int
  num_mixtures: int = 2
  prob_gating: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    c, m = self.num_classes, self.num_mixtures
    batch = x.shape[0]
    gate_logits = nn.Dense(c * (m + 1), use_bias=False, dtype=self.dtype, name="gates")(x)
    expert_logits = nn.Dense(c * m, dtype=self.dtype, name="experts")(x)
    gates = jax.nn.softmax(gate_logits.astype(jnp.float32).reshape(batch, c, m + 1), axis=-1)
    experts = jax.nn.sigmoid(expert_logits.astype(jnp.float32).reshape(batch, c, m))
    probabilities = jnp.sum(gates[:, :, :m] * experts, axis=-1)
    if self.prob_gating:
      g = nn.Dense(c, use_bias=False, dtype=self.dtype, name="prob_gating")(probabilities)
      g = batch_norm(train=train, name="prob_gating_bn")(g)
      probabilities = probabilities * jax.nn.sigmoid(g)
    return probabilities


class Logistic(nn.Module):
  """Dense(x -> C) with bias, then sigmoid. x: [B, E] -> probabilities f32[B, C]."""
  num_classes: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    del train
    logits = nn.Dense(self.num_classes, dtype=self.dtype, name="logits")(x)
    return jax.nn.sigmoid(logits.astype(jnp.float32))
