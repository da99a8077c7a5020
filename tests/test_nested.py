"""Tests for fewframes_jax.sampling.nested and the coarse-to-fine rule of fewframes_jax.sampling.rules: every
order is a permutation of the real frames, its first k frames are a valid k-frame selection at every n,
and the selections are nested."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fewframes_jax.sampling import rules
from fewframes_jax.sampling import content, learned, nested

T = 40
SCORER = learned.FrameScorer(feature_sizes=(4, 2), streams="all", hidden=3, mlp=5)


def _frames(n, seed=0):
  x = np.random.default_rng(seed).normal(size=(len(n), T, 6)).astype(np.float32)
  x[np.arange(T)[None, :] >= np.asarray(n)[:, None]] = 0.0
  return jnp.asarray(x), jnp.asarray(n, jnp.int32)


def _scores(frames, num):
  """A randomly initialised learned scorer's scores f32[B, T] (padding -1e9)."""
  params = learned.init_params(SCORER, jax.random.PRNGKey(5), frames=T)
  return SCORER.apply({"params": params}, frames, num)


def _ranks(frames, num, order):
  return nested.frame_ranks(frames, num, order, scores=_scores(frames, num) if order == "learned" else None)


def test_coarse_to_fine_reads_middle_first_last_then_bisects():
  order = np.argsort(rules.coarse_to_fine_ranks(300)[300], kind="stable")
  # round(p * 299) for p = 1/2, 0, 1, 1/4, 3/4, 1/8, 3/8, 5/8, 7/8 (halves up)
  assert order[:9].tolist() == [150, 0, 299, 75, 224, 37, 112, 187, 262]
  assert np.argsort(rules.coarse_to_fine_ranks(5)[5], kind="stable").tolist() == [2, 0, 4, 1, 3]
  # at k = 2^m + 1 the selection is a uniform grid with both ends
  idx, nk = rules.frame_indices_np(np.array([33]), 5, "coarse_to_fine", max_frames=T)
  assert idx[0].tolist() == [0, 8, 16, 24, 32] and nk[0] == 5


@pytest.mark.parametrize("order", nested.NESTED_ORDERS)
def test_every_order_is_a_permutation_of_the_real_frames(order):
  n = [0, 1, 2, 3, 7, 16, 29, T]
  frames, num = _frames(n)
  ranks = np.asarray(_ranks(frames, num, order))
  reading = np.asarray(nested.reading_order(jnp.asarray(ranks)))
  for b, length in enumerate(n):
    assert sorted(ranks[b, :length].tolist()) == list(range(length))
    assert (ranks[b, length:] == T).all()  # padding after every real frame
    assert sorted(reading[b, :length].tolist()) == list(range(length))


@pytest.mark.parametrize("order", nested.NESTED_ORDERS)
def test_first_k_are_a_valid_nested_selection_at_every_n_and_k(order):
  n = [0, 1, 3, 5, 6, 11, 23, T]
  frames, num = _frames(n, seed=1)
  ranks = _ranks(frames, num, order)
  previous = None
  for k in range(1, 13):
    idx, nk = (np.asarray(a) for a in nested.budget_indices(ranks, num, k, 12))
    for b, length in enumerate(n):
      real = idx[b, :nk[b]]
      assert nk[b] == min(length, k)
      assert (np.diff(real) > 0).all() and (real < max(length, 1)).all()  # time order, never padding
      assert (idx[b, nk[b]:] == rules.PAD_INDEX).all()
      if length <= k:
        assert real.tolist() == list(range(length))  # a short video gives all of its frames
      if previous is not None:
        assert set(previous[b]) <= set(real.tolist())  # nested: budget k-1's frames are kept
    previous = [idx[b, :nk[b]].tolist() for b in range(len(n))]


def test_a_traced_budget_matches_the_static_rules():
  """budget_indices under jit with k traced equals sampling's coarse_to_fine and content's far_from_mean."""
  n = [0, 4, 9, 17, T]
  frames, num = _frames(n, seed=2)
  fn = jax.jit(lambda ranks, num, k: nested.budget_indices(ranks, num, k, 10))
  for k in (1, 4, 7, 10):
    got = fn(nested.frame_ranks(frames, num, "coarse_to_fine"), num, jnp.int32(k))
    want = rules.frame_indices(num, k, "coarse_to_fine", max_frames=T)
    np.testing.assert_array_equal(np.asarray(got[0])[:, :k], np.asarray(want[0]))
    np.testing.assert_array_equal(np.asarray(got[1]), np.asarray(want[1]))
    got = fn(nested.frame_ranks(frames, num, "far_from_mean"), num, jnp.int32(k))
    want = content.content_indices(frames, num, k, "far_from_mean")
    np.testing.assert_array_equal(np.asarray(got[0])[:, :k], np.asarray(want[0]))
    scores = _scores(frames, num)  # the learned order's budget k is the learned selector's top k
    got = fn(nested.frame_ranks(frames, num, "learned", scores=scores), num, jnp.int32(k))
    want = learned.learned_indices(scores, num, k)
    np.testing.assert_array_equal(np.asarray(got[0])[:, :k], np.asarray(want[0]))
    np.testing.assert_array_equal(np.asarray(got[1]), np.asarray(want[1]))
  tied = jnp.zeros([1, T], jnp.float32)  # equal scores: the earlier frame first
  assert np.asarray(nested.frame_ranks(frames[:1], jnp.array([9]), "learned", scores=tied))[0, :9].tolist() == list(
      range(9))


def test_per_video_budgets_and_gathered_frames():
  frames, num = _frames([T, T, 5], seed=3)
  picked, nk, idx = nested.select_budget(frames, num, jnp.array([2, 6, 6]), "coarse_to_fine", 6)
  assert np.asarray(nk).tolist() == [2, 6, 5]
  np.testing.assert_array_equal(np.asarray(picked[0, :2]), np.asarray(frames[0, np.asarray(idx[0, :2])]))
  assert not np.asarray(picked[0, 2:]).any() and not np.asarray(picked[2, 5:]).any()  # padding rows are zero
  with pytest.raises(ValueError, match="slots"):
    nested.budget_indices(nested.frame_ranks(frames, num, "coarse_to_fine"), num, 3, T + 1)
  with pytest.raises(ValueError, match="nested order"):
    nested.frame_ranks(frames, num, "uniform")
  with pytest.raises(ValueError, match="'learned' order, and only it"):
    nested.frame_ranks(frames, num, "learned")
  with pytest.raises(ValueError, match="'learned' order, and only it"):
    nested.frame_ranks(frames, num, "far_from_mean", scores=jnp.zeros([3, T]))


def test_a_nan_score_is_a_real_frame_ranked_last_among_the_real_frames():
  """As `learned.top_k_in_time` and the host scorer rank it: the ranks stay a permutation of the real
  frames, and every budget's frames are the top-k rule's, in time order."""
  nan = np.float32(np.nan)
  scores = jnp.asarray([[0.5, nan, 0.2, 0.1, 9.0, 9.0], [nan, -np.inf, nan, 1.0, 0.0, 0.0]], jnp.float32)
  n = jnp.asarray([4, 4], jnp.int32)
  ranks = nested.ranks_by_score(scores, jnp.arange(6)[None, :] < n[:, None])
  np.testing.assert_array_equal(np.asarray(ranks), [[0, 3, 1, 2, 6, 6], [2, 1, 3, 0, 6, 6]])
  for k in range(1, 7):
    got = nested.budget_indices(ranks, n, k, 6)
    want = learned.learned_indices(scores, n, k)
    np.testing.assert_array_equal(np.asarray(got[0])[:, :k], np.asarray(want[0]), err_msg=f"k={k}")
    np.testing.assert_array_equal(np.asarray(got[1]), np.asarray(want[1]))
