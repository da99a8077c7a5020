"""Tests of the record reader's rules (fewframes_jax.data.reader), read through `yt8m.make_dataset`:
features with different frame counts are cut to the shortest feature and counted, never dropped; a
record whose id key contradicts num_classes (the wrong YouTube-8M release) stops the pass with one line.
(Bad records, corrupt files and chunking: test_yt8m.py and test_yt8m_batched.py.)"""
import jax.numpy as jnp
import numpy as np
import pytest

from fewframes_jax.sampling import rules
from fewframes_jax.data import bad_records, records, yt8m

FS = (8, 4)  # rgb, audio bytes per frame
T = 6        # max_frames
C = 5
# (rgb frames, audio frames) of the records whose features have different frame counts.
MISMATCHES = {"audio_shorter": (5, 3), "audio_longer": (2, 5), "both_longer_than_T": (9, 7)}


def _file(path, shapes, rng, id_key="id"):
  """Writes one record per (rgb frames, audio frames) in `shapes`; returns (path, videos)."""
  videos = [{"rgb": rng.integers(1, 256, (r, FS[0]), dtype=np.uint8),  # no zero bytes: zero rows stand out
             "audio": rng.integers(1, 256, (a, FS[1]), dtype=np.uint8)} for r, a in shapes]
  records.write_tfrecord(str(path), [records.encode_sequence_example(video_id=b"v%d" % i, labels=[1], features=v,
                                                                     id_key=id_key)
                                     for i, v in enumerate(videos)])
  return str(path), videos


def _read(path, counter=None, **kwargs):
  kwargs = {"num_classes": C, "max_frames": T, "feature_sizes": FS, "process_index": 0, "process_count": 1,
            **kwargs}
  batches = list(yt8m.as_numpy_batches(yt8m.make_dataset(path, 4, skip_counter=counter, **kwargs),
                                       skip_counter=counter))
  return {key: np.concatenate([b[key] for b in batches]) for key in batches[0]}


@pytest.fixture(scope="module")
def mismatch_file(tmp_path_factory):
  """Good records 0, 2, 4 with (4, 4), (3, 3), (1, 1) frames; records 1, 3, 5 with a mismatch."""
  shapes = [(4, 4), MISMATCHES["audio_shorter"], (3, 3), MISMATCHES["audio_longer"], (1, 1),
            MISMATCHES["both_longer_than_T"]]
  return _file(tmp_path_factory.mktemp("mismatch") / "m.tfrecord", shapes, np.random.default_rng(0))


def test_frame_count_mismatch_is_cut_to_the_shortest_feature_and_counted(mismatch_file, caplog):
  path, videos = mismatch_file
  want_n = [min(len(v["rgb"]), len(v["audio"]), T) for v in videos]
  assert want_n == [4, 3, 3, 2, 1, T]
  want = np.zeros((6, T, sum(FS)), np.uint8)
  for i, (v, n) in enumerate(zip(videos, want_n)):
    want[i, :n] = np.concatenate([v["rgb"][:n], v["audio"][:n]], axis=1)
  for on_error, chunk_size in (("raise", 1), ("raise", 64), ("skip", 2)):
    counter = bad_records.SkipCounter()
    got = _read(path, counter, on_error=on_error, chunk_size=chunk_size)
    assert got["valid"].tolist() == [True] * 6 + [False] * 2, (on_error, chunk_size)  # never dropped
    assert got["num_frames"][:6].tolist() == want_n
    # Real frames unchanged; from the shortest feature's length on, zero rows in both streams.
    np.testing.assert_array_equal(got["frames"][:6], want, err_msg=f"{on_error} {chunk_size}")
    assert counter.frame_count_mismatches == 3 and counter.total == 0  # one per mismatched record
  assert not got["frames"][1, 3:].any() and got["frames"][1, 2, FS[0]:].all()
  assert "read 3 records whose features have different frame counts" in caplog.text


def test_student_input_of_mismatched_records_equals_the_full_path(mismatch_file):
  path, _ = mismatch_file
  full = _read(path)
  for method in ("uniform", "last"):
    student = _read(path, student_frames=(2, method))
    frames_k, num_frames_k = rules.sample_frames(jnp.asarray(full["frames"]), jnp.asarray(full["num_frames"]),
                                                    2, method)
    np.testing.assert_array_equal(student["frames"], np.asarray(frames_k), err_msg=method)
    np.testing.assert_array_equal(student["num_frames_k"], np.asarray(num_frames_k))
    np.testing.assert_array_equal(student["num_frames"], full["num_frames"])


@pytest.fixture(scope="module")
def keyed_files(tmp_path_factory):
  """id key -> a file of three records under that key."""
  out, rng = tmp_path_factory.mktemp("releases"), np.random.default_rng(1)
  return {key: _file(out / f"{key}.tfrecord", [(2, 2)] * 3, rng, id_key=key)[0] for key in bad_records.ID_KEYS}


@pytest.mark.parametrize("key,num_classes,right", [("id", 4716, 3862), ("video_id", 8, 4716)])
def test_release_mismatch_stops_the_pass_with_one_clear_line(keyed_files, key, num_classes, right):
  for on_error in bad_records.ON_ERROR:  # a configuration error, not a bad record: never skipped
    with pytest.raises(bad_records.ReleaseMismatchError) as info:
      _read(keyed_files[key], num_classes=num_classes, on_error=on_error)
    message = str(info.value)
    assert f"{keyed_files[key]}, record 0" in message and f"records keyed '{key}'" in message
    assert f"num_classes={num_classes};" in message and f"{right} classes" in message
    assert f"--config.data.num_classes={right}" in message and "--config.data.check_release=False" in message
    assert "\n" not in message and "Traceback" not in message and "[[" not in message, message

  assert bad_records.release_conflict(key, num_classes)


@pytest.mark.parametrize("key,num_classes,check_release", [
    ("id", 3862, True), ("video_id", 4716, True), ("video_id", 8, False)])  # `id` with C=8: everywhere
def test_matching_release_or_check_off_reads_every_record(keyed_files, key, num_classes, check_release):
  got = _read(keyed_files[key], num_classes=num_classes, check_release=check_release)
  assert got["video_id"][got["valid"]].tolist() == [b"v0", b"v1", b"v2"]
  assert got["labels"].shape[1] == num_classes
  assert bad_records.release_conflict(key, num_classes) != check_release
