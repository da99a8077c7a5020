"""The YT-8M reader parses, validates and decodes records in chunks (`make_dataset(chunk_size=...)`):
its output must not depend on the chunk size, and each bad record in a chunk is still named alone."""
import numpy as np
import pytest

from fewframes_jax.data import bad_records
from fewframes_jax.data import records
from fewframes_jax.data import yt8m

FS = (8, 4)
T = 6
C = 5


def _video(rng, index, length, labels=(1,)):
  return dict(video_id=b"v%02d" % index, labels=list(labels),
              rgb=rng.integers(0, 256, (length, FS[0]), dtype=np.uint8),
              audio=rng.integers(0, 256, (length, FS[1]), dtype=np.uint8))


def _encode(v, **kwargs):
  features = kwargs.pop("features", {"rgb": v["rgb"], "audio": v["audio"]})
  return records.encode_sequence_example(video_id=v["video_id"], labels=v["labels"], features=features,
                                         **kwargs)


def _read(pattern, batch_size, **kwargs):
  kwargs = {"num_classes": C, "max_frames": T, "feature_sizes": FS, "process_index": 0,
            "process_count": 1, **kwargs}
  counter = kwargs.get("skip_counter")
  return list(yt8m.as_numpy_batches(yt8m.make_dataset(pattern, batch_size, **kwargs),
                                    skip_counter=counter))


def _stack(batches):
  return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


def _naive(videos, rows):
  """The reader's output rows for `videos`, written out per video with numpy."""
  frames = np.zeros((len(videos), T, sum(FS)), np.uint8)
  labels = np.zeros((len(videos), C), bool)
  for i, v in enumerate(videos):
    n = min(len(v["rgb"]), T)
    frames[i, :n] = np.concatenate([v["rgb"], v["audio"]], axis=1)[:n]
    labels[i, v["labels"]] = True
  num_frames = np.array([min(len(v["rgb"]), T) for v in videos], np.int32)
  pad = rows - len(videos)
  return {"frames": np.concatenate([frames, np.zeros((pad,) + frames.shape[1:], np.uint8)]),
          "num_frames": np.concatenate([num_frames, np.zeros(pad, np.int32)]),
          "labels": np.concatenate([labels, np.zeros((pad, C), bool)]),
          "video_id": np.array([v["video_id"] for v in videos] + [b""] * pad, object),
          "valid": np.arange(rows) < len(videos)}


@pytest.fixture(scope="module")
def two_files(tmp_path_factory):
  """Files of 7 and 4 videos, lengths 0..9 (some longer than T), several labels each."""
  out = tmp_path_factory.mktemp("batched")
  rng = np.random.default_rng(0)
  videos = [_video(rng, i, int(rng.integers(0, 10)), labels=rng.choice(C, 1 + i % 3, replace=False))
            for i in range(11)]
  videos[3] = _video(rng, 3, 0)  # a zero-frame video
  records.write_tfrecord(str(out / "g-0.tfrecord"), [_encode(v) for v in videos[:7]])
  records.write_tfrecord(str(out / "g-1.tfrecord"), [_encode(v) for v in videos[7:]])
  return str(out / "g-*.tfrecord"), videos, out


@pytest.mark.parametrize("chunk_size", [1, 3, 64])
def test_eval_output_equals_naive_reference_for_any_chunk_size(two_files, chunk_size):
  pattern, videos, _ = two_files
  batches = _read(pattern, 4, chunk_size=chunk_size)
  assert len(batches) == 3 and all(len(b["valid"]) == 4 for b in batches)
  got, want = _stack(batches), _naive(videos, 12)
  for key, value in want.items():
    assert got[key].dtype == (np.uint8 if key == "frames" else value.dtype) or key == "video_id", key
    np.testing.assert_array_equal(got[key], value, err_msg=key)
  assert got["num_frames"].dtype == np.int32 and got["labels"].dtype == bool


def test_training_stream_does_not_depend_on_chunk_size(two_files):
  pattern, _, _ = two_files

  def stream(chunk_size):
    ds = yt8m.make_dataset(pattern, 3, num_classes=C, max_frames=T, feature_sizes=FS, training=True,
                           seed=5, shuffle_buffer=6, process_index=0, process_count=1,
                           chunk_size=chunk_size)
    return _stack([b for b, _ in zip(yt8m.as_numpy_batches(ds), range(8))])

  a, b = stream(1), stream(4)
  assert len(a["valid"]) == 24 and a["valid"].all()
  for key in a:
    np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_record_fraction_rule_for_any_chunk_size(two_files):
  _, videos, out = two_files
  path = str(out / "g-0.tfrecord")  # one file: the record-level subset
  f = 0.4
  kept = [v for i, v in enumerate(videos[:7]) if np.floor((i + 1) * f) > np.floor(i * f)]
  assert 0 < len(kept) < 7
  for chunk_size in (2, 64):
    got = _stack(_read(path, 8, file_fraction=f, chunk_size=chunk_size))
    np.testing.assert_array_equal(got["video_id"][got["valid"]], [v["video_id"] for v in kept])
    np.testing.assert_array_equal(got["frames"], _naive(kept, 8)["frames"])


def _multi_value_frame(v):
  """A record whose rgb frame 1 holds two byte values (each of the right size)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  proto = tf.train.SequenceExample.FromString(_encode(v))
  proto.feature_lists.feature_list["rgb"].feature[1].bytes_list.value.append(v["rgb"][1].tobytes())
  return proto.SerializeToString()


@pytest.fixture(scope="module")
def bad_chunk(tmp_path_factory):
  """One file: good 0, bad_label 1, good 2, bad_frame_size 3 (a frame with two values), good 4,
  missing_feature 5, good 6."""
  out = tmp_path_factory.mktemp("bad_chunk")
  rng = np.random.default_rng(1)
  v = [_video(rng, i, 3) for i in range(7)]
  encoded = [_encode(v[0]), _encode(dict(v[1], labels=[C + 3])), _encode(v[2]), _multi_value_frame(v[3]),
             _encode(v[4]), _encode(v[5], features={"rgb": v[5]["rgb"]}),
             _encode(v[6])]
  path = str(out / "bad.tfrecord")
  records.write_tfrecord(path, encoded)
  return path, [v[i] for i in (0, 2, 4, 6)]


@pytest.mark.parametrize("chunk_size", [2, 64])
def test_several_bad_records_in_one_chunk_are_each_skipped_and_named(bad_chunk, chunk_size, capfd):
  path, good = bad_chunk
  counter = bad_records.SkipCounter()
  got = _stack(_read(path, 3, on_error="skip", skip_counter=counter, chunk_size=chunk_size))
  want = _naive(good, 6)
  for key in want:
    np.testing.assert_array_equal(got[key], want[key], err_msg=key)
  expected = dict.fromkeys(bad_records.REASONS, 0)
  expected.update(bad_label=1, bad_frame_size=1, missing_feature=1)
  assert counter.by_reason() == expected and counter.frame_count_mismatches == 0
  err = capfd.readouterr().err
  for record, reason in ((1, "bad_label"), (3, "bad_frame_size"), (5, "missing_feature")):
    assert f"skipped a bad record: file {path}, record {record}: {reason}" in err
  assert "values per frame found: [1 2] [1]" in err, err


def test_raise_names_the_first_bad_record_of_a_chunk(bad_chunk):
  path, _ = bad_chunk
  with pytest.raises(bad_records.BadRecordError, match=rf"file {path}, record 1: bad_label: labels \[8\]"):
    _read(path, 3, chunk_size=64)
  # The chunk holding records 2, 3 fails on record 3 (its only bad one).
  with pytest.raises(bad_records.BadRecordError, match=rf"file {path}, record 3: bad_frame_size"):
    _read(path, 3, chunk_size=2, num_classes=C + 4)


def test_corruption_found_at_the_right_record_across_chunks(tmp_path):
  rng = np.random.default_rng(2)
  encoded = [_encode(_video(rng, i, 2)) for i in range(8)]
  path = str(tmp_path / "crc.tfrecord")
  records.write_tfrecord(path, encoded)
  with open(path, "rb") as f:
    data = bytearray(f.read())
  data[sum(len(e) + 16 for e in encoded[:5]) + 20] ^= 0x55  # inside record 5's data: bad CRC
  with open(path, "wb") as f:
    f.write(bytes(data))
  with pytest.raises(bad_records.BadRecordError, match=rf"file {path}, record 5: corrupt_file"):
    _read(path, 4, chunk_size=2)
  counter = bad_records.SkipCounter()
  got = _stack(_read(path, 4, on_error="skip", skip_counter=counter, chunk_size=2))
  assert list(got["video_id"][got["valid"]]) == [b"v%02d" % i for i in range(5)]
  assert counter.total == 1 and counter.by_reason()["corrupt_file"] == 1


def test_random_student_frames_do_not_depend_on_chunk_size(two_files):
  pattern, _, _ = two_files
  a, b = (_stack(_read(pattern, 4, student_frames=(3, "random"), seed=2, chunk_size=c)) for c in (1, 64))
  for key in a:
    np.testing.assert_array_equal(a[key], b[key], err_msg=key)
  assert a["frames"].shape == (12, 3, sum(FS))


def test_chunk_size_must_be_positive(two_files):
  with pytest.raises(ValueError, match="chunk_size"):
    _read(two_files[0], 2, chunk_size=0)
