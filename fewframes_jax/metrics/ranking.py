"""Host-side arithmetic of ranked lists, for `metrics.EvaluationMetrics` (numpy, O(items) memory).

  top_k_sorted                   each row's k largest scores in `jax.lax.top_k`'s order (ties: lower
                                 class id first), without a full sort.
  perr_from_top_k, perr_rows     precision at equal recall rate from a row's sorted top-k (sorting the
                                 whole row only for videos with more labels than k).
  tie_averaged_precision_terms   per item of one or several ranked lists, its expected term of average
                                 precision when tied scores are ordered uniformly at random; summed and
                                 divided by the positives, a list's AP (GAP pools all videos' top-k
                                 into one list, mAP has one list per class).
"""
import numpy as np


def top_k_sorted(predictions: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
  """Per row, the k largest scores (descending; ties: lower class id first) and their classes.

  Same selection and order as `jax.lax.top_k`, in O(B x C) numpy without a full sort.
  """
  batch, num_classes = predictions.shape
  predictions = predictions + np.float32(0.0)  # -0.0 -> 0.0
  if k == num_classes:
    class_ids = np.argsort(-predictions, axis=1, kind="stable")
    return np.take_along_axis(predictions, class_ids, axis=1), class_ids
  kth = -np.partition(-predictions, k - 1, axis=1)[:, k - 1:k]  # k-th largest per row, [B, 1]
  above = predictions > kth
  at = predictions == kth
  needed = k - above.sum(axis=1, keepdims=True)
  take = above | (at & (np.cumsum(at, axis=1) <= needed))
  class_ids = np.nonzero(take)[1].reshape(batch, k)  # ascending class id within each row
  scores = np.take_along_axis(predictions, class_ids, axis=1)
  by_score = np.argsort(-scores, axis=1, kind="stable")
  return np.take_along_axis(scores, by_score, axis=1), np.take_along_axis(class_ids, by_score, 1)


def perr_from_top_k(scores, hits, num_labels) -> np.ndarray:
  """PERR per video from its sorted top-k; requires num_labels <= k."""
  in_top_n = np.arange(scores.shape[1])[None, :] < num_labels[:, None]
  counted = np.sum(in_top_n & hits & (scores > 0), axis=1)
  return np.where(num_labels > 0, counted / np.maximum(num_labels, 1), 0.0)


def perr_rows(predictions, positives, scores, hits, num_labels) -> np.ndarray:
  """PERR per video; sorts the full row only for videos with more labels than k."""
  k = scores.shape[1]
  perr = perr_from_top_k(scores, hits, np.minimum(num_labels, k)).astype(np.float64)
  many = np.flatnonzero(num_labels > k)
  if many.size:
    full_scores, full_ids = top_k_sorted(predictions[many], predictions.shape[1])
    full_hits = np.take_along_axis(positives[many], full_ids, axis=1)
    perr[many] = perr_from_top_k(full_scores, full_hits, num_labels[many])
  return perr


def tie_averaged_precision_terms(scores: np.ndarray, hits: np.ndarray,
                                  segments: np.ndarray | None = None) -> np.ndarray:
  """Per item, E[rel(i) * poscount(i) / i] with ties ordered uniformly at random.

  Args:
    scores: f32[M], sorted descending within each segment.
    hits: bool[M].
    segments: optional int[M], non-decreasing ids of independent ranked lists (e.g. classes);
      ranks restart at each segment. None: one list.

  Returns:
    f64[M]; summing a segment's terms and dividing by its positives gives its AP. For an item at
    1-based rank i in a run of m tied scores that starts after rank r0 (j = i - r0) and holds p
    positives, with c0 positives ranked before the run:
      E[rel * poscount] = (p / m) * (c0 + 1 + (j - 1) * (p - 1) / (m - 1)),
    since P(rel_j) = p/m and P(rel_j and rel_l) = p(p-1)/(m(m-1)) for l != j. With m = 1 this is
    rel(i) * poscount(i), the plain AP term.
  """
  size = scores.shape[0]
  if size == 0:
    return np.zeros((0,), np.float64)
  index = np.arange(size)
  segment_start = np.zeros(size, bool)
  segment_start[0] = True
  if segments is not None:
    segment_start[1:] = segments[1:] != segments[:-1]
  run_start = segment_start.copy()
  run_start[1:] |= scores[1:] != scores[:-1]

  first_of_segment = np.maximum.accumulate(np.where(segment_start, index, 0))
  first_of_run = np.maximum.accumulate(np.where(run_start, index, 0))
  del segment_start
  positives_before = np.cumsum(hits, dtype=np.int64) - hits  # over the whole array, exclusive
  run_id = np.cumsum(run_start) - 1
  del run_start
  run_size = np.bincount(run_id)[run_id].astype(np.float64)
  run_positives = np.bincount(run_id, weights=hits)[run_id]
  del run_id
  c0 = (positives_before[first_of_run] - positives_before[first_of_segment]).astype(np.float64)
  del positives_before
  rank = (index - first_of_segment + 1).astype(np.float64)
  j = (index - first_of_run).astype(np.float64)  # j - 1 in the formula
  del index, first_of_run, first_of_segment
  pair = np.where(run_size > 1, (run_positives - 1) / np.maximum(run_size - 1, 1), 0.0)
  return (run_positives / run_size) * (c0 + 1 + j * pair) / rank
