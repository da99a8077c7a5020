"""The `tf.data` input pipeline of YouTube-8M frame-level TFRecords (2017 and 2018+ releases).

`make_dataset` selects this process's files, streams their records through `reader.RecordReader`
(parse, validate, decode, in chunks) and batches them. Batches are dicts that stay uint8 on the host
(dequantize on the device with `quantization.dequantize`):
  frames      uint8[B, T, sum(feature_sizes)]  features concatenated in `feature_names` order; first T
                                               frames kept, zero rows after `num_frames`.
  num_frames  int32[B]                         min(true length, T), the true length being the minimum
                                               over the features; 0 for a zero-frame video.
  labels      bool[B, C]                       multi-hot.
  video_id    string[B]                        b"" for padding rows.
  valid       bool[B]                          False only for eval padding rows.
  position    int64[B, 3]                      training only: each row's place in the stream (epoch,
                                               round, index; `stream.Position`), for an exact resume.

Student-only input (`student_frames=(k, method)`): each record is validated as above, but only the k
frames the student sees are decoded, batched and shipped (their place in the record's bytes is found
without parsing the other frames, `record_layout.py`; a record it cannot vouch for is parsed in full): `frames` is uint8[B, k, D] (zero rows at slots
j >= num_frames_k) and `num_frames_k` int32[B] is added; `num_frames` stays the video's (clipped) length.
The indices come from `sampling.frame_indices_np`, the host twin of the on-device sampler, so a
deterministic method gives exactly the frames `sampling.sample_frames` picks from the full batch. For
deterministic methods the rule is tabulated once for every length 0..T; 'random' draws per record from
numpy seeded by (seed, file index, record index) (same rule, not the device's draws).
A learned selector whose scorer reads one stream (`student_frames=(k, 'learned', host_scorer.HostScorer)`,
from `inference.Selection.input_frames(selector_params)`) decodes that stream of every real frame, scores
it in TensorFlow and picks the top k in time exactly as the device would (`host_scorer.py`); then only
those k frames are decoded whole.

The files are the official records (`reader.py`'s "yt8m" format), or the files of a split of a
prepared TFDS dataset of this project's builder (`tfds_yt8m.py`; recognised by TFDS's
`dataset_info.json` beside them, "tfds" format; `tfds_yt8m.prepared_split_files` gives the pattern):
the same batches either way.

Bad records (`on_error`), frame-count mismatches, the release and video-level checks: see `reader.py`
and `bad_records.py`. Errors surface as `bad_records.BadRecordError` (`VideoLevelRecordError`) /
`bad_records.ReleaseMismatchError`, at the latest in the batch that would hold the record, the last
partial eval batch included: from `as_numpy_batches`, and from iterating the dataset `make_dataset`
returns (`for batch in dataset`, `dataset.as_numpy_iterator()`, `tfds.as_numpy(dataset)`) rather than
as TensorFlow's `InvalidArgumentError` (a dataset derived from it by further transformations raises
TensorFlow's errors again: iterate it with `as_numpy_batches`).
"""
import functools
import glob
import json
import math
import os
import re
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from fewframes_jax.data import bad_records
from fewframes_jax.data import records
from fewframes_jax.data import reader as reader_lib
from fewframes_jax.data import stream as stream_lib


CHUNK_SIZE = 64            # records per parse of the full path (`make_dataset(chunk_size=...)`)
LOCATED_CHUNK_SIZE = 256   # ... and of the student-only path that locates its frames (`record_layout.py`)
TFDS_BUILDER_NAME = "yt8m_frame_level"  # `tfds_yt8m.Yt8mFrameLevel.name`
TFDS_INFO = "dataset_info.json"  # what TFDS writes beside a prepared dataset's files


def _tf():
  return records.tensorflow()


def list_files(file_pattern: str) -> List[str]:
  """The sorted files matching a glob pattern (or a comma-separated list of patterns).

  Raises:
    FileNotFoundError naming the pattern when nothing matches.
  """
  patterns = [p.strip() for p in file_pattern.split(",") if p.strip()]
  if not patterns:
    raise FileNotFoundError("empty file pattern: give a glob such as '/data/yt8m/frame/train*.tfrecord'")
  files = []
  for pattern in patterns:
    matched = _glob(pattern)
    if not matched:
      raise FileNotFoundError(f"file pattern {pattern!r} matched no files")
    files.extend(matched)
  return sorted(set(files))


def _glob(pattern: str) -> List[str]:
  """A local pattern by Python's glob (a mistyped pattern is found without starting TensorFlow); a remote
  file system's (gs://, s3://, hdfs://) by TensorFlow's."""
  if "://" in pattern:
    return _tf().io.gfile.glob(pattern)
  return glob.glob(pattern)


def record_format(files: Sequence[str]) -> str:
  """'tfds' when the files lie in prepared TFDS datasets of this project's builder (their folder holds
  TFDS's dataset_info.json), 'yt8m' when none does (`reader.RECORD_FORMATS`).

  Raises:
    FileNotFoundError when some files are a prepared TFDS dataset and others are not, or the dataset is
    another builder's.
  """
  tf = _tf()
  folders = sorted({os.path.dirname(f) for f in files})
  infos = {folder: os.path.join(folder, TFDS_INFO) for folder in folders}
  prepared = [folder for folder, info in infos.items() if tf.io.gfile.exists(info)]
  if not prepared:
    return "yt8m"
  if len(prepared) != len(folders):
    raise FileNotFoundError(f"the input files mix a prepared TFDS dataset ({prepared[0]}) with other files "
                            f"({sorted(set(folders) - set(prepared))[0]}): give one kind")
  for folder in prepared:
    with tf.io.gfile.GFile(infos[folder]) as f:
      name = json.load(f).get("name")
    if name != TFDS_BUILDER_NAME:
      raise FileNotFoundError(f"{folder} is a prepared TFDS dataset of {name!r}, not of {TFDS_BUILDER_NAME!r} "
                              "(fewframes_jax.data.tfds_yt8m)")
  return "tfds"


def select_fraction(files: Sequence[str], file_fraction: float) -> List[str]:
  """The first ceil(f * len(files)) files (the paper's limited-data study, Table 2)."""
  if not 0.0 < file_fraction <= 1.0:
    raise ValueError(f"file_fraction must be in (0, 1], got {file_fraction}")
  return list(files[:max(1, math.ceil(file_fraction * len(files) - 1e-9))])


def shard_files(files: Sequence[str], *, process_index: int, process_count: int) -> List[str]:
  """This process's files: files[process_index::process_count]; disjoint and covering over processes.

  Raises:
    ValueError when there are fewer files than processes (some process would get no data).
  """
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index {process_index} not in [0, {process_count})")
  if len(files) < process_count:
    raise ValueError(
        f"{len(files)} input files for {process_count} processes: file-level sharding needs at least "
        "one file per process (write more shards, e.g. synthetic --num_shards, or use fewer processes)")
  return list(files[process_index::process_count])


def _process_info(process_index, process_count):
  if process_index is None or process_count is None:
    import jax  # pylint: disable=g-import-not-at-top
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
  return process_index, process_count


def count_records(path: str) -> int:
  """Number of records in one TFRecord file, from the framing only (reads 12 bytes per record)."""
  tf = _tf()
  count = 0
  with tf.io.gfile.GFile(path, "rb") as f:
    size = f.size()
    offset = 0
    while offset < size:
      header = f.read(12)
      if len(header) < 12:
        break
      length = int(np.frombuffer(header[:8], "<u8")[0])
      offset += length + records.TFRECORD_OVERHEAD
      if offset > size:
        break
      f.seek(offset)
      count += 1
  return count


def num_eval_batches(file_pattern: str, batch_size: int, *, process_count: Optional[int] = None,
                     file_fraction: float = 1.0) -> int:
  """Eval batches per process so that every process runs the same number: max over processes of
  ceil(records in its file shard / batch_size). Pass it as `make_dataset(..., pad_to_batches=...)`.

  Counts records from the TFRecord framing (cheap: no record is parsed). With `on_error="skip"` the
  real number of batches can only be smaller, and the rest are padding batches.
  """
  _, process_count = _process_info(0, process_count)
  files = select_fraction(list_files(file_pattern), file_fraction)
  counts = [count_records(f) for f in files]
  per_process = [sum(counts[p::process_count]) for p in range(process_count)]
  return max(1, max(math.ceil(n / batch_size) for n in per_process))


def config_options(data) -> Dict[str, Any]:
  """The `make_dataset` keyword arguments that a run's data (`specs.DataSpec`) sets (schema, classes, frames,
  error policy), shared by the training, eval and predict pipelines."""
  return dict(num_classes=data.num_classes, max_frames=data.max_frames, on_error=data.on_error,
              feature_names=tuple(data.feature_names), feature_sizes=tuple(data.feature_sizes),
              id_key=data.id_key, check_release=data.check_release)


def make_dataset(file_pattern: str, batch_size: int, *, num_classes: int, max_frames: int = 300,
                 training: bool = False, seed: int = 0, on_error: str = "raise",
                 feature_names: Sequence[str] = ("rgb", "audio"),
                 feature_sizes: Sequence[int] = (1024, 128), id_key: str = "auto",
                 check_release: bool = True, shuffle_buffer: int = 2048,
                 process_index: Optional[int] = None, process_count: Optional[int] = None,
                 repeat: bool = True, file_fraction: float = 1.0,
                 skip_counter: Optional[bad_records.SkipCounter] = None, pad_to_batches: Optional[int] = None,
                 cycle_length: int = 8, student_frames: Optional[Tuple[Any, ...]] = None,
                 chunk_size: Optional[int] = None, start: stream_lib.Position = stream_lib.Position(),
                 locate_frames: bool = True):
  """Builds the input pipeline of one process.

  Args:
    file_pattern: glob of TFRecord files (comma-separated globs allowed): official records, or a split
      of a prepared TFDS dataset of `tfds_yt8m.py` (`record_format`).
    batch_size: per-process batch size B.
    num_classes: C; a label outside [0, C) is a bad record.
    max_frames: T; longer videos keep their first T frames, shorter ones are zero-padded.
    training: True: this process's file shard as the seekable stream of `stream.py` (files shuffled
      per epoch, read in rounds of `cycle_length` files, records interleaved and shuffled per round),
      repeated (if `repeat`), batches of exactly B (drop_remainder), each row with its stream
      `position` i64[3]. Deterministic for a `seed`.
      False: one exact pass over this process's file shard in file order; the last batch is padded
      with valid=False rows, so no record is ever dropped and every batch has B rows.
    seed: shuffle seed (training only).
    on_error: "raise" or "skip" (`bad_records.ON_ERROR`; see `reader.py`).
    feature_names, feature_sizes: the feature lists to read and their bytes per frame.
    id_key: "auto" (per record: `id`, else `video_id`), "id" or "video_id" (`bad_records.ID_KEY_CHOICES`).
    check_release: stop with `bad_records.ReleaseMismatchError` at a record whose id key belongs to a
      release with another class count (`id` with C = 4716, `video_id` with C != 4716).
    shuffle_buffer: records in the shuffle buffer (training; holds serialized records in memory).
    process_index, process_count: default `jax.process_index()`, `jax.process_count()`.
    repeat: training only: repeat forever (False: one epoch, last partial batch dropped).
    file_fraction: 0 < f <= 1: use only the first ceil(f * num_files) files. With a single file,
      a deterministic record-level subset instead: record i is kept iff floor((i+1) f) > floor(i f).
    skip_counter: where the skip counts ("skip" mode) and the frame-count mismatches go (a private
      counter is used when None).
    pad_to_batches: eval only: append all-padding batches so this process yields exactly this many
      batches (see `num_eval_batches`); the pipeline fails if the shard has more.
    cycle_length: files read concurrently in training (the files of one round).
    student_frames: (k, sampling method), or (k, 'learned', a `host_scorer.HostScorer`): decode and
      emit only the student's k frames per video (see the module docstring); `seed` seeds the 'random'
      method.
    chunk_size: records parsed, validated and decoded together (one set of TF ops per chunk). Output
      is the same for every chunk size. Default `CHUNK_SIZE`, or `LOCATED_CHUNK_SIZE` where the student's
      frames are located (its work per chunk is mostly the ops, not the bytes).
    start: training only: the stream position to start at (a resumed run's saved position).
    locate_frames: with `student_frames`, find the student's frames in the records' bytes without parsing
      the others (`record_layout.py`; the same output, errors and counts); False parses every frame.

  Returns:
    A `tf.data.Dataset` of dict batches (see the module docstring).
  """
  tf = _tf()
  if chunk_size is None:
    chunk_size = LOCATED_CHUNK_SIZE if student_frames is not None and locate_frames else CHUNK_SIZE
  _check_arguments(batch_size=batch_size, max_frames=max_frames, num_classes=num_classes,
                   chunk_size=chunk_size, on_error=on_error, id_key=id_key, feature_names=feature_names,
                   feature_sizes=feature_sizes, pad_to_batches=pad_to_batches, training=training)
  process_index, process_count = _process_info(process_index, process_count)
  files, record_fraction = _select_files(file_pattern, file_fraction, process_index, process_count)
  reader = reader_lib.RecordReader(
      files, num_classes=num_classes, max_frames=max_frames, feature_names=feature_names,
      feature_sizes=feature_sizes, id_key=id_key, on_error=on_error, counter=skip_counter,
      check_release=check_release, chunk_size=chunk_size, student_frames=student_frames, seed=seed,
      record_fraction=record_fraction, record_format=record_format(files), locate_frames=locate_frames)
  if training:
    chunks = stream_lib.training_records(reader, len(files), seed=seed + 7919 * process_index, repeat=repeat,
                                         shuffle_buffer=shuffle_buffer, cycle_length=cycle_length,
                                         start=start).batch(chunk_size)
  else:  # one pass, in file order
    chunks = tf.data.Dataset.range(len(files)).flat_map(records.graph_fn(reader.file_chunks))
  examples = chunks.map(records.graph_fn(reader.parse_chunk), num_parallel_calls=tf.data.AUTOTUNE,
                        deterministic=True)
  # `rebatch` copies each row once into its batch (unbatch + batch would copy it twice).
  if training:
    batches = examples.rebatch(batch_size, drop_remainder=True)
  else:
    batches = _eval_batches(examples, batch_size)
    if pad_to_batches is not None:
      batches = _pad_to_batches(batches, pad_to_batches, batch_size, files, process_index)
  options = tf.data.Options()
  options.deterministic = True
  return reporting(batches.with_options(options).prefetch(tf.data.AUTOTUNE))


def bare_dataset(file_pattern: str, batch_size: int, *, feature_names: Sequence[str] = ("rgb", "audio"),
                 training: bool = False):
  """The floor of a reader that parses every frame, for the benchmarks: the files read in order (repeated
  when `training`), batches of `batch_size` serialized records parsed by one `tf.io.parse_sequence_example`
  (context id, video_id, labels; every frame of `feature_names` as ragged per-frame strings). Nothing is
  checked, decoded or padded, and only the lengths leave the graph: dict batches of each context key's
  values and each feature's frames per record (i64[B]), and `valid` bool[B] (all true)."""
  tf = _tf()
  context = {"labels": tf.io.RaggedFeature(tf.int64)}
  context.update({key: tf.io.RaggedFeature(tf.string) for key in bad_records.ID_KEYS})
  sequence = {name: tf.io.RaggedFeature(tf.string) for name in feature_names}

  def parse(serialized):
    parsed, lists, _ = tf.io.parse_sequence_example(serialized, context_features=context, sequence_features=sequence)
    out = {key: value.row_lengths() for key, value in {**parsed, **lists}.items()}  # not the frames to Python
    return dict(out, valid=tf.ones(tf.shape(serialized), tf.bool))

  files = tf.data.Dataset.from_tensor_slices(list_files(file_pattern))
  serialized = files.interleave(lambda f: tf.data.TFRecordDataset(f, buffer_size=1 << 20), cycle_length=1)
  if training:
    serialized = serialized.repeat()
  batches = serialized.batch(batch_size).map(records.graph_fn(parse), num_parallel_calls=tf.data.AUTOTUNE)
  return batches.prefetch(tf.data.AUTOTUNE)


def _check_arguments(*, batch_size, max_frames, num_classes, chunk_size, on_error, id_key, feature_names,
                     feature_sizes, pad_to_batches, training) -> None:
  if on_error not in bad_records.ON_ERROR:
    raise ValueError(f"on_error must be one of {bad_records.ON_ERROR}, got {on_error!r}")
  if id_key not in bad_records.ID_KEY_CHOICES:
    raise ValueError(f"id_key must be one of {bad_records.ID_KEY_CHOICES}, got {id_key!r}")
  if len(feature_names) != len(feature_sizes) or not feature_names:
    raise ValueError(f"feature_names {feature_names} and feature_sizes {feature_sizes} must be "
                     "non-empty and of equal length")
  if batch_size < 1 or max_frames < 1 or num_classes < 1 or chunk_size < 1:
    raise ValueError(f"batch_size, max_frames, num_classes, chunk_size must be >= 1, got {batch_size}, "
                     f"{max_frames}, {num_classes}, {chunk_size}")
  if pad_to_batches is not None and training:
    raise ValueError("pad_to_batches applies to eval (training=False) only")


def _select_files(file_pattern: str, file_fraction: float, process_index: int, process_count: int
                  ) -> Tuple[List[str], Optional[float]]:
  """(this process's files, the record-level fraction to keep of a single file, or None)."""
  files = list_files(file_pattern)
  record_fraction = None
  if file_fraction != 1.0:
    if len(files) == 1:
      if not 0.0 < file_fraction <= 1.0:
        raise ValueError(f"file_fraction must be in (0, 1], got {file_fraction}")
      record_fraction = file_fraction
    else:
      files = select_fraction(files, file_fraction)
  return shard_files(files, process_index=process_index, process_count=process_count), record_fraction


def _eval_batches(examples, batch_size: int):
  """Exactly ceil(N / B) batches of B rows, the last one padded with valid=False rows: B - 1 padding
  rows after the data, then drop_remainder (so no all-padding batch when B divides N)."""
  tf = _tf()
  padding = tf.data.Dataset.from_tensors(_padding_rows(examples.element_spec, batch_size - 1))
  return examples.concatenate(padding).rebatch(batch_size, drop_remainder=True)


def _padding_rows(element_spec, count: int):
  """`count` all-zero rows of a chunk (element_spec: batched, leading dim unknown)."""
  tf = _tf()
  return {k: tf.zeros([count] + spec.shape.as_list()[1:], spec.dtype) for k, spec in element_spec.items()}


def _pad_to_batches(batches, num_batches: int, batch_size: int, files, process_index: int):
  """Exactly `num_batches` batches: the real ones, then all-padding ones; fails if there are more."""
  tf = _tf()
  if num_batches < 1:
    raise ValueError(f"pad_to_batches must be >= 1, got {num_batches}")
  message = (f"{bad_records.ERROR_MARKER}: process {process_index}'s eval shard ({len(files)} files, first "
             f"{files[0]}) has more than pad_to_batches={num_batches} batches of {batch_size}; "
             "compute it with num_eval_batches()")

  spec = batches.element_spec
  empty = {k: tf.zeros([batch_size] + s.shape.as_list()[1:], s.dtype) for k, s in spec.items()}
  stream = batches.map(records.graph_fn(lambda b: (True, b))).concatenate(
      tf.data.Dataset.from_tensors((False, empty)).repeat()).enumerate()

  # Emits each batch one element late, so the last of the `num_batches` outputs is only released
  # after the next element was read: a real batch there means the shard has too many.
  def delay(previous, element):
    index, (is_real, batch) = element
    ok = tf.debugging.Assert(tf.logical_not(is_real & (index >= num_batches)), [message])
    with tf.control_dependencies([ok]):
      return batch, {k: tf.identity(v) for k, v in previous.items()}

  return stream.scan(empty, records.graph_fn(delay)).skip(1).take(num_batches)


def reporting(dataset):
  """The same dataset (same graph, elements and options) whose Python iterators raise the reader's
  errors as the project's exceptions (`python_error`) instead of TensorFlow's."""
  return _reporting_dataset_class()(dataset)


@functools.lru_cache(maxsize=None)
def _reporting_dataset_class():
  """The `tf.data.Dataset` subclass of `reporting`, defined on first use (TensorFlow imported then).

  It wraps the dataset's own variant, as TensorFlow's unary datasets that keep their input's structure
  do; only `__iter__` (which `as_numpy_iterator` and `tfds.as_numpy` call) differs.
  """
  from tensorflow.python.data.ops import dataset_ops  # pylint: disable=g-import-not-at-top,g-direct-tensorflow-import
  _tf()

  class ReportingDataset(dataset_ops.UnaryUnchangedStructureDataset):
    """A dataset whose iterators raise `python_error`'s exceptions."""

    def __init__(self, dataset):
      super().__init__(dataset, dataset._variant_tensor)  # pylint: disable=protected-access

    def __iter__(self):
      return _ReportingIterator(super().__iter__())

  return ReportingDataset


class _ReportingIterator:
  """A `tf.data` iterator whose `next` raises `python_error`'s exception for a reader error."""

  def __init__(self, iterator):
    self._iterator = iterator

  def __iter__(self):
    return self

  def __next__(self):
    tf = _tf()
    try:
      return next(self._iterator)
    except (tf.errors.InvalidArgumentError, tf.errors.DataLossError) as e:
      error = python_error(e.message)
      if error is None:
        raise
      raise error from None

  def get_next(self):
    return self.__next__()

  def __getattr__(self, name):
    return getattr(self._iterator, name)


def as_numpy_batches(dataset, *, skip_counter: Optional[bad_records.SkipCounter] = None
                     ) -> Iterator[Dict[str, np.ndarray]]:
  """Iterates a `make_dataset` dataset (or one derived from it) as dicts of numpy arrays.

  Turns the pipeline's in-graph assertions (and TF parser errors, which name the record) into
  `bad_records.BadRecordError` or `bad_records.ReleaseMismatchError`, whose message is the assertion's one line
  (`reporting`), and logs the skip and frame-count mismatch counts of `skip_counter` when the pass ends.
  """
  yield from reporting(dataset).as_numpy_iterator()
  if skip_counter is not None:
    skip_counter.log()


def python_error(message: str) -> Optional[ValueError]:
  """The Python exception for a TF error message that holds a reader assertion or names a record
  (None for any other message)."""
  for marker, error_type in ((bad_records.RELEASE_MARKER, bad_records.ReleaseMismatchError),
                             (bad_records.VIDEO_LEVEL_MARKER, bad_records.VideoLevelRecordError),
                             (bad_records.ERROR_MARKER, bad_records.BadRecordError)):
    start = message.find(marker)
    if start >= 0:  # the assertion's text runs to the end of its line
      end = message.find("]\n", start)
      end = message.find("\n", start) if end < 0 else end
      text = message[start:end] if end >= 0 else message[start:]
      return error_type(text.replace('\\"', '"').replace("\\'", "'").rstrip())
  if "file " in message and ", record " in message:  # the parser's error names the record
    detail = re.search(r"transformation with iterator: \S+: (.*?)(?:\n|$)", message)
    detail = detail.group(1) if detail else message
    return bad_records.BadRecordError(f"{bad_records.ERROR_MARKER}: TF could not parse the record: {detail}")
  return None
