"""The device side of the metrics: one batch reduced, under jit, to each video's top-k (what
`EvaluationMetrics.update_top_k` accumulates), so that O(B x k) leaves the device, not O(B x C)."""
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp


class TopKHits(NamedTuple):
  """One batch reduced on the device to each video's top-k.

  Attributes:
    scores: f32[B, k], descending per row (ties: lower class id first).
    class_ids: i32[B, k], the classes of `scores`.
    hits: bool[B, k], whether each of those classes is a positive label.
    num_labels: i32[B], the number of positive labels of each video.
  """
  scores: Any
  class_ids: Any
  hits: Any
  num_labels: Any


def top_k_hits(predictions, labels, k: int) -> TopKHits:
  """Each video's top-k classes, whether they are positives, and its label count (jittable).

  Args:
    predictions: float[B, C] scores (probabilities or logits; only their order and sign matter).
    labels: [B, C] multi-hot (bool or numeric; positive iff > 0).
    k: number of classes kept per video; `min(k, C)` is used. Static under jit.

  Returns:
    `TopKHits` with scores f32[B, k'], class_ids i32[B, k'], hits bool[B, k'], num_labels i32[B],
    k' = min(k, C). Ties are ordered by lower class id first (`jax.lax.top_k`).
  """
  predictions, positives = _check_device_inputs(predictions, labels)
  k = min(int(k), predictions.shape[1])
  if k < 1:
    raise ValueError(f"top_k_hits: k must be >= 1, got {k}")
  scores, class_ids = jax.lax.top_k(predictions, k)
  hits = jnp.take_along_axis(positives, class_ids, axis=1)
  num_labels = jnp.sum(positives, axis=1, dtype=jnp.int32)
  return TopKHits(scores, class_ids.astype(jnp.int32), hits, num_labels)


def class_positive_counts(labels, valid=None):
  """Positives of each class over the (valid) videos of a batch (jittable).

  Args:
    labels: [B, C] multi-hot (positive iff > 0).
    valid: optional bool[B]; rows with False are not counted.

  Returns:
    i32[C].
  """
  positives = jnp.asarray(labels) > 0
  if positives.ndim != 2:
    raise ValueError(f"class_positive_counts: labels must be [B, C], got shape {positives.shape}")
  if valid is not None:
    positives = positives & jnp.asarray(valid, bool)[:, None]
  return jnp.sum(positives, axis=0, dtype=jnp.int32)


# PERR ranks each video's top-n classes, n its label count. Sorting every class of every video (4,716 on
# YouTube-8M) costs 8x a k=10 student's forward on a CPU; a partial sort of this many classes serves every
# batch whose videos have at most that many labels (YouTube-8M videos have a few), else the full sort runs.
PERR_PARTIAL_CLASSES = 64


def perr_per_video(predictions, labels):
  """Each video's precision at equal recall rate (jittable; ranks each row on the device).

  Needed by `EvaluationMetrics.update_top_k` only when a video has more labels than k.

  Args:
    predictions: float[B, C].
    labels: [B, C] multi-hot (positive iff > 0).

  Returns:
    f32[B]: (positives among the top-n classes with score > 0) / n, n = the video's label count;
    0 for a video without labels. Ties rank the lower class id first (`jax.lax.top_k`): the top
    `PERR_PARTIAL_CLASSES` of a row are the prefix of its full order, so a batch whose videos all have at
    most that many labels reads them from a partial sort, and any other batch from the full sort.
  """
  predictions, positives = _check_device_inputs(predictions, labels)
  num_classes = predictions.shape[1]
  num_labels = jnp.sum(positives, axis=1, dtype=jnp.int32)

  def counted_in_top(k):
    scores, class_ids = jax.lax.top_k(predictions, k)
    sorted_positive = jnp.take_along_axis(positives, class_ids, axis=1)
    in_top_n = jnp.arange(k)[None, :] < num_labels[:, None]
    return jnp.sum(in_top_n & sorted_positive & (scores > 0), axis=1)

  partial = min(PERR_PARTIAL_CLASSES, num_classes)
  if partial == num_classes:
    counted = counted_in_top(num_classes)
  else:
    counted = jax.lax.cond(jnp.max(num_labels, initial=0) > partial, lambda: counted_in_top(num_classes),
                           lambda: counted_in_top(partial))
  return jnp.where(num_labels > 0, counted / jnp.maximum(num_labels, 1), 0.0).astype(jnp.float32)


def _check_device_inputs(predictions, labels):
  predictions = jnp.asarray(predictions).astype(jnp.float32)
  labels = jnp.asarray(labels)
  if predictions.ndim != 2 or predictions.shape != labels.shape:
    raise ValueError(
        f"predictions and labels must both be [B, C]; got {predictions.shape} and {labels.shape}")
  # -0.0 and 0.0 must tie, as they do for numpy on the host.
  predictions = jnp.where(predictions == 0, 0.0, predictions)
  return predictions, labels > 0
