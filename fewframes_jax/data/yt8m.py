"""A `tf.data` reader of YouTube-8M frame-level TFRecords (the official schema, 2017 and 2018+ releases).

Each record is a `tf.train.SequenceExample`:
  context        `video_id` (2017) or `id` (2018+): bytes; `labels`: int64 list.
  feature_lists  `rgb`: one 1024-byte string per frame; `audio`: one 128-byte string per frame
                 (names and sizes are arguments, e.g. rgb only).

`make_dataset` yields dict batches that stay uint8 on the host (dequantize on the device with
`dequantize`, re-exported here from `quantization`):
  frames      uint8[B, T, sum(feature_sizes)]  features concatenated in `feature_names` order; first T
                                               frames kept, zero rows after `num_frames`.
  num_frames  int32[B]                         min(true length, T); 0 for a zero-frame video.
  labels      bool[B, C]                       multi-hot.
  video_id    string[B]                        b"" for padding rows.
  valid       bool[B]                          False only for eval padding rows.

Student-only input (`student_frames=(k, method)`): each record is parsed as above, but only the k frames
the student sees are decoded, batched and shipped: `frames` is uint8[B, k, D] (zero rows at slots
j >= num_frames_k) and `num_frames_k` int32[B] is added; `num_frames` stays the video's (clipped) length.
The indices come from `sampling.frame_indices_np`, the host twin of the on-device sampler, so a
deterministic method gives exactly the frames `sampling.sample_frames` picks from the full batch. For
deterministic methods the rule is tabulated once for every length 0..T; 'random' draws per record from
numpy seeded by (seed, file index, record index) (same rule, not the device's draws).

Parsing, validation and decoding happen in the graph, vectorised over chunks of `chunk_size` records
(one `tf.io.parse_sequence_example` and one set of checks per chunk; the output does not depend on the
chunk size): each record carries its file index and record index, an error code is computed per record
with TF ops, and then, depending on `on_error`,
  "raise": an in-graph assertion fails with a message naming the file, the record index and the reason
           of the chunk's first bad record (`as_numpy_batches` turns it into `BadRecordError`); it
           surfaces at the latest in the batch that would hold the record, the last partial eval batch
           included.
  "skip":  the record is dropped, a warning line names it, and a `SkipCounter` counts it by reason.
Bad inputs detected: a truncated file or bad CRC (`corrupt_file`: the bytes read from a file, counted
per chunk, are compared with its size, so truncation is never silent; in "skip" mode the rest of that
file is lost and counted as one skip), no id key (`missing_id`), a feature list that is absent
(`missing_feature`; an *empty* list is a valid zero-frame video), a frame whose byte length is not the
feature size or that holds other than one bytes value (`bad_frame_size`), features with different
frame counts (`frame_count_mismatch`), and a label outside [0, num_classes) (`bad_label`). A record
that TF's parser rejects (not a SequenceExample at all, or a feature stored with the wrong dtype) stops
the pass in both modes, with a `BadRecordError` naming the file and record (the parser's example
name): such a file is broken beyond one record.
"""
import math
import re
import sys
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from absl import logging
import numpy as np

from fewframes_jax import sampling
from fewframes_jax.data.quantization import dequantize  # pylint: disable=unused-import  (re-export)

ID_KEYS = ("id", "video_id")  # 2018+ releases, 2017 release
REASONS = ("corrupt_file", "missing_id", "missing_feature", "bad_frame_size", "frame_count_mismatch",
           "bad_label")
_ERROR_MARKER = "fewframes_jax bad record"
# Bytes of TFRecord framing around each record: length (8) + length CRC (4) + data CRC (4).
_TFRECORD_OVERHEAD = 16


def _tf():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf


class BadRecordError(ValueError):
  """A record (or file) failed validation; the message names the file and the record index."""


class SkipCounter:
  """Counts records dropped with `on_error="skip"`, by reason; readable after (or during) a pass.

  The counts live in a TF variable that the pipeline updates in-graph, so one counter can be shared by
  several datasets and keeps counting across epochs.
  """

  def __init__(self):
    tf = _tf()
    with tf.device("/CPU:0"):
      self.counts = tf.Variable(tf.zeros([len(REASONS)], tf.int64), trainable=False,
                                name="skip_counts")

  @property
  def total(self) -> int:
    return int(self.counts.numpy().sum())

  def by_reason(self) -> Dict[str, int]:
    """reason -> count, for every reason in `REASONS` (zeros included)."""
    return {r: int(c) for r, c in zip(REASONS, self.counts.numpy())}

  def reset(self) -> None:
    self.counts.assign(self.counts * 0)

  def log(self) -> None:
    """Logs one line with the skip counts (nothing when no record was skipped)."""
    if self.total:
      nonzero = {r: c for r, c in self.by_reason().items() if c}
      logging.warning("YT-8M reader skipped %d bad records: %s", self.total, nonzero)


def list_files(file_pattern: str) -> List[str]:
  """The sorted files matching a glob pattern (or a comma-separated list of patterns).

  Raises:
    FileNotFoundError naming the pattern when nothing matches.
  """
  tf = _tf()
  patterns = [p.strip() for p in file_pattern.split(",") if p.strip()]
  if not patterns:
    raise FileNotFoundError("empty file pattern: give a glob such as '/data/yt8m/frame/train*.tfrecord'")
  files = []
  for pattern in patterns:
    matched = tf.io.gfile.glob(pattern)
    if not matched:
      raise FileNotFoundError(f"file pattern {pattern!r} matched no files")
    files.extend(matched)
  return sorted(set(files))


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
      offset += length + _TFRECORD_OVERHEAD
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
  """The `make_dataset` keyword arguments that a `config.data` block sets (schema, classes, frames,
  error policy), shared by the training, eval and predict pipelines."""
  return dict(num_classes=data.num_classes, max_frames=data.max_frames, on_error=data.on_error,
              feature_names=tuple(data.feature_names), feature_sizes=tuple(data.feature_sizes),
              id_key=data.id_key)


def make_dataset(file_pattern: str, batch_size: int, *, num_classes: int, max_frames: int = 300,
                 training: bool = False, seed: int = 0, on_error: str = "raise",
                 feature_names: Sequence[str] = ("rgb", "audio"),
                 feature_sizes: Sequence[int] = (1024, 128), id_key: str = "auto",
                 shuffle_buffer: int = 2048, process_index: Optional[int] = None,
                 process_count: Optional[int] = None, repeat: bool = True,
                 file_fraction: float = 1.0, skip_counter: Optional[SkipCounter] = None,
                 pad_to_batches: Optional[int] = None, cycle_length: int = 8,
                 student_frames: Optional[Tuple[int, str]] = None, chunk_size: int = 64):
  """Builds the input pipeline of one process.

  Args:
    file_pattern: glob of TFRecord files (comma-separated globs allowed).
    batch_size: per-process batch size B.
    num_classes: C; a label outside [0, C) is a bad record.
    max_frames: T; longer videos keep their first T frames, shorter ones are zero-padded.
    training: True: this process's file shard, files shuffled and interleaved, records shuffled,
      repeated (if `repeat`), batches of exactly B (drop_remainder). Deterministic for a `seed`.
      False: one exact pass over this process's file shard in file order; the last batch is padded
      with valid=False rows, so no record is ever dropped and every batch has B rows.
    seed: shuffle seed (training only).
    on_error: "raise" or "skip" (see the module docstring).
    feature_names, feature_sizes: the feature lists to read and their bytes per frame.
    id_key: "auto" (per record: `id`, else `video_id`), "id" or "video_id".
    shuffle_buffer: records in the shuffle buffer (training; holds serialized records in memory).
    process_index, process_count: default `jax.process_index()`, `jax.process_count()`.
    repeat: training only: repeat forever (False: one epoch, last partial batch dropped).
    file_fraction: 0 < f <= 1: use only the first ceil(f * num_files) files. With a single file,
      a deterministic record-level subset instead: record i is kept iff floor((i+1) f) > floor(i f).
    skip_counter: where "skip" counts go (a private counter is used when None).
    pad_to_batches: eval only: append all-padding batches so this process yields exactly this many
      batches (see `num_eval_batches`); the pipeline fails if the shard has more.
    cycle_length: files read concurrently in training.
    student_frames: (k, sampling method): decode and emit only the student's k frames per video
      (see the module docstring); `seed` seeds the 'random' method.
    chunk_size: records parsed, validated and decoded together (one set of TF ops per chunk). Output
      is the same for every chunk size.

  Returns:
    A `tf.data.Dataset` of dict batches (see the module docstring).
  """
  tf = _tf()
  if on_error not in ("raise", "skip"):
    raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
  if id_key not in ("auto",) + ID_KEYS:
    raise ValueError(f"id_key must be 'auto', 'id' or 'video_id', got {id_key!r}")
  if len(feature_names) != len(feature_sizes) or not feature_names:
    raise ValueError(f"feature_names {feature_names} and feature_sizes {feature_sizes} must be "
                     "non-empty and of equal length")
  if batch_size < 1 or max_frames < 1 or num_classes < 1 or chunk_size < 1:
    raise ValueError(f"batch_size, max_frames, num_classes, chunk_size must be >= 1, got {batch_size}, "
                     f"{max_frames}, {num_classes}, {chunk_size}")
  if pad_to_batches is not None and training:
    raise ValueError("pad_to_batches applies to eval (training=False) only")
  try:  # keep TF away from accelerators that JAX uses (a no-op with tensorflow-cpu)
    tf.config.set_visible_devices([], "GPU")
  except (RuntimeError, ValueError):
    pass
  process_index, process_count = _process_info(process_index, process_count)
  files = list_files(file_pattern)
  record_fraction = None
  if file_fraction != 1.0:
    if len(files) == 1:
      if not 0.0 < file_fraction <= 1.0:
        raise ValueError(f"file_fraction must be in (0, 1], got {file_fraction}")
      record_fraction = file_fraction
    else:
      files = select_fraction(files, file_fraction)
  files = shard_files(files, process_index=process_index, process_count=process_count)
  if on_error == "skip" and skip_counter is None:
    skip_counter = SkipCounter()

  reader = _RecordReader(files, on_error=on_error, skip_counter=skip_counter,
                         num_classes=num_classes, max_frames=max_frames,
                         feature_names=tuple(feature_names), feature_sizes=tuple(feature_sizes),
                         id_key=id_key, chunk_size=chunk_size, student_frames=student_frames, seed=seed,
                         record_fraction=record_fraction)
  file_ids = tf.data.Dataset.range(len(files))
  if training:
    file_ids = file_ids.shuffle(len(files), seed=seed + 7919 * process_index,
                                reshuffle_each_iteration=True)
    if repeat:
      file_ids = file_ids.repeat()
    # Records interleaved one at a time from `cycle_length` files, then shuffled, then re-chunked.
    records = file_ids.interleave(lambda i: reader.file_chunks(i).unbatch(),
                                  cycle_length=min(cycle_length, len(files)), block_length=1,
                                  num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if shuffle_buffer > 1:
      records = records.shuffle(shuffle_buffer, seed=seed + 7919 * process_index,
                                reshuffle_each_iteration=True)
    chunks = records.batch(chunk_size)
  else:
    chunks = file_ids.flat_map(reader.file_chunks)  # one pass, in file order
  examples = chunks.map(reader.parse_chunk, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

  # `rebatch` copies each row once into its batch (unbatch + batch would copy it twice).
  if training:
    batches = examples.rebatch(batch_size, drop_remainder=True)
  else:
    # B - 1 padding rows after the data, then drop_remainder: exactly ceil(N / B) batches, the last
    # one padded with valid=False rows, and no all-padding batch when B divides N.
    padding = tf.data.Dataset.from_tensors(_padding_rows(examples.element_spec, batch_size - 1))
    batches = examples.concatenate(padding).rebatch(batch_size, drop_remainder=True)
    if pad_to_batches is not None:
      batches = _pad_to_batches(batches, pad_to_batches, batch_size, files, process_index)
  options = tf.data.Options()
  options.deterministic = True
  return batches.with_options(options).prefetch(tf.data.AUTOTUNE)


def _padding_rows(element_spec, count: int):
  """`count` all-zero rows of a chunk (element_spec: batched, leading dim unknown)."""
  tf = _tf()
  return {k: tf.zeros([count] + spec.shape.as_list()[1:], spec.dtype) for k, spec in element_spec.items()}


def _pad_to_batches(batches, num_batches: int, batch_size: int, files, process_index: int):
  """Exactly `num_batches` batches: the real ones, then all-padding ones; fails if there are more."""
  tf = _tf()
  if num_batches < 1:
    raise ValueError(f"pad_to_batches must be >= 1, got {num_batches}")
  message = (f"{_ERROR_MARKER}: process {process_index}'s eval shard ({len(files)} files, first "
             f"{files[0]}) has more than pad_to_batches={num_batches} batches of {batch_size}; "
             "compute it with num_eval_batches()")

  spec = batches.element_spec
  empty = {k: tf.zeros([batch_size] + s.shape.as_list()[1:], s.dtype) for k, s in spec.items()}
  stream = batches.map(lambda b: (True, b)).concatenate(
      tf.data.Dataset.from_tensors((False, empty)).repeat()).enumerate()

  # Emits each batch one element late, so the last of the `num_batches` outputs is only released
  # after the next element was read: a real batch there means the shard has too many.
  def delay(previous, element):
    index, (is_real, batch) = element
    ok = tf.debugging.Assert(tf.logical_not(is_real & (index >= num_batches)), [message])
    with tf.control_dependencies([ok]):
      return batch, {k: tf.identity(v) for k, v in previous.items()}

  return stream.scan(empty, delay).skip(1).take(num_batches)


def _row_any(flags, row_splits):
  """bool[n]: any of `flags` (bool[N]) in each row of `row_splits` (int[n + 1]), by prefix sums."""
  tf = _tf()
  cumulative = tf.concat([[0], tf.cumsum(tf.cast(flags, tf.int32))], 0)
  return tf.gather(cumulative, row_splits[1:]) > tf.gather(cumulative, row_splits[:-1])


class _RecordReader:
  """Per-file chunks of serialized records, and the parse + validation + decode of a chunk.

  Everything is a TF graph function vectorised over a chunk of up to `chunk_size` records (a few dozen
  TF ops per chunk, not per record: op dispatch, not parsing, was most of the cost per record).
  """

  def __init__(self, files, *, on_error, skip_counter, num_classes, max_frames, feature_names,
               feature_sizes, id_key, chunk_size, student_frames=None, seed=0, record_fraction=None):
    tf = _tf()
    self.tf = tf
    self.files = list(files)
    self.on_error = on_error
    self.skip_counter = skip_counter
    self.num_classes = num_classes
    self.max_frames = max_frames
    self.feature_names = feature_names
    self.feature_sizes = feature_sizes
    self.id_keys = ID_KEYS if id_key == "auto" else (id_key,)
    self.chunk_size = chunk_size
    self.record_fraction = record_fraction
    self._names = tf.constant(self.files)
    self._sizes = tf.constant([tf.io.gfile.stat(f).length for f in self.files], tf.int64)
    self._reasons = tf.constant(REASONS)
    self.student_frames = None
    if student_frames is not None:
      k, method = student_frames
      sampling.frame_indices_np(np.zeros([1], np.int32), k, method, seed_or_rng=0, max_frames=max_frames)
      self.student_frames = (int(k), method)
      self.seed = seed
      if method != "random":  # the rule for every length 0..T, looked up per record
        table, table_k = sampling.frame_indices_np(np.arange(max_frames + 1), k, method,
                                                   max_frames=max_frames)
        self._index_table, self._num_k_table = tf.constant(table), tf.constant(table_k)

  # ---- one file: chunks of (file_index, record_index, serialized), truncation/CRC detection ----

  def file_chunks(self, file_index):
    """Chunks of consecutive records of file `file_index`: (file_index i64[n], record_index i64[n],
    serialized string[n]), n <= chunk_size (fewer where `record_fraction` drops records)."""
    tf = self.tf
    filename = tf.gather(self._names, file_index)
    size = tf.gather(self._sizes, file_index)
    # A corrupt record ends the file's stream (TF then moves to the next file, which ignore_errors
    # turns into end-of-stream). A final empty chunk (`batch` never yields one) compares the bytes
    # consumed, counted per chunk, with the file size.
    chunks = tf.data.TFRecordDataset(filename, buffer_size=1 << 20).ignore_errors().batch(
        self.chunk_size)
    chunks = chunks.concatenate(tf.data.Dataset.from_tensors(tf.zeros([0], tf.string)))

    def step(state, serialized):
      index, offset = state
      count = tf.size(serialized, out_type=tf.int64)
      nbytes = tf.reduce_sum(tf.cast(tf.strings.length(serialized), tf.int64))
      return (index + count, offset + nbytes + _TFRECORD_OVERHEAD * count), (index, offset, serialized)

    chunks = chunks.scan((tf.constant(0, tf.int64), tf.constant(0, tf.int64)), step)

    def check_end(index, offset, serialized):
      is_end = tf.equal(tf.size(serialized), 0)

      def report():
        detail = tf.strings.format("truncated file or bad CRC: {} of {} bytes read", (offset, size))
        where = tf.strings.join(["file ", filename, ", record ", tf.strings.as_string(index)])
        return self._handle_errors(tf.constant([1]), where[None], detail[None])

      done = tf.cond(is_end & tf.not_equal(offset, size), report, lambda: tf.constant(True))
      with tf.control_dependencies([done]):
        return tf.logical_not(is_end)

    def label(index, offset, serialized):
      del offset
      record_index = index + tf.range(tf.size(serialized, out_type=tf.int64))
      file_indices = tf.fill(tf.shape(serialized), tf.cast(file_index, tf.int64))
      if self.record_fraction is None:
        return file_indices, record_index, serialized
      f = self.record_fraction
      keep = (tf.math.floor(tf.cast(record_index + 1, tf.float64) * f)
              > tf.math.floor(tf.cast(record_index, tf.float64) * f))
      return tuple(tf.boolean_mask(t, keep) for t in (file_indices, record_index, serialized))

    return chunks.filter(check_end).map(label)

  # ---- errors ----

  def _handle_errors(self, codes, where, details):
    """Raise (in-graph assertion, naming the first record) or count + log bad records.

    Args:
      codes: i32[m] reason codes (1-based into REASONS); where: string[m] "file F, record R";
        details: string[m]. m >= 1.
    Returns a bool tensor to depend on.
    """
    tf = self.tf
    reasons = tf.gather(self._reasons, codes - 1)
    if self.on_error == "raise":
      message = tf.strings.join([_ERROR_MARKER, ": ", where[0], ": ", reasons[0], ": ", details[0]])
      with tf.control_dependencies([tf.debugging.Assert(False, [message])]):
        return tf.constant(False)
    update = self.skip_counter.counts.scatter_nd_add(
        tf.reshape(codes - 1, [-1, 1]), tf.ones(tf.shape(codes), tf.int64))
    # C++-side logging would be hidden by TF_CPP_MIN_LOG_LEVEL, so print to stderr.
    lines = tf.strings.join(["WARNING: YT-8M reader skipped a bad record: ", where, ": ", reasons, ": ",
                             details])
    printed = tf.print(tf.strings.reduce_join(lines, separator="\n"), output_stream=sys.stderr)
    with tf.control_dependencies([update, printed]):
      return tf.constant(False)

  # ---- one chunk of records ----

  def _missing_feature_lists(self, serialized, zero_counts):
    """bool[n, F]: feature list absent from the record (searched only in rows with an empty list).

    A feature list's map entry starts with its key field, `0x0a <len> name`; an empty list (a
    zero-frame video) still has that entry. Searching the bytes for it, rather than decoding the
    proto with `tf.io.decode_proto`, never fails on a malformed record (so the error that follows
    names the file and record) and costs nothing on well-formed ones.
    """
    tf = self.tf
    rows = tf.where(tf.reduce_any(zero_counts, axis=1))[:, 0]
    subset = tf.gather(serialized, rows)
    found = tf.stack([tf.strings.split(subset, sep=_map_key_bytes(name)).row_lengths() > 1
                      for name in self.feature_names], axis=1)
    present = tf.tensor_scatter_nd_update(tf.ones_like(zero_counts), rows[:, None], found)
    return zero_counts & tf.logical_not(present)

  def _student_indices(self, num_frames, file_index, record_index):
    """The student's frame indices per video, i32[n, k], and num_frames_k i32[n]."""
    tf = self.tf
    k, method = self.student_frames
    if method != "random":
      return tf.gather(self._index_table, num_frames), tf.gather(self._num_k_table, num_frames)

    def draw(lengths, file_indices, record_indices):
      indices = np.zeros([len(lengths), k], np.int32)
      num_k = np.zeros([len(lengths)], np.int32)
      for row, (n, fi, ri) in enumerate(zip(lengths, file_indices, record_indices)):
        rng = np.random.default_rng([self.seed, int(fi), int(ri)])  # per record: chunking-invariant
        idx, nk = sampling.frame_indices_np(np.array([n], np.int32), k, method, seed_or_rng=rng,
                                            max_frames=self.max_frames)
        indices[row], num_k[row] = idx[0], nk[0]
      return indices, num_k

    indices, num_k = tf.numpy_function(draw, [num_frames, file_index, record_index],
                                       (tf.int32, tf.int32), stateful=False)
    return tf.ensure_shape(indices, [None, k]), tf.ensure_shape(num_k, [None])

  def _all_frames(self, lists):
    """uint8[n, T, D]: each video's first T frames, zero rows after its length (one decode per
    feature of all the chunk's frames, then one copy into the padded layout)."""
    tf = self.tf
    pieces = []
    for frame_lists, size in zip(lists, self.feature_sizes):
      decoded = tf.io.decode_raw(frame_lists.flat_values, tf.uint8, fixed_length=size)
      value_splits = tf.gather(frame_lists.values.row_splits, frame_lists.row_splits)
      per_video = tf.RaggedTensor.from_row_splits(decoded, value_splits, validate=False)
      pieces.append(per_video.to_tensor(shape=[None, self.max_frames, size]))
    return pieces[0] if len(pieces) == 1 else tf.concat(pieces, axis=2)

  def _picked_frames(self, lists, indices, count):
    """uint8[n, J, D]: frames `indices` i32[n, J] of each video, zero rows at slots j >= count[i]
    (only those frames are decoded)."""
    tf = self.tf
    mask = tf.range(tf.shape(indices)[1])[None, :] < count[:, None]
    indices = tf.where(mask, indices, 0)
    pieces = []
    for frame_lists, size in zip(lists, self.feature_sizes):
      frame_pos = frame_lists.row_splits[:-1, None] + indices  # <= total frames: a safe gather
      value_pos = tf.gather(frame_lists.values.row_splits, frame_pos)
      values = frame_lists.flat_values
      last = tf.size(values) - 1
      picked = tf.cond(last >= 0, lambda v=values, p=value_pos, l=last: tf.gather(v, tf.minimum(p, l)),
                       lambda p=value_pos: tf.fill(tf.shape(p), ""))
      picked = tf.where(mask, picked, "")
      pieces.append(tf.io.decode_raw(picked, tf.uint8, fixed_length=size))
    return pieces[0] if len(pieces) == 1 else tf.concat(pieces, axis=2)

  def parse_chunk(self, file_index, record_index, serialized):
    """A chunk of records -> a dict of batched fields (the module docstring's, leading dim m <= n).

    With on_error='raise' a bad record fails an in-graph assertion naming the first bad record of the
    chunk; with 'skip' bad records are counted, logged and left out (m = number of good records).

    Args:
      file_index, record_index: i64[n]; serialized: string[n].
    """
    tf = self.tf
    where = tf.strings.join(["file ", tf.gather(self._names, file_index), ", record ",
                             tf.strings.as_string(record_index)])
    context_spec = {"labels": tf.io.RaggedFeature(tf.int64)}
    for key in self.id_keys:
      context_spec[key] = tf.io.RaggedFeature(tf.string)
    sequence_spec = {name: tf.io.RaggedFeature(tf.string) for name in self.feature_names}
    context, sequences, _ = tf.io.parse_sequence_example(
        serialized, context_features=context_spec, sequence_features=sequence_spec, example_names=where)
    n = tf.shape(serialized)[0]

    # id: the first key present, in `id_keys` order.
    video_id = tf.fill([n], "")
    has_id = []
    for key in reversed(self.id_keys):
      present = context[key].row_lengths() > 0
      first = context[key].to_tensor(default_value="", shape=[None, 1])[:, 0]
      video_id = tf.where(present, first, video_id)
      has_id.append(present)
    missing_id = tf.logical_not(tf.reduce_any(tf.stack(has_id, axis=1), axis=1))

    # lists[f]: string[n, (frames), (values per frame)]; a well-formed frame is one value of size_f bytes.
    lists = [sequences[name] for name in self.feature_names]
    counts = tf.stack([frames.row_lengths() for frames in lists], axis=1)  # i32[n, F]
    zero_counts = tf.equal(counts, 0)
    missing_feature = tf.cond(tf.reduce_any(zero_counts),
                              lambda: self._missing_feature_lists(serialized, zero_counts),
                              lambda: tf.zeros_like(zero_counts))
    bad_size = tf.zeros([n], tf.bool)
    for frames, size in zip(lists, self.feature_sizes):
      value_splits = tf.gather(frames.values.row_splits, frames.row_splits)
      bad_size |= _row_any(tf.strings.length(frames.flat_values) != size, value_splits)
      bad_size |= _row_any(frames.values.row_lengths() != 1, frames.row_splits)
    count_mismatch = tf.reduce_any(counts != counts[:, :1], axis=1)
    labels = context["labels"]
    label_ok = (labels.values >= 0) & (labels.values < self.num_classes)
    bad_label = _row_any(tf.logical_not(label_ok), labels.row_splits)

    code = tf.zeros([n], tf.int32)
    for value, bad in reversed(list(enumerate(
        [missing_id, tf.reduce_any(missing_feature, axis=1), bad_size, count_mismatch, bad_label], 2))):
      code = tf.where(bad, value, code)
    ok = tf.equal(code, 0)

    def detail(row):
      names = tf.constant(list(self.feature_names))
      frames = [f[row] for f in lists]
      found = lambda values: tf.strings.reduce_join(  # pylint: disable=g-long-lambda
          [tf.strings.format("{}", tf.unique(v)[0]) for v in values], separator=" ")
      details = [
          tf.constant(f"context has none of the id keys {list(self.id_keys)}"),
          tf.strings.join(["feature list(s) not in the record: ",
                           tf.strings.reduce_join(tf.boolean_mask(names, missing_feature[row]),
                                                  separator=", ")]),
          tf.strings.join([
              tf.strings.format("bytes per frame must be {} for {}",
                                (tf.constant(list(self.feature_sizes)), names)),
              "; frame byte lengths found: ", found([tf.strings.length(f.flat_values) for f in frames]),
              "; values per frame found: ", found([f.row_lengths() for f in frames])]),
          tf.strings.format("frame counts {} differ for features {}", (counts[row], names)),
          tf.strings.format("labels {} outside [0, {})", (labels[row], self.num_classes)),
      ]
      return tf.switch_case(code[row] - 2, [lambda d=d: d for d in details])

    def report():
      rows = tf.where(tf.logical_not(ok))[:, 0]
      if self.on_error == "raise":
        rows = rows[:1]
      details = tf.map_fn(detail, rows, fn_output_signature=tf.string)
      return self._handle_errors(tf.gather(code, rows), tf.gather(where, rows), details)

    checked = tf.cond(tf.reduce_all(ok), lambda: tf.constant(True), report)

    num_frames = tf.minimum(tf.reduce_min(counts, axis=1), self.max_frames)
    example = {}
    if self.student_frames is None:
      example["frames"] = self._all_frames(lists)
    else:  # only the student's frames are decoded
      indices, num_k = self._student_indices(num_frames, file_index, record_index)
      example["frames"] = self._picked_frames(lists, indices, num_k)
      example["num_frames_k"] = num_k
    valid_labels = tf.boolean_mask(
        tf.stack([tf.cast(labels.value_rowids(), tf.int64), labels.values], axis=1), label_ok)
    example.update({
        "num_frames": num_frames,
        "labels": tf.scatter_nd(valid_labels, tf.ones(tf.shape(valid_labels)[:1], tf.int32),
                                tf.cast([n, self.num_classes], tf.int64)) > 0,
        "video_id": video_id,
        "valid": tf.ones([n], tf.bool),
    })
    with tf.control_dependencies([checked]):
      if self.on_error == "skip":
        example = tf.cond(tf.reduce_all(ok), lambda: example,
                          lambda: {key: tf.boolean_mask(value, ok) for key, value in example.items()})
      return {key: tf.identity(value) for key, value in example.items()}


def _map_key_bytes(name: str) -> bytes:
  """The serialized key field of a protobuf map entry: tag 0x0a, varint length, the key."""
  key = name.encode()
  length, n = b"", len(key)
  while True:
    length += bytes([(n & 0x7F) | (0x80 if n > 0x7F else 0)])
    n >>= 7
    if not n:
      return b"\x0a" + length + key


def _bad_record_message(message: str) -> Optional[str]:
  """The reader's own error text inside a TF error message (unescaped), or None."""
  start = message.find(_ERROR_MARKER)
  if start < 0:
    return None
  end = message.find("]\n", start)
  if end < 0:
    end = message.find("\n", start)
  text = message[start:end] if end >= 0 else message[start:]
  return text.replace('\\"', '"').replace("\\'", "'").rstrip()


def as_numpy_batches(dataset, *, skip_counter: Optional[SkipCounter] = None
                     ) -> Iterator[Dict[str, np.ndarray]]:
  """Iterates a `make_dataset` dataset as dicts of numpy arrays.

  Turns the pipeline's in-graph bad-record assertion (and TF parser errors, which name the record)
  into `BadRecordError`, and logs the skip counts when the pass ends.
  """
  tf = _tf()
  iterator = iter(dataset.as_numpy_iterator())
  while True:
    try:
      batch = next(iterator)
    except StopIteration:
      break
    except (tf.errors.InvalidArgumentError, tf.errors.DataLossError) as e:
      message = e.message
      ours = _bad_record_message(message)
      if ours is not None:
        raise BadRecordError(ours) from None
      if "file " in message and ", record " in message:
        detail = re.search(r"transformation with iterator: \S+: (.*?)(?:\n|$)", message)
        detail = detail.group(1) if detail else message
        raise BadRecordError(f"{_ERROR_MARKER}: TF could not parse the record: {detail}") from None
      raise
    yield batch
  if skip_counter is not None:
    skip_counter.log()
