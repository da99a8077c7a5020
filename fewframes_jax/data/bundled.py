"""Generates (once) and summarises the bundled dataset: synthetic YT-8M TFRecords in a cache folder.

  python -m fewframes_jax.data.bundled [--cache_dir=...] [--num_train=4000 --num_eval=1000 ...]

`ensure_bundled(...)` returns the train/eval file patterns, writing the data on first use into
`<cache>/synthetic-v<version>-c<classes>-train<n>-eval<n>-seed<s>/` (cache: `cache_dir`, else
`$FEWFRAMES_CACHE`, else `~/.cache/fewframes_jax`). The folder name holds every generator parameter
and `synthetic.GENERATOR_VERSION` (the `realistic` split's also `realistic.VERSION`:
`synthetic-v<version>-realistic-r<version>-...`), so a changed generator never reuses stale data.

Concurrent processes (several tests, several hosts on a shared disk) are safe: the data is written
into a temporary folder beside the final one and renamed into place in one step, and only a folder
with a complete `manifest.json` whose file sizes match is used. A lock file makes concurrent callers
on one machine wait for the first instead of writing the same data twice; where locking is not
available the rename alone keeps readers from ever seeing half-written data.

The command line generates the data if needed and prints a summary (files, record counts, labels per
video, class frequencies, lengths).
"""
import contextlib
import json
import os
import shutil
import tempfile
import time
from typing import Dict, Optional, Sequence, Tuple

from absl import logging
import numpy as np

from fewframes_jax.data import realistic
from fewframes_jax.data import records
from fewframes_jax.data import synthetic

CACHE_ENV = "FEWFRAMES_CACHE"
MANIFEST = "manifest.json"
NUM_TRAIN_SHARDS = 8
NUM_EVAL_SHARDS = 4


def cache_root(cache_dir: str = "") -> str:
  """`cache_dir`, else $FEWFRAMES_CACHE, else ~/.cache/fewframes_jax."""
  return os.path.abspath(os.path.expanduser(
      cache_dir or os.environ.get(CACHE_ENV) or os.path.join("~", ".cache", "fewframes_jax")))


def dataset_dir(cache_dir: str = "", *, num_train: int, num_eval: int, num_classes: int,
                seed: int, spec: str = "short") -> str:
  """The folder that holds (or will hold) the bundled data for these parameters."""
  kind = "" if spec == "short" else f"-{spec}"
  if spec == "realistic":
    kind += f"-r{realistic.VERSION}"
  name = (f"synthetic-v{synthetic.GENERATOR_VERSION}{kind}-c{num_classes}-train{num_train}-eval{num_eval}"
          f"-seed{seed}")
  return os.path.join(cache_root(cache_dir), name)


def patterns(folder: str) -> Tuple[str, str]:
  """(train pattern, eval pattern) of a bundled folder."""
  return (os.path.join(folder, "train-*-of-*.tfrecord"), os.path.join(folder, "eval-*-of-*.tfrecord"))


def read_manifest(folder: str) -> Optional[dict]:
  """The folder's manifest if the folder is complete (every listed file there, same size), else None."""
  try:
    with open(os.path.join(folder, MANIFEST)) as f:
      manifest = json.load(f)
    for name, size in manifest["file_sizes"].items():
      if os.path.getsize(os.path.join(folder, name)) != size:
        return None
  except (OSError, ValueError, KeyError, TypeError):
    return None
  return manifest


@contextlib.contextmanager
def _file_lock(path: str):
  """An exclusive advisory lock (a no-op where fcntl is unavailable: the rename still protects)."""
  try:
    import fcntl  # pylint: disable=g-import-not-at-top
  except ImportError:
    yield
    return
  with open(path, "a") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def _generate(folder: str, *, num_train: int, num_eval: int, num_classes: int, seed: int,
              spec: str = "short") -> None:
  """Writes the data into a temporary sibling of `folder`, then renames it into place."""
  root = os.path.dirname(folder)
  tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(folder)}.tmp-", dir=root)
  try:
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache may be shared
    start = time.perf_counter()
    files = synthetic.write_dataset(tmp, num_train=num_train, num_eval=num_eval,
                                    num_classes=num_classes, seed=seed, num_shards=NUM_TRAIN_SHARDS,
                                    num_eval_shards=NUM_EVAL_SHARDS,
                                    spec=synthetic.named_spec(spec, num_classes))
    manifest = {
        "generator_version": synthetic.GENERATOR_VERSION,
        "params": dict(num_train=num_train, num_eval=num_eval, num_classes=num_classes, seed=seed, spec=spec),
        "files": {split: [os.path.basename(f) for f in fs] for split, fs in files.items()},
        "file_sizes": {os.path.basename(f): os.path.getsize(f) for fs in files.values() for f in fs},
        "seconds": round(time.perf_counter() - start, 2),
    }
    with open(os.path.join(tmp, MANIFEST), "w") as f:
      json.dump(manifest, f, indent=1)
    if os.path.isdir(folder) and read_manifest(folder) is None:
      shutil.rmtree(folder, ignore_errors=True)  # an incomplete or damaged copy
    try:
      os.rename(tmp, folder)
    except OSError:
      if read_manifest(folder) is None:  # not another process's complete copy: a real failure
        raise
    logging.info("Wrote the bundled dataset (%.1f MB) to %s in %.1f s",
                 sum(manifest["file_sizes"].values()) / 1e6, folder, manifest["seconds"])
  finally:
    shutil.rmtree(tmp, ignore_errors=True)


def ensure_bundled(cache_dir: str = "", num_train: int = 4000, num_eval: int = 1000,
                   num_classes: int = 64, seed: int = 0, spec: str = "short") -> Tuple[str, str, int]:
  """The bundled dataset, generated on first use. `spec`: `synthetic.SPEC_NAMES` ('short', the first
  bundled data; 'long', YouTube-8M-length videos; 'realistic', long videos with the structure of real
  uploads, `realistic.py`).

  Returns:
    (train_pattern, eval_pattern, num_classes): TFRecord globs for `yt8m.make_dataset`.
  """
  if min(num_train, num_eval) < 1 or num_classes < 1:
    raise ValueError(f"num_train, num_eval, num_classes must be >= 1, got {num_train}, {num_eval}, "
                     f"{num_classes}")
  synthetic.named_spec(spec, num_classes)  # an unknown name fails here, before anything is written
  folder = dataset_dir(cache_dir, num_train=num_train, num_eval=num_eval, num_classes=num_classes,
                       seed=seed, spec=spec)
  if read_manifest(folder) is None:
    os.makedirs(os.path.dirname(folder), exist_ok=True)
    with _file_lock(folder + ".lock"):
      if read_manifest(folder) is None:  # nobody wrote it while we waited for the lock
        logging.info("Generating the bundled dataset into %s (once)", folder)
        _generate(folder, num_train=num_train, num_eval=num_eval, num_classes=num_classes, seed=seed,
                  spec=spec)
  train, evals = patterns(folder)
  return train, evals, num_classes


def summarize(file_pattern: str, num_classes: int) -> Dict[str, object]:
  """Statistics of one split, read back from its files (true lengths, before any truncation)."""
  tf = records.tensorflow()
  from fewframes_jax.data import yt8m  # pylint: disable=g-import-not-at-top

  files = yt8m.list_files(file_pattern)

  def parse(serialized):
    context, _, lengths = tf.io.parse_sequence_example(
        serialized, context_features={"labels": tf.io.RaggedFeature(tf.int64)},
        sequence_features={"rgb": tf.io.FixedLenSequenceFeature([], tf.string, allow_missing=True)})
    return context["labels"], lengths["rgb"]

  label_counts = np.zeros(num_classes, np.int64)
  labels_per_video, lengths = [], []
  for labels, length in tf.data.TFRecordDataset(files).batch(256).map(parse):
    flat = labels.flat_values.numpy()
    if flat.size and (flat.min() < 0 or flat.max() >= num_classes):
      raise ValueError(f"{file_pattern}: labels outside [0, {num_classes})")
    label_counts += np.bincount(flat, minlength=num_classes)
    labels_per_video.append(labels.row_lengths().numpy())
    lengths.append(length.numpy())
  labels_per_video = np.concatenate(labels_per_video)
  lengths = np.concatenate(lengths)
  order = np.argsort(-label_counts, kind="stable")
  return {
      "files": len(files),
      "records": [yt8m.count_records(f) for f in files],
      "megabytes": sum(os.path.getsize(f) for f in files) / 1e6,
      "videos": int(lengths.size),
      "labels_per_video": {int(k): int(v) for k, v in zip(*np.unique(labels_per_video, return_counts=True))},
      "top_classes": [(int(c), int(label_counts[c])) for c in order[:5]],
      "rarest_classes": [(int(c), int(label_counts[c])) for c in order[-3:]],
      "classes_without_positives": int((label_counts == 0).sum()),
      "length": {"min": int(lengths.min()), "median": float(np.median(lengths)),
                 "mean": float(lengths.mean()), "max": int(lengths.max()),
                 "over_300": int((lengths > 300).sum())},
  }


def describe(train_pattern: str, eval_pattern: str, num_classes: int) -> str:
  """A readable summary of both splits (files, records, labels per video, classes, lengths)."""
  lines = [f"num_classes: {num_classes}"]
  for split, pattern in (("train", train_pattern), ("eval", eval_pattern)):
    s = summarize(pattern, num_classes)
    n, length = s["videos"], s["length"]
    lines += [
        f"\n{split}: {pattern}",
        f"  files: {s['files']}, records per file: {s['records']}, {s['megabytes']:.1f} MB",
        f"  videos: {n}; labels per video: "
        + ", ".join(f"{k}: {100 * v / n:.0f}%" for k, v in s["labels_per_video"].items()),
        f"  most frequent classes (class, videos): {s['top_classes']}; rarest: {s['rarest_classes']}; "
        f"classes without positives: {s['classes_without_positives']}",
        f"  frames per video: min {length['min']}, median {length['median']:.0f}, mean "
        f"{length['mean']:.1f}, max {length['max']}; {length['over_300']} videos over 300 frames "
        "(truncated by the reader)"]
  return "\n".join(lines)


def _define_flags() -> None:
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string("cache_dir", "", f"Cache folder (default: ${CACHE_ENV} or ~/.cache/fewframes_jax).")
  flags.DEFINE_integer("num_train", 4000, "Training videos.")
  flags.DEFINE_integer("num_eval", 1000, "Eval videos.")
  flags.DEFINE_integer("num_classes", 64, "Classes of the label vocabulary.")
  flags.DEFINE_integer("seed", 0, "Seed of the generator.")
  flags.DEFINE_enum("spec", "short", synthetic.SPEC_NAMES, "Which bundled data: short videos (the "
                    "default), YouTube-8M-length ones (long), or long ones with intros, fades, title cards, "
                    "cut-aways, sustained labels and events (realistic).")


def main(argv: Sequence[str]) -> None:
  from absl import app, flags  # pylint: disable=g-import-not-at-top
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  synthetic.check_flags("cache_dir", {"num_train": 1, "num_eval": 1, "num_classes": 1})
  start = time.perf_counter()
  train, evals, num_classes = ensure_bundled(f.cache_dir, num_train=f.num_train, num_eval=f.num_eval,
                                             num_classes=f.num_classes, seed=f.seed, spec=f.spec)
  print(f"bundled dataset ready in {time.perf_counter() - start:.1f} s: {os.path.dirname(train)}")
  print(describe(train, evals, num_classes))


if __name__ == "__main__":
  from fewframes_jax import cli  # pylint: disable=g-import-not-at-top

  cli.quiet_start()  # before TensorFlow is imported (it is imported when the data is written)
  _define_flags()
  cli.run(main)
