"""The learned frame selector (fewframes_jax/sampling/learned.py): top-k in time on hand-worked scores
(n < k, n = 0, ties, padding never chosen), a scorer that sees only real frames, the straight-through
selection's forward value and its perturbed top-k gradient against finite differences."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fewframes_jax import inference
from fewframes_jax.sampling.rules import PAD_INDEX
from fewframes_jax.sampling import learned
from fewframes_jax import specs
from numpy_reference import frames_with_garbage

pytestmark = pytest.mark.usefixtures("fast_compile")

SIZES = (12, 4)
T = 10


def indices(scores, n, k):
  idx, nk = learned.learned_indices(jnp.asarray([scores], jnp.float32), jnp.asarray([n], jnp.int32), k)
  return np.asarray(idx)[0].tolist(), int(nk[0])


def test_top_k_by_score_in_time_order():
  scores = [0.1, 5.0, 0.2, 3.0, -1.0, 4.0, 0.0, 0.0, 0.0, 0.0]
  assert indices(scores, 10, 3) == ([1, 3, 5], 3)
  assert indices(scores, 10, 1) == ([1], 1)


def test_padding_is_never_chosen_whatever_its_score():
  scores = [0.0, 1.0, 2.0, 99.0, 98.0, 97.0, 0.0, 0.0, 0.0, 0.0]
  assert indices(scores, 3, 2) == ([1, 2], 2)  # frames 3.. are padding (n = 3)


def test_short_and_empty_videos_take_all_of_their_frames():
  scores = [3.0, -2.0, 1.0] + [50.0] * 7
  assert indices(scores, 3, 5) == ([0, 1, 2, PAD_INDEX, PAD_INDEX], 3)
  assert indices(scores, 0, 4) == ([PAD_INDEX] * 4, 0)
  assert indices(scores, 4, 4) == ([0, 1, 2, 3], 4)


def test_ties_go_to_the_earlier_frame():
  assert indices([1.0] * 10, 10, 3) == ([0, 1, 2], 3)
  assert indices([0.0, 2.0, 1.0, 2.0, 1.0, 2.0, 0.0, 0.0, 0.0, 0.0], 10, 4) == ([1, 2, 3, 5], 4)


def _scorer(streams="all"):
  scorer = learned.FrameScorer(feature_sizes=SIZES, streams=streams, hidden=3, mlp=5)
  return scorer, learned.init_params(scorer, jax.random.PRNGKey(1), frames=T)


@pytest.mark.parametrize("streams", learned.STREAMS)
def test_the_scorer_sees_only_real_frames(streams):
  scorer, params = _scorer(streams)
  lengths = np.array([10, 4, 0, 1], np.int32)
  clean = frames_with_garbage(0, lengths, T, sum(SIZES), garbage=False)
  dirty = frames_with_garbage(0, lengths, T, sum(SIZES), garbage=True)
  a = np.asarray(scorer.apply({"params": params}, jnp.asarray(clean), jnp.asarray(lengths)))
  b = np.asarray(scorer.apply({"params": params}, jnp.asarray(dirty), jnp.asarray(lengths)))
  np.testing.assert_array_equal(a, b)
  real = np.arange(T)[None, :] < lengths[:, None]
  assert (a[~real] == learned.PAD_SCORE).all() and (a[real] > learned.PAD_SCORE).all()


@pytest.mark.parametrize("streams,reads", [("audio", slice(12, 16)), ("rgb", slice(0, 12))])
def test_a_one_stream_scorer_ignores_the_other_stream(streams, reads):
  scorer, params = _scorer(streams)
  lengths = np.array([10, 6], np.int32)
  x = frames_with_garbage(2, lengths, T, sum(SIZES), garbage=False)
  y = x.copy()
  other = np.ones(sum(SIZES), bool)
  other[reads] = False
  y[..., other] += 3.0
  a = scorer.apply({"params": params}, jnp.asarray(x), jnp.asarray(lengths))
  b = scorer.apply({"params": params}, jnp.asarray(y), jnp.asarray(lengths))
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  y[..., reads] += 3.0
  c = scorer.apply({"params": params}, jnp.asarray(y), jnp.asarray(lengths))
  assert not np.allclose(np.asarray(a), np.asarray(c))


def test_the_scorer_uses_the_videos_mean_frame():
  """The same frame scores differently in two videos with different other frames (its context)."""
  scorer, params = _scorer("all")
  x = frames_with_garbage(3, np.array([T, T]), T, sum(SIZES), garbage=False)
  x[1, 1:] += 2.0  # frame 0 is identical in both videos; the others move
  s = np.asarray(scorer.apply({"params": params}, jnp.asarray(x), jnp.asarray([T, T], jnp.int32)))
  assert s[0, 0] != s[1, 0]


@pytest.mark.parametrize("prior", learned.PRIORS)
def test_a_length_past_the_frames_given_is_cut_to_them(prior):
  """As every selection rule: n > T scores (and selects) as n = T."""
  scorer = learned.FrameScorer(feature_sizes=SIZES, hidden=3, mlp=5, prior=prior)
  params = learned.init_params(scorer, jax.random.PRNGKey(1), frames=T)
  x = jnp.asarray(frames_with_garbage(6, np.array([T, T]), T, sum(SIZES), garbage=False))
  at_t = scorer.apply({"params": params}, x, jnp.asarray([T, T], jnp.int32))
  past = scorer.apply({"params": params}, x, jnp.asarray([T + 15, T + 1], jnp.int32))
  np.testing.assert_array_equal(np.asarray(past), np.asarray(at_t))
  sel = inference.Selection(k=4, method=learned.METHOD, scorer=scorer)
  for got, want in zip(sel.select(x, jnp.asarray([T + 15, T + 1]), None, return_indices=True, selector_params=params),
                       sel.select(x, jnp.asarray([T, T]), None, return_indices=True, selector_params=params)):
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_selection_applies_the_scorer_and_the_straight_through_forward_is_the_hard_selection():
  scorer, params = _scorer("all")
  lengths = jnp.asarray([10, 3, 0], jnp.int32)
  frames = jnp.asarray(frames_with_garbage(4, np.asarray(lengths), T, sum(SIZES), garbage=False))
  sel = inference.Selection(k=4, method=learned.METHOD, scorer=scorer)
  hard_frames, nk, idx = sel.select(frames, lengths, None, return_indices=True, selector_params=params)
  scores = scorer.apply({"params": params}, frames, lengths)
  want_idx, want_nk = learned.learned_indices(scores, lengths, 4)
  np.testing.assert_array_equal(np.asarray(nk), np.asarray(want_nk))
  for b in range(3):
    n = int(want_nk[b])
    np.testing.assert_array_equal(np.asarray(idx)[b, :n], np.asarray(want_idx)[b, :n])
    np.testing.assert_array_equal(np.asarray(hard_frames)[b, :n], np.asarray(frames)[b, np.asarray(want_idx)[b, :n]])
    assert (np.asarray(hard_frames)[b, n:] == 0).all()
  soft_frames, _ = sel.select(frames, lengths, jax.random.PRNGKey(0), selector_params=params, differentiable=True)
  np.testing.assert_array_equal(np.asarray(soft_frames), np.asarray(hard_frames))  # exactly, not to rounding
  with pytest.raises(ValueError, match="scorer's parameters"):
    sel.select(frames, lengths, None)
  with pytest.raises(ValueError, match="only it, takes a scorer"):
    inference.Selection(k=4, method="uniform", scorer=scorer)


def test_the_straight_through_gradient_is_the_perturbed_top_ks_and_the_hard_one_is_a_gather():
  """differentiable=True: the scores get exactly the perturbed top-k's VJP of the loss's gradient at the hard
  frames (d loss / d frames_k = g: the scores get that of P x for g, P from the same key). False: the scores
  get none, and the frames get the hard gather's gradient alone (g at the chosen frames, 0 elsewhere)."""
  scorer, params = _scorer("all")
  lengths = jnp.asarray([10, 7], jnp.int32)
  frames = jnp.asarray(frames_with_garbage(5, np.asarray(lengths), T, sum(SIZES), garbage=False))
  target = jnp.asarray(np.random.default_rng(0).normal(size=(2, 3, sum(SIZES))), jnp.float32)
  key = jax.random.PRNGKey(3)

  def loss(scores, x, differentiable):
    x_k, _ = learned.select_learned(x, lengths, 3, scores, differentiable=differentiable, rng=key, samples=16)
    return jnp.sum((x_k - target) ** 2)

  scores = scorer.apply({"params": params}, frames, lengths)
  hard, _, idx = learned.select_learned(frames, lengths, 3, scores, return_indices=True)
  g = 2 * (hard - target)  # d loss / d frames_k at the hard selection
  _, vjp = jax.vjp(lambda s: learned.perturbed_selection(s, lengths, key, 3, 0.5, 16), scores)
  want = vjp(jnp.einsum("bkd,btd->bkt", g, frames))[0]
  got = jax.grad(loss)(scores, frames, True)
  assert float(jnp.abs(want).sum()) > 0
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-6)
  grad_scores, grad_frames = jax.grad(loss, argnums=(0, 1))(scores, frames, False)
  assert not np.asarray(grad_scores).any()
  scattered = np.zeros(frames.shape, np.float32)
  for b in range(2):
    scattered[b, np.asarray(idx)[b]] = np.asarray(g)[b]
  np.testing.assert_allclose(np.asarray(grad_frames), scattered, rtol=1e-6)
  # ... and through the scorer, every layer of it gets a gradient
  grads = jax.grad(lambda p: loss(scorer.apply({"params": p}, frames, lengths), frames, True))(params)
  assert all(np.abs(np.asarray(g)).sum() > 0 for g in jax.tree.leaves(grads))


def test_the_perturbed_top_k_gradient_matches_finite_differences_of_its_expectation():
  """d E[P(s + sigma Z)] / d s estimated from the samples, against central differences of the Monte-Carlo
  expectation (T = 4, k = 2, 40,000 draws; tolerance from both estimators' standard errors)."""
  s = jnp.asarray([[0.3, -0.2, 0.1, 0.0]], jnp.float32)
  n = jnp.asarray([4], jnp.int32)
  weights = jnp.asarray(np.random.default_rng(1).normal(size=(1, 2, 4)), jnp.float32)
  key, samples, sigma = jax.random.PRNGKey(7), 40000, 0.5

  def f(scores):
    return jnp.sum(weights * learned.perturbed_selection(scores, n, key, 2, sigma, samples))

  grad = np.asarray(jax.grad(f)(s))[0]
  eps = 0.25
  for t in range(4):
    e = jnp.zeros_like(s).at[0, t].set(eps)
    fd = (float(f(s + e)) - float(f(s - e))) / (2 * eps)
    assert abs(grad[t] - fd) < 0.08, (t, grad[t], fd)
  # P's rows are the expected one-hots of the chosen frames in time order: each row sums to 1.
  np.testing.assert_allclose(np.asarray(learned.perturbed_selection(s, n, key, 2, sigma, 64)).sum(-1), 1.0,
                             atol=1e-6)


def test_the_spec_reads_the_config_and_checks_its_fields():
  from configs import base  # pylint: disable=g-import-not-at-top
  c = base.experiment("hrnn", k=10, arg="tiny,sampling=learned")
  defaults = specs.SelectorSpec.from_config(c.student.selector)
  assert defaults == specs.RunSpec.from_config(c).student.selector
  assert (defaults.streams, defaults.train, defaults.hidden, defaults.prior) == ("all", "rank", 4, "none")
  c.student.selector.streams, c.student.selector.hidden = "audio", 7
  spec = specs.RunSpec.from_config(c).student.selector
  assert (spec.streams, spec.hidden, spec.train) == ("audio", 7, "rank")
  for field, value, match in (("streams", "video", "streams"), ("train", "rl", "train"),
                              ("frames_per_video", 1, "frames_per_video"), ("sigma", 0.0, "sigma")):
    with pytest.raises(ValueError, match=match):
      dataclasses.replace(defaults, **{field: value}).validate()
  with pytest.raises(ValueError, match="two streams"):
    learned.stream_slice((1024,), "audio")


def test_a_scorer_with_the_far_from_mean_prior_starts_as_far_from_mean():
  """Its learned residual is zero-initialised: before training it picks exactly `far_from_mean`'s frames
  (all features), and its residual still moves the scores once trained."""
  from fewframes_jax.sampling import content  # pylint: disable=g-import-not-at-top
  scorer = learned.FrameScorer(feature_sizes=SIZES, streams="all", hidden=3, mlp=5, prior="far_from_mean")
  params = learned.init_params(scorer, jax.random.PRNGKey(1), frames=T)
  lengths = jnp.asarray([10, 7, 3, 0, 1], jnp.int32)
  frames = jnp.asarray(frames_with_garbage(6, np.asarray(lengths), T, sum(SIZES), garbage=True))
  scores = scorer.apply({"params": params}, frames, lengths)
  for k in (1, 4, 8):
    got = learned.learned_indices(scores, lengths, k)
    want = content.content_indices(frames, lengths, k, "far_from_mean")
    for a, b in zip(got, want):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  moved = jax.tree.map(lambda p: p + 0.5, params)
  assert not np.allclose(np.asarray(scorer.apply({"params": moved}, frames, lengths)), np.asarray(scores))


@pytest.mark.parametrize("streams", ["all", "audio"])
def test_the_prior_scores_are_the_untrained_scorers_and_zero_without_a_prior(streams):
  """`prior_scores` is the score before training (the residual starts at zero) on the streams read, at
  every real frame of garbage-padded videos; a scorer without a prior has none."""
  scorer = learned.FrameScorer(feature_sizes=SIZES, streams=streams, hidden=3, mlp=5, prior="far_from_mean")
  params = learned.init_params(scorer, jax.random.PRNGKey(2), frames=T)
  lengths = jnp.asarray([10, 7, 3, 0, 1], jnp.int32)
  frames = jnp.asarray(frames_with_garbage(7, np.asarray(lengths), T, sum(SIZES), garbage=True))
  real = np.arange(T)[None, :] < np.asarray(lengths)[:, None]
  prior = np.asarray(learned.prior_scores(scorer, frames, lengths))
  np.testing.assert_allclose(prior[real], np.asarray(scorer.apply({"params": params}, frames, lengths))[real],
                             rtol=1e-6, atol=1e-6)
  assert (prior[~real] == 0).all() and prior[real].std() > 0
  plain = learned.FrameScorer(feature_sizes=SIZES, streams=streams, prior="none")
  assert not np.asarray(learned.prior_scores(plain, frames, lengths)).any()
