"""Tests of the YouTube-8M input pipeline (fewframes_jax.data.yt8m, with its record reader) on tiny
TFRecords written by records.py."""
import os

import numpy as np
import pytest

from fewframes_jax.data import bad_records
from fewframes_jax.data import records
from fewframes_jax.data import yt8m

FS = (8, 4)  # tiny rgb / audio bytes per frame
T = 12       # tiny max_frames
C = 6        # classes


def _video(rng, index, length, labels=(1,), sizes=FS):
  return dict(video_id=b"vid%03d" % index, labels=list(labels),
              rgb=rng.integers(0, 256, (length, sizes[0]), dtype=np.uint8),
              audio=rng.integers(0, 256, (length, sizes[1]), dtype=np.uint8))


def _encode(v, id_key="id", features=None):
  features = {"rgb": v["rgb"], "audio": v["audio"]} if features is None else features
  return records.encode_sequence_example(video_id=v["video_id"], labels=v["labels"], features=features,
                                         id_key=id_key)


def _write(path, encoded):
  records.write_tfrecord(str(path), encoded)
  return str(path)


def _dataset(pattern, batch_size, **kwargs):
  kwargs = {"num_classes": C, "max_frames": T, "feature_sizes": FS, "process_index": 0,
            "process_count": 1, **kwargs}
  return yt8m.make_dataset(pattern, batch_size, **kwargs)


def _batches(pattern, batch_size, skip_counter=None, **kwargs):
  ds = _dataset(pattern, batch_size, skip_counter=skip_counter, **kwargs)
  return list(yt8m.as_numpy_batches(ds, skip_counter=skip_counter))


def _valid_ids(batches):
  return [i for b in batches for i, ok in zip(b["video_id"], b["valid"]) if ok]


def _check_rows(batches, videos_by_id, max_frames, num_classes=C):
  """Every valid row equals its source video (truncated/padded); padding rows are all zeros."""
  for b in batches:
    for row in range(len(b["valid"])):
      if not b["valid"][row]:
        assert b["video_id"][row] == b"" and b["num_frames"][row] == 0
        assert not b["frames"][row].any() and not b["labels"][row].any()
        continue
      v = videos_by_id[b["video_id"][row]]
      n = min(len(v["rgb"]), max_frames)
      expected = np.zeros((max_frames, v["rgb"].shape[1] + v["audio"].shape[1]), np.uint8)
      expected[:n] = np.concatenate([v["rgb"], v["audio"]], axis=1)[:n]
      np.testing.assert_array_equal(b["frames"][row], expected)
      assert b["num_frames"][row] == n
      multi_hot = np.zeros(num_classes, bool)
      multi_hot[v["labels"]] = True
      np.testing.assert_array_equal(b["labels"][row], multi_hot)


def test_encoder_writes_the_same_proto_as_tf_train():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(9)
  rgb = rng.integers(0, 256, (3, 200), dtype=np.uint8)  # 200 bytes: a 2-byte length varint
  audio = rng.integers(0, 256, (3, 4), dtype=np.uint8)
  labels = [0, 5, 300, -1]  # multi-byte and negative int64 varints
  encoded = records.encode_sequence_example(video_id=b"abc", labels=labels,
                                            features={"rgb": rgb, "audio": audio, "empty": rgb[:0]},
                                            id_key="video_id")
  expected = tf.train.SequenceExample()
  expected.context.feature["video_id"].bytes_list.value.append(b"abc")
  expected.context.feature["labels"].int64_list.value.extend(labels)
  for name, frames in (("rgb", rgb), ("audio", audio)):
    for frame in frames:
      expected.feature_lists.feature_list[name].feature.add().bytes_list.value.append(frame.tobytes())
  expected.feature_lists.feature_list["empty"].SetInParent()
  assert tf.train.SequenceExample.FromString(encoded) == expected
  # Per-frame bytes (the slow path used for malformed frames) encode the same frames identically.
  slow = records.encode_sequence_example(video_id=b"abc", labels=labels,
                                         features={"rgb": [f.tobytes() for f in rgb], "audio": audio,
                                                   "empty": rgb[:0]}, id_key="video_id")
  assert slow == encoded


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
  return tmp_path_factory.mktemp("yt8m")


@pytest.fixture(scope="session")
def three_files(data_dir):
  """Three files holding 3, 0 and 4 videos (an empty file included); returns (pattern, videos)."""
  rng = np.random.default_rng(0)
  videos, index = [], 0
  for f, count in enumerate((3, 0, 4)):
    chunk = []
    for _ in range(count):
      chunk.append(_video(rng, index, int(rng.integers(0, 20)), labels=rng.choice(C, 2, replace=False)))
      index += 1
    _write(data_dir / f"multi-{f}.tfrecord", [_encode(v) for v in chunk])
    videos += chunk
  return str(data_dir / "multi-*.tfrecord"), videos


def test_round_trip_real_sizes_lengths_0_1_299_300_360(data_dir):
  rng = np.random.default_rng(1)
  videos = [_video(rng, i, n, labels=labels, sizes=(1024, 128))
            for i, (n, labels) in enumerate([(0, (3,)), (1, ()), (299, (0, 5)), (300, (4,)), (360, (1, 2, 3))])]
  path = _write(data_dir / "lengths.tfrecord", [_encode(v) for v in videos])
  batches = _batches(path, 2, max_frames=300, feature_sizes=(1024, 128))
  assert len(batches) == 3
  for b in batches:
    assert b["frames"].dtype == np.uint8 and b["frames"].shape == (2, 300, 1152)
    assert b["num_frames"].dtype == np.int32 and b["labels"].shape == (2, C)
  assert _valid_ids(batches) == [v["video_id"] for v in videos]
  np.testing.assert_array_equal(np.concatenate([b["num_frames"] for b in batches]), [0, 1, 299, 300, 300, 0])
  _check_rows(batches, {v["video_id"]: v for v in videos}, 300)


def test_rgb_only(three_files):
  pattern, videos = three_files
  batches = _batches(pattern, 4, feature_names=("rgb",), feature_sizes=(FS[0],))
  assert batches[0]["frames"].shape == (4, T, FS[0])
  by_id = {v["video_id"]: dict(v, audio=v["audio"][:, :0]) for v in videos}
  _check_rows(batches, by_id, T)


def test_eval_pass_is_exact_and_in_file_order(three_files):
  pattern, videos = three_files  # N = 7 over 3 files, one of them empty
  for batch_size, num_batches in ((3, 3), (7, 1)):
    batches = _batches(pattern, batch_size)
    assert len(batches) == num_batches
    assert all(len(b["valid"]) == batch_size for b in batches)
    assert _valid_ids(batches) == [v["video_id"] for v in videos]
    assert sum(int(b["valid"].sum()) for b in batches) == 7
    _check_rows(batches, {v["video_id"]: v for v in videos}, T)


def test_both_id_keys_read_and_neither_names_the_keys(data_dir):
  rng = np.random.default_rng(2)
  v2017, v2018, none = _video(rng, 0, 3), _video(rng, 1, 3), _video(rng, 2, 3)
  path = _write(data_dir / "keys.tfrecord", [_encode(v2017, id_key="video_id"), _encode(v2018, id_key="id")])
  # Two releases in one file: only with the release check off.
  assert _valid_ids(_batches(path, 2, check_release=False)) == [b"vid000", b"vid001"]
  with pytest.raises(bad_records.BadRecordError, match=r"keys\.tfrecord, record 1: missing_id.*'video_id'"):
    _batches(path, 2, id_key="video_id", check_release=False)
  bad = _write(data_dir / "nokey.tfrecord", [_encode(none, id_key="")])
  with pytest.raises(bad_records.BadRecordError,
                     match=r"nokey\.tfrecord, record 0: .*none of the id keys \['id', 'video_id'\]"):
    _batches(bad, 2)


def test_shard_files_disjoint_and_covering():
  files = [f"f{i}" for i in range(7)]
  for count in (1, 2, 3):
    shards = [yt8m.shard_files(files, process_index=p, process_count=count) for p in range(count)]
    assert sorted(sum(shards, [])) == files
    assert all(set(a).isdisjoint(b) for i, a in enumerate(shards) for b in shards[i + 1:])
  with pytest.raises(ValueError, match="7 input files for 8 processes"):
    yt8m.shard_files(files, process_index=0, process_count=8)


@pytest.mark.parametrize("process_count", [2, 3])
def test_simulated_processes_read_disjoint_covering_records(three_files, process_count):
  pattern, videos = three_files
  num_batches = yt8m.num_eval_batches(pattern, 2, process_count=process_count)
  seen = []
  for p in range(process_count):
    batches = _batches(pattern, 2, process_index=p, process_count=process_count,
                       pad_to_batches=num_batches)
    assert len(batches) == num_batches  # every process runs the same number of eval steps
    seen.append(_valid_ids(batches))
  flat = sum(seen, [])
  assert sorted(flat) == sorted(v["video_id"] for v in videos) and len(set(flat)) == len(flat)


def test_num_eval_batches_and_pad_to_batches_guard(three_files):
  pattern, _ = three_files
  assert yt8m.num_eval_batches(pattern, 3, process_count=1) == 3
  assert yt8m.num_eval_batches(pattern, 2, process_count=2) == 4  # files {0, 2}: 7 rows; {1}: 0 rows
  assert yt8m.num_eval_batches(pattern, 2, process_count=3) == 2  # 3, 0 and 4 rows
  with pytest.raises(bad_records.BadRecordError, match="pad_to_batches=2"):
    _batches(pattern, 3, pad_to_batches=2)


def test_count_and_list_files(three_files, data_dir):
  pattern, _ = three_files
  files = yt8m.list_files(pattern)
  assert [os.path.basename(f) for f in files] == ["multi-0.tfrecord", "multi-1.tfrecord", "multi-2.tfrecord"]
  assert [yt8m.count_records(f) for f in files] == [3, 0, 4]
  assert yt8m.list_files(f"{files[2]},{files[0]}") == [files[0], files[2]]
  with pytest.raises(FileNotFoundError, match="nothing-here"):
    yt8m.list_files(str(data_dir / "nothing-here*"))
  assert yt8m.select_fraction(files, 0.5) == files[:2]


def test_local_patterns_are_listed_without_tensorflow_and_remote_ones_by_it(three_files, monkeypatch):
  """A local glob needs no TensorFlow (a mistyped pattern is reported before it starts); gs:// and other
  remote file systems go through `tf.io.gfile.glob`, with the same error when nothing matches."""
  pattern, _ = three_files
  want = yt8m.list_files(pattern)
  asked = []

  class FakeTensorFlow:  # pylint: disable=too-few-public-methods
    class io:  # pylint: disable=invalid-name
      class gfile:  # pylint: disable=invalid-name
        @staticmethod
        def glob(p):
          asked.append(p)
          return ["gs://bucket/train-1.tfrecord", "gs://bucket/train-0.tfrecord"] if "train" in p else []

  def no_tensorflow():
    raise AssertionError("a local pattern started TensorFlow")

  monkeypatch.setattr(records, "tensorflow", no_tensorflow)
  assert yt8m.list_files(pattern) == want
  with pytest.raises(FileNotFoundError, match="matched no files"):
    yt8m.list_files("/nonexistent/train*")
  monkeypatch.setattr(records, "tensorflow", lambda: FakeTensorFlow)
  assert yt8m.list_files("gs://bucket/train*") == ["gs://bucket/train-0.tfrecord", "gs://bucket/train-1.tfrecord"]
  with pytest.raises(FileNotFoundError, match="'gs://bucket/eval\\*' matched no files"):
    yt8m.list_files("gs://bucket/eval*")
  assert asked == ["gs://bucket/train*", "gs://bucket/eval*"]


def test_training_is_deterministic_for_a_seed(three_files):
  pattern, videos = three_files

  def first_ids(seed, n=6):
    ds = _dataset(pattern, 3, training=True, seed=seed, shuffle_buffer=8)
    batches = [b for b, _ in zip(yt8m.as_numpy_batches(ds), range(n))]
    assert all(b["valid"].all() and len(b["valid"]) == 3 for b in batches)
    _check_rows(batches, {v["video_id"]: v for v in videos}, T)
    return [list(b["video_id"]) for b in batches]

  a, b, c = first_ids(0), first_ids(0), first_ids(1)
  assert a == b
  assert a != c
  # 6 batches of 3 = 18 rows over 7 videos: every video shows up (the stream repeats).
  assert {i for batch in a for i in batch} == {v["video_id"] for v in videos}


def test_training_one_epoch_without_repeat_drops_only_the_remainder(three_files):
  pattern, _ = three_files
  ds = _dataset(pattern, 3, training=True, repeat=False)
  assert sum(len(b["valid"]) for b in yt8m.as_numpy_batches(ds)) == 6


# ---- bad input ----

def _bad_records(rng):
  """name -> (reason, one bad serialized record)."""
  v = lambda: _video(rng, 99, 3)  # pylint: disable=unnecessary-lambda-assignment
  a, c, d, e, f = v(), v(), v(), v(), v()
  return {
      "frame_size": ("bad_frame_size", _encode(a, features={"rgb": [b"x" * 8, b"y" * 7, b"z" * 8],
                                                            "audio": a["audio"]})),
      "negative_label": ("bad_label", _encode(dict(c, labels=[1, -1]))),
      "label_too_big": ("bad_label", _encode(dict(d, labels=[C]))),
      "missing_feature": ("missing_feature", _encode(e, features={"rgb": e["rgb"]})),
      "missing_id": ("missing_id", _encode(f, id_key="")),
  }


@pytest.fixture(scope="session")
def bad_files(data_dir):
  """name -> (reason, path): good records 0, 1, the bad record at index 2, good record 3. And "all":
  (None, path) of one file where the good records 0..5 alternate with the five bad ones."""
  rng = np.random.default_rng(3)
  good = [_encode(_video(rng, i, 4)) for i in range(7)]
  out, mixed = {}, [good[0]]
  for i, (name, (reason, bad)) in enumerate(_bad_records(rng).items()):
    out[name] = (reason, _write(data_dir / f"bad-{name}.tfrecord", good[:2] + [bad] + good[3:4]))
    mixed += [bad, good[i + 1]]
  out["all"] = (None, _write(data_dir / "bad-all.tfrecord", mixed))
  return out


BAD_NAMES = ("frame_size", "negative_label", "label_too_big", "missing_feature", "missing_id")


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_record_raise_names_file_record_and_reason(bad_files, name):
  reason, path = bad_files[name]
  # Batch 3: the bad record is in the first batch; the error must surface before any data passes.
  with pytest.raises(bad_records.BadRecordError, match=rf"file {path}, record 2: {reason}"):
    _batches(path, 3)


def test_bad_records_skip_counts_each_reason(bad_files):
  counter = bad_records.SkipCounter()
  batches = _batches(bad_files["all"][1], 3, on_error="skip", skip_counter=counter)
  assert _valid_ids(batches) == [b"vid%03d" % i for i in range(6)]
  assert len(batches) == 2  # 6 good rows: the skipped records take no rows
  expected = {r: 0 for r in bad_records.REASONS}
  for name in BAD_NAMES:
    expected[bad_files[name][0]] += 1
  assert counter.by_reason() == expected and counter.total == len(BAD_NAMES)
  counter.reset()
  assert counter.total == 0


def test_bad_record_in_last_partial_batch_raises(bad_files):
  _, path = bad_files["label_too_big"]
  with pytest.raises(bad_records.BadRecordError, match="record 2"):
    _batches(path, 5)  # 4 records, batch 5: one partial batch


def test_bad_record_skipped_in_training(bad_files):
  counter = bad_records.SkipCounter()
  ds = _dataset(bad_files["label_too_big"][1], 3, training=True, on_error="skip", skip_counter=counter,
                shuffle_buffer=1)
  rows = [i for b, _ in zip(yt8m.as_numpy_batches(ds), range(3)) for i in b["video_id"]]
  assert b"vid099" not in rows and len(rows) == 9
  assert counter.by_reason()["bad_label"] >= 2  # 9 rows = at least 3 epochs of 3 good records


def _corrupt(data_dir, name, mutate):
  rng = np.random.default_rng(4)
  path = _write(data_dir / f"corrupt-{name}.tfrecord", [_encode(_video(rng, i, 4)) for i in range(4)])
  with open(path, "rb") as f:
    data = bytearray(f.read())
  with open(path, "wb") as f:
    f.write(mutate(data))
  return path


@pytest.mark.parametrize("kind", ["truncated", "bad_crc"])
def test_corrupt_file(data_dir, kind):
  if kind == "truncated":
    path, first_bad = _corrupt(data_dir, kind, lambda d: bytes(d[:-10])), 3
  else:
    def flip(d):
      d[len(d) // 4 + 40] ^= 0xFF  # inside record 1's data
      return bytes(d)
    path, first_bad = _corrupt(data_dir, kind, flip), 1
  with pytest.raises(bad_records.BadRecordError,
                     match=rf"file {path}, record {first_bad}: corrupt_file: truncated file or bad CRC"):
    _batches(path, 2)
  counter = bad_records.SkipCounter()
  batches = _batches(path, 2, on_error="skip", skip_counter=counter)
  # The records before the damage are read; the rest of the file is dropped and counted once.
  assert _valid_ids(batches) == [b"vid%03d" % i for i in range(first_bad)]
  assert counter.by_reason()["corrupt_file"] == 1 and counter.total == 1


def test_unparseable_record_stops_the_pass_in_both_modes(data_dir):
  rng = np.random.default_rng(5)
  good = [_encode(_video(rng, i, 2)) for i in range(2)]
  path = _write(data_dir / "garbage.tfrecord", [good[0], b"\x01\x02 not a proto", good[1]])
  for on_error in ("raise", "skip"):
    with pytest.raises(bad_records.BadRecordError, match=rf"could not parse the record: .*{path}, record 1"):
      _batches(path, 2, on_error=on_error)


def test_argument_errors(three_files):
  pattern, _ = three_files
  with pytest.raises(ValueError, match="on_error"):
    _dataset(pattern, 2, on_error="ignore")
  with pytest.raises(ValueError, match="id_key"):
    _dataset(pattern, 2, id_key="vid")
  with pytest.raises(ValueError, match="feature_names"):
    _dataset(pattern, 2, feature_names=("rgb",))
  with pytest.raises(ValueError, match="3 input files for 4 processes"):
    _dataset(pattern, 2, process_index=0, process_count=4)


def test_config_options_map_the_data_block():
  from configs import base  # pylint: disable=g-import-not-at-top
  data = base.get_config().data
  data.check_release, data.id_key, data.num_classes = False, "video_id", 4716
  options = yt8m.config_options(data)
  assert options["check_release"] is False and options["id_key"] == "video_id"
  assert options["num_classes"] == 4716 and options["feature_sizes"] == (1024, 128)
  assert set(options) <= set(yt8m.make_dataset.__code__.co_varnames)  # all are make_dataset arguments
