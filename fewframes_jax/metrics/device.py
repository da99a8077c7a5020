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


def perr_per_video(predictions, labels):
  """Each video's precision at equal recall rate (jittable; sorts each row on the device).

  Needed by `EvaluationMetrics.update_top_k` only when a video has more labels than k.

  Args:
    predictions: float[B, C].
    labels: [B, C] multi-hot (positive iff > 0).

  Returns:
    f32[B]: (positives among the top-n classes with score > 0) / n, n = the video's label count;
    0 for a video without labels.
  """
  predictions, positives = _check_device_inputs(predictions, labels)
  num_classes = predictions.shape[1]
  scores, class_ids = jax.lax.top_k(predictions, num_classes)
  sorted_positive = jnp.take_along_axis(positives, class_ids, axis=1)
  num_labels = jnp.sum(positives, axis=1, dtype=jnp.int32)
  in_top_n = jnp.arange(num_classes)[None, :] < num_labels[:, None]
  counted = jnp.sum(in_top_n & sorted_positive & (scores > 0), axis=1)
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
