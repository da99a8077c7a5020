"""Tests of the bundled dataset cache (fewframes_jax.data.bundled)."""
import glob
import os
import threading

import pytest

from fewframes_jax.data import bundled
from fewframes_jax.data import synthetic
from fewframes_jax.data import yt8m

TINY = dict(num_train=10, num_eval=5, num_classes=6, seed=0)


@pytest.fixture
def count_writes(monkeypatch):
  """Counts the calls of synthetic.write_dataset (the real one still runs)."""
  calls = []
  real = synthetic.write_dataset

  def counted(*args, **kwargs):
    calls.append(kwargs)
    return real(*args, **kwargs)

  monkeypatch.setattr(synthetic, "write_dataset", counted)
  return calls


def test_generates_once_then_reuses(tmp_path, count_writes):
  train, evals, num_classes = bundled.ensure_bundled(str(tmp_path), **TINY)
  assert num_classes == 6 and len(count_writes) == 1
  folder = os.path.dirname(train)
  assert folder == bundled.dataset_dir(str(tmp_path), **TINY)
  assert os.path.basename(folder) == f"synthetic-v{synthetic.GENERATOR_VERSION}-c6-train10-eval5-seed0"
  assert len(yt8m.list_files(train)) == bundled.NUM_TRAIN_SHARDS
  assert len(yt8m.list_files(evals)) == bundled.NUM_EVAL_SHARDS
  assert sum(map(yt8m.count_records, yt8m.list_files(train))) == 10
  assert sum(map(yt8m.count_records, yt8m.list_files(evals))) == 5
  mtimes = {f: os.path.getmtime(f) for f in glob.glob(os.path.join(folder, "*"))}

  assert bundled.ensure_bundled(str(tmp_path), **TINY) == (train, evals, 6)
  assert len(count_writes) == 1  # reused, not rewritten
  assert {f: os.path.getmtime(f) for f in glob.glob(os.path.join(folder, "*"))} == mtimes
  assert not [d for d in os.listdir(tmp_path) if ".tmp-" in d]  # no temporary folder left
  # Other parameters get their own folder.
  other = bundled.ensure_bundled(str(tmp_path), **dict(TINY, seed=1))
  assert os.path.dirname(other[0]) != folder and len(count_writes) == 2


def test_cache_dir_from_environment(tmp_path, monkeypatch):
  monkeypatch.setenv(bundled.CACHE_ENV, str(tmp_path / "env-cache"))
  assert bundled.cache_root() == str(tmp_path / "env-cache")
  assert bundled.cache_root(str(tmp_path / "explicit")) == str(tmp_path / "explicit")
  monkeypatch.delenv(bundled.CACHE_ENV)
  assert bundled.cache_root() == os.path.join(os.path.expanduser("~"), ".cache", "fewframes_jax")


def test_damaged_folder_is_regenerated(tmp_path, count_writes):
  train, _, _ = bundled.ensure_bundled(str(tmp_path), **TINY)
  first = yt8m.list_files(train)[0]
  records = yt8m.count_records(first)
  with open(first, "r+b") as f:
    f.truncate(10)
  assert bundled.read_manifest(os.path.dirname(train)) is None
  bundled.ensure_bundled(str(tmp_path), **TINY)
  assert len(count_writes) == 2
  assert yt8m.count_records(first) == records


def test_half_written_folder_is_never_used(tmp_path, count_writes):
  folder = bundled.dataset_dir(str(tmp_path), **TINY)
  os.makedirs(folder)
  open(os.path.join(folder, "train-00000-of-00008.tfrecord"), "wb").close()  # no manifest
  bundled.ensure_bundled(str(tmp_path), **TINY)
  assert len(count_writes) == 1 and bundled.read_manifest(folder) is not None


def test_losing_the_rename_race_keeps_the_winner(tmp_path):
  folder = bundled.dataset_dir(str(tmp_path), **TINY)
  bundled._generate(folder, **TINY)  # pylint: disable=protected-access
  manifest = bundled.read_manifest(folder)
  # A second writer (e.g. another host on a shared disk, without the lock) finishes later.
  bundled._generate(folder, **TINY)  # pylint: disable=protected-access
  assert bundled.read_manifest(folder) == manifest
  assert sorted(os.listdir(tmp_path)) == [os.path.basename(folder)]


def test_concurrent_callers_generate_once(tmp_path, count_writes):
  results, errors = [], []

  def call():
    try:
      results.append(bundled.ensure_bundled(str(tmp_path), **TINY))
    except Exception as e:  # pylint: disable=broad-except
      errors.append(e)

  threads = [threading.Thread(target=call) for _ in range(3)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  assert not errors and len(set(results)) == 1 and len(count_writes) == 1


def test_invalid_arguments(tmp_path):
  with pytest.raises(ValueError, match="num_train"):
    bundled.ensure_bundled(str(tmp_path), num_train=0)


def test_describe_summarises_both_splits(tmp_path):
  out = bundled.describe(*bundled.ensure_bundled(str(tmp_path), **TINY))
  assert "num_classes: 6" in out
  assert "\ntrain: " in out and "\neval: " in out and "videos: 10;" in out and "videos: 5;" in out
  assert "labels per video" in out and "frames per video: min" in out


def test_summarize_matches_the_plans(tmp_path):
  train, _, _ = bundled.ensure_bundled(str(tmp_path), **TINY)
  s = bundled.summarize(train, 6)
  spec = synthetic.SyntheticSpec(num_classes=6)
  plans = [synthetic.plan_video(spec, seed=0, split="train", index=i) for i in range(10)]
  assert s["videos"] == 10 and s["files"] == bundled.NUM_TRAIN_SHARDS and sum(s["records"]) == 10
  assert s["length"]["max"] == max(p.length for p in plans)
  assert s["length"]["min"] == min(p.length for p in plans)
  assert sum(s["labels_per_video"].values()) == 10
  assert sum(k * v for k, v in s["labels_per_video"].items()) == sum(len(p.labels) for p in plans)


def test_the_long_spec_has_its_own_folder(tmp_path):
  short = bundled.dataset_dir(str(tmp_path), num_train=4, num_eval=2, num_classes=3, seed=0)
  long_ = bundled.dataset_dir(str(tmp_path), num_train=4, num_eval=2, num_classes=3, seed=0, spec="long")
  assert short != long_ and "-long-" in os.path.basename(long_)
  train, _, _ = bundled.ensure_bundled(str(tmp_path), num_train=4, num_eval=2, num_classes=3, spec="long")
  assert os.path.dirname(train) == long_ and bundled.read_manifest(long_)["params"]["spec"] == "long"
  with pytest.raises(ValueError, match="expected one of"):
    bundled.ensure_bundled(str(tmp_path), num_train=4, num_eval=2, num_classes=3, spec="medium")
