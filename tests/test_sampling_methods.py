"""Content-aware frame selection on hand-worked videos: k real frames in temporal order, never padding,
all frames of a short video, ties to the earlier frame, garbage after num_frames ignored; and the one
entry point `select_frames` for every rule."""
import jax.numpy as jnp
import numpy as np
import pytest

from fewframes_jax.sampling import rules
from fewframes_jax.sampling import methods
from fewframes_jax.sampling import content

T, D = 20, 4


# Compile-bound; XLA's optimisation passes do not change what these tests check.
pytestmark = pytest.mark.usefixtures("fast_compile")


def video(values, length=None):
  """f32[1, T, D]: frame t = values[t] * ones(D) for t < len(values); padding rows 0."""
  x = np.zeros([1, T, D], np.float32)
  x[0, :len(values)] = np.asarray(values, np.float32)[:, None]
  return jnp.asarray(x), jnp.asarray([len(values) if length is None else length], jnp.int32)


def indices(frames, n, k, method):
  idx, nk = content.content_indices(frames, n, k, method)
  return np.asarray(idx)[0].tolist(), int(nk[0])


def test_far_from_mean_picks_the_outliers_in_time_order():
  values = [0.0] * 12
  values[9], values[3], values[6] = 5.0, 4.0, -3.0  # farthest: 9, 3, 6
  assert indices(*video(values), 3, "far_from_mean") == ([3, 6, 9], 3)
  assert indices(*video(values), 1, "far_from_mean") == ([9], 1)


def test_far_from_mean_ties_go_to_the_earlier_frame():
  values = [1.0, -1.0, 1.0, -1.0, 1.0, -1.0]  # every frame is 1 from the mean 0
  assert indices(*video(values), 2, "far_from_mean") == ([0, 1], 2)


def test_feature_change_follows_the_change():
  # One jump between frames 9 and 10 and nothing else: every quantile of the cumulative change is at
  # frame 10; the slots spread to the next frames.
  assert indices(*video([0.0] * 10 + [3.0] * 10), 4, "feature_change") == ([10, 11, 12, 13], 4)
  # The jump near the end: the slots cannot pass the last frame, so they stack up before it.
  assert indices(*video([0.0] * 18 + [3.0] * 2), 4, "feature_change") == ([16, 17, 18, 19], 4)
  # Two equal jumps (at 5 and 15): half of the slots go to each.
  values = [0.0] * 5 + [1.0] * 10 + [2.0] * 5
  assert indices(*video(values), 4, "feature_change") == ([5, 6, 15, 16], 4)


def test_feature_change_of_a_static_video_is_uniform():
  # No change at all: every frame counts the same, G_t = t / (n - 1); slot j at ceil((j + 1/2)(n - 1) / k).
  assert indices(*video([2.0] * 11), 5, "feature_change") == ([1, 3, 5, 7, 9], 5)


@pytest.mark.parametrize("method", content.CONTENT_METHODS)
def test_short_empty_and_padded_videos(method):
  assert indices(*video([1.0, 5.0, 2.0]), 5, method) == ([0, 1, 2, 0, 0], 3)  # n < k: all its frames
  assert indices(*video([]), 4, method) == ([0, 0, 0, 0], 0)  # n = 0
  frames, n = video([0.0, 1.0, 0.0, 7.0, 0.0, 2.0, 0.0, 3.0])
  garbage = frames.at[0, 8:].set(100.0)  # after num_frames: never chosen, changes nothing
  assert indices(frames, n, 3, method) == indices(garbage, n, 3, method)
  idx, k = indices(garbage, n, 3, method)
  assert k == 3 and all(i < 8 for i in idx) and idx == sorted(set(idx))


@pytest.mark.parametrize("method", content.CONTENT_METHODS)
def test_random_videos_give_distinct_increasing_real_frames(method):
  rng = np.random.default_rng(0)
  lengths = np.array([20, 13, 7, 4, 1, 0, 9, 16])
  frames = rng.standard_normal([8, T, D]).astype(np.float32)
  idx, nk = content.content_indices(jnp.asarray(frames), jnp.asarray(lengths), 6, method)
  for row, n in zip(np.asarray(idx), lengths):
    real = row[:min(n, 6)]
    assert np.all(np.diff(real) > 0) and np.all(real < n) and np.all(row[min(n, 6):] == rules.PAD_INDEX)
  np.testing.assert_array_equal(nk, np.minimum(lengths, 6))


def test_select_frames_is_one_entry_point():
  rng = np.random.default_rng(1)
  frames = jnp.asarray(rng.standard_normal([3, T, D]).astype(np.float32))
  n = jnp.asarray([20, 5, 11], jnp.int32)
  for method in rules.SAMPLING_METHODS:
    if method == "random":
      continue
    got = methods.select_frames(frames, n, 4, method, return_indices=True)
    want = rules.sample_frames(frames, n, 4, method, return_indices=True)
    for a, b in zip(got, want):
      np.testing.assert_array_equal(a, b)
  fk, nk, idx = methods.select_frames(frames, n, 4, "far_from_mean", return_indices=True)
  np.testing.assert_array_equal(fk, rules.gather_frames(frames, idx, nk))
  assert set(methods.SELECTION_METHODS) == set(rules.SAMPLING_METHODS) | set(content.CONTENT_METHODS) | {
      "learned"}
  assert methods.needs_every_frame("far_from_mean") and not methods.needs_every_frame("uniform")
  assert methods.needs_every_frame("learned")
  with pytest.raises(ValueError, match="scorer's parameters"):  # applied by inference.Selection, with them
    methods.select_frames(frames, n, 4, "learned")
