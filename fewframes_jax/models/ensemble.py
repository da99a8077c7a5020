"""An ensemble of trained teachers, possibly of different families, seen as one frozen teacher.

The paper's future work: "train a student from an ensemble of teachers, preferably from different
families". The ensemble's
  probabilities  = the mean of its members' probabilities (the target of L_pred);
  representation = the concatenation [E_1, ..., E_M] of its members' representations.
The student's L_rep projection then maps E_S to [E_1, ..., E_M]; a linear map onto a concatenation is
one independent projection per teacher, and the squared distance to the concatenation is the sum of
the per-teacher distances, so L_rep = sum_m ||E_m - P_m E_S||^2.
"""
from typing import Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from fewframes_jax.models.common import ModelOutput, VideoModel, probability_logits


class TeacherEnsemble(nn.Module):
  """M member models; member m's variables live under `members_{m}` (flax's name for the m-th entry of
  the `members` field). There is no classifier to share."""
  members: Tuple[VideoModel, ...]

  @nn.compact
  def __call__(self, frames: jax.Array, num_frames: jax.Array, *, train: bool) -> ModelOutput:
    outputs = [member(frames, num_frames, train=train) for member in self.members]
    probabilities = jnp.mean(jnp.stack([o.probabilities for o in outputs]), axis=0)
    return ModelOutput(representation=jnp.concatenate([o.representation for o in outputs], axis=-1),
                       logits=probability_logits(probabilities), probabilities=probabilities,
                       intermediates=None)
