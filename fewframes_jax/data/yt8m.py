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

Validation happens in the graph, per record (measured on the bundled data: about 0.3 ms of CPU per
video against 0.2 ms for a bare parse; > 2,000 videos/s on 2 cores): each record carries its file
index and record index, an error code is computed with TF ops, and then, depending on `on_error`,
  "raise": an in-graph assertion fails with a message naming the file, the record index and the reason
           (`as_numpy_batches` turns it into `BadRecordError`); it surfaces in whichever batch holds the
           record, the last partial eval batch included.
  "skip":  the record is dropped, a warning line names it, and a `SkipCounter` counts it by reason.
Bad inputs detected: a truncated file or bad CRC (`corrupt_file`: the bytes read from a file are
compared with its size, so truncation is never silent; in "skip" mode the rest of that file is lost
and counted as one skip), no id key (`missing_id`), a feature list that is absent (`missing_feature`;
an *empty* list is a valid zero-frame video), a frame whose byte length is not the feature size
(`bad_frame_size`), features with different frame counts (`frame_count_mismatch`), and a label outside
[0, num_classes) (`bad_label`). A record that TF's parser rejects (not a SequenceExample at all, or a
feature stored with the wrong dtype) stops the pass in both modes, with a `BadRecordError` naming the
file and record (the parser's example name): such a file is broken beyond one record.
"""
import math
import re
import sys
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

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


def make_dataset(file_pattern: str, batch_size: int, *, num_classes: int, max_frames: int = 300,
                 training: bool = False, seed: int = 0, on_error: str = "raise",
                 feature_names: Sequence[str] = ("rgb", "audio"),
                 feature_sizes: Sequence[int] = (1024, 128), id_key: str = "auto",
                 shuffle_buffer: int = 2048, process_index: Optional[int] = None,
                 process_count: Optional[int] = None, repeat: bool = True,
                 file_fraction: float = 1.0, skip_counter: Optional[SkipCounter] = None,
                 pad_to_batches: Optional[int] = None, cycle_length: int = 8,
                 student_frames: Optional[Tuple[int, str]] = None):
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
  if batch_size < 1 or max_frames < 1 or num_classes < 1:
    raise ValueError(f"batch_size, max_frames, num_classes must be >= 1, got {batch_size}, "
                     f"{max_frames}, {num_classes}")
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
                         id_key=id_key, student_frames=student_frames, seed=seed)
  file_ids = tf.data.Dataset.range(len(files))
  if training:
    file_ids = file_ids.shuffle(len(files), seed=seed + 7919 * process_index,
                                reshuffle_each_iteration=True)
    if repeat:
      file_ids = file_ids.repeat()
    records = file_ids.interleave(reader.file_records, cycle_length=min(cycle_length, len(files)),
                                  block_length=1, num_parallel_calls=tf.data.AUTOTUNE,
                                  deterministic=True)
  else:
    records = file_ids.flat_map(reader.file_records)  # one pass, in file order
  if record_fraction is not None:
    f = record_fraction
    records = records.filter(lambda fi, ri, s: tf.math.floor(tf.cast(ri + 1, tf.float64) * f)
                             > tf.math.floor(tf.cast(ri, tf.float64) * f))
  if training and shuffle_buffer > 1:
    records = records.shuffle(shuffle_buffer, seed=seed + 7919 * process_index,
                              reshuffle_each_iteration=True)
  examples = records.map(reader.parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  if on_error == "skip":
    examples = examples.filter(lambda ok, ex: ok)
  examples = examples.map(lambda ok, ex: ex)

  padded_shapes = {k: s.shape for k, s in examples.element_spec.items()}
  frames_per_video = max_frames if student_frames is None else int(student_frames[0])
  padded_shapes["frames"] = tf.TensorShape([frames_per_video, sum(feature_sizes)])
  if training:
    batches = examples.padded_batch(batch_size, padded_shapes=padded_shapes, drop_remainder=True)
  else:
    # B - 1 padding rows after the data, then drop_remainder: exactly ceil(N / B) batches, the last
    # one completed by padding rows, and no all-padding batch when B divides N.
    padding = tf.data.Dataset.from_tensors(_padding_row(examples.element_spec))
    batches = examples.concatenate(padding.repeat(batch_size - 1)).padded_batch(
        batch_size, padded_shapes=padded_shapes, drop_remainder=True)
    if pad_to_batches is not None:
      batches = _pad_to_batches(batches, pad_to_batches, batch_size, files, process_index)
  options = tf.data.Options()
  options.deterministic = True
  return batches.with_options(options).prefetch(tf.data.AUTOTUNE)


def _padding_row(element_spec):
  """An all-zero example (unknown dims, the frames, get length 0: padded_batch fills them)."""
  tf = _tf()
  return {k: tf.zeros([0 if d is None else d for d in spec.shape.as_list()], spec.dtype)
          for k, spec in element_spec.items()}


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


class _RecordReader:
  """Per-file record streams and the per-record parse + validation (all TF graph functions)."""

  def __init__(self, files, *, on_error, skip_counter, num_classes, max_frames, feature_names,
               feature_sizes, id_key, student_frames=None, seed=0):
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

  def _student_indices(self, num_frames, file_index, record_index):
    """The student's frame indices of one video, i32[num_frames_k], and num_frames_k."""
    tf = self.tf
    k, method = self.student_frames
    if method != "random":
      num_k = tf.gather(self._num_k_table, num_frames)
      return tf.gather(self._index_table, num_frames)[:num_k], num_k

    def draw(n, fi, ri):
      rng = np.random.default_rng([self.seed, int(fi), int(ri)])
      idx, num_k = sampling.frame_indices_np(np.array([n], np.int32), k, method, seed_or_rng=rng,
                                             max_frames=self.max_frames)
      return idx[0, :num_k[0]], num_k[0]

    indices, num_k = tf.numpy_function(draw, [num_frames, file_index, record_index], (tf.int32, tf.int32),
                                       stateful=False)
    return tf.ensure_shape(indices, [None]), tf.ensure_shape(num_k, [])

  # ---- one file: (file_index, record_index, serialized) with truncation/CRC detection ----

  def file_records(self, file_index):
    """Records of file `file_index`: (file_index int64, record_index int64, serialized string)."""
    tf = self.tf
    filename = tf.gather(self._names, file_index)
    size = tf.gather(self._sizes, file_index)
    # A corrupt record ends the file's stream (TF then moves to the next file, which ignore_errors
    # turns into end-of-stream). A final sentinel compares the bytes consumed with the file size.
    records = tf.data.TFRecordDataset(filename, buffer_size=1 << 20).ignore_errors()
    records = records.map(lambda s: (s, False))
    records = records.concatenate(tf.data.Dataset.from_tensors((tf.constant(b""), True)))

    def step(state, element):
      index, offset = state
      serialized, is_end = element
      length = tf.cast(tf.strings.length(serialized), tf.int64) + _TFRECORD_OVERHEAD
      new_state = (index + 1, offset + tf.where(is_end, tf.constant(0, tf.int64), length))
      return new_state, (index, offset, serialized, is_end)

    records = records.scan((tf.constant(0, tf.int64), tf.constant(0, tf.int64)), step)

    def check_end(index, offset, serialized, is_end):
      corrupt = is_end & tf.not_equal(offset, size)
      keep = tf.logical_not(is_end)

      def report():
        detail = tf.strings.format("truncated file or bad CRC: {} of {} bytes read", (offset, size))
        return self._handle_error(tf.constant(1), filename, index, detail)

      done = tf.cond(corrupt, report, lambda: tf.constant(True))
      with tf.control_dependencies([done]):
        return tf.identity(keep)

    records = records.filter(check_end)
    return records.map(lambda index, offset, serialized, is_end: (file_index, index, serialized))

  # ---- errors ----

  def _handle_error(self, code, filename, record_index, detail):
    """Raise (in-graph assertion) or count + log one bad record. Returns a bool tensor."""
    tf = self.tf
    reason = tf.gather(self._reasons, code - 1)
    where = tf.strings.join(["file ", filename, ", record ", tf.strings.as_string(record_index)])
    if self.on_error == "raise":
      message = tf.strings.join([_ERROR_MARKER, ": ", where, ": ", reason, ": ", detail])
      with tf.control_dependencies([tf.debugging.Assert(False, [message])]):
        return tf.constant(False)
    update = self.skip_counter.counts.scatter_nd_add(tf.reshape(code - 1, [1, 1]),
                                                     tf.constant([1], tf.int64))
    # C++-side logging would be hidden by TF_CPP_MIN_LOG_LEVEL, so print to stderr.
    printed = tf.print(tf.strings.join(["WARNING: YT-8M reader skipped a bad record: ", where, ": ",
                                        reason, ": ", detail]), output_stream=sys.stderr)
    with tf.control_dependencies([update, printed]):
      return tf.constant(False)

  # ---- one record ----

  def _missing_feature_lists(self, serialized):
    """bool[F]: feature list absent from the record (only called when a list has no frames).

    A feature list's map entry starts with its key field, `0x0a <len> name`; an empty list (a
    zero-frame video) still has that entry. Searching the bytes for it, rather than decoding the
    proto with `tf.io.decode_proto`, never fails on a malformed record (so the error that follows
    names the file and record) and costs nothing on well-formed ones.
    """
    tf = self.tf
    present = [tf.size(tf.strings.split(serialized, sep=_map_key_bytes(name))) > 1
               for name in self.feature_names]
    return tf.logical_not(tf.stack(present))

  def parse(self, file_index, record_index, serialized):
    """One record -> (ok bool, example dict). Raises in-graph for bad records with on_error='raise'."""
    tf = self.tf
    filename = tf.gather(self._names, file_index)
    context_spec = {"labels": tf.io.VarLenFeature(tf.int64)}
    for key in self.id_keys:
      context_spec[key] = tf.io.VarLenFeature(tf.string)
    sequence_spec = {name: tf.io.FixedLenSequenceFeature([], tf.string, allow_missing=True)
                     for name in self.feature_names}
    context, sequences = tf.io.parse_single_sequence_example(
        serialized, context_features=context_spec, sequence_features=sequence_spec,
        example_name=tf.strings.join(["file ", filename, ", record ",
                                      tf.strings.as_string(record_index)]))

    # id: the first key present, in `id_keys` order.
    ids = [context[key].values for key in self.id_keys]
    has_id = [tf.size(v) > 0 for v in ids]
    video_id = tf.constant(b"")
    for key_ids, present in reversed(list(zip(ids, has_id))):
      video_id = tf.where(present, tf.concat([key_ids[:1], [b""]], 0)[0], video_id)
    missing_id = tf.logical_not(tf.reduce_any(tf.stack(has_id)))

    frame_strings = [sequences[name] for name in self.feature_names]
    counts = tf.stack([tf.shape(s)[0] for s in frame_strings])
    missing_feature = tf.cond(tf.reduce_any(counts == 0),
                              lambda: self._missing_feature_lists(serialized),
                              lambda: tf.zeros([len(self.feature_names)], tf.bool))
    size_ok = tf.stack([tf.reduce_all(tf.strings.length(s) == size)
                        for s, size in zip(frame_strings, self.feature_sizes)])
    count_mismatch = tf.reduce_any(counts != counts[0])
    labels = context["labels"].values
    label_ok = tf.reduce_all((labels >= 0) & (labels < self.num_classes))

    code = tf.constant(0)
    for bad, value in reversed([(missing_id, 2), (tf.reduce_any(missing_feature), 3),
                                (tf.logical_not(tf.reduce_all(size_ok)), 4), (count_mismatch, 5),
                                (tf.logical_not(label_ok), 6)]):
      code = tf.where(bad, value, code)

    def report():
      names = tf.constant(list(self.feature_names))
      details = [
          tf.constant(f"context has none of the id keys {list(self.id_keys)}"),
          tf.strings.join(["feature list(s) not in the record: ",
                           tf.strings.reduce_join(tf.boolean_mask(names, missing_feature),
                                                  separator=", ")]),
          tf.strings.format("bytes per frame must be {} for {}; frame byte lengths found: {}",
                            (tf.constant(list(self.feature_sizes)), names,
                             tf.strings.reduce_join(
                                 [tf.strings.format("{}", tf.unique(tf.strings.length(s))[0])
                                  for s in frame_strings], separator=" "))),
          tf.strings.format("frame counts {} differ for features {}", (counts, names)),
          tf.strings.format("labels {} outside [0, {})", (labels, self.num_classes)),
      ]
      detail = tf.switch_case(code - 2, [lambda d=d: d for d in details])
      return self._handle_error(code, filename, record_index, detail)

    ok = tf.cond(code == 0, lambda: tf.constant(True), report)

    # Frames: each feature decoded to uint8[n, size] (fixed_length keeps bad records decodable; they
    # are dropped or raised above), cut to the common length and the first T frames, concatenated.
    num_frames = tf.minimum(tf.reduce_min(counts), self.max_frames)
    extra = {}
    if self.student_frames is None:
      picked = [s[:num_frames] for s in frame_strings]
    else:  # only the student's frames are decoded
      indices, extra["num_frames_k"] = self._student_indices(num_frames, file_index, record_index)
      picked = [tf.gather(s, indices) for s in frame_strings]
    decoded = [tf.io.decode_raw(p, tf.uint8, fixed_length=size)
               for p, size in zip(picked, self.feature_sizes)]
    frames = decoded[0] if len(decoded) == 1 else tf.concat(decoded, axis=1)
    # Padded to max_frames by `padded_batch`, which writes each batch once (a per-record tf.pad
    # would write every padding row twice; most of a batch is padding).
    frames = tf.ensure_shape(frames, [None, sum(self.feature_sizes)])
    valid_labels = tf.boolean_mask(labels, (labels >= 0) & (labels < self.num_classes))
    multi_hot = tf.scatter_nd(valid_labels[:, None], tf.ones_like(valid_labels, tf.int32),
                              [self.num_classes]) > 0
    with tf.control_dependencies([ok]):
      example = {
          "frames": frames,
          "num_frames": tf.identity(num_frames),
          "labels": multi_hot,
          "video_id": video_id,
          "valid": tf.constant(True),
      }
      example.update({key: tf.identity(value) for key, value in extra.items()})
      return tf.identity(ok), example


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
