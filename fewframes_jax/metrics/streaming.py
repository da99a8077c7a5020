"""Streaming GAP@k, mAP (both conventions), Hit@1 and PERR on the host (`EvaluationMetrics`), and their
one-shot forms; the definitions are in the package docstring (`fewframes_jax/metrics/__init__.py`).

Memory: the streaming state holds each video's top-k (scores f32, class ids, hits): O(videos x k),
never O(videos x C), plus per-class positive counts [C]. Ranking happens once, in `result()`.
"""
from typing import Any, Mapping

import numpy as np

from fewframes_jax.metrics import ranking

TOP_K = 20  # GAP@20, as the Kaggle competitions and the paper: each video's top 20 classes
METRIC_KEYS = ("gap", "map", "map_all_classes", "hit_at_one", "perr", "num_videos")


class EvaluationMetrics:
  """Streaming GAP@k, mAP (both conventions), Hit@1 and PERR over many batches.

  Usage:
    metrics = EvaluationMetrics(num_classes=3862)
    for batch in eval_batches:
      metrics.update(predictions, batch["labels"], valid=batch["valid"])
    metrics.result()  # {"gap", "map", "map_all_classes", "hit_at_one", "perr", "num_videos"}

  Combining hosts/processes: `a.merge(b)`, or `a.merge_state(b.state())` where the state is a dict
  of numpy arrays (e.g. gathered across processes). Each video must be fed to exactly one of them.
  """

  def __init__(self, num_classes: int, top_k: int = TOP_K):
    if int(num_classes) < 1:
      raise ValueError(f"EvaluationMetrics: num_classes must be >= 1, got {num_classes}")
    if int(top_k) < 1:
      raise ValueError(f"EvaluationMetrics: top_k must be >= 1, got {top_k}")
    self.num_classes = int(num_classes)
    self.top_k = min(int(top_k), self.num_classes)
    self._class_id_dtype = np.int16 if self.num_classes <= np.iinfo(np.int16).max else np.int32
    self.reset()

  def reset(self) -> None:
    """Forgets every video seen so far."""
    self._num_videos = 0
    self._scores = np.zeros((0, self.top_k), np.float32)
    self._class_ids = np.zeros((0, self.top_k), self._class_id_dtype)
    self._hits = np.zeros((0, self.top_k), bool)
    self._class_positives = np.zeros((self.num_classes,), np.int64)
    self._perr_sum = 0.0

  @property
  def num_videos(self) -> int:
    return self._num_videos

  # ---- accumulation ----

  def update(self, predictions, labels, valid=None) -> None:
    """Adds one batch of full predictions.

    Args:
      predictions: float[B, C] (numpy or jax); NaN is an error.
      labels: [B, C] multi-hot, values in {0, 1} (bool, integer or float).
      valid: optional bool[B]; rows with False (padding) are ignored.
    """
    predictions = _as_float32(predictions, "predictions")
    labels = np.asarray(labels)
    if predictions.ndim != 2 or labels.shape != predictions.shape:
      raise ValueError("EvaluationMetrics.update: predictions and labels must both be [B, C]; got "
                       f"{predictions.shape} and {labels.shape}")
    if predictions.shape[1] != self.num_classes:
      raise ValueError("EvaluationMetrics.update: predictions have "
                       f"{predictions.shape[1]} classes, "
                       f"expected num_classes={self.num_classes}")
    keep = _valid_rows(valid, predictions.shape[0], "update")
    if keep is not None:
      predictions, labels = predictions[keep], labels[keep]
    if labels.dtype != bool and np.any((labels != 0) & (labels != 1)):
      raise ValueError("EvaluationMetrics.update: labels must be multi-hot with values in {0, 1}")
    _check_no_nan(predictions, "predictions")
    positives = labels > 0

    scores, class_ids = ranking.top_k_sorted(predictions, self.top_k)
    hits = np.take_along_axis(positives, class_ids, axis=1)
    num_labels = positives.sum(axis=1)
    self._perr_sum += float(np.sum(ranking.perr_rows(predictions, positives, scores, hits, num_labels)))
    self._class_positives += positives.sum(axis=0)
    self._append(scores, class_ids, hits)

  def update_top_k(self, scores, class_ids, hits, *, num_labels, labels=None,
                   class_positive_counts=None, perr=None, valid=None) -> None:
    """Adds one batch already reduced to each video's top-k (see `top_k_hits`).

    Args:
      scores: f32[B, k], descending per row, k = `self.top_k` (= min(top_k, C)).
      class_ids: int[B, k].
      hits: bool[B, k].
      num_labels: int[B], positive labels per video.
      labels: [B, C] multi-hot, used only for the per-class positive counts. Give exactly one of
        `labels` and `class_positive_counts`.
      class_positive_counts: int[C], positives per class over the batch's *valid* rows only (see
        `class_positive_counts()`), so nothing O(B x C) needs to reach the host.
      perr: optional f32[B] from `perr_per_video`. Without it, PERR is computed from the top-k,
        which is exact only when every valid video has at most k labels (else a ValueError).
      valid: optional bool[B]; rows with False are ignored.
    """
    k = self.top_k
    scores = _as_float32(scores, "scores")
    class_ids = np.asarray(class_ids)
    hits = np.asarray(hits).astype(bool)
    num_labels = np.asarray(num_labels)
    batch = scores.shape[0] if scores.ndim == 2 else -1
    for name, arr, shape in (("scores", scores, (batch, k)), ("class_ids", class_ids, (batch, k)),
                             ("hits", hits, (batch, k)), ("num_labels", num_labels, (batch,))):
      if arr.shape != shape:
        raise ValueError(f"EvaluationMetrics.update_top_k: {name} must have shape {shape} "
                         f"(top_k={k}), got {arr.shape}")
    if (labels is None) == (class_positive_counts is None):
      raise ValueError("EvaluationMetrics.update_top_k: give exactly one of labels and "
                       "class_positive_counts")
    keep = _valid_rows(valid, batch, "update_top_k")
    if keep is not None:
      scores, class_ids, hits, num_labels = (scores[keep], class_ids[keep], hits[keep],
                                             num_labels[keep])
    _check_no_nan(scores, "scores")
    if np.any(scores[:, :-1] < scores[:, 1:]):
      raise ValueError("EvaluationMetrics.update_top_k: scores must be sorted descending per row")
    if np.any((class_ids < 0) | (class_ids >= self.num_classes)):
      raise ValueError(f"EvaluationMetrics.update_top_k: class_ids out of [0, {self.num_classes})")
    if np.any(hits.sum(axis=1) > num_labels):
      raise ValueError("EvaluationMetrics.update_top_k: more hits than num_labels in a row")

    if labels is not None:
      labels = np.asarray(labels)
      if labels.shape != (batch, self.num_classes):
        raise ValueError(f"EvaluationMetrics.update_top_k: labels must have shape "
                         f"{(batch, self.num_classes)}, got {labels.shape}")
      if keep is not None:
        labels = labels[keep]
      counts = (labels > 0).sum(axis=0)
    else:
      counts = np.asarray(class_positive_counts)
      if counts.shape != (self.num_classes,):
        raise ValueError(f"EvaluationMetrics.update_top_k: class_positive_counts must have shape "
                         f"{(self.num_classes,)}, got {counts.shape}")
    if int(counts.sum()) != int(num_labels.sum()):
      raise ValueError(
          "EvaluationMetrics.update_top_k: class positive counts sum to "
          f"{int(counts.sum())} but num_labels of the valid rows sum to {int(num_labels.sum())}; "
          "were the counts computed over the valid rows only?")

    if perr is not None:
      perr = np.asarray(perr, np.float64)
      if perr.shape != (batch,):
        raise ValueError(f"EvaluationMetrics.update_top_k: perr must have shape {(batch,)}, "
                         f"got {perr.shape}")
      perr_sum = float(np.sum(perr[keep] if keep is not None else perr))
    else:
      if np.any(num_labels > k):
        raise ValueError(
            "EvaluationMetrics.update_top_k: a video has "
            f"{int(num_labels.max())} labels, more than "
            f"top_k={k}, so PERR cannot be computed from the top-k; pass perr=perr_per_video(...)")
      perr_sum = float(np.sum(ranking.perr_from_top_k(scores, hits, num_labels)))

    self._perr_sum += perr_sum
    self._class_positives += counts.astype(np.int64)
    self._append(scores, class_ids.astype(self._class_id_dtype), hits)

  def _append(self, scores, class_ids, hits) -> None:
    n, add = self._num_videos, scores.shape[0]
    if n + add > self._scores.shape[0]:
      capacity = max(1024, 2 * self._scores.shape[0], n + add)
      for name in ("_scores", "_class_ids", "_hits"):
        old = getattr(self, name)
        new = np.zeros((capacity, self.top_k), old.dtype)
        new[:n] = old[:n]
        setattr(self, name, new)
    self._scores[n:n + add] = scores
    self._class_ids[n:n + add] = class_ids
    self._hits[n:n + add] = hits
    self._num_videos = n + add

  # ---- combining ----

  def state(self) -> dict:
    """The accumulated state as a dict of numpy arrays (O(videos x k))."""
    n = self._num_videos
    return {
        "num_classes": np.int64(self.num_classes),
        "top_k": np.int64(self.top_k),
        "scores": self._scores[:n].copy(),
        "class_ids": self._class_ids[:n].astype(np.int32),
        "hits": self._hits[:n].copy(),
        "class_positives": self._class_positives.copy(),
        "perr_sum": np.float64(self._perr_sum),
    }

  def merge_state(self, state: Mapping[str, Any]) -> None:
    """Adds the videos of another accumulator's `state()` (disjoint videos)."""
    missing = {"num_classes", "top_k", "scores", "class_ids", "hits", "class_positives",
               "perr_sum"} - set(state)
    if missing:
      raise ValueError(f"EvaluationMetrics.merge_state: state lacks {sorted(missing)}")
    if int(state["num_classes"]) != self.num_classes or int(state["top_k"]) != self.top_k:
      raise ValueError(
          "EvaluationMetrics.merge_state: state has num_classes="
          f"{int(state['num_classes'])}, top_k={int(state['top_k'])}; this accumulator has "
          f"num_classes={self.num_classes}, top_k={self.top_k}")
    scores = np.asarray(state["scores"], np.float32)
    if scores.ndim != 2 or scores.shape[1] != self.top_k:
      raise ValueError(f"EvaluationMetrics.merge_state: scores must be [N, {self.top_k}], "
                       f"got {scores.shape}")
    self._class_positives += np.asarray(state["class_positives"], np.int64)
    self._perr_sum += float(state["perr_sum"])
    self._append(scores, np.asarray(state["class_ids"]).astype(self._class_id_dtype),
                 np.asarray(state["hits"], bool))

  def merge(self, other: "EvaluationMetrics") -> None:
    """Adds the videos of `other` (which must have seen different videos)."""
    self.merge_state(other.state())

  @classmethod
  def from_state(cls, state: Mapping[str, Any]) -> "EvaluationMetrics":
    metrics = cls(int(state["num_classes"]), int(state["top_k"]))
    metrics.merge_state(state)
    return metrics

  # ---- results ----

  def result(self) -> dict:
    """{"gap", "map", "map_all_classes", "hit_at_one", "perr": float, "num_videos": int}."""
    n = self._num_videos
    if n == 0:
      return {"gap": 0.0, "map": 0.0, "map_all_classes": 0.0, "hit_at_one": 0.0, "perr": 0.0,
              "num_videos": 0}
    order = self._ranking()
    mean_ap, mean_ap_all = self._mean_average_precisions(order)
    return {
        "gap": self._global_average_precision(order),
        "map": mean_ap,
        "map_all_classes": mean_ap_all,
        "hit_at_one": float(np.mean(self._hits[:n, 0])),
        "perr": self._perr_sum / n,
        "num_videos": n,
    }

  def _ranking(self) -> np.ndarray:
    """Indices of the pooled N*k items sorted by score descending."""
    scores = self._scores[:self._num_videos].ravel()
    return np.argsort(-scores, kind="stable")

  def _global_average_precision(self, order: np.ndarray) -> float:
    total_positives = int(self._class_positives.sum())
    if total_positives == 0:
      return 0.0
    scores = self._scores[:self._num_videos].ravel()[order]
    hits = self._hits[:self._num_videos].ravel()[order]
    return float(np.sum(ranking.tie_averaged_precision_terms(scores, hits)) / total_positives)

  def _mean_average_precisions(self, order: np.ndarray) -> tuple[float, float]:
    """(mean over classes with a positive, mean over all classes) of the per-class APs."""
    n = self._num_videos
    class_ids = self._class_ids[:n].ravel()[order]
    by_class = np.argsort(class_ids, kind="stable")  # radix sort for int16; keeps score order
    item = order[by_class]
    del order
    class_ids = class_ids[by_class]
    terms = ranking.tie_averaged_precision_terms(
        self._scores[:n].ravel()[item], self._hits[:n].ravel()[item], segments=class_ids)
    ap_sums = np.bincount(class_ids, weights=terms, minlength=self.num_classes)
    has_positive = self._class_positives > 0
    aps = np.where(has_positive, ap_sums / np.maximum(self._class_positives, 1), 0.0)
    mean_ap = float(np.mean(aps[has_positive])) if np.any(has_positive) else 0.0
    return mean_ap, float(np.mean(aps))


# ---- one-shot functions ----


def global_average_precision(predictions, labels, top_k: int = TOP_K) -> float:
  """GAP@top_k of one set of predictions: float[N, C], labels [N, C] multi-hot."""
  metrics = _one_shot(predictions, labels, top_k)
  if metrics.num_videos == 0:
    return 0.0
  return metrics._global_average_precision(metrics._ranking())


def mean_average_precision(predictions, labels, top_k: int = TOP_K, *,
                           all_classes: bool = False) -> float:
  """mAP over each video's top-k predictions: float[N, C], labels [N, C] multi-hot.

  `all_classes=False` (the starter's default since 2019) averages over classes with >= 1 positive;
  `all_classes=True` (2017-era code, the paper) averages over all C, empty classes counting 0.
  """
  metrics = _one_shot(predictions, labels, top_k)
  if metrics.num_videos == 0:
    return 0.0
  mean_ap, mean_ap_all = metrics._mean_average_precisions(metrics._ranking())
  return mean_ap_all if all_classes else mean_ap


def hit_at_one(predictions, labels) -> float:
  """Fraction of videos whose top class (lowest id on ties) is positive: float[N, C], [N, C]."""
  return _one_shot(predictions, labels, 1).result()["hit_at_one"]


def precision_at_equal_recall_rate(predictions, labels) -> float:
  """Mean over videos of PERR (see the module docstring): float[N, C], labels [N, C]."""
  return _one_shot(predictions, labels, 1).result()["perr"]


def _one_shot(predictions, labels, top_k: int) -> EvaluationMetrics:
  shape = np.shape(predictions)
  if len(shape) != 2:
    raise ValueError(f"predictions must be [N, C], got shape {shape}")
  metrics = EvaluationMetrics(shape[1], top_k)
  metrics.update(predictions, labels)
  return metrics


# ---- numpy internals ----


def _as_float32(x, name: str) -> np.ndarray:
  x = np.asarray(x)
  try:
    return x.astype(np.float32)
  except (TypeError, ValueError) as e:
    raise ValueError(f"EvaluationMetrics: {name} must be numeric, got dtype {x.dtype}") from e


def _check_no_nan(x: np.ndarray, name: str) -> None:
  if np.isnan(x).any():
    raise ValueError(f"EvaluationMetrics: {name} contain NaN")


def _valid_rows(valid, batch: int, where: str):
  if valid is None:
    return None
  valid = np.asarray(valid)
  if valid.shape != (batch,):
    raise ValueError(f"EvaluationMetrics.{where}: valid must have shape ({batch},), "
                     f"got {valid.shape}")
  return valid.astype(bool)
