"""The bytes of YouTube-8M frame-level records, both ways: writing `tf.train.SequenceExample` bytes and
TFRecord files; reading TFRecord files in numbered chunks (truncation detected) and decoding the parsed
frame lists into uint8 arrays (the parse and validation of records: `reader.py`).

The official frame-level schema, one `tf.train.SequenceExample` per video:
  context       `id` (2018+ releases) or `video_id` (2017): one bytes value; `labels`: int64 list.
  feature_lists one list per feature (`rgb`: 1024 bytes per frame, `audio`: 128), one bytes value per
                frame (uint8, `size` bytes).

`encode_sequence_example` writes the protobuf wire format directly with numpy: every frame of a
well-formed feature has the same few header bytes, so a whole feature list is one `[n, header + d]`
uint8 array. This is about two orders of magnitude faster than filling `tf.train.SequenceExample`
field by field, and the bytes parse into exactly the same proto (tested against `tf.train`).
"""
import os
import re
import sys
import tempfile
from typing import Iterable, Mapping, Sequence, Union

import numpy as np

# A feature's frames: uint8 [n, d] (the fast path), or any sequence of per-frame bytes (used by
# tests to write malformed frames, e.g. of the wrong length).
FrameData = Union[np.ndarray, Sequence[bytes]]

# Bytes of TFRecord framing around each record: length (8) + length CRC (4) + data CRC (4).
TFRECORD_OVERHEAD = 16


# TensorFlow's C++ start-up lines, printed while it is imported: absl's "All log messages before
# absl::InitializeLog() ..." notice and INFO/WARNING lines (the oneDNN and CPU-feature notices, which
# TF_CPP_MIN_LOG_LEVEL no longer hides in TensorFlow 2.21), with the CPU-feature notice's second line.
_STARTUP_NOISE = re.compile(r"WARNING: All log messages before absl::InitializeLog|[IW]\d{4} \d\d:\d\d:\d\d"
                            r"|To enable the following instructions")
_STARTUP_ERROR = re.compile(r"E\d{4} \d\d:\d\d:\d\d")


def _import_tensorflow():
  """`import tensorflow`, its C++ start-up lines hidden when TF_CPP_MIN_LOG_LEVEL >= 1 (`cli.quiet_start`
  sets 2): stderr's file descriptor is captured during the import and every other line is passed on
  (its ERROR lines too, unless the level is 3); if the import fails, everything captured is passed on."""
  try:
    level = int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
  except ValueError:
    level = 0
  if level < 1 or "tensorflow" in sys.modules:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    return tf
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as captured:
    os.dup2(captured.fileno(), 2)
    failed = True
    try:
      import tensorflow as tf  # pylint: disable=g-import-not-at-top
      failed = False
    finally:
      os.dup2(saved, 2)
      os.close(saved)
      captured.seek(0)
      lines = captured.read().decode("utf-8", "replace").splitlines(keepends=True)
      kept = lines if failed else [line for line in lines if not (
          _STARTUP_NOISE.match(line) or (level >= 3 and _STARTUP_ERROR.match(line)))]
      if kept:
        sys.stderr.write("".join(kept))
        sys.stderr.flush()
  return tf


def tensorflow():
  """TensorFlow, imported on first use with every GPU hidden from it: the input pipeline runs on the
  host, and JAX needs the accelerators' memory (the Flax examples' `set_visible_devices([], "GPU")`).
  Every TensorFlow use of the project goes through here, so the GPUs are hidden before TensorFlow
  initialises its runtime (after that they cannot be), and its start-up lines are hidden
  (`_import_tensorflow`); importing TensorFlow costs seconds, so it happens only where data is read or
  written."""
  tf = _import_tensorflow()
  try:
    tf.config.set_visible_devices([], "GPU")
  except (RuntimeError, ValueError):  # already initialised (then it was hidden here before)
    pass
  return tf


def _varint(value: int) -> bytes:
  value &= (1 << 64) - 1  # negative int64 are written as 10-byte two's complement
  out = bytearray()
  while True:
    byte = value & 0x7F
    value >>= 7
    if value:
      out.append(byte | 0x80)
    else:
      out.append(byte)
      return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
  """A length-delimited field (wire type 2)."""
  return _varint((number << 3) | 2) + _varint(len(payload)) + payload


def _bytes_feature(values: Sequence[bytes]) -> bytes:
  """A serialized `Feature{bytes_list{value: values}}`."""
  return _field(1, b"".join(_field(1, v) for v in values))


def _int64_feature(values: Sequence[int]) -> bytes:
  """A serialized `Feature{int64_list{value: values}}` (packed)."""
  packed = b"".join(_varint(int(v)) for v in values)
  return _field(3, _field(1, packed) if len(values) else b"")


def frame_header(size: int) -> bytes:
  """The bytes before each frame's data in a `FeatureList`: Feature{bytes_list{value: <size bytes>}}."""
  value_header = b"\x0a" + _varint(size)
  bytes_list_len = len(value_header) + size
  feature_len = 1 + len(_varint(bytes_list_len)) + bytes_list_len
  return b"\x0a" + _varint(feature_len) + b"\x0a" + _varint(bytes_list_len) + value_header


def _feature_list(frames: FrameData) -> bytes:
  """A serialized `FeatureList` with one bytes Feature per frame."""
  if isinstance(frames, np.ndarray):
    if frames.dtype != np.uint8 or frames.ndim != 2:
      raise ValueError(f"frames must be uint8 [n, d], got {frames.dtype} {frames.shape}")
    n, d = frames.shape
    if n == 0:
      return b""
    header = np.frombuffer(frame_header(d), np.uint8)
    rows = np.empty((n, header.size + d), np.uint8)
    rows[:, :header.size] = header
    rows[:, header.size:] = frames
    return rows.tobytes()
  return b"".join(_field(1, _field(1, _field(1, bytes(f)))) for f in frames)


def map_key_field(key: str) -> bytes:
  """The serialized key field that starts a protobuf map entry (e.g. a feature list named `key`)."""
  return _field(1, key.encode())


def _map_entry(key: str, value: bytes) -> bytes:
  return _field(1, map_key_field(key) + _field(2, value))


def encode_sequence_example(*, video_id: bytes, labels: Sequence[int],
                            features: Mapping[str, FrameData], id_key: str = "id",
                            extra_context: Mapping[str, bytes] = None) -> bytes:
  """Serializes one video as a `tf.train.SequenceExample` in the official YT-8M schema.

  Args:
    video_id: the id bytes, written under context key `id_key`; if `id_key` is empty no id is written.
    labels: class indices (int64). Written even when empty.
    features: feature name -> uint8 [n, d] frames (or per-frame bytes). A name that is present with
      n = 0 gives an empty feature list (a zero-frame video); a name that is absent is a missing feature.
    id_key: `id` (2018+ releases) or `video_id` (2017).
    extra_context: more context entries, name -> serialized `Feature` bytes (tests only).

  Returns:
    The serialized proto.
  """
  context = b""
  if id_key:
    context += _map_entry(id_key, _bytes_feature([video_id]))
  context += _map_entry("labels", _int64_feature(labels))
  for key, value in (extra_context or {}).items():
    context += _map_entry(key, value)
  lists = b"".join(_map_entry(name, _feature_list(frames)) for name, frames in features.items())
  return _field(1, context) + _field(2, lists)


def write_tfrecord(path: str, records: Iterable[bytes]) -> int:
  """Writes serialized records to an uncompressed TFRecord file; returns the number written."""
  tf = tensorflow()

  count = 0
  with tf.io.TFRecordWriter(path) as writer:
    for record in records:
      writer.write(record)
      count += 1
  return count


def graph_fn(fn):
  """`fn` for a tf.data transformation, traced as written: the reader's functions are plain graph code
  (`tf.cond`, no Python control flow on tensors), so autograph's conversion would only cost time (about
  3 s of a training pipeline's 4 s set-up on a 2-core CPU)."""
  tf = tensorflow()
  return tf.autograph.experimental.do_not_convert(fn)


def read_chunks(filename, size, chunk_size: int, *, on_short_read):
  """The records of one TFRecord file in chunks: a `tf.data.Dataset` of (index i64, serialized
  string[n]), 1 <= n <= chunk_size, where `index` numbers the chunk's first record in the file.

  A corrupt record (bad CRC, or a truncated file) ends the file's stream silently in TF, so the bytes
  consumed, counted per chunk, are compared with the file's `size` at the end: if they differ,
  `on_short_read(index of the first record not read, bytes read, size)` is called in-graph (it may fail
  an assertion) and must return a tensor the stream depends on.

  Args:
    filename: string scalar tensor; size: i64 scalar tensor, the file's length in bytes.
  """
  tf = tensorflow()
  # TF moves to the next file after a corrupt record, which ignore_errors turns into end-of-stream.
  # A final empty chunk (`batch` never yields one) marks the end.
  chunks = tf.data.TFRecordDataset(filename, buffer_size=1 << 20).ignore_errors().batch(chunk_size)
  chunks = chunks.concatenate(tf.data.Dataset.from_tensors(tf.zeros([0], tf.string)))

  def step(state, serialized):
    index, offset = state
    count = tf.size(serialized, out_type=tf.int64)
    nbytes = tf.reduce_sum(tf.cast(tf.strings.length(serialized), tf.int64))
    return (index + count, offset + nbytes + TFRECORD_OVERHEAD * count), (index, offset, serialized)

  def not_end(index, offset, serialized):
    is_end = tf.equal(tf.size(serialized), 0)
    done = tf.cond(is_end & tf.not_equal(offset, size), lambda: on_short_read(index, offset, size),
                   lambda: tf.constant(True))
    with tf.control_dependencies([done]):
      return tf.logical_not(is_end)

  chunks = chunks.scan((tf.constant(0, tf.int64), tf.constant(0, tf.int64)), graph_fn(step))
  chunks = chunks.filter(graph_fn(not_end))
  return chunks.map(graph_fn(lambda index, offset, serialized: (index, serialized)))


def decode_frames(lists, sizes: Sequence[int], max_frames: int):
  """uint8[n, T, D]: each video's first T frames, zero rows after each feature's own length (one
  decode per feature of all the frames, then one copy into the padded layout).

  Args:
    lists: per feature, its frame lists as parsed by `tf.io.RaggedFeature(tf.string)`:
      string[n, (frames), (values per frame)], each frame one value of `sizes[f]` bytes.
    sizes: bytes per frame of each feature (D = their sum); max_frames: T.
  """
  tf = tensorflow()
  pieces = []
  for frame_lists, size in zip(lists, sizes):
    decoded = tf.io.decode_raw(frame_lists.flat_values, tf.uint8, fixed_length=size)
    value_splits = tf.gather(frame_lists.values.row_splits, frame_lists.row_splits)
    per_video = tf.RaggedTensor.from_row_splits(decoded, value_splits, validate=False)
    pieces.append(per_video.to_tensor(shape=[None, max_frames, size]))
  return pieces[0] if len(pieces) == 1 else tf.concat(pieces, axis=2)


def decode_picked_frames(lists, sizes: Sequence[int], indices, count):
  """uint8[n, J, D]: frames `indices` i32[n, J] of each video, zero rows at slots j >= count[i]
  (only those frames are decoded). `lists`, `sizes` as in `decode_frames`; each index below
  count[i] must be a frame of video i in every feature."""
  tf = tensorflow()
  mask = tf.range(tf.shape(indices)[1])[None, :] < count[:, None]
  indices = tf.where(mask, indices, 0)
  pieces = []
  for frame_lists, size in zip(lists, sizes):
    frame_pos = frame_lists.row_splits[:-1, None] + indices  # <= total frames: a safe gather
    value_pos = tf.gather(frame_lists.values.row_splits, frame_pos)
    values = frame_lists.flat_values
    last = tf.size(values) - 1
    picked = tf.cond(last >= 0, lambda v=values, p=value_pos, l=last: tf.gather(v, tf.minimum(p, l)),
                     lambda p=value_pos: tf.fill(tf.shape(p), ""))
    picked = tf.where(mask, picked, "")
    pieces.append(tf.io.decode_raw(picked, tf.uint8, fixed_length=size))
  return pieces[0] if len(pieces) == 1 else tf.concat(pieces, axis=2)
