"""The eval-mode batches of a run's data: one exact pass over the eval files, the last batch padded.

The trainer's evaluation, the evaluation and predictions of a saved run, the exit curve's gate fitting
and Table 3's timing all read their videos through `eval_batches`, so every one of them sees the same
videos with the same schema, class count and error policy.
"""
from typing import Any, Dict, Iterator, Optional, Tuple

import numpy as np

from fewframes_jax.data import bad_records
from fewframes_jax.data import yt8m


def eval_batches(data, *, pattern: str = "", batch_size: int = 0, input_frames: Optional[Tuple[Any, ...]] = None,
                 counter: Optional[bad_records.SkipCounter] = None, process_index: Optional[int] = None,
                 process_count: Optional[int] = None, pad_to_batches: Optional[int] = None
                 ) -> Iterator[Dict[str, np.ndarray]]:
  """This process's eval batches (numpy dicts, see `yt8m.make_dataset`) of `pattern` (default
  `data.eval_pattern`) in batches of `batch_size` (default `data.eval_batch_size`), the last batch padded
  with valid=False rows.

  data: the run's `specs.DataSpec` (schema, classes, frames, error policy). input_frames: a
  `Selection.input_frames` value: decode only the k frames of each video it picks (None: every frame).
  counter: counts skipped and mismatched records (a private one when None; the counts are logged when
  the pass ends). process_index / process_count: default `jax.process_index()` / `jax.process_count()`.
  pad_to_batches: yield exactly this many batches (`yt8m.num_eval_batches` of the largest shard), so every
  process runs as many eval steps.
  """
  counter = counter if counter is not None else bad_records.SkipCounter()
  ds = yt8m.make_dataset(pattern or data.eval_pattern, batch_size or data.eval_batch_size, training=False,
                         process_index=process_index, process_count=process_count, pad_to_batches=pad_to_batches,
                         student_frames=input_frames, skip_counter=counter, **yt8m.config_options(data))
  return yt8m.as_numpy_batches(ds, skip_counter=counter)
