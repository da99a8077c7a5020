"""What a restart costs deep in an epoch: the saved stream position against re-reading the epoch.

A resumed run needs the batch that follows its checkpoint. Before stream positions were saved
(`data/stream.py`), a resume rebuilt the stream from the start of the epoch and skipped the batches it
had consumed, parsing every one of them again. Now it starts at the saved `Position`: earlier rounds
are skipped without opening their files, and the records of the current round before the position are
read but not parsed. `benchmark_restart` times both ways to the same batch, in one run, and checks that
they give the same batch.
"""
import os
import time
from typing import Any, Dict, Sequence

import numpy as np


def _first_batch_seconds(make, *, skip_batches: int = 0):
  """(seconds to build the pipeline and get its first batch after `skip_batches`, that batch)."""
  from fewframes_jax.data import yt8m  # pylint: disable=g-import-not-at-top  (TensorFlow)
  start = time.perf_counter()
  ds = make()
  if skip_batches:
    ds = ds.skip(skip_batches)
  batch = next(yt8m.as_numpy_batches(ds))
  return time.perf_counter() - start, batch


def benchmark_restart(file_pattern: str, *, num_classes: int, batch_size: int = 32, fraction: float = 0.9,
                      max_frames: int = 300, feature_names: Sequence[str] = ("rgb", "audio"),
                      feature_sizes: Sequence[int] = (1024, 128), shuffle_buffer: int = 256,
                      cycle_length: int = 8, seed: int = 0, repeats: int = 3) -> Dict[str, Any]:
  """Restart time at `fraction` of an epoch of `file_pattern`'s records (one process, training stream).

  Returns {"files", "records", "skipped_batches", "position", "replay_seconds" (rebuild the stream and
  skip the consumed batches: every one parsed, as before positions were saved), "seek_seconds" (start at
  the saved position), "ratio" (replay / seek; medians over `repeats` alternating runs),
  "replay_ms_per_record" (what replaying costs per skipped record beyond the seek: a restart's saving
  grows with it, linearly in the records before the position), "same_batch"}.
  """
  from fewframes_jax.data import stream, yt8m  # pylint: disable=g-import-not-at-top  (TensorFlow)
  files = yt8m.list_files(file_pattern)
  records = sum(yt8m.count_records(f) for f in files)
  skipped = max(1, int(fraction * records / batch_size))
  kw = dict(num_classes=num_classes, max_frames=max_frames, training=True, seed=seed,
            feature_names=tuple(feature_names), feature_sizes=tuple(feature_sizes), shuffle_buffer=shuffle_buffer,
            cycle_length=cycle_length, process_index=0, process_count=1, repeat=False)
  make = lambda **extra: yt8m.make_dataset(file_pattern, batch_size, **kw, **extra)  # noqa: E731
  _, target = _first_batch_seconds(make, skip_batches=skipped)  # also warms the file cache
  # The batch starts at its first row: resuming there gives exactly this batch (no bad records here).
  position = stream.Position(*(int(v) for v in target["position"][0]))
  replay, seek, same = [], [], True
  for _ in range(repeats):
    seconds, batch = _first_batch_seconds(make, skip_batches=skipped)
    replay.append(seconds)
    seconds, resumed = _first_batch_seconds(lambda: make(start=position))
    seek.append(seconds)
    same &= all(np.array_equal(batch[k], resumed[k]) for k in ("frames", "num_frames", "labels", "video_id"))
  return {"files": len(files), "records": records, "batch_size": batch_size, "skipped_batches": skipped,
          "position": list(position), "cycle_length": cycle_length,
          "replay_seconds": float(np.median(replay)), "seek_seconds": float(np.median(seek)),
          "ratio": float(np.median(replay) / np.median(seek)), "same_batch": bool(same),
          "replay_ms_per_record": float(1e3 * (np.median(replay) - np.median(seek)) / (skipped * batch_size)),
          "cpus": os.cpu_count()}


def format_restart(result: Dict[str, Any]) -> str:
  """A one-row markdown table of `benchmark_restart`'s result."""
  r = result
  return "\n".join([
      "| records (files) | batch | restart after | replay the epoch (before) | seek the saved position | "
      "ratio | replay per skipped record | same batch |",
      "|---:|---:|---:|---:|---:|---:|---:|---|",
      f"| {r['records']} ({r['files']}) | {r['batch_size']} | {r['skipped_batches']} batches | "
      f"{r['replay_seconds']:.2f} s | {r['seek_seconds']:.2f} s | {r['ratio']:.1f}x | "
      f"{r['replay_ms_per_record']:.2f} ms | {r['same_batch']} |"])
