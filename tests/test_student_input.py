"""The student-only input path (`yt8m.make_dataset(..., student_frames=(k, method))`) decodes exactly the
frames that on-device sampling picks from the full batch."""
import jax.numpy as jnp
import numpy as np
import pytest

import runs_testlib as lib
from fewframes_jax.sampling import rules
from fewframes_jax.data import yt8m

T = 40                      # max_frames
SIZES = (8, 4)              # rgb, audio bytes per frame
C = 5
# Empty, shorter than k, exactly k, odd lengths, full, and longer than T (truncated to T).
LENGTHS = (0, 1, 3, 5, 9, 10, 11, 17, 29, 39, 40, 57)
DETERMINISTIC = tuple(m for m in rules.SAMPLING_METHODS if m != "random")


@pytest.fixture(scope="module")
def pattern(tmp_path_factory):
  return lib.write_videos(str(tmp_path_factory.mktemp("student_input")), LENGTHS, feature_sizes=SIZES,
                          num_classes=C, split=7)


def read_all(pattern, student_frames=None, seed=0):
  ds = yt8m.make_dataset(pattern, 8, num_classes=C, max_frames=T, training=False, feature_sizes=SIZES,
                         student_frames=student_frames, seed=seed, process_index=0, process_count=1)
  batches = list(yt8m.as_numpy_batches(ds))
  return {key: np.concatenate([b[key] for b in batches]) for key in batches[0]}


@pytest.fixture(scope="module")
def full(pattern):
  return read_all(pattern)


@pytest.mark.parametrize("k", [4, 10])
@pytest.mark.parametrize("method", DETERMINISTIC)
def test_student_input_equals_on_device_sampling(pattern, full, method, k):
  student = read_all(pattern, (k, method))
  frames_k, num_frames_k = rules.sample_frames(jnp.asarray(full["frames"]),
                                                  jnp.asarray(full["num_frames"]), k, method)
  assert student["frames"].shape == (full["frames"].shape[0], k, sum(SIZES))
  assert student["frames"].dtype == np.uint8
  np.testing.assert_array_equal(student["num_frames_k"], np.asarray(num_frames_k))
  np.testing.assert_array_equal(student["frames"], np.asarray(frames_k))
  for key in ("num_frames", "labels", "video_id", "valid"):
    np.testing.assert_array_equal(student[key], full[key])
  assert student["num_frames"][:len(LENGTHS)].tolist() == [min(n, T) for n in LENGTHS]


def test_random_student_input_is_reproducible_and_picks_real_frames(pattern, full):
  k = 6
  a, b = read_all(pattern, (k, "random"), seed=3), read_all(pattern, (k, "random"), seed=3)
  other = read_all(pattern, (k, "random"), seed=4)
  np.testing.assert_array_equal(a["frames"], b["frames"])
  assert not np.array_equal(a["frames"], other["frames"])
  for row in range(len(LENGTHS)):
    n, nk = full["num_frames"][row], a["num_frames_k"][row]
    assert nk == min(n, k)
    # Each picked frame is one of the video's frames, in increasing frame order, padding rows zero.
    real = full["frames"][row, :n]
    positions = [int(np.flatnonzero((real == f).all(axis=1))[0]) for f in a["frames"][row, :nk]]
    assert positions == sorted(set(positions))
    assert not a["frames"][row, nk:].any()


def test_student_input_rejects_bad_k(pattern):
  with pytest.raises(ValueError, match="k="):
    yt8m.make_dataset(pattern, 4, num_classes=C, max_frames=T, feature_sizes=SIZES,
                      student_frames=(T + 1, "uniform"), process_index=0, process_count=1)
  with pytest.raises(ValueError, match="sampling method"):
    yt8m.make_dataset(pattern, 4, num_classes=C, max_frames=T, feature_sizes=SIZES,
                      student_frames=(4, "nope"), process_index=0, process_count=1)
