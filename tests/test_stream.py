"""The seekable training stream: a position saved after any batch resumes the very same batches, across
rounds and epochs and past skipped bad records, and the rounds before the position are never opened."""
import os

import numpy as np
import pytest

import runs_testlib as lib
from fewframes_jax.data import bad_records, stream, yt8m

KW = dict(num_classes=lib.NUM_CLASSES, max_frames=lib.MAX_FRAMES, feature_sizes=lib.FEATURE_SIZES, training=True,
          process_index=0, process_count=1, shuffle_buffer=8, cycle_length=2, seed=3)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  # 4 files of 10 records: 2 rounds of 2 files (20 records) per epoch; file 1's first record is bad.
  return lib.write_dataset(str(tmp_path_factory.mktemp("stream")), num_train=40, train_shards=4,
                           bad_train_shards=(1,))


def batches(pattern, n, **kw):
  ds = yt8m.make_dataset(pattern, 4, **dict(KW, **kw))
  return [b for _, b in zip(range(n), yt8m.as_numpy_batches(ds))]


def test_position_arithmetic():
  assert stream.Position.after(np.array([2, 1, 9])) == stream.Position(2, 1, 10)
  assert stream.num_rounds(4, 2) == 2 and stream.num_rounds(5, 2) == 3 and stream.num_rounds(3, 8) == 1


def test_a_saved_position_resumes_the_same_batches(data):
  full = batches(data["train"], 24, on_error="skip")
  positions = [tuple(b["position"][-1]) for b in full]
  assert positions == sorted(positions) and positions[-1][0] >= 2  # in stream order, over 3 epochs
  assert {p[1] for p in positions} == {0, 1}  # both rounds of an epoch
  for cut in (1, 5, 9, 13, 20):  # inside a round, at round and epoch boundaries
    start = stream.Position.after(full[cut - 1]["position"][-1])
    resumed = batches(data["train"], 3, on_error="skip", start=start)
    for a, b in zip(full[cut:], resumed):
      for key in ("frames", "num_frames", "labels", "video_id", "position"):
        np.testing.assert_array_equal(a[key], b[key], err_msg=f"cut {cut}: {key}")


def test_the_order_depends_only_on_the_seed(data):
  a, b = batches(data["train"], 6, on_error="skip"), batches(data["train"], 6, on_error="skip")
  c = batches(data["train"], 6, on_error="skip", seed=4)
  assert all(np.array_equal(x["video_id"], y["video_id"]) for x, y in zip(a, b))
  assert not all(np.array_equal(x["video_id"], y["video_id"]) for x, y in zip(a, c))
  ids = np.concatenate([x["video_id"] for x in a[:4]])  # epoch 0 without the bad record: 39 - 3
  assert len(set(ids.tolist())) == 16 and not any(i == b"" for i in ids)


def test_rounds_before_the_position_are_never_opened(data, tmp_path):
  """Corrupt the files of epoch 0's first round (same sizes): starting at round 1 never reads them."""
  files = yt8m.list_files(data["train"])
  epoch0 = batches(data["train"], 10, on_error="skip", repeat=False)
  round0 = {vid.decode().split("_")[0] for b in epoch0 for vid, pos in zip(b["video_id"], b["position"])
            if pos[1] == 0}
  assert len(round0) == 2  # the two files of round 0
  copy = tmp_path / "copy"
  copy.mkdir()
  for f in files:
    raw = open(f, "rb").read()
    name = os.path.basename(f)
    if f"train{name.split('-')[1].split('.')[0]}" in round0:
      raw = b"\xff" * len(raw)
    (copy / name).write_bytes(raw)
  pattern = str(copy / "train-*")
  with pytest.raises(bad_records.BadRecordError, match="truncated file or bad CRC"):
    batches(pattern, 6, on_error="raise", repeat=False)
  resumed = batches(pattern, 4, on_error="skip", repeat=False, start=stream.Position(0, 1, 0))
  assert len(resumed) >= 4 and all(b["position"][0][1] == 1 for b in resumed)
