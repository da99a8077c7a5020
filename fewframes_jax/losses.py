"""The student's and teacher's loss terms (paper §4), as pure jnp functions.

Every term is computed in float32 (inputs are cast), is SUMMED over classes / feature dimensions and
AVERAGED over the batch. The optional `weights: f32[B]` (e.g. the `valid` mask) turn the batch mean
into a weighted mean, sum_b w_b l_b / sum_b w_b (0 when all weights are 0), so masked rows count
for nothing.

None of these functions stops gradients: in distillation the caller must pass the teacher's outputs
through `jax.lax.stop_gradient` (the trainer does), so that no student term reaches the teacher.
"""
from typing import Mapping

import jax
import jax.numpy as jnp

from fewframes_jax.specs import PREDICTION_DISTANCES, TERM_NAMES


def cross_entropy(probabilities, labels, epsilon: float = 1e-5, weights=None):
  """Multi-label binary cross-entropy of the YouTube-8M starter (`CrossEntropyLoss`), eq. 1.

  Per example: -sum_c [y_c log(p_c + eps) + (1 - y_c) log(1 - p_c + eps)], then the (weighted)
  mean over the batch. Summing over the C classes (not averaging) follows the starter and the
  paper; it makes the loss C times larger than a per-class mean, which scales the effective
  learning rate and the relative weight of the other loss terms accordingly.

  Args:
    probabilities: [B, C] sigmoid outputs in [0, 1].
    labels: [B, C] multi-hot (bool or 0/1 numbers).
    epsilon: the starter's 1e-5 inside the logs (keeps the loss and its gradient finite at 0 and 1).
    weights: optional [B] per-example weights (e.g. the valid mask).

  Returns:
    f32 scalar.
  """
  p = _f32(probabilities)
  y = _f32(labels)
  _check_same_shape("cross_entropy", probabilities=p, labels=y)
  _check_rank("cross_entropy", 2, probabilities=p)
  per_example = -jnp.sum(y * jnp.log(p + epsilon) + (1.0 - y) * jnp.log(1.0 - p + epsilon), axis=1)
  return _batch_mean(per_example, weights)


def representation_loss(rep_teacher, rep_student, weights=None):
  """Representation matching, eq. 2: ||E_T - E_S||^2 summed over dims, mean over the batch.

  Args:
    rep_teacher: [B, E] (or [B, ...]; every non-batch axis is summed). Pass it through
      `jax.lax.stop_gradient` if the teacher must not learn from this term.
    rep_student: same shape as `rep_teacher`.
    weights: optional [B].

  Returns:
    f32 scalar.
  """
  t = _f32(rep_teacher)
  s = _f32(rep_student)
  _check_same_shape("representation_loss", rep_teacher=t, rep_student=s)
  if t.ndim < 2:
    raise ValueError(f"representation_loss: expected [B, E], got shape {t.shape}")
  per_example = jnp.sum(jnp.square(t - s).reshape(t.shape[0], -1), axis=1)
  return _batch_mean(per_example, weights)


def intermediate_representation_loss(inter_teacher, inter_student, num_steps, weights=None):
  """Intermediate representation matching, eq. 3, over the student's valid steps.

  Per example: sum_{s < num_steps} ||I_T[s] - I_S[s]||^2 (steps already aligned by the caller),
  then the (weighted) mean over the batch.

  Args:
    inter_teacher: [B, S, E], the teacher's states at the frames the student's steps correspond to.
    inter_student: [B, S, E].
    num_steps: int[B], the student's valid steps per example (0 <= num_steps <= S).
    weights: optional [B].

  Returns:
    f32 scalar.
  """
  t = _f32(inter_teacher)
  s = _f32(inter_student)
  _check_same_shape("intermediate_representation_loss", inter_teacher=t, inter_student=s)
  _check_rank("intermediate_representation_loss", 3, inter_teacher=t)
  num_steps = jnp.asarray(num_steps)
  if num_steps.shape != t.shape[:1]:
    raise ValueError(f"intermediate_representation_loss: num_steps must have shape {t.shape[:1]}, "
                     f"got {num_steps.shape}")
  step_valid = jnp.arange(t.shape[1])[None, :] < num_steps[:, None]  # [B, S]
  per_step = jnp.sum(jnp.square(t - s), axis=2)
  per_example = jnp.sum(jnp.where(step_valid, per_step, 0.0), axis=1)
  return _batch_mean(per_example, weights)


def prediction_loss(p_teacher, p_student, d: str = "mse", weights=None, epsilon: float = 1e-6):
  """Prediction matching, eq. 4: d(P_T, P_S) on per-class probabilities, mean over the batch.

  Distances `d` (the paper leaves d open):
    "mse": sum_c (p_T,c - p_S,c)^2.
    "binary_kl": sum_c KL(Bernoulli(p_T,c) || Bernoulli(p_S,c)), both probabilities clipped to
      [epsilon, 1 - epsilon] so that logs and gradients stay finite at 0 and 1.
    "categorical_kl": the official code's choice: each row of sigmoid outputs is renormalised to a
      categorical distribution P = p / sum_c p (probabilities first clipped to >= epsilon), and
      KL(P_T || P_S) = sum_c P_T,c (log P_T,c - log P_S,c). The official code SUMS this over the
      batch; here it is averaged like every other term (divide its weights by B to compare).

  Args:
    p_teacher: [B, C] probabilities in [0, 1]; stop its gradient in the caller if needed.
    p_student: [B, C] probabilities in [0, 1].
    d: one of "mse", "binary_kl", "categorical_kl" (`config.loss.pred_distance`).
    weights: optional [B].
    epsilon: clipping for the KL distances.

  Returns:
    f32 scalar.
  """
  t = _f32(p_teacher)
  s = _f32(p_student)
  _check_same_shape("prediction_loss", p_teacher=t, p_student=s)
  _check_rank("prediction_loss", 2, p_teacher=t)
  if d == "mse":
    per_example = jnp.sum(jnp.square(t - s), axis=1)
  elif d == "binary_kl":
    t = jnp.clip(t, epsilon, 1.0 - epsilon)
    s = jnp.clip(s, epsilon, 1.0 - epsilon)
    per_class = (t * (jnp.log(t) - jnp.log(s))
                 + (1.0 - t) * (jnp.log1p(-t) - jnp.log1p(-s)))
    per_example = jnp.sum(per_class, axis=1)
  elif d == "categorical_kl":
    log_t = jax.nn.log_softmax(jnp.log(jnp.clip(t, epsilon, 1.0)), axis=1)
    log_s = jax.nn.log_softmax(jnp.log(jnp.clip(s, epsilon, 1.0)), axis=1)
    per_example = jnp.sum(jnp.exp(log_t) * (log_t - log_s), axis=1)
  else:
    raise ValueError(f"prediction_loss: unknown distance d={d!r}; allowed: {PREDICTION_DISTANCES}")
  return _batch_mean(per_example, weights)


def combine_student_losses(terms: Mapping, weights: Mapping):
  """Weighted sum of the student's loss terms.

  Args:
    terms: {name: f32 scalar} for names in `TERM_NAMES` ("ce", "rep", "rep_intermediate", "pred").
      A term whose weight is 0 need not be given (and is ignored if given, even if NaN).
    weights: a mapping with a float per term name, normally `config.loss` (its other entries, such
      as `pred_distance`, are ignored).

  Returns:
    (total f32 scalar, {name: weight * term} for the terms with a nonzero weight).

  Raises:
    ValueError: an unknown term name, a term without a weight, a negative weight, a nonzero weight
      whose term is missing, or no term with a nonzero weight at all.
  """
  unknown = set(terms) - set(TERM_NAMES)
  if unknown:
    raise ValueError(f"combine_student_losses: unknown loss terms {sorted(unknown)}; "
                     f"known: {TERM_NAMES}")
  weighted = {}
  for name in TERM_NAMES:
    if name not in weights:
      if name in terms:
        raise ValueError(f"combine_student_losses: term {name!r} given but no weight "
                         f"config.loss.{name}")
      continue
    weight = float(weights[name])
    if weight < 0:
      raise ValueError(f"combine_student_losses: config.loss.{name} = {weight} is negative")
    if weight == 0:
      continue
    if name not in terms:
      raise ValueError(f"combine_student_losses: config.loss.{name} = {weight} but the term "
                       f"{name!r} was not computed")
    weighted[name] = weight * _f32(terms[name])
  if not weighted:
    raise ValueError("combine_student_losses: every loss weight is 0; the student would not learn "
                     f"(config.loss.{{{', '.join(TERM_NAMES)}}})")
  total = sum(weighted.values())
  return total, weighted


def _f32(x):
  return jnp.asarray(x).astype(jnp.float32)


def _batch_mean(per_example, weights):
  """Mean of f32[B] over the batch, or sum(w * l) / sum(w) with weights [B] (0 if sum(w) == 0)."""
  if weights is None:
    return jnp.mean(per_example)
  w = _f32(weights)
  if w.shape != per_example.shape:
    raise ValueError(f"weights must have shape {per_example.shape}, got {w.shape}")
  total_weight = jnp.sum(w)
  safe_total = jnp.where(total_weight > 0, total_weight, 1.0)
  # The where keeps NaN/inf of zero-weight rows (garbage padding) out of the value; their gradient
  # can still be NaN if the row's inputs are, so padding rows should hold finite values.
  weighted = jnp.sum(jnp.where(w > 0, w * per_example, 0.0))
  return jnp.where(total_weight > 0, weighted / safe_total, 0.0)


def _check_same_shape(fn: str, **arrays):
  (name_a, a), (name_b, b) = arrays.items()
  if a.shape != b.shape:
    raise ValueError(f"{fn}: {name_a} and {name_b} must have the same shape, got {a.shape} and "
                     f"{b.shape}")


def _check_rank(fn: str, rank: int, **arrays):
  ((name, a),) = arrays.items()
  if a.ndim != rank:
    raise ValueError(f"{fn}: {name} must have rank {rank}, got shape {a.shape}")
