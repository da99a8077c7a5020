"""Tests for fewframes_jax.sampling.rules: hand-worked index lists, invariants, and numpy/jax agreement."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fewframes_jax.sampling import rules
from fewframes_jax.sampling.rules import SAMPLING_METHODS, frame_indices, frame_indices_np, sample_frames

DETERMINISTIC = tuple(m for m in SAMPLING_METHODS if m != "random")


# Compile-bound; XLA's optimisation passes do not change what these tests check.
pytestmark = pytest.mark.usefixtures("fast_compile")


def _idx(n, k, method, max_frames=300, rng=None):
  """Real indices (slots < num_frames_k) and num_frames_k of one video, via the device path."""
  idx, nk = frame_indices(jnp.array([n], jnp.int32), k, method, rng, max_frames=max_frames)
  idx, nk = np.asarray(idx)[0], int(nk[0])
  assert (idx[nk:] == rules.PAD_INDEX).all(), idx
  return idx[:nk].tolist(), nk


# Hand-worked examples: (n, k, method) -> expected real indices. num_frames_k = len(expected).
HAND_WORKED = [
    # uniform: floor(j * n / k)
    (10, 3, "uniform", [0, 3, 6]),
    (300, 30, "uniform", list(range(0, 300, 10))),
    (300, 7, "uniform", [0, 42, 85, 128, 171, 214, 257]),
    (7, 7, "uniform", [0, 1, 2, 3, 4, 5, 6]),
    (2, 3, "uniform", [0, 1]),
    (0, 3, "uniform", []),
    # stride_padded: stride = 300 // k, num_frames_k = min(n // stride, k)
    (57, 30, "stride_padded", [0, 10, 20, 30, 40]),  # the documented off-by-one: 50 is real but dropped
    (300, 30, "stride_padded", list(range(0, 300, 10))),
    (10, 3, "stride_padded", []),  # stride 100 > n
    (20, 30, "stride_padded", [0, 10]),  # shorter than k: only 2 frames
    (299, 7, "stride_padded", [0, 42, 84, 126, 168, 210, 252]),  # 300 % 7 != 0: stride 42, capped at k
    (0, 30, "stride_padded", []),
    # first / last / middle
    (10, 3, "first", [0, 1, 2]),
    (10, 3, "last", [7, 8, 9]),
    (10, 3, "middle", [3, 4, 5]),
    (11, 3, "middle", [4, 5, 6]),
    (300, 4, "middle", [148, 149, 150, 151]),
    (300, 3, "last", [297, 298, 299]),
    (2, 3, "first", [0, 1]),
    (2, 3, "last", [0, 1]),
    (2, 3, "middle", [0, 1]),
    (0, 3, "middle", []),
    # first_middle_last: k // 3 first, k // 3 last, the remainder in the middle
    (10, 3, "first_middle_last", [0, 4, 9]),
    (300, 3, "first_middle_last", [0, 149, 299]),
    (20, 7, "first_middle_last", [0, 1, 8, 9, 10, 18, 19]),
    (7, 7, "first_middle_last", [0, 1, 2, 3, 4, 5, 6]),  # segments touch
    (8, 7, "first_middle_last", [0, 1, 2, 3, 4, 6, 7]),  # middle window starts right after the first segment
    (5, 7, "first_middle_last", [0, 1, 2, 3, 4]),
    (10, 1, "first_middle_last", [4]),
    (0, 3, "first_middle_last", []),
]


@pytest.mark.parametrize("n,k,method,expected", HAND_WORKED)
def test_hand_worked(n, k, method, expected):
  assert _idx(n, k, method) == (expected, len(expected))
  idx_np, nk_np = frame_indices_np(np.array([n]), k, method)
  assert idx_np[0, :len(expected)].tolist() == expected and int(nk_np[0]) == len(expected)


def test_stride_padded_length_rule_matches_official_formula():
  # [CODE]: num_frames_student = int(num_frames / 300 * (300 / every_n)) with every_n = 10.
  n = np.arange(0, 301)
  _, nk = frame_indices_np(n, 30, "stride_padded")
  official = np.array([int(v / 300 * (300 / 10)) for v in n])
  np.testing.assert_array_equal(nk, official)


def test_uniform_equals_stride_padded_on_full_length_videos():
  for k in (6, 10, 15, 20, 30):
    assert _idx(300, k, "uniform") == _idx(300, k, "stride_padded")


@pytest.mark.parametrize("method", SAMPLING_METHODS)
def test_invariants_over_all_lengths(method):
  k, max_frames = 7, 40
  n = np.arange(0, max_frames + 3)
  idx, nk = frame_indices(jnp.array(n), k, method, jax.random.key(3), max_frames=max_frames)
  idx, nk = np.asarray(idx), np.asarray(nk)
  assert idx.shape == (len(n), k) and idx.dtype == np.int32 and nk.dtype == np.int32
  n_clip = np.minimum(n, max_frames)
  for b in range(len(n)):
    real = idx[b, :nk[b]]
    assert (np.diff(real) > 0).all(), (method, n[b], real)  # sorted, distinct
    assert ((real >= 0) & (real < n_clip[b])).all(), (method, n[b], real)  # never padding frames
    assert (idx[b, nk[b]:] == rules.PAD_INDEX).all()
    if method != "stride_padded":
      assert nk[b] == min(n_clip[b], k)
      if n_clip[b] <= k:
        assert real.tolist() == list(range(n_clip[b]))  # short video: its own frames


@pytest.mark.parametrize("method", DETERMINISTIC)
@pytest.mark.parametrize("k,max_frames", [(1, 300), (3, 300), (7, 300), (30, 300), (300, 300), (5, 17)])
def test_numpy_and_jax_agree(method, k, max_frames):
  n = np.arange(0, max_frames + 5)
  idx_j, nk_j = frame_indices(jnp.array(n), k, method, max_frames=max_frames)
  idx_n, nk_n = frame_indices_np(n, k, method, max_frames=max_frames)
  np.testing.assert_array_equal(np.asarray(idx_j), idx_n)
  np.testing.assert_array_equal(np.asarray(nk_j), nk_n)


def test_random_rule_is_shared_given_the_same_noise():
  n = np.array([0, 3, 9, 20, 40, 40])
  noise = np.random.default_rng(0).random((len(n), 40), dtype=np.float32)
  a = rules._select(np, n.astype(np.int32), 9, "random", 40, noise)
  b = rules._select(jnp, jnp.array(n, jnp.int32), 9, "random", 40, jnp.array(noise))
  np.testing.assert_array_equal(a[0], np.asarray(b[0]))
  np.testing.assert_array_equal(a[1], np.asarray(b[1]))
  # The chosen frames are the top-k noise values inside the true length.
  for row, nn in enumerate(n):
    expect = sorted(np.argsort(-noise[row, :nn])[:9].tolist())
    assert a[0][row, :a[1][row]].tolist() == expect


def test_random_properties():
  n = jnp.array([300, 300, 50, 5, 0])
  i1, nk1 = frame_indices(n, 10, "random", jax.random.key(0))
  i2, _ = frame_indices(n, 10, "random", jax.random.key(1))
  i1b, _ = frame_indices(n, 10, "random", jax.random.key(0))
  np.testing.assert_array_equal(nk1, [10, 10, 10, 5, 0])
  np.testing.assert_array_equal(i1, i1b)  # same key, same draw
  assert not np.array_equal(i1[:3], i2[:3])  # different keys differ
  assert not np.array_equal(i1[0], i1[1])  # rows draw independently
  assert i1[3, :5].tolist() == [0, 1, 2, 3, 4]
  # Uniform over the true length: frame frequencies over many draws are flat.
  idx, _ = frame_indices(jnp.full((4000,), 20), 5, "random", jax.random.key(2), max_frames=30)
  counts = np.bincount(np.asarray(idx).ravel(), minlength=30)
  assert counts[20:].sum() == 0
  np.testing.assert_allclose(counts[:20] / 4000, 5 / 20, atol=0.03)
  # Host twin: same properties, reproducible per seed.
  h1, hk = frame_indices_np(np.array([300, 50, 5]), 10, "random", 0)
  h2, _ = frame_indices_np(np.array([300, 50, 5]), 10, "random", np.random.default_rng(0))
  np.testing.assert_array_equal(h1, h2)
  assert hk.tolist() == [10, 10, 5] and (np.diff(h1[:2], axis=1) > 0).all() and (h1[1] < 50).all()


def test_sample_frames_gathers_and_zeros_padding():
  b, t, d = 4, 12, 3
  frames = jnp.arange(1, b * t * d + 1, dtype=jnp.float32).reshape(b, t, d)  # no zero entries
  num_frames = jnp.array([12, 7, 2, 0])
  fn = jax.jit(functools.partial(sample_frames, return_indices=True), static_argnums=(2, 3))
  for method in SAMPLING_METHODS:
    fk, nk, idx = fn(frames, num_frames, 4, method, jax.random.key(0))
    fk, nk, idx = np.asarray(fk), np.asarray(nk), np.asarray(idx)
    assert fk.shape == (b, 4, d)
    for row in range(b):
      for j in range(4):
        if j < nk[row]:
          np.testing.assert_array_equal(fk[row, j], np.asarray(frames)[row, idx[row, j]])
        else:
          assert (fk[row, j] == 0).all()
    assert nk[3] == 0 and (fk[3] == 0).all()


def test_sample_frames_indices_match_host_path():
  # The student-only input path decodes frames_np[i, indices_np]: same frames as on device.
  frames = np.random.default_rng(0).random((6, 50, 4), dtype=np.float32)
  num_frames = np.array([50, 49, 31, 10, 3, 0])
  for method in DETERMINISTIC:
    fk, nk = sample_frames(jnp.array(frames), jnp.array(num_frames), 10, method)
    idx, nk_np = frame_indices_np(num_frames, 10, method, max_frames=50)
    host = np.take_along_axis(frames, idx[:, :, None], axis=1)
    host[np.arange(10)[None, :] >= nk_np[:, None]] = 0
    np.testing.assert_array_equal(np.asarray(fk), host)
    np.testing.assert_array_equal(np.asarray(nk), nk_np)


def test_gather_frames_extra_dims():
  vals = jnp.arange(2 * 5 * 2 * 3, dtype=jnp.float32).reshape(2, 5, 2, 3) + 1
  out = rules.gather_frames(vals, jnp.array([[4, 1], [2, 0]]), jnp.array([2, 1]))
  np.testing.assert_array_equal(out[0, 0], vals[0, 4])
  np.testing.assert_array_equal(out[0, 1], vals[0, 1])
  np.testing.assert_array_equal(out[1, 0], vals[1, 2])
  assert (out[1, 1] == 0).all()


def test_errors():
  frames = jnp.zeros((2, 10, 3))
  nf = jnp.array([10, 4])
  with pytest.raises(ValueError, match="max_frames=10"):
    sample_frames(frames, nf, 11, "uniform")
  with pytest.raises(ValueError, match=r"\[1, max_frames"):
    frame_indices(nf, 0, "uniform")
  with pytest.raises(ValueError, match="first_middle_last"):  # lists the methods
    frame_indices(nf, 3, "evenly")
  with pytest.raises(ValueError, match="rng"):
    frame_indices(nf, 3, "random")
  with pytest.raises(ValueError, match="seed_or_rng"):
    frame_indices_np(np.array([4]), 3, "random")
  with pytest.raises(ValueError, match=">= 0"):
    frame_indices_np(np.array([4, -1]), 3, "first")
  with pytest.raises(ValueError, match="integer"):
    frame_indices_np(np.array([4.0]), 3, "first")
  with pytest.raises(ValueError, match=r"\[B\]"):
    sample_frames(frames, jnp.array([10]), 3, "first")
  with pytest.raises(ValueError, match="k "):
    frame_indices(nf, 2.0, "first")


def test_num_frames_above_max_frames_are_truncated():
  a = frame_indices(jnp.array([500]), 5, "last", max_frames=300)
  b = frame_indices_np(np.array([500]), 5, "last", max_frames=300)
  assert np.asarray(a[0])[0].tolist() == b[0][0].tolist() == [295, 296, 297, 298, 299]
