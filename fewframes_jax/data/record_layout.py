"""Where the frames lie in serialized YouTube-8M `SequenceExample`s, found from the protobuf wire format
without parsing the frames: the student-only input path (`reader.RecordReader` with `student_frames`)
then copies only the k frames a student sees out of each record, instead of every frame.

A record as protobuf serializers write it (TensorFlow's, the YouTube-8M releases', `records.py`'s) is
  0a <varint> context   12 <varint> feature_lists
and feature_lists is a sequence of map entries `0a <varint> 0a <varint> key 12 <varint> FeatureList`. A
feature list of frames of `size` bytes is the same header before every frame,
  0a <varint a> 0a <varint b> 0a <varint size>   (FeatureList.feature: Feature{bytes_list{value: <size bytes>}}),
so frame t of a list whose bytes start at p lies at p + t * stride + len(header), stride = len(header) + size.

`locate` vouches for a record (`Layout.regular`) only when every byte that a parse would read has exactly
this form: the two top-level fields once each and in this order, covering the record; feature_lists a
sequence of such map entries that covers it, each wanted feature's key once; each wanted list a whole
number of strides, and every one of its frames' headers the expected one (so every frame is one bytes
value of `size` bytes, the frame count is the list's length / stride, and `tf.io.parse_sequence_example`
would give exactly these frames). Anything else (the fields in another order or repeated, a feature list
missing or given twice, a frame of another size or several values, a float list, a varint running past
the record or longer than 4 bytes, a key longer than 127 bytes) is not vouched for: the reader then parses the record with `tf.io.parse_sequence_example`
as it does every record of the full path, so what it reports is the parser's and the validation's.

The context (id, labels) is small: `context_prefix` is the record's first field alone, itself a valid
`SequenceExample` with that context and no feature lists, which the parser reads as it would the whole
record's context.

Everything here is TF graph code over a chunk of n records (string[n]): a few hundred ops per chunk,
whatever its size, and only a few bytes read per frame (its header).
"""
from typing import NamedTuple, Sequence

from fewframes_jax.data import records

_CONTEXT_TAG = 0x0A        # SequenceExample.context: field 1, length-delimited
_FEATURE_LISTS_TAG = 0x12  # SequenceExample.feature_lists: field 2, length-delimited
_ENTRY_TAG = 0x0A          # FeatureLists.feature_list (a map entry), MapEntry.key: field 1
_VALUE_TAG = 0x12          # MapEntry.value (the FeatureList): field 2
_VARINT_BYTES = 4          # a length varint of up to 4 bytes (< 2^28; a longer one is not vouched for)
_WINDOW = 1 + _VARINT_BYTES + 2  # bytes read at a field: tag, length, (a map entry's) key tag and key length
EXTRA_ENTRIES = 1          # feature lists besides the wanted ones that `locate` reads through (more: not vouched for)


class Layout(NamedTuple):
  """Where a chunk's frames lie: `locate`'s result.

  regular: bool[n], the record has the form of the module docstring (the other fields are meaningful
    only where it is true); context_end: i32[n], the byte where the context field ends (`context_prefix`);
  counts: i32[n, F], frames of each wanted feature; data_start: i32[n, F], where frame 0's bytes start
    in each wanted list (frame t's at data_start + t * stride).
  """
  regular: object
  context_end: object
  counts: object
  data_start: object


class RecordLayout:
  """The layout of records with feature lists `feature_names` of `feature_sizes` bytes per frame."""

  def __init__(self, feature_names: Sequence[str], feature_sizes: Sequence[int]):
    self.feature_names = tuple(feature_names)
    self.feature_sizes = tuple(int(s) for s in feature_sizes)
    self.headers = tuple(records.frame_header(s) for s in self.feature_sizes)
    self.strides = tuple(len(h) + s for h, s in zip(self.headers, self.feature_sizes))

  def locate(self, serialized) -> Layout:
    """The `Layout` of each record of a chunk (string[n]); never fails, whatever the bytes.

    A few hundred TF ops per chunk, whatever its size: one step per field, every record at once."""
    tf = records.tensorflow()
    length = tf.strings.length(serialized)  # i32[n]; positions are i32 (a record is < 2^31 bytes)
    zero = tf.zeros_like(length)
    # 0a <varint> context 12 <varint> feature_lists, covering the record.
    window = _window(serialized, zero, length, _WINDOW)
    context_length, used, regular = _varint(window[:, 1:1 + _VARINT_BYTES])
    context_end = 1 + used + context_length
    regular &= tf.equal(window[:, 0], _CONTEXT_TAG) & (context_end < length)
    window = _window(serialized, tf.where(regular, context_end, 0), length, _WINDOW)
    lists_length, used, ok = _varint(window[:, 1:1 + _VARINT_BYTES])
    position = context_end + 1 + used
    regular &= ok & tf.equal(window[:, 0], _FEATURE_LISTS_TAG) & tf.equal(position + lists_length, length)

    # The map entries, one step each for every record at once (unrolled: a tf.while_loop would run each
    # step as a function call), until each record's feature_lists end.
    names = tf.constant(list(self.feature_names))
    num_features = len(self.feature_names)
    position = tf.where(regular, position, length)
    found = tf.zeros([tf.size(length), num_features], tf.bool)
    starts = lengths = tf.zeros([tf.size(length), num_features], tf.int32)
    for _ in range(num_features + EXTRA_ENTRIES):
      active = regular & (position < length)
      # 0a <varint entry length> 0a <1-byte key length> key 12 <varint value length> value
      window = _window(serialized, tf.where(active, position, 0), length, _WINDOW)
      entry_length, used, ok = _varint(window[:, 1:1 + _VARINT_BYTES])
      entry_end = position + 1 + used + entry_length
      key_tag = tf.gather(window, used + 1, batch_dims=1)
      key_length = tf.gather(window, used + 2, batch_dims=1)
      key_start = position + used + 3
      key_end = key_start + key_length
      ok &= (tf.equal(window[:, 0], _ENTRY_TAG) & tf.equal(key_tag, _ENTRY_TAG) & (key_length < 0x80)
             & (key_end < entry_end) & (entry_end <= length))
      value = _window(serialized, tf.where(active & ok, key_end, 0), length, 1 + _VARINT_BYTES)
      value_length, used, value_ok = _varint(value[:, 1:])
      value_start = key_end + 1 + used
      ok &= active & value_ok & tf.equal(value[:, 0], _VALUE_TAG) & tf.equal(value_start + value_length, entry_end)
      key = tf.strings.substr(serialized, tf.where(ok, key_start, 0), tf.where(ok, key_length, 0))
      matches = tf.equal(tf.expand_dims(key, 1), names) & tf.expand_dims(ok, 1)  # [n, F]
      regular &= tf.logical_not(active) | (ok & tf.logical_not(tf.reduce_any(matches & found, axis=1)))
      found |= matches
      starts = tf.where(matches, tf.expand_dims(value_start, 1), starts)
      lengths = tf.where(matches, tf.expand_dims(value_length, 1), lengths)
      position = tf.where(active, entry_end, position)
    regular &= tf.equal(position, length) & tf.reduce_all(found, axis=1)

    # Each wanted list: whole strides, every frame's header the expected one.
    counts, data_starts = [], []
    for f, (header, stride) in enumerate(zip(self.headers, self.strides)):
      list_length = tf.where(regular, lengths[:, f], 0)
      regular &= tf.equal(list_length % stride, 0)
      count = tf.where(regular, list_length // stride, 0)
      regular &= _headers_match(serialized, starts[:, f], count, header, stride)
      counts.append(count)
      data_starts.append(starts[:, f] + len(header))
    keep = tf.expand_dims(regular, 1)
    return Layout(regular=regular, context_end=tf.where(regular, context_end, 0),
                  counts=tf.where(keep, tf.stack(counts, axis=1), 0),
                  data_start=tf.where(keep, tf.stack(data_starts, axis=1), 0))

  def picked_frames(self, serialized, layout: Layout, indices, count, features: Sequence[int] = ()):
    """uint8[n, J, D]: frames `indices` i32[n, J] of each (regular) record, zero rows at slots j >= count[i],
    as `records.decode_picked_frames` gives them from the parsed lists (only these frames are copied).
    features: the wanted features to decode (indices into `feature_names`, D the sum of their sizes);
    default all."""
    tf = records.tensorflow()
    mask = tf.range(tf.shape(indices)[1])[None, :] < count[:, None]
    pieces = []
    for f in features or range(len(self.feature_names)):
      size, stride = self.feature_sizes[f], self.strides[f]
      start = layout.data_start[:, f:f + 1] + tf.where(mask, indices, 0) * stride
      picked = tf.strings.substr(tf.expand_dims(serialized, 1), tf.where(mask, start, 0), tf.where(mask, size, 0))
      pieces.append(tf.io.decode_raw(picked, tf.uint8, fixed_length=size))
    return pieces[0] if len(pieces) == 1 else tf.concat(pieces, axis=2)


def context_prefix(serialized, layout: Layout):
  """string[n]: each regular record's context field alone (a `SequenceExample` with the record's context
  and no feature lists); an empty string for the others."""
  tf = records.tensorflow()
  return tf.strings.substr(serialized, tf.zeros_like(layout.context_end), layout.context_end)


def _window(serialized, position, length, width: int):
  """i32[n, width]: the bytes at `position` i32[n] (0 <= position <= length), zeros past the end (a zero
  read there can only end a field whose end the caller then finds past the record)."""
  tf = records.tensorflow()
  piece = tf.strings.substr(serialized, position, tf.minimum(length - position, width))
  return tf.cast(tf.io.decode_raw(piece, tf.uint8, fixed_length=width), tf.int32)


def _varint(window):
  """(value i32[n], bytes used i32[n], ok bool[n]): the varint at the start of window i32[n, _VARINT_BYTES];
  ok is false for one longer than the window."""
  tf = records.tensorflow()
  more = tf.cast(window >= 0x80, tf.int32)
  part = tf.math.cumprod(more, axis=1, exclusive=True)  # byte j is the varint's: bytes before it continue
  used = tf.reduce_sum(part, axis=1)
  ok = tf.reduce_sum(part * (1 - more), axis=1) > 0
  scale = tf.constant([1 << (7 * j) for j in range(_VARINT_BYTES)], tf.int32)
  value = tf.reduce_sum(part * tf.bitwise.bitwise_and(window, 0x7F) * scale, axis=1)
  return value, used, ok


def _headers_match(serialized, start, count, header: bytes, stride: int):
  """bool[n]: the `len(header)` bytes at start + t * stride equal `header` for every t < count[i]."""
  tf = records.tensorflow()
  width = tf.reduce_max(tf.concat([count, tf.zeros([1], count.dtype)], 0))
  t = tf.range(width)
  real = t < tf.expand_dims(count, 1)
  at = tf.where(real, tf.expand_dims(start, 1) + t * stride, 0)
  pieces = tf.strings.substr(tf.expand_dims(serialized, 1), at, tf.where(real, len(header), 0))  # broadcast: no copy
  return tf.reduce_all(tf.equal(pieces, header) | tf.logical_not(real), axis=1)
