"""Exact evaluation over an eval dataset: every video counted once, the last batch padded.

The jitted eval step (train.eval_step) returns each video's top-k scores, classes and hits plus
per-class positive counts; the host accumulates them in `metrics.EvaluationMetrics` (O(videos x k)
memory). The step's outputs are replicated, so in a multi-process run every process sees the top-k of
the whole global batch and computes the same metrics, each video counted once; every process must
run the same number of batches (padding batches are all `valid=False`).
"""
from typing import Callable, Dict, Iterable, Optional

import jax
import numpy as np

from fewframes_jax import metrics as metrics_lib
from fewframes_jax import parallel

EVAL_RNG_SEED = 1234  # 'random' student sampling at eval draws from this fixed key, per batch


def evaluate(state, batches: Iterable[Dict[str, np.ndarray]], eval_step: Callable, *, num_classes: int,
             mesh, top_k: int = 20, max_videos: int = 0) -> Dict[str, Dict[str, float]]:
  """Runs `eval_step` over host-local numpy batches. Returns {'teacher'|'student': metrics dict}.

  Each metrics dict has gap, map, map_all_classes, hit_at_one, perr, num_videos, ce (mean per-video
  cross-entropy) and, for the student when sizes allow, rep_distance (mean squared L2 to the teacher).
  `max_videos` > 0 stops after that many valid videos (rounded up to whole batches).
  """
  accumulators: Dict[str, metrics_lib.EvaluationMetrics] = {}
  sums: Dict[str, Dict[str, float]] = {}
  base = jax.random.PRNGKey(EVAL_RNG_SEED)
  seen = 0
  for index, batch in enumerate(batches):
    out = jax.device_get(eval_step(state, parallel.to_global(batch, mesh), jax.random.fold_in(base, index)))
    global_valid = np.asarray(out.pop("valid"), bool)
    for net, result in out.items():
      acc = accumulators.setdefault(net, metrics_lib.EvaluationMetrics(num_classes, top_k=top_k))
      acc.update_top_k(result["scores"], result["class_ids"], result["hits"], num_labels=result["num_labels"],
                       class_positive_counts=result["class_positives"], perr=result["perr"], valid=global_valid)
      s = sums.setdefault(net, {})
      for key in ("ce", "rep_distance"):
        if key in result:
          s[key] = s.get(key, 0.0) + float(result[key])
    seen += int(global_valid.sum())
    if max_videos and seen >= max_videos:
      break
  results = {}
  for net, acc in accumulators.items():
    r = dict(acc.result())
    n = max(r["num_videos"], 1)
    for key, total in sums[net].items():
      r[key] = total / n
    results[net] = r
  return results


def format_metrics(results: Dict[str, Dict[str, float]]) -> str:
  parts = []
  for net, r in results.items():
    parts.append(f"{net}: GAP {r['gap']:.4f} mAP {r['map']:.4f} Hit@1 {r['hit_at_one']:.4f} "
                 f"({r['num_videos']} videos)")
  return " | ".join(parts)
