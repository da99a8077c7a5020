"""Tests of fewframes_jax.metrics against plain, readable references written here."""
import itertools
import math
import random

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fewframes_jax.metrics import device as device_metrics
from fewframes_jax.metrics import ranking
from fewframes_jax import metrics

# ---------------------------------------------------------------------------------------------
# Reference implementation: a direct, loop-based port of the definitions in the module docstring.
# ---------------------------------------------------------------------------------------------


def ref_top_k(scores_row, k):
  """Classes of one video ordered by (score descending, class id ascending), first k."""
  return sorted(range(len(scores_row)), key=lambda c: (-scores_row[c], c))[:k]


def ref_ap_sum(items):
  """Sum over ranks of E[rel(i) * poscount(i) / i], ties ordered uniformly at random.

  items: list of (score, is_positive). Each run of equal scores is averaged over every placement of
  its positives inside the run (itertools.combinations), the other runs being fixed; test cases
  keep tied runs short enough for this enumeration.
  """
  items = sorted(items, key=lambda t: -t[0])
  total, rank_before, positives_before, start = 0.0, 0, 0, 0
  while start < len(items):
    end = start
    while end < len(items) and items[end][0] == items[start][0]:
      end += 1
    size = end - start
    num_pos = sum(1 for _, hit in items[start:end] if hit)
    assert math.comb(size, num_pos) <= 5000, "test case has too long a tied run to enumerate"
    placements = list(itertools.combinations(range(size), num_pos))
    run_total = 0.0
    for placement in placements:
      count = positives_before
      for offset in placement:  # sorted offsets
        count += 1
        run_total += count / (rank_before + offset + 1)
    total += run_total / len(placements)
    rank_before += size
    positives_before += num_pos
    start = end
  return total


def ref_metrics(predictions, labels, top_k=20):
  predictions = np.asarray(predictions, np.float32)
  labels = np.asarray(labels) > 0
  num_videos, num_classes = predictions.shape
  k = min(top_k, num_classes)
  pooled = []
  per_class = [[] for _ in range(num_classes)]
  hit_sum = perr_sum = 0.0
  for v in range(num_videos):
    row = [float(x) for x in predictions[v]]
    for c in ref_top_k(row, k):
      pooled.append((row[c], bool(labels[v, c])))
      per_class[c].append((row[c], bool(labels[v, c])))
    hit_sum += float(labels[v, ref_top_k(row, 1)[0]])
    n = int(labels[v].sum())
    if n > 0:
      perr_sum += sum(1 for c in ref_top_k(row, n) if labels[v, c] and row[c] > 0) / n
  total_pos = int(labels.sum())
  gap = ref_ap_sum(pooled) / total_pos if total_pos else 0.0
  aps = []
  for c in range(num_classes):
    pos_c = int(labels[:, c].sum())
    aps.append(ref_ap_sum(per_class[c]) / pos_c if pos_c else 0.0)
  with_pos = [ap for c, ap in enumerate(aps) if labels[:, c].sum() > 0]
  return {
      "gap": gap,
      "map": float(np.mean(with_pos)) if with_pos else 0.0,
      "map_all_classes": float(np.mean(aps)),
      "hit_at_one": hit_sum / num_videos,
      "perr": perr_sum / num_videos,
      "num_videos": num_videos,
  }


def starter_ap_at_n(predictions, actuals, total_num_positives, seed=0):
  """The starter's AveragePrecisionCalculator.ap_at_n with n=None: shuffle, stable sort, sum."""
  pairs = list(zip(predictions, actuals))
  random.seed(seed)
  random.shuffle(pairs)
  order = sorted(range(len(pairs)), key=lambda i: pairs[i][0], reverse=True)
  if total_num_positives == 0:
    return 0.0
  ap, poscount = 0.0, 0.0
  for i, idx in enumerate(order):
    if pairs[idx][1] > 0:
      poscount += 1
      ap += poscount / (i + 1) / total_num_positives
  return ap


def random_case(seed, num_videos, num_classes, *, levels=None, label_rate=0.15):
  rng = np.random.default_rng(seed)
  predictions = rng.random((num_videos, num_classes)).astype(np.float32)
  if levels:  # quantise to force ties, including at the top-k boundary
    predictions = (np.floor(predictions * levels) / levels).astype(np.float32)
  labels = rng.random((num_videos, num_classes)) < label_rate
  labels[rng.random(num_videos) < 0.2] = False   # videos without labels
  labels[0] = False
  labels[:, rng.random(num_classes) < 0.2] = False  # classes without positives
  labels[:, -1] = False
  return predictions, labels


def assert_results_close(got, want, atol=1e-9):
  assert got["num_videos"] == want["num_videos"]
  for key in ("gap", "map", "map_all_classes", "hit_at_one", "perr"):
    assert got[key] == pytest.approx(want[key], abs=atol), key


# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed,num_videos,num_classes,top_k,levels", [
    (0, 40, 50, 20, None),  # no ties
    (1, 40, 50, 20, 200),   # ties, also at the top-k boundary
    (3, 30, 7, 20, 40),     # C < top_k, with ties
    (4, 25, 30, 5, 60),     # small k, ties; some videos have more labels than k (PERR)
    (5, 30, 5, 2, 8),       # long tied runs within classes and at the boundary
    (6, 40, 3, 20, 4),      # C = 3: every class in every top-k, heavy ties
])
def test_matches_reference(seed, num_videos, num_classes, top_k, levels):
  predictions, labels = random_case(seed, num_videos, num_classes, levels=levels, label_rate=0.2)
  assert (labels.sum(1) == 0).any() and (labels.sum(0) == 0).any()
  evaluator = metrics.EvaluationMetrics(num_classes, top_k)
  evaluator.update(predictions, labels)
  want = ref_metrics(predictions, labels, top_k)
  assert_results_close(evaluator.result(), want)
  assert metrics.global_average_precision(predictions, labels, top_k) == pytest.approx(want["gap"])
  assert metrics.mean_average_precision(predictions, labels, top_k) == pytest.approx(want["map"])
  assert metrics.mean_average_precision(predictions, labels, top_k, all_classes=True) == (
      pytest.approx(want["map_all_classes"]))
  assert metrics.hit_at_one(predictions, labels) == pytest.approx(want["hit_at_one"])
  assert metrics.precision_at_equal_recall_rate(predictions, labels) == pytest.approx(want["perr"])


def test_equals_starter_port_without_ties():
  """Without ties the definitions are exactly the starter's GAP and per-class AP."""
  predictions, labels = random_case(10, 60, 40, label_rate=0.1)
  k = 20
  flat_scores, flat_hits = [], []
  class_scores = [[] for _ in range(40)]
  class_hits = [[] for _ in range(40)]
  for v in range(60):
    top = np.argpartition(predictions[v], -k)[-k:]  # the starter's top_k_triplets
    for c in top:
      flat_scores.append(predictions[v, c])
      flat_hits.append(labels[v, c])
      class_scores[c].append(predictions[v, c])
      class_hits[c].append(labels[v, c])
  gap = starter_ap_at_n(flat_scores, flat_hits, int(labels.sum()))
  aps = [starter_ap_at_n(class_scores[c], class_hits[c], int(labels[:, c].sum()))
         for c in range(40)]
  result = metrics.EvaluationMetrics(40, k)
  result.update(predictions, labels)
  result = result.result()
  assert result["gap"] == pytest.approx(gap, abs=1e-12)
  assert result["map_all_classes"] == pytest.approx(np.mean(aps), abs=1e-12)
  nonempty = labels.sum(0) > 0
  assert result["map"] == pytest.approx(np.mean(np.asarray(aps)[nonempty]), abs=1e-12)


def test_tie_rule_is_the_average_of_the_starter_shuffle():
  """With heavy ties, the starter's shuffled AP averaged over many seeds approaches ours."""
  predictions, labels = random_case(11, 12, 6, levels=3, label_rate=0.4)
  scores = predictions.ravel().tolist()
  hits = labels.ravel().tolist()
  total = int(labels.sum())
  samples = np.array([starter_ap_at_n(scores, hits, total, seed=s) for s in range(3000)])
  gap = metrics.global_average_precision(predictions, labels, top_k=6)
  assert samples.std() > 1e-3  # the shuffle does change the starter's value here
  assert gap == pytest.approx(samples.mean(), abs=4 * samples.std() / np.sqrt(len(samples)))


def test_hand_worked_example():
  # Video A: scores (0.9, 0.8, 0.1), labels (1, 0, 1).
  # Video B: scores (0.3, 0.7, 0.2), labels (0, 1, 0).
  # top_k=2 -> A: (0.9,+), (0.8,-); B: (0.7,+), (0.3,-). Pooled by score: +, -, +, -.
  # P = 3 labels in total (A's class 2 is in no top-2): GAP = (1/1 + 2/3) / 3 = 5/9.
  # Class 0: B's 0.3 (-) ranks below A's 0.9 (+), 1 positive -> AP 1. Class 1: A 0.8 (-), B 0.7 (+)
  # -> AP 1/2. Class 2: 1 positive, never in a top-2 -> AP 0. mAP = 1.5 / 3 = 0.5.
  # Hit@1: both argmaxes are positives -> 1. PERR: A top-2 has 1 of 2, B top-1 has 1 of 1 -> 0.75.
  predictions = np.array([[0.9, 0.8, 0.1], [0.3, 0.7, 0.2]], np.float32)
  labels = np.array([[1, 0, 1], [0, 1, 0]], np.uint8)
  evaluator = metrics.EvaluationMetrics(3, top_k=2)
  evaluator.update(predictions, labels)
  result = evaluator.result()
  assert result["gap"] == pytest.approx(5 / 9)
  assert result["map"] == pytest.approx(0.5)
  assert result["map_all_classes"] == pytest.approx(0.5)
  assert result["hit_at_one"] == 1.0
  assert result["perr"] == pytest.approx(0.75)
  assert result["num_videos"] == 2


def test_hand_worked_ties():
  # One video, scores (0.9, 0.5, 0.5, 0.5), labels (1, 1, 1, 0), P = 3. Rank 1 is a positive: 1/1.
  # The tied run holds ranks 2..4 with 2 positives, 1 positive before it. Placing its negative at
  # rank 2, 3 or 4 gives 2/3 + 3/4, 2/2 + 3/4 or 2/2 + 3/3, i.e. 17/12, 21/12, 24/12: mean 31/18.
  # GAP = (1 + 31/18) / 3 = 49/54.
  predictions = np.array([[0.9, 0.5, 0.5, 0.5]], np.float32)
  labels = np.array([[1, 1, 1, 0]])
  assert metrics.global_average_precision(predictions, labels, top_k=4) == pytest.approx(49 / 54)
  # Two tied classes, one positive: expected AP = (1/2)(1/1) + (1/2)(1/2) = 3/4. Hit@1 takes the
  # lower class id among the tied maxima (argmax), here the positive class 0.
  predictions = np.array([[0.5, 0.5, 0.1]], np.float32)
  labels = np.array([[1, 0, 0]])
  assert metrics.global_average_precision(predictions, labels, top_k=2) == pytest.approx(0.75)
  assert metrics.hit_at_one(predictions, labels) == 1.0
  assert metrics.hit_at_one(predictions[:, ::-1].copy(), labels[:, ::-1].copy()) == 0.0


def test_positives_outside_the_top_k_lower_gap():
  # 1 positive in the top-1, 1 outside: GAP = (1/1) / 2, not 1.
  predictions = np.array([[0.9, 0.2, 0.1]], np.float32)
  labels = np.array([[1, 0, 1]])
  assert metrics.global_average_precision(predictions, labels, top_k=1) == pytest.approx(0.5)
  assert metrics.global_average_precision(predictions, labels, top_k=3) == pytest.approx(
      (1 + 2 / 3) / 2)


def test_map_conventions_diverge_on_a_subset():
  # The hand-worked example plus a class 3 with no positive in this subset: the starter's `map`
  # ignores it (0.5), the 2017-era mean counts it as AP = 0 (1.5 / 4 = 0.375).
  predictions = np.array([[0.9, 0.8, 0.1, 0.0], [0.3, 0.7, 0.2, 0.0]], np.float32)
  labels = np.array([[1, 0, 1, 0], [0, 1, 0, 0]])
  assert metrics.mean_average_precision(predictions, labels, top_k=2) == pytest.approx(0.5)
  assert metrics.mean_average_precision(predictions, labels, top_k=2, all_classes=True) == (
      pytest.approx(0.375))
  # On the full set (class 3 has a positive elsewhere) both agree again on the covered classes.
  evaluator = metrics.EvaluationMetrics(4, top_k=2)
  evaluator.update(predictions, labels)
  evaluator.update(np.array([[0.0, 0.0, 0.0, 1.0]], np.float32), np.array([[0, 0, 0, 1]]))
  result = evaluator.result()
  assert result["map"] == pytest.approx(result["map_all_classes"])


def test_videos_without_labels_count_zero_for_hit_and_perr():
  predictions = np.array([[0.9, 0.1], [0.8, 0.3]], np.float32)
  labels = np.array([[1, 0], [0, 0]])
  evaluator = metrics.EvaluationMetrics(2)
  evaluator.update(predictions, labels)
  result = evaluator.result()
  assert result["hit_at_one"] == 0.5
  assert result["perr"] == 0.5
  assert result["gap"] == 1.0


def test_perr_counts_only_positive_scores():
  predictions = np.array([[0.0, -1.0, -2.0]], np.float32)  # e.g. logits
  labels = np.array([[1, 1, 0]])
  assert metrics.precision_at_equal_recall_rate(predictions, labels) == 0.0
  assert metrics.hit_at_one(predictions, labels) == 1.0


def test_empty_and_no_positive():
  evaluator = metrics.EvaluationMetrics(5)
  assert evaluator.result() == {"gap": 0.0, "map": 0.0, "map_all_classes": 0.0, "hit_at_one": 0.0,
                                "perr": 0.0, "num_videos": 0}
  evaluator.update(np.ones((3, 5), np.float32), np.zeros((3, 5), bool))
  result = evaluator.result()
  assert result["num_videos"] == 3 and result["gap"] == 0.0 and result["map"] == 0.0


def test_streaming_uneven_batches_equals_one_shot():
  predictions, labels = random_case(20, 53, 30, levels=10)
  whole = metrics.EvaluationMetrics(30, 20)
  whole.update(predictions, labels)
  streamed = metrics.EvaluationMetrics(30, 20)
  for start, stop in [(0, 1), (1, 18), (18, 19)]:
    streamed.update(predictions[start:stop], labels[start:stop])
  streamed.update(jnp.asarray(predictions[19:]), jnp.asarray(labels[19:]))  # jax arrays too
  assert_results_close(streamed.result(), whole.result(), atol=1e-12)
  # The result does not depend on video order either (tie runs are order-free).
  shuffled = metrics.EvaluationMetrics(30, 20)
  perm = np.random.default_rng(0).permutation(53)
  shuffled.update(predictions[perm], labels[perm])
  assert_results_close(shuffled.result(), whole.result(), atol=1e-12)


def test_invalid_rows_are_ignored():
  predictions, labels = random_case(21, 20, 15, levels=8)
  clean = metrics.EvaluationMetrics(15, 10)
  clean.update(predictions, labels)
  rng = np.random.default_rng(1)
  padded_predictions = np.concatenate([predictions, rng.random((6, 15), np.float32) + 1.0])
  padded_labels = np.concatenate([labels, np.ones((6, 15), bool)])
  valid = np.arange(26) < 20
  padded = metrics.EvaluationMetrics(15, 10)
  padded.update(padded_predictions, padded_labels, valid=valid)
  assert_results_close(padded.result(), clean.result(), atol=1e-12)
  unmasked = metrics.EvaluationMetrics(15, 10)
  unmasked.update(padded_predictions, padded_labels)
  assert unmasked.result()["gap"] != pytest.approx(clean.result()["gap"])


def test_merge_of_halves_equals_whole_and_state_round_trip():
  predictions, labels = random_case(22, 40, 25, levels=10)
  whole = metrics.EvaluationMetrics(25)
  whole.update(predictions, labels)
  first, second = metrics.EvaluationMetrics(25), metrics.EvaluationMetrics(25)
  first.update(predictions[:17], labels[:17])
  second.update(predictions[17:], labels[17:])
  first.merge(second)
  assert_results_close(first.result(), whole.result(), atol=1e-12)
  # Merging the other way round gives the same numbers (each video counted once).
  a, b = metrics.EvaluationMetrics(25), metrics.EvaluationMetrics(25)
  a.update(predictions[:17], labels[:17])
  b.update(predictions[17:], labels[17:])
  b.merge_state(a.state())
  assert_results_close(b.result(), whole.result(), atol=1e-12)
  assert_results_close(metrics.EvaluationMetrics.from_state(whole.state()).result(), whole.result(),
                       atol=0)
  with pytest.raises(ValueError, match="num_classes"):
    metrics.EvaluationMetrics(26).merge(whole)
  whole.reset()
  assert whole.result()["num_videos"] == 0


def test_state_is_o_videos_times_k():
  predictions, labels = random_case(23, 30, 200)
  evaluator = metrics.EvaluationMetrics(200, top_k=20)
  evaluator.update(predictions, labels)
  state = evaluator.state()
  for key in ("scores", "class_ids", "hits"):
    assert state[key].shape == (30, 20)
  assert state["class_positives"].shape == (200,)


@pytest.mark.parametrize("num_classes,top_k,levels", [(30, 8, 5), (6, 20, 3), (40, 20, None)])
def test_device_top_k_path_equals_full_update(num_classes, top_k, levels):
  predictions, labels = random_case(30, 24, num_classes, levels=levels, label_rate=0.25)
  valid = np.arange(24) < 21
  full = metrics.EvaluationMetrics(num_classes, top_k)
  full.update(predictions, labels, valid=valid)

  reduce = jax.jit(metrics.top_k_hits, static_argnames="k")
  reduced = reduce(jnp.asarray(predictions), jnp.asarray(labels), k=top_k)
  k = min(top_k, num_classes)
  assert reduced.scores.shape == (24, k) and reduced.hits.dtype == jnp.bool_
  counts = jax.jit(metrics.class_positive_counts)(labels, valid)
  np.testing.assert_array_equal(counts, labels[valid].sum(0))
  perr = jax.jit(metrics.perr_per_video)(predictions, labels)

  from_device = metrics.EvaluationMetrics(num_classes, top_k)
  from_device.update_top_k(*reduced[:3], num_labels=reduced.num_labels,
                           class_positive_counts=counts, perr=perr, valid=valid)
  assert_results_close(from_device.result(), full.result(), atol=1e-7)
  from_labels = metrics.EvaluationMetrics(num_classes, top_k)
  from_labels.update_top_k(*reduced[:3], num_labels=reduced.num_labels, labels=labels,
                           perr=perr, valid=valid)
  assert_results_close(from_labels.result(), full.result(), atol=1e-7)

  # The numpy top-k of `update` picks the same classes in the same order as lax.top_k.
  scores, class_ids = ranking.top_k_sorted(predictions, k)
  np.testing.assert_array_equal(class_ids, reduced.class_ids)
  np.testing.assert_array_equal(scores, reduced.scores)


def test_perr_per_video_matches_reference():
  predictions, labels = random_case(31, 15, 9, levels=4, label_rate=0.5)
  predictions = predictions - 0.3  # some scores <= 0
  want = []
  for v in range(15):
    n = int(labels[v].sum())
    top = ref_top_k(predictions[v].tolist(), n)
    want.append(sum(1 for c in top if labels[v, c] and predictions[v, c] > 0) / n if n else 0.0)
  np.testing.assert_allclose(metrics.perr_per_video(predictions, labels), want, atol=1e-7)


@pytest.mark.parametrize("most_labels", [3, 70])
def test_perr_per_video_of_many_classes_matches_reference_by_either_sort(most_labels):
  """300 classes: videos with at most `PERR_PARTIAL_CLASSES` labels are ranked by a partial sort; one video
  with 70 labels sends the batch to the full sort. Ties (scores on a few levels) rank the lower id first."""
  predictions, labels = random_case(33, 12, 300, levels=6, label_rate=0.01)
  predictions = predictions - 0.2
  labels[0, :most_labels] = True
  assert (labels.sum(1).max() > device_metrics.PERR_PARTIAL_CLASSES) == (most_labels == 70)
  want = []
  for v in range(12):
    n = int(labels[v].sum())
    top = ref_top_k(predictions[v].tolist(), n)
    want.append(sum(1 for c in top if labels[v, c] and predictions[v, c] > 0) / n if n else 0.0)
  np.testing.assert_allclose(jax.jit(metrics.perr_per_video)(predictions, labels), want, atol=1e-7)


def test_update_top_k_without_perr():
  predictions, labels = random_case(32, 20, 12, label_rate=0.15)
  labels[:, :] = False
  labels[np.arange(20), np.arange(20) % 12] = True
  labels[0, :4] = True  # 4 labels
  reduced = metrics.top_k_hits(predictions, labels, 4)
  evaluator = metrics.EvaluationMetrics(12, 4)
  evaluator.update_top_k(*reduced[:3], num_labels=reduced.num_labels, labels=labels)
  full = metrics.EvaluationMetrics(12, 4)
  full.update(predictions, labels)
  assert_results_close(evaluator.result(), full.result(), atol=1e-7)
  labels[1, :6] = True  # 6 labels > k: PERR needs perr_per_video
  reduced = metrics.top_k_hits(predictions, labels, 4)
  with pytest.raises(ValueError, match="perr_per_video"):
    evaluator.update_top_k(*reduced[:3], num_labels=reduced.num_labels, labels=labels)


def test_bad_inputs_raise():
  evaluator = metrics.EvaluationMetrics(4, top_k=2)
  good_p = np.zeros((2, 4), np.float32)
  good_y = np.zeros((2, 4), bool)
  with pytest.raises(ValueError, match="num_classes"):
    evaluator.update(np.zeros((2, 5)), np.zeros((2, 5)))
  with pytest.raises(ValueError, match="NaN"):
    evaluator.update(np.full((2, 4), np.nan), good_y)
  with pytest.raises(ValueError, match="multi-hot"):
    evaluator.update(good_p, np.full((2, 4), 0.5))
  with pytest.raises(ValueError, match="valid"):
    evaluator.update(good_p, good_y, valid=np.ones(3, bool))
  scores = np.array([[0.9, 0.1], [0.9, 0.1]], np.float32)
  ids = np.array([[0, 1], [0, 1]])
  hits = np.zeros((2, 2), bool)
  with pytest.raises(ValueError, match="sorted descending"):
    evaluator.update_top_k(scores[:, ::-1], ids, hits, num_labels=np.zeros(2), labels=good_y)
  with pytest.raises(ValueError, match="exactly one"):
    evaluator.update_top_k(scores, ids, hits, num_labels=np.zeros(2))
  with pytest.raises(ValueError, match="valid rows"):
    evaluator.update_top_k(scores, ids, hits, num_labels=np.zeros(2),
                           class_positive_counts=np.array([1, 0, 0, 0]))
  with pytest.raises(ValueError, match="class_ids out of"):
    evaluator.update_top_k(scores, ids + 3, hits, num_labels=np.zeros(2), labels=good_y)
  with pytest.raises(ValueError, match="shape"):
    evaluator.update_top_k(np.zeros((2, 3)), np.zeros((2, 3)), np.zeros((2, 3)),
                           num_labels=np.zeros(2), labels=good_y)
  assert evaluator.num_videos == 0
