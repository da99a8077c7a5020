"""Writing YouTube-8M frame-level records: `tf.train.SequenceExample` bytes and TFRecord files.

The official frame-level schema (see `yt8m.py`):
  context       `id` (2018+) or `video_id` (2017): one bytes value; `labels`: int64 list.
  feature_lists one list per feature (`rgb`, `audio`), one bytes value per frame (uint8, `size` bytes).

`encode_sequence_example` writes the protobuf wire format directly with numpy: every frame of a
well-formed feature has the same few header bytes, so a whole feature list is one `[n, header + d]`
uint8 array. This is about two orders of magnitude faster than filling `tf.train.SequenceExample`
field by field, and the bytes parse into exactly the same proto (tested against `tf.train`).
"""
from typing import Iterable, Mapping, Sequence, Union

import numpy as np

# A feature's frames: uint8 [n, d] (the fast path), or any sequence of per-frame bytes (used by
# tests to write malformed frames, e.g. of the wrong length).
FrameData = Union[np.ndarray, Sequence[bytes]]


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


def _frame_header(size: int) -> bytes:
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
    header = np.frombuffer(_frame_header(d), np.uint8)
    rows = np.empty((n, header.size + d), np.uint8)
    rows[:, :header.size] = header
    rows[:, header.size:] = frames
    return rows.tobytes()
  return b"".join(_field(1, _field(1, _field(1, bytes(f)))) for f in frames)


def _map_entry(key: str, value: bytes) -> bytes:
  return _field(1, _field(1, key.encode()) + _field(2, value))


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
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  count = 0
  with tf.io.TFRecordWriter(path) as writer:
    for record in records:
      writer.write(record)
      count += 1
  return count
