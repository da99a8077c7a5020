"""YouTube-8M evaluation metrics, defined exactly as the starter code's `eval_util.py`.

Definitions (C classes, k = min(top_k, C), a label is positive iff it is > 0):
- GAP@k: take each video's top-k classes by score, pool the (score, is_positive) pairs of all
  videos, rank them by score, and compute AP = sum_i rel(i) * prec@i / P, where P is the number of
  positive labels over all videos and classes (positives that are in no top-k list count as never
  retrieved).
- mAP: per class c, the same AP over the pooled items that fell into class c, divided by the
  positives of class c over all videos. `map` averages over the classes with at least one positive
  (the starter since 2019); `map_all_classes` averages over all C classes, a class without positives
  counting AP = 0 (the 2017-era code and the paper's mAP figures).
- Hit@1: fraction of videos whose highest-scored class is a positive.
- PERR: per video with n labels, the number of positives among its top-n classes that have a score
  > 0, divided by n; averaged over videos.

Tie handling (deterministic, documented deviations from the starter's arbitrary choices):
- Within a video, classes are ordered by score descending, then class id ascending (the order of
  `jax.lax.top_k`). This decides which class enters the top-k, which one is the argmax for Hit@1
  and which ones form the top-n for PERR when scores tie. The starter uses `argpartition`
  (unspecified order at the boundary) and `argmax` (lowest index: the same as here).
- When ranking pooled items for GAP and mAP, the starter shuffles with `random.seed(0)` and then
  stable-sorts, so tied scores are ordered at random. Here a run of tied scores contributes the
  *expected* AP over all orderings of that run (computed in closed form), i.e. the starter's value
  averaged over its shuffle. It does not depend on the order in which videos arrive, so batching,
  merging and host order never change the result. Without ties it equals the starter exactly.
- A video with no positive label contributes 0 to Hit@1 and to PERR and still counts as a video.
  (The starter's PERR takes the whole row as "top-0" and divides 0 by C: also 0.)
- With no video or no positive at all, every metric is 0 (the starter's `map` would be NaN).

Memory: the streaming state holds each video's top-k (scores f32, class ids, hits): O(videos x k),
never O(videos x C), plus per-class positive counts [C]. Ranking happens once, in `result()`.

The device can reduce a batch to O(B x k) with the jittable `top_k_hits`, `class_positive_counts`
and `perr_per_video`, and feed `EvaluationMetrics.update_top_k`.

Modules: `device.py` (jittable: a batch to its top-k), `streaming.py` (`EvaluationMetrics`, the
one-shot functions), `ranking.py` (the host arithmetic of ranked lists with ties).
"""
from fewframes_jax.metrics.device import TopKHits, class_positive_counts, perr_per_video, top_k_hits
from fewframes_jax.metrics.streaming import (METRIC_KEYS, TOP_K, EvaluationMetrics, global_average_precision,
                                             hit_at_one, mean_average_precision,
                                             precision_at_equal_recall_rate)

__all__ = ["METRIC_KEYS", "TOP_K", "EvaluationMetrics", "TopKHits", "class_positive_counts",
           "global_average_precision", "hit_at_one", "mean_average_precision", "perr_per_video",
           "precision_at_equal_recall_rate", "top_k_hits"]
