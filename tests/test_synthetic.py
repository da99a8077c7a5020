"""Tests of the synthetic YT-8M writer (fewframes_jax.data.synthetic)."""
import dataclasses
import os
import subprocess
import sys

import numpy as np
import pytest

from fewframes_jax.data import quantization
from fewframes_jax.data import synthetic
from fewframes_jax.data import yt8m

SPEC = synthetic.SyntheticSpec(num_classes=8)


def _plans(spec, n, split="train", seed=0):
  return [synthetic.plan_video(spec, seed=seed, split=split, index=i) for i in range(n)]


@pytest.fixture(scope="session")
def written(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("synthetic"))
  files = synthetic.write_dataset(out, num_train=10, num_eval=5, num_classes=8, seed=3, num_shards=3,
                                  num_eval_shards=2)
  return out, files


def test_file_names_and_sharding(written):
  out, files = written
  assert [os.path.basename(f) for f in files["train"]] == [
      f"train-0000{i}-of-00003.tfrecord" for i in range(3)]
  assert [os.path.basename(f) for f in files["eval"]] == [
      "eval-00000-of-00002.tfrecord", "eval-00001-of-00002.tfrecord"]
  assert [yt8m.count_records(f) for f in files["train"]] == [3, 4, 3]
  assert sum(yt8m.count_records(f) for f in files["eval"]) == 5
  # Never more shards than videos.
  assert len(synthetic.write_split(os.path.join(out, "few"), "eval", 2, spec=SPEC, seed=0,
                                   num_shards=8)) == 2


def test_reader_reads_exactly_what_was_generated(written):
  out, _ = written
  prototypes = synthetic.make_prototypes(SPEC, 3)
  ds = yt8m.make_dataset(os.path.join(out, "train-*.tfrecord"), 4, num_classes=8, max_frames=400,
                         process_index=0, process_count=1)
  rows = 0
  for batch in yt8m.as_numpy_batches(ds):
    for row in np.flatnonzero(batch["valid"]):
      index = rows
      rows += 1
      video = synthetic.make_video(SPEC, prototypes, seed=3, split="train", index=index)
      assert batch["video_id"][row] == synthetic.video_id("train", index)
      n = video.plan.length
      assert batch["num_frames"][row] == n
      np.testing.assert_array_equal(batch["frames"][row, :n],
                                    np.concatenate([video.rgb, video.audio], axis=1))
      assert np.flatnonzero(batch["labels"][row]).tolist() == video.labels.tolist()
  assert rows == 10


def test_deterministic_for_a_seed(tmp_path):
  a = synthetic.write_split(str(tmp_path / "a"), "eval", 4, spec=SPEC, seed=1, num_shards=2)
  b = synthetic.write_split(str(tmp_path / "b"), "eval", 4, spec=SPEC, seed=1, num_shards=2)
  c = synthetic.write_split(str(tmp_path / "c"), "eval", 4, spec=SPEC, seed=2, num_shards=2)
  read = lambda f: open(f, "rb").read()  # pylint: disable=unnecessary-lambda-assignment
  assert [read(f) for f in a] == [read(f) for f in b]
  assert [read(f) for f in a] != [read(f) for f in c]
  # A video does not depend on the sharding: one shard holds the same records back to back.
  d = synthetic.write_split(str(tmp_path / "d"), "eval", 4, spec=SPEC, seed=1, num_shards=1)
  assert read(d[0]) == read(a[0]) + read(a[1])
  # Train and eval differ.
  v_train = synthetic.make_video(SPEC, synthetic.make_prototypes(SPEC, 1), seed=1, split="train", index=0)
  v_eval = synthetic.make_video(SPEC, synthetic.make_prototypes(SPEC, 1), seed=1, split="eval", index=0)
  assert v_train.rgb.shape != v_eval.rgb.shape or not np.array_equal(v_train.rgb, v_eval.rgb)


def test_plan_matches_the_video():
  prototypes = synthetic.make_prototypes(SPEC, 0)
  for i in range(5):
    video = synthetic.make_video(SPEC, prototypes, seed=0, split="eval", index=i)
    plan = synthetic.plan_video(SPEC, seed=0, split="eval", index=i)
    assert video.rgb.shape == (plan.length, 1024) and video.audio.shape == (plan.length, 128)
    assert video.rgb.dtype == np.uint8
    np.testing.assert_array_equal(video.plan.labels, plan.labels)
    np.testing.assert_array_equal(video.plan.evidence, plan.evidence)


def test_label_and_length_distribution():
  spec = synthetic.SyntheticSpec(num_classes=64)
  plans = _plans(spec, 3000)
  counts = np.array([len(p.labels) for p in plans])
  assert counts.min() == 1 and counts.max() == 4
  np.testing.assert_allclose(np.bincount(counts, minlength=5)[1:] / len(plans), spec.label_count_probs,
                             atol=0.03)
  assert all(len(set(p.labels.tolist())) == len(p.labels) for p in plans)  # distinct labels
  per_class = np.bincount(np.concatenate([p.labels for p in plans]), minlength=64)
  assert per_class.argmax() == 0 and per_class.min() > 0
  assert per_class[:8].mean() > 4 * per_class[-8:].mean()  # Zipf-like skew
  assert np.corrcoef(np.log(np.arange(1, 65)), np.log(per_class))[0, 1] < -0.9
  lengths = np.array([p.length for p in plans])
  assert lengths.min() >= 3 and lengths.max() <= 360
  assert 10 <= (lengths > 300).sum() <= 60  # some videos are truncated by the reader
  assert 20 <= lengths.mean() <= 40 and (lengths < 10).mean() > 0.15
  # Size budget of the bundled default (5000 videos): frame bytes + per-frame framing.
  assert 5000 * lengths.mean() * (1024 + 128 + 16) < 200e6


def test_evidence_is_temporally_localised():
  spec = synthetic.SyntheticSpec(num_classes=64)
  burst = synthetic.is_burst_class(spec)
  misses = {(k, b): [] for k in (6, 10, 30) for b in (True, False)}
  for plan in _plans(spec, 1500, split="eval"):
    n = min(plan.length, 300)
    for label, evidence in zip(plan.labels, plan.evidence):
      assert evidence.any()
      runs = np.flatnonzero(np.diff(np.concatenate([[0], evidence.astype(int), [0]])))
      if burst[label]:
        assert len(runs) == 2 and min(2, plan.length) <= evidence.sum() <= 6  # one short burst
      else:
        assert evidence.sum() >= min(plan.length, 0.15 * plan.length)
      if not evidence[:n].any():
        continue  # after frame 300: nobody sees it
      for k in (6, 10, 30):
        seen = np.floor(np.arange(k) * n / k).astype(int) if n >= k else np.arange(n)  # uniform
        misses[k, bool(burst[label])].append(not evidence[seen].any())
  rate = {key: np.mean(v) for key, v in misses.items()}
  # k uniformly sampled frames miss bursts (more often for smaller k) but almost never long evidence.
  assert rate[6, True] > rate[10, True] > rate[30, True] and rate[6, True] > 0.12 and rate[10, True] > 0.06
  assert rate[6, False] < 0.03


def test_one_evidence_frame_shows_its_class():
  spec = synthetic.SyntheticSpec(num_classes=16)
  prototypes = synthetic.make_prototypes(spec, 0)
  on, off = [], []
  for i in range(40):
    video = synthetic.make_video(spec, prototypes, seed=0, split="train", index=i)
    for stream, proto in ((video.rgb, prototypes[0]), (video.audio, prototypes[1])):
      x = stream * np.float32(quantization.SCALE) + np.float32(quantization.BIAS)
      projection = x @ proto.T  # [L, C]
      centred = projection - projection.mean(axis=1, keepdims=True)  # removes the video's offset
      for label, evidence in zip(video.labels, video.plan.evidence):
        on += centred[evidence, label].tolist()
        off += centred[~video.plan.evidence.any(0), label].tolist()
  on, off = np.array(on), np.array(off)
  assert np.median(on) > 0.6 * spec.signal and np.abs(np.median(off)) < 0.1 * spec.signal
  # One frame is enough: a threshold at 0.4 x signal errs on well under 1% of frames.
  threshold = 0.4 * spec.signal
  assert (on < threshold).mean() < 0.005 and (np.abs(off) > threshold).mean() < 0.005


def test_video_id_key(tmp_path):
  files = synthetic.write_split(str(tmp_path), "train", 3, spec=SPEC, seed=0, num_shards=1,
                                id_key="video_id")
  ds = yt8m.make_dataset(files[0], 3, num_classes=8, id_key="video_id", process_index=0, process_count=1,
                         check_release=False)  # the 2017 key with 8 classes: data of your own
  assert [bytes(i) for i in next(yt8m.as_numpy_batches(ds))["video_id"]] == [
      b"train000000", b"train000001", b"train000002"]
  with pytest.raises(ValueError, match="id_key"):
    synthetic.write_split(str(tmp_path), "train", 1, spec=SPEC, seed=0, num_shards=1, id_key="vid")


def test_spec_validation():
  with pytest.raises(ValueError, match="label_count_probs"):
    synthetic.SyntheticSpec(label_count_probs=(0.5, 0.4))
  with pytest.raises(ValueError, match="short_frames"):
    synthetic.SyntheticSpec(short_frames=(0, 4))
  # Fewer classes than labels wanted: labels are capped at num_classes, still distinct.
  plans = _plans(synthetic.SyntheticSpec(num_classes=2), 50)
  assert max(len(p.labels) for p in plans) == 2


def _cli(module, *args):
  """Runs `python -m fewframes_jax.data.<module> args...` in a fresh process (TF_CPP_MIN_LOG_LEVEL unset)."""
  env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
  return subprocess.run([sys.executable, "-m", f"fewframes_jax.data.{module}", *args], capture_output=True,
                        text=True, timeout=120, check=False, env=env)


def test_cli_writes_the_shards(tmp_path):
  run = _cli("synthetic", f"--out_dir={tmp_path}", "--num_train=3", "--num_eval=2", "--num_classes=4",
             "--num_shards=2", "--num_eval_shards=1", "--seed=5")
  assert run.returncode == 0, run.stderr
  assert sorted(os.listdir(tmp_path)) == ["eval-00000-of-00001.tfrecord", "train-00000-of-00002.tfrecord",
                                          "train-00001-of-00002.tfrecord"]
  assert "train: 2 files" in run.stdout
  assert "absl::InitializeLog" not in run.stderr and "cpu_feature_guard" not in run.stderr  # TF's C++ start-up


# The data command lines (synthetic's `check_flags` serves both): what --help says, and user mistakes.
CLIS = {
    "synthetic": ("Writes a synthetic YouTube-8M-format dataset", "--num_eval_shards",
                  ("--num_train=1", "--num_eval=1", "--num_classes=2"), "out_dir",
                  ("--num_train=-1", "error: --num_train must be >= 0, got -1")),
    "bundled": ("Generates (once) and summarises the bundled dataset", "--cache_dir", (), "cache_dir",
                ("--num_classes=0", "error: --num_classes must be >= 1, got 0")),
}


@pytest.mark.parametrize("module", CLIS)
def test_cli_help_and_user_mistakes(tmp_path, module):
  purpose, flag, required, folder_flag, (bad_count, count_error) = CLIS[module]
  helped = _cli(module, "--help")
  assert purpose in helped.stdout and flag in helped.stdout, helped.stdout
  assert "Traceback" not in helped.stdout + helped.stderr
  a_file = tmp_path / "a_file"
  a_file.write_text("")
  for args, message in (((f"--{folder_flag}={tmp_path}", bad_count), count_error),
                        ((f"--{folder_flag}={a_file}",), f"error: --{folder_flag}={a_file} is a file")):
    run = _cli(module, *required, *args)
    assert run.returncode != 0 and "Traceback" not in run.stderr, run.stderr
    assert run.stderr.strip().splitlines() == [run.stderr.strip()] and message in run.stderr, run.stderr


def test_the_long_spec_has_youtube8m_lengths_and_keeps_the_short_bytes():
  """`long`: 120-500 s at 1 frame/s, stored up to 300 frames (mean about 230); adding it left the
  default spec's videos unchanged (the same draws, no cap)."""
  long_spec = synthetic.named_spec("long", 8)
  lengths = np.array([p.length for p in _plans(long_spec, 400)])
  assert lengths.min() >= 120 and lengths.max() == 300
  assert 0.25 < np.mean(lengths == 300) < 0.45 and 200 < lengths.mean() < 260
  uncapped = [p.length for p in _plans(dataclasses.replace(long_spec, max_stored_frames=0), 400)]
  np.testing.assert_array_equal(lengths, np.minimum(uncapped, 300))  # the cap changes nothing else
  assert synthetic.named_spec("short", 8) == SPEC
  with pytest.raises(ValueError, match="expected one of"):
    synthetic.named_spec("medium", 8)
  # Bursts stay 2-6 frames in long videos, so a k-frame uniform student misses most of them.
  burst = synthetic.is_burst_class(long_spec)
  plan = next(p for p in _plans(long_spec, 50) if burst[p.labels].any())
  row = plan.evidence[int(np.flatnonzero(burst[plan.labels])[0])]
  assert 2 <= row.sum() <= 6
