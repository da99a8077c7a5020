"""The TFDS builder `yt8m_frame_level` (fewframes_jax/data/tfds_yt8m.py): TFDS's own builder tests on
tiny data (both releases from a manual dir of YT-8M-schema records written here; every bundled spec at
tiny sizes), `tfds.load` of a bundled split against the project's reader (ids, labels, bytes), and the
project's pipeline reading the prepared dataset (`config.data.tfds_name`) with the same batches.
"""
import os
import shutil
import tempfile

import numpy as np
import pytest

from fewframes_jax import run_config
from fewframes_jax.configs import base
from fewframes_jax.data import bad_records
from fewframes_jax.data import bundled
from fewframes_jax.data import records
from fewframes_jax.data import synthetic
from fewframes_jax.data import yt8m

tfds = pytest.importorskip("tensorflow_datasets")
from fewframes_jax.data import tfds_yt8m  # noqa: E402  pylint: disable=g-import-not-at-top,wrong-import-position

MANUAL_SPLITS = {"train0000.tfrecord": 3, "validate0000.tfrecord": 2, "test0000.tfrecord": 1}
TINY = dict(num_train=6, num_eval=3, num_classes=8)  # a bundled spec at test sizes


def _write_release(folder: str, release: str) -> None:
  """A manual dir's files of one release: YT-8M-schema records, lengths 0..4 (a zero-frame video
  included), rgb and audio of different lengths in one record, no labels in the test split."""
  id_key = "video_id" if release == "2017" else "id"
  num_classes = bad_records.RELEASE_NUM_CLASSES[id_key]
  rng = np.random.default_rng(int(release))
  os.makedirs(folder)
  index = 0
  for name, count in MANUAL_SPLITS.items():
    encoded = []
    for _ in range(count):
      length = index % 5
      labels = [] if name.startswith("test") else sorted({index, num_classes - 1 - index})
      encoded.append(records.encode_sequence_example(
          video_id=f"{release}v{index}".encode(), labels=labels, id_key=id_key, features={
              "rgb": rng.integers(0, 256, (length, 1024), dtype=np.uint8),
              "audio": rng.integers(0, 256, (max(0, length - 1), 128), dtype=np.uint8)}))
      index += 1
    records.write_tfrecord(os.path.join(folder, name), encoded)


class Yt8mReleasesTest(tfds.testing.DatasetBuilderTestCase):
  """The 2017 and 2018 configs from a manual dir (`<manual_dir>/<config>/`)."""
  DATASET_CLASS = tfds_yt8m.Yt8mFrameLevel
  BUILDER_CONFIG_NAMES_TO_TEST = ["2017", "2018"]
  SPLITS = {"train": 3, "validation": 2, "test": 1}
  SKIP_CHECKSUMS = True

  @classmethod
  def setUpClass(cls):
    cls.EXAMPLE_DIR = tempfile.mkdtemp(prefix="yt8m_manual_")
    for release in ("2017", "2018"):
      _write_release(os.path.join(cls.EXAMPLE_DIR, release), release)
    super().setUpClass()

  @classmethod
  def tearDownClass(cls):
    super().tearDownClass()
    shutil.rmtree(cls.EXAMPLE_DIR, ignore_errors=True)


class Yt8mBundledTest(tfds.testing.DatasetBuilderTestCase):
  """Every bundled spec (`synthetic.SPEC_NAMES`), at tiny sizes (the registered configs use the project's)."""
  DATASET_CLASS = tfds_yt8m.Yt8mFrameLevel
  BUILDER_CONFIG_NAMES_TO_TEST = [tfds_yt8m.bundled_config(spec, name=f"bundled_{spec}_tiny", **TINY)
                                  for spec in synthetic.SPEC_NAMES]
  SPLITS = {"train": 6, "validation": 3}
  SKIP_CHECKSUMS = True
  EXAMPLE_DIR = os.path.dirname(os.path.abspath(__file__))  # no download and no manual dir are read


def test_configs_info_and_registration():
  configs = {c.name: c for c in tfds_yt8m.Yt8mFrameLevel.BUILDER_CONFIGS}
  assert sorted(configs) == sorted(["2017", "2018"] + [f"bundled_{s}" for s in synthetic.SPEC_NAMES])
  assert (configs["2017"].id_key, configs["2017"].num_classes) == ("video_id", 4716)
  assert (configs["2018"].id_key, configs["2018"].num_classes) == ("id", 3862)
  assert tfds_yt8m.Yt8mFrameLevel.name == yt8m.TFDS_BUILDER_NAME
  assert "yt8m_frame_level" in tfds.list_builders(with_community_datasets=False)
  for name, key, classes in (("2017", "video_id", 4716), ("2018", "id", 3862), ("bundled_short", "id", 64)):
    info = tfds.builder(f"yt8m_frame_level/{name}").info
    assert info.features["labels"].num_classes == classes and key in info.features
    assert (info.metadata["id_key"], info.metadata["num_classes"]) == (key, classes)
    assert info.features["rgb"].shape == (None, 1024) and info.features["audio"].shape == (None, 128)


def test_an_empty_manual_dir_says_what_to_download(tmp_path):
  for release, partitions in (("2018", "2/frame/{train,validate,test}"), ("2017", "1/frame_level/{train,")):
    with pytest.raises(tfds_yt8m.TfdsSourceError) as caught:
      tfds_yt8m.manual_files(tmp_path / release)
    assert "\n" not in str(caught.value) and partitions in str(caught.value)
    assert f"in {tmp_path / release}" in str(caught.value)


def test_another_releases_records_stop_the_build_with_the_config_to_use(tmp_path):
  """2017 records (keyed video_id) in the 2018 config's manual dir."""
  _write_release(str(tmp_path / "manual" / "2018"), "2017")
  builder = tfds_yt8m.Yt8mFrameLevel(config="2018", data_dir=str(tmp_path / "data"))
  with pytest.raises(bad_records.ReleaseMismatchError, match="build the config yt8m_frame_level/2017"):
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(tmp_path / "manual")))


def test_video_level_files_stop_the_build_with_what_to_download(tmp_path):
  """A real video-level file (tests/data/yt8m_video_level/) where the 2018 config's files go."""
  manual = tmp_path / "manual" / "2018"
  manual.mkdir(parents=True)
  shutil.copy(os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "yt8m_video_level",
                           "v2018_validate0000.tfrecord"), manual / "validate0000.tfrecord")
  builder = tfds_yt8m.Yt8mFrameLevel(config="2018", data_dir=str(tmp_path / "data"))
  with pytest.raises(bad_records.VideoLevelRecordError, match="partition=2/frame/"):
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(tmp_path / "manual")))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
  """(data_dir, config name, bundled train pattern, eval pattern): the tiny short spec, prepared."""
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  config = tfds_yt8m.bundled_config("short", name="bundled_short_tiny", **TINY)
  tfds_yt8m.Yt8mFrameLevel(config=config, data_dir=data_dir).download_and_prepare()
  train, evals, _ = bundled.ensure_bundled(**TINY, spec="short")
  return data_dir, f"{yt8m.TFDS_BUILDER_NAME}/{config.name}", train, evals


def _videos_of_reader(pattern, num_classes, max_frames=400):
  """id -> (labels, rgb, audio) as the project's reader gives them, every frame (max_frames > lengths)."""
  out = {}
  ds = yt8m.make_dataset(pattern, 4, num_classes=num_classes, max_frames=max_frames, process_index=0,
                         process_count=1)
  for batch in yt8m.as_numpy_batches(ds):
    for row in np.flatnonzero(batch["valid"]):
      n = int(batch["num_frames"][row])
      assert n < max_frames
      frames = batch["frames"][row]
      assert not frames[n:].any()
      out[bytes(batch["video_id"][row])] = (np.flatnonzero(batch["labels"][row]), frames[:n, :1024],
                                            frames[:n, 1024:])
  return out


def test_tfds_load_gives_the_videos_of_the_projects_reader(prepared):
  data_dir, name, train, evals = prepared
  for split, pattern in (("train", train), ("validation", evals)):
    expected = _videos_of_reader(pattern, TINY["num_classes"])
    loaded = {bytes(ex["id"]): ex for ex in tfds.as_numpy(tfds.load(name, split=split, data_dir=data_dir))}
    assert sorted(loaded) == sorted(expected) and len(loaded) == TINY[f"num_{split.replace('validation', 'eval')}"]
    for video_id, (labels, rgb, audio) in expected.items():
      ex = loaded[video_id]
      np.testing.assert_array_equal(ex["labels"], labels)
      assert ex["rgb"].dtype == np.uint8 and ex["audio"].dtype == np.uint8
      np.testing.assert_array_equal(ex["rgb"], rgb)
      np.testing.assert_array_equal(ex["audio"], audio)


def test_even_splits_cover_the_split_once(prepared):
  data_dir, name, _, _ = prepared
  halves = [{bytes(ex["id"]) for ex in tfds.as_numpy(tfds.load(name, split=s, data_dir=data_dir))}
            for s in tfds.even_splits("train", 2)]
  assert halves[0] and halves[1] and not halves[0] & halves[1] and len(halves[0] | halves[1]) == TINY["num_train"]


def test_the_pipeline_reads_the_prepared_dataset_from_the_config(prepared):
  """`data.tfds_name`: the splits become the patterns (the class count and train size too), and the
  batches are the raw files' (eval keeps its last partial batch)."""
  data_dir, name, _, evals = prepared
  c = base.get_config()
  c.data.tfds_name, c.data.tfds_data_dir = name, data_dir
  d = run_config.resolve(c).data
  assert (d.num_classes, d.num_train_examples) == (TINY["num_classes"], TINY["num_train"])
  assert yt8m.record_format(yt8m.list_files(d.eval_pattern)) == "tfds"
  assert run_config.resolve(run_config.resolve(c)).data.eval_pattern == d.eval_pattern  # idempotent
  options = dict(yt8m.config_options(d), max_frames=400)
  batches = list(yt8m.as_numpy_batches(yt8m.make_dataset(d.eval_pattern, 2, process_index=0, process_count=1,
                                                         **options)))
  assert [list(b["valid"]) for b in batches] == [[True, True], [True, False]]
  by_id = {bytes(i): (f, n) for b in batches for i, f, n, v in zip(b["video_id"], b["frames"], b["num_frames"],
                                                                    b["valid"]) if v}
  raw = _videos_of_reader(evals, TINY["num_classes"])
  for video_id, (labels, rgb, audio) in raw.items():
    frames, n = by_id[video_id]
    np.testing.assert_array_equal(frames[:n], np.concatenate([rgb, audio], axis=1))


def test_config_mistakes_are_one_line_errors(prepared, tmp_path):
  data_dir, name, train, _ = prepared
  cases = [
      (dict(tfds_name="mnist"), "expected 'yt8m_frame_level/<config>'"),
      (dict(tfds_name="yt8m_frame_level/2018", tfds_data_dir=str(tmp_path)), "is not prepared in"),
      (dict(tfds_name=name, tfds_data_dir=data_dir, tfds_eval_split="test"), "has no split 'test'"),
      (dict(tfds_name=name, tfds_data_dir=data_dir, train_pattern=train), "two sources of data"),
  ]
  for fields, message in cases:
    c = base.get_config()
    c.data.update(fields)
    with pytest.raises(tfds_yt8m.TfdsSourceError, match=message) as caught:
      run_config.resolve(c)
    assert "\n" not in str(caught.value)
