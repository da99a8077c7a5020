"""The classic mistakes, on real YouTube-8M records: video-level files given to the frame-level reader
are named as such, with the partitions to download instead, and a library user who iterates
`make_dataset(...)` gets the project's exception (not TensorFlow's InvalidArgumentError); the command
line prints the same message on one line.

The records: the first 4 of a real video-level file of each release (tests/data/yt8m_video_level/).
"""
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from fewframes_jax.data import bad_records
from fewframes_jax.data import records
from fewframes_jax.data import yt8m

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLES = os.path.join(ROOT, "tests", "data", "yt8m_video_level")
RELEASES = {  # file -> (id key, classes)
    "v2017_validate_a0.tfrecord": ("video_id", 4716),
    "v2018_validate0000.tfrecord": ("id", 3862),
}


def _path(name):
  return os.path.join(SAMPLES, name)


def _dataset(pattern, **kwargs):
  kwargs = {"num_classes": 4716, "process_index": 0, "process_count": 1, **kwargs}
  return yt8m.make_dataset(pattern, 2, **kwargs)


@pytest.mark.parametrize("name", sorted(RELEASES))
def test_the_samples_are_real_video_level_records(name):
  """What the test files are: `tf.train.Example`s with the mean features, the release's id key and
  labels inside its vocabulary (and no frame lists)."""
  tf = records.tensorflow()
  id_key, num_classes = RELEASES[name]
  examples = [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(_path(name))]
  assert len(examples) == 4
  for example in examples:
    feature = example.features.feature
    assert set(feature) == {id_key, "labels", "mean_rgb", "mean_audio"}
    assert len(feature["mean_rgb"].float_list.value) == 1024 and len(feature["mean_audio"].float_list.value) == 128
    assert 0 <= min(feature["labels"].int64_list.value) and max(feature["labels"].int64_list.value) < num_classes


def _assert_names_the_mistake(error, name):
  text = str(error)
  assert isinstance(error, bad_records.VideoLevelRecordError) and isinstance(error, bad_records.BadRecordError)
  assert "\n" not in text and text.startswith(bad_records.VIDEO_LEVEL_MARKER)
  assert f"file {_path(name)}, record 0:" in text
  assert "video-level" in text and "mean_rgb" in text and "no frames" in text
  assert "partition=2/frame/{train,validate,test}" in text and "partition=1/frame_level/{train,validate,test}" in text
  assert "missing_feature" not in text


@pytest.mark.parametrize("on_error", bad_records.ON_ERROR)
@pytest.mark.parametrize("name", sorted(RELEASES))
def test_video_level_records_are_named_with_what_to_download(name, on_error):
  """Read with the release's own class count, and in both error modes (a video-level file is the wrong
  download, not a damaged record: "skip" would skip every record)."""
  _, num_classes = RELEASES[name]
  with pytest.raises(bad_records.VideoLevelRecordError) as caught:
    list(yt8m.as_numpy_batches(_dataset(_path(name), num_classes=num_classes, on_error=on_error)))
  _assert_names_the_mistake(caught.value, name)


def test_video_level_comes_before_the_release_check():
  """2018 video-level records read with the default 4716 classes: the first thing to fix is the
  download, not the class count."""
  name = "v2018_validate0000.tfrecord"
  with pytest.raises(bad_records.VideoLevelRecordError) as caught:
    list(yt8m.as_numpy_batches(_dataset(_path(name), num_classes=4716)))
  _assert_names_the_mistake(caught.value, name)


@pytest.mark.parametrize("iterate", ["for", "as_numpy_iterator", "tfds.as_numpy"])
def test_iterating_make_dataset_raises_the_projects_exception(iterate):
  """A library user who iterates the dataset itself, eagerly or as numpy, gets the project's
  exception, whose message is the assertion's one line (TensorFlow's error text is not there)."""
  name = "v2017_validate_a0.tfrecord"
  ds = _dataset(_path(name))
  if iterate == "for":
    iterator = iter(ds)
  elif iterate == "as_numpy_iterator":
    iterator = ds.as_numpy_iterator()
  else:
    tfds = pytest.importorskip("tensorflow_datasets")
    iterator = iter(tfds.as_numpy(ds))
  with pytest.raises(bad_records.VideoLevelRecordError) as caught:
    next(iterator)
  _assert_names_the_mistake(caught.value, name)
  assert "InvalidArgument" not in str(caught.value) and "assertion failed" not in str(caught.value)


def test_every_reader_error_comes_as_the_projects_exception(tmp_path):
  """A bad frame-level record and a release mismatch, iterated straight from `make_dataset`."""
  rgb, audio = np.zeros([3, 1024], np.uint8), np.zeros([3, 128], np.uint8)
  bad_label = tmp_path / "bad_label.tfrecord"
  records.write_tfrecord(str(bad_label), [records.encode_sequence_example(
      video_id=b"v0", labels=[7], features={"rgb": rgb, "audio": audio})])
  with pytest.raises(bad_records.BadRecordError, match=r"record 0: bad_label: labels \[7\] outside \[0, 4\)"):
    next(iter(_dataset(str(bad_label), num_classes=4)))
  with pytest.raises(bad_records.ReleaseMismatchError, match="--config.data.num_classes=3862"):
    next(iter(_dataset(str(bad_label), num_classes=4716)))
  good = _dataset(str(bad_label), num_classes=8)
  batch = next(good.as_numpy_iterator())  # the dataset is still a dataset: spec, options, batches
  assert batch["frames"].shape == (2, 300, 1152) and list(batch["valid"]) == [True, False]
  assert good.element_spec["frames"].shape.as_list() == [2, 300, 1152]
  assert good.options().deterministic


def test_the_command_line_prints_the_message_on_one_line(tmp_path):
  """Training reads the records shuffled: the message names whichever comes first."""
  name = "v2018_validate0000.tfrecord"
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  proc = subprocess.run(
      [sys.executable, "-m", "fewframes_jax.main", "--config=configs/nextvlad_k10.py:tiny",
       f"--workdir={tmp_path / 'run'}",
       f"--config.data.train_pattern={_path(name)}", f"--config.data.eval_pattern={_path(name)}",
       "--config.data.num_classes=3862"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2, proc.stderr[-3000:]
  last = proc.stderr.strip().splitlines()[-1]
  assert re.match(re.escape(f"error: {bad_records.VIDEO_LEVEL_MARKER}: file {_path(name)}, record ") + r"\d: ", last)
  assert "partition=2/frame/{train,validate,test}" in last and "Traceback" not in proc.stderr
