"""The chunked reader of YouTube-8M frame-level records (the schema: `records.py`): parse, validate
and decode in the graph, vectorised over chunks of up to `chunk_size` records (one
`tf.io.parse_sequence_example` and one set of checks per chunk; the output does not depend on the
chunk size). Each record carries its file and record index; an error code is computed per record,
and then, depending on `on_error`,
  "raise": an in-graph assertion fails with a message naming the file, the record index and the reason
           of the chunk's first bad record (`yt8m.as_numpy_batches` raises it as `BadRecordError`);
  "skip":  the record is dropped, a warning line names it, and a `SkipCounter` counts it by reason.
The reasons, the errors and the counter live in `bad_records.py`. Bad records (`REASONS`): a truncated
file or bad CRC (`corrupt_file`: the bytes read from a file are compared with its size, so truncation is
never silent; in "skip" mode the rest of that file is lost and counted as one skip), no id key
(`missing_id`), a feature list that is absent (`missing_feature`; an *empty* list is a valid zero-frame
video), a frame whose byte length is not the feature size or that holds other than one bytes value
(`bad_frame_size`), a label outside [0, num_classes) (`bad_label`). A record that TF's parser rejects
(not a SequenceExample, a feature of the wrong dtype) stops the pass in both modes, with a
`BadRecordError` naming the file and record.

Two record formats (`RECORD_FORMATS`): "yt8m", the official `SequenceExample` above; "tfds", the
`tf.train.Example` that TFDS writes for this project's builder (`tfds_yt8m.py`): the same context keys,
and each feature one bytes value holding all its frames (frame f at bytes [f * size, (f + 1) * size)).
Both are parsed into the same per-frame lists, so validation, decoding and the errors are the same
(a "tfds" blob whose length is not a multiple of the feature size is a `bad_frame_size`).

Features with different frame counts are not bad records: as in the TF Model Garden reader, a video's
length is the minimum over its features and every stream is cut there (zero rows from that length
on). Such records are counted in `SkipCounter.frame_count_mismatches`, in both modes.

Release check (`check_release`): a record keyed `id` (2018+ releases, 3862 classes) read with
num_classes=4716, or one keyed `video_id` (2017 release, 4716 classes) read with another count, stops
the pass in both modes with a `ReleaseMismatchError`: the class count is then wrong, silently.

Video-level check: a record of YouTube-8M's video-level partition (context `mean_rgb` / `mean_audio`,
none of the feature lists) is the wrong download, not a damaged record: it stops the pass in both modes,
before the release check, with a `VideoLevelRecordError` that names the frame-level partitions.
"""
import sys
from typing import List, NamedTuple, Optional

import numpy as np

from fewframes_jax.sampling import rules
from fewframes_jax.data import bad_records
from fewframes_jax.data import record_layout
from fewframes_jax.data import records

_FIRST_RECORD_CODE = 2  # error codes: 1 + index in REASONS; REASONS[1:] are found by parsing a record
RECORD_FORMATS = ("yt8m", "tfds")


def _tf():
  return records.tensorflow()


class _Chunk(NamedTuple):
  """A parsed chunk of n records (before validation), its frames parsed (`lists`) or located (`layout`)."""
  where: object       # string[n]: "file F, record R"
  video_id: object    # string[n]: "" where no id key is present
  keyed: List[object]  # per `id_keys` entry: bool[n], the record's id is under this key
  lists: Optional[List[object]]  # per feature: string[n, (frames), (values per frame)], ragged
  counts: object      # i32[n, F]: frames per feature
  labels: object      # int64[n, (labels)], ragged
  label_ok: object    # bool[labels.values]: inside [0, num_classes)
  layout: Optional[record_layout.Layout] = None  # where the frames lie in `serialized` (instead of lists)
  serialized: object = None  # string[n], the records (with `layout`)


class RecordReader:
  """Per-file chunks of serialized records, and the parse + validation + decode of a chunk.

  Everything is a TF graph function vectorised over a chunk of up to `chunk_size` records (a few dozen
  TF ops per chunk, not per record: op dispatch, not parsing, was most of the cost per record).
  Arguments as in `yt8m.make_dataset`; `counter` receives the skip and mismatch counts.

  The student-only path (`student_frames`, "yt8m" records) locates the frames in the serialized bytes
  (`record_layout.py`) rather than parsing them all, and copies out only the frames it needs. It takes a
  chunk this way only when every record of the chunk is vouched for by the layout, has an id and labels
  in range; any other chunk is parsed in full as without `student_frames`, so the output and every
  error, skip and count are the same either way (`locate_frames=False` parses every chunk in full).
  """

  def __init__(self, files, *, num_classes, max_frames, feature_names, feature_sizes, id_key="auto",
               on_error="raise", counter=None, check_release=True, chunk_size=64, student_frames=None,
               seed=0, record_fraction=None, release_fix="", record_format="yt8m", locate_frames=True):
    tf = _tf()
    if record_format not in RECORD_FORMATS:
      raise ValueError(f"record_format must be one of {RECORD_FORMATS}, got {record_format!r}")
    self.tf = tf
    self.record_format = record_format
    self.files = list(files)
    self.on_error = on_error
    self.counter = bad_records.SkipCounter() if counter is None else counter
    self.check_release = check_release
    self.release_fix = release_fix  # what a release mismatch's message tells to do (`release_message`)
    self.num_classes = num_classes
    self.max_frames = max_frames
    self.feature_names = tuple(feature_names)
    self.feature_sizes = tuple(feature_sizes)
    self.id_keys = bad_records.ID_KEYS if id_key == "auto" else (id_key,)
    self.chunk_size = chunk_size
    self.record_fraction = record_fraction
    self.seed = seed
    self._names = tf.constant(self.files)
    self._sizes = tf.constant([tf.io.gfile.stat(f).length for f in self.files], tf.int64)
    self._reasons = tf.constant(bad_records.REASONS)
    self.student_frames = None
    self.host_scorer = None  # (k, 'learned', scorer): a learned selector scored here (`host_scorer.py`)
    if student_frames is not None:
      k, method = student_frames[:2]
      self.student_frames = (int(k), method)
      if len(student_frames) > 2:
        if not 1 <= int(k) <= max_frames:
          raise ValueError(f"k={k} frames per student video must lie in [1, max_frames={max_frames}]")
        self.host_scorer = student_frames[2]
        self._scored_feature = self.host_scorer.feature_index(self.feature_sizes)
      else:
        rules.frame_indices_np(np.zeros([1], np.int32), k, method, seed_or_rng=0, max_frames=max_frames)
        if method != "random":  # the rule for every length 0..T, looked up per record
          table, table_k = rules.frame_indices_np(np.arange(max_frames + 1), k, method,
                                                     max_frames=max_frames)
          self._index_table, self._num_k_table = tf.constant(table), tf.constant(table_k)
    self._layout = None  # the frames located in the records' bytes (the student-only path)
    if self.student_frames is not None and locate_frames and record_format == "yt8m":
      self._layout = record_layout.RecordLayout(self.feature_names, self.feature_sizes)

  # ---- one file: chunks of (file_index, record_index, serialized), truncation/CRC detection ----

  def file_chunks(self, file_index):
    """Chunks of consecutive records of file `file_index`: (file_index i64[n], record_index i64[n],
    serialized string[n]), n <= chunk_size (fewer where `record_fraction` drops records)."""
    tf = self.tf
    filename = tf.gather(self._names, file_index)

    def truncated(index, offset, size):
      detail = tf.strings.format("truncated file or bad CRC: {} of {} bytes read", (offset, size))
      where = tf.strings.join(["file ", filename, ", record ", tf.strings.as_string(index)])
      return self._handle_errors(tf.constant([1]), where[None], detail[None])

    def label(index, serialized):
      record_index = index + tf.range(tf.size(serialized, out_type=tf.int64))
      file_indices = tf.fill(tf.shape(serialized), tf.cast(file_index, tf.int64))
      if self.record_fraction is None:
        return file_indices, record_index, serialized
      f = self.record_fraction
      keep = (tf.math.floor(tf.cast(record_index + 1, tf.float64) * f)
              > tf.math.floor(tf.cast(record_index, tf.float64) * f))
      return tuple(tf.boolean_mask(t, keep) for t in (file_indices, record_index, serialized))

    chunks = records.read_chunks(filename, tf.gather(self._sizes, file_index), self.chunk_size,
                                 on_short_read=truncated)
    return chunks.map(records.graph_fn(label))

  # ---- errors and counts ----

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
      message = tf.strings.join([bad_records.ERROR_MARKER, ": ", where[0], ": ", reasons[0], ": ", details[0]])
      with tf.control_dependencies([tf.debugging.Assert(False, [message])]):
        return tf.constant(False)
    update = self.counter.counts.scatter_nd_add(
        tf.reshape(codes - 1, [-1, 1]), tf.ones(tf.shape(codes), tf.int64))
    # C++-side logging would be hidden by TF_CPP_MIN_LOG_LEVEL, so print to stderr.
    lines = tf.strings.join(["WARNING: YT-8M reader skipped a bad record: ", where, ": ", reasons, ": ",
                             details])
    printed = tf.print(tf.strings.reduce_join(lines, separator="\n"), output_stream=sys.stderr)
    with tf.control_dependencies([update, printed]):
      return tf.constant(False)

  def _check_release(self, chunk: _Chunk, applies=True):
    """Fails (in both modes) at the first record whose id key contradicts num_classes, where `applies`
    (a bool scalar: the located path's chunks are checked only where that path is taken)."""
    tf = self.tf
    key = next((k for k in self.id_keys if bad_records.release_conflict(k, self.num_classes)), None)
    if not self.check_release or key is None:
      return tf.constant(True)
    keyed = chunk.keyed[self.id_keys.index(key)]

    def fail():
      where = tf.gather(chunk.where, tf.where(keyed)[0, 0])
      message = tf.strings.join([bad_records.RELEASE_MARKER, ": ", where, ": ",
                                 bad_records.release_message(key, self.num_classes, self.release_fix)])
      with tf.control_dependencies([tf.debugging.Assert(False, [message])]):
        return tf.constant(False)

    return tf.cond(applies & tf.reduce_any(keyed), fail, lambda: tf.constant(True))

  def _check_video_level(self, chunk: _Chunk, serialized, missing_feature):
    """Fails (in both modes) at the first record that lacks every feature list and holds a video-level
    context feature (`bad_records.VIDEO_LEVEL_KEYS`), found by its key's bytes as in
    `_missing_feature_lists`."""
    tf = self.tf
    suspects = tf.reduce_all(missing_feature, axis=1)

    def check():
      rows = tf.where(suspects)[:, 0]
      subset = tf.gather(serialized, rows)
      keyed = tf.zeros(tf.shape(subset), tf.bool)
      for key in bad_records.VIDEO_LEVEL_KEYS:
        keyed |= tf.strings.split(subset, sep=records.map_key_field(key)).row_lengths() > 1

      def fail():
        where = tf.gather(chunk.where, tf.gather(rows, tf.where(keyed)[0, 0]))
        message = tf.strings.join([bad_records.VIDEO_LEVEL_MARKER, ": ", where, ": ",
                                   bad_records.video_level_message(self.feature_names)])
        with tf.control_dependencies([tf.debugging.Assert(False, [message])]):
          return tf.constant(False)

      return tf.cond(tf.reduce_any(keyed), fail, lambda: tf.constant(True))

    return tf.cond(tf.reduce_any(suspects), check, lambda: tf.constant(True))

  # ---- one chunk of records: parse, validate, describe, decode ----

  def parse_chunk(self, file_index, record_index, serialized, position=None):
    """A chunk of records -> a dict of batched fields (`yt8m`'s batch contract, leading dim m <= n).

    With on_error='raise' a bad record fails an in-graph assertion naming the first bad record of the
    chunk; with 'skip' bad records are counted, logged and left out (m = number of good records).

    Args:
      file_index, record_index: i64[n]; serialized: string[n].
      position: optional i64[n, 3], each record's place in the training stream (`stream.Position`),
        passed through as the field `position` of the rows kept.
    """
    if self._layout is None:
      return self._parsed_chunk(file_index, record_index, serialized, position)
    return self._located_chunk(file_index, record_index, serialized, position)

  def _parsed_chunk(self, file_index, record_index, serialized, position):
    """`parse_chunk` by `tf.io.parse_sequence_example` of the whole records: every record checked."""
    tf = self.tf
    chunk, ok, checked = self._checked_chunk(file_index, record_index, serialized)
    mismatch = tf.reduce_any(chunk.counts != chunk.counts[:, :1], axis=1) & ok
    counted = self.counter.mismatches.assign_add(tf.reduce_sum(tf.cast(mismatch, tf.int64)))
    example = self._decode(chunk, mismatch, file_index, record_index)
    if position is not None:
      example["position"] = position
    with tf.control_dependencies([checked, counted]):
      if self.on_error == "skip":
        example = tf.cond(tf.reduce_all(ok), lambda: example,
                          lambda: {key: tf.boolean_mask(value, ok) for key, value in example.items()})
      return {key: tf.identity(value) for key, value in example.items()}

  def _located_chunk(self, file_index, record_index, serialized, position):
    """`parse_chunk` with the frames located (`record_layout.py`) when every record of the chunk is vouched
    for by its layout, has an id and its labels in range: the context parsed from each record's context
    field alone, only the frames picked copied. Any other chunk is parsed in full (`_parsed_chunk`).

    The located path is straight-line graph code (a branch would run its ops as a function call, at
    about twice the cost per op), computed for every chunk and harmless on one it cannot vouch for (no
    frames, empty contexts); its effects (the release check, the mismatch count) apply only where it is
    taken, and only the full parse sits in a branch.
    """
    tf = self.tf
    layout = self._layout.locate(serialized)
    regular = tf.reduce_all(layout.regular)
    where = self._where(file_index, record_index)
    # Parsed only when the whole chunk is regular: then the only parse errors are in contexts, as the full
    # parse would find them.
    prefix = tf.where(regular, record_layout.context_prefix(serialized, layout), "")
    context, _, _ = tf.io.parse_sequence_example(prefix, context_features=self._context_spec(), example_names=where)
    video_id, keyed = self._id_of(context, serialized)
    labels = context["labels"]
    chunk = _Chunk(where=where, video_id=video_id, keyed=keyed, lists=None, counts=layout.counts, labels=labels,
                   label_ok=(labels.values >= 0) & (labels.values < self.num_classes), layout=layout,
                   serialized=serialized)
    located = regular & tf.reduce_all(tf.reduce_any(tf.stack(keyed, axis=1), axis=1)) & tf.reduce_all(chunk.label_ok)
    mismatch = tf.reduce_any(chunk.counts != chunk.counts[:, :1], axis=1) & located
    counted = self.counter.mismatches.assign_add(tf.reduce_sum(tf.cast(mismatch, tf.int64)))
    example = self._decode(chunk, mismatch, file_index, record_index)
    if position is not None:
      example["position"] = position
    with tf.control_dependencies([self._check_release(chunk, located), counted]):
      example = {key: tf.identity(value) for key, value in example.items()}
    return tf.cond(located, lambda: example,
                   lambda: self._parsed_chunk(file_index, record_index, serialized, position))

  def exact_chunk(self, file_index, record_index, serialized):
    """A chunk of records, parsed, validated and checked as `parse_chunk` does (on_error='raise' only),
    with every frame of every feature as stored: no `max_frames` cut, no padding, each feature its own
    length (what a TFDS example holds, `tfds_yt8m.py`).

    Returns a dict: record_index i64[n]; video_id string[n]; labels i64[L] with labels_splits i64[n + 1]
    (record i's labels: labels[labels_splits[i]:labels_splits[i + 1]]); per feature `name`, uint8[F, size]
    with `name`_splits i64[n + 1] (record i's frames, likewise).
    """
    if self.on_error != "raise":
      raise ValueError("exact_chunk reads every record or fails (on_error='raise')")
    tf = self.tf
    chunk, _, checked = self._checked_chunk(file_index, record_index, serialized)
    out = {"record_index": record_index, "video_id": chunk.video_id, "labels": chunk.labels.values,
           "labels_splits": chunk.labels.row_splits}
    for name, size, frames in zip(self.feature_names, self.feature_sizes, chunk.lists):
      out[name] = tf.io.decode_raw(frames.flat_values, tf.uint8, fixed_length=size)
      out[f"{name}_splits"] = frames.row_splits
    with tf.control_dependencies([checked]):
      return {key: tf.identity(value) for key, value in out.items()}

  def _checked_chunk(self, file_index, record_index, serialized):
    """(chunk, ok bool[n]: the good records, checked: a tensor to depend on): the chunk parsed and
    validated; the video-level check, then the release check, then the bad records by `on_error`."""
    tf = self.tf
    chunk = self._parse(file_index, record_index, serialized)
    code, missing_feature = self._validate(chunk, serialized)
    ok = tf.equal(code, 0)

    def report():
      rows = tf.where(tf.logical_not(ok))[:, 0]
      if self.on_error == "raise":
        rows = rows[:1]
      details = tf.map_fn(lambda row: self._describe(chunk, code, missing_feature, row), rows,
                          fn_output_signature=tf.string)
      return self._handle_errors(tf.gather(code, rows), tf.gather(chunk.where, rows), details)

    with tf.control_dependencies([self._check_video_level(chunk, serialized, missing_feature)]):
      release_checked = tf.identity(self._check_release(chunk))
    with tf.control_dependencies([release_checked]):  # both before any bad-record error
      checked = tf.cond(tf.reduce_all(ok), lambda: tf.constant(True), report)
    return chunk, ok, checked

  def _where(self, file_index, record_index):
    """string[n]: "file F, record R", how errors and parser messages name a record."""
    tf = self.tf
    return tf.strings.join(["file ", tf.gather(self._names, file_index), ", record ",
                            tf.strings.as_string(record_index)])

  def _context_spec(self):
    tf = self.tf
    context_spec = {"labels": tf.io.RaggedFeature(tf.int64)}
    for key in self.id_keys:
      context_spec[key] = tf.io.RaggedFeature(tf.string)
    return context_spec

  def _id_of(self, context, serialized):
    """(video_id string[n], keyed: per `id_keys` entry bool[n]): the id under the first key present,
    in `id_keys` order ("" where none is)."""
    tf = self.tf
    video_id = tf.fill(tf.shape(serialized), "")
    unclaimed = tf.ones(tf.shape(serialized), tf.bool)
    keyed = []
    for key in self.id_keys:
      present = context[key].row_lengths() > 0
      keyed.append(present & unclaimed)
      unclaimed &= tf.logical_not(present)
      video_id = tf.where(keyed[-1], context[key].to_tensor(default_value="", shape=[None, 1])[:, 0],
                          video_id)
    return video_id, keyed

  def _parse(self, file_index, record_index, serialized) -> _Chunk:
    tf = self.tf
    where = self._where(file_index, record_index)
    context_spec = self._context_spec()
    sequence_spec = {name: tf.io.RaggedFeature(tf.string) for name in self.feature_names}
    if self.record_format == "tfds":
      context = tf.io.parse_example(serialized, {**context_spec, **sequence_spec}, example_names=where)
      sequences = {name: _frames_of_blobs(context[name], size)
                   for name, size in zip(self.feature_names, self.feature_sizes)}
    else:
      context, sequences, _ = tf.io.parse_sequence_example(
          serialized, context_features=context_spec, sequence_features=sequence_spec, example_names=where)
    video_id, keyed = self._id_of(context, serialized)
    lists = [sequences[name] for name in self.feature_names]
    counts = tf.stack([frames.row_lengths() for frames in lists], axis=1)
    labels = context["labels"]
    return _Chunk(where=where, video_id=video_id, keyed=keyed, lists=lists, counts=counts, labels=labels,
                  label_ok=(labels.values >= 0) & (labels.values < self.num_classes))

  def _validate(self, chunk: _Chunk, serialized):
    """(code i32[n]: 0 for a good record, else 1 + the index of its first reason in REASONS;
    missing_feature bool[n, F])."""
    tf = self.tf
    missing_id = tf.logical_not(tf.reduce_any(tf.stack(chunk.keyed, axis=1), axis=1))
    zero_counts = tf.equal(chunk.counts, 0)
    missing_feature = tf.cond(tf.reduce_any(zero_counts),
                              lambda: self._missing_feature_lists(serialized, zero_counts),
                              lambda: tf.zeros_like(zero_counts))
    # A well-formed frame is one value of size_f bytes.
    bad_size = tf.zeros(tf.shape(serialized), tf.bool)
    for frames, size in zip(chunk.lists, self.feature_sizes):
      value_splits = tf.gather(frames.values.row_splits, frames.row_splits)
      bad_size |= _row_any(tf.strings.length(frames.flat_values) != size, value_splits)
      bad_size |= _row_any(frames.values.row_lengths() != 1, frames.row_splits)
    bad_label = _row_any(tf.logical_not(chunk.label_ok), chunk.labels.row_splits)
    code = tf.zeros(tf.shape(serialized), tf.int32)
    bad = [missing_id, tf.reduce_any(missing_feature, axis=1), bad_size, bad_label]  # REASONS[1:]
    for value, flags in reversed(list(enumerate(bad, _FIRST_RECORD_CODE))):
      code = tf.where(flags, value, code)
    return code, missing_feature

  def _describe(self, chunk: _Chunk, code, missing_feature, row):
    """The detail text of bad record `row` (a scalar string, by its reason)."""
    tf = self.tf
    names = tf.constant(list(self.feature_names))
    frames = [f[row] for f in chunk.lists]
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
        tf.strings.format("labels {} outside [0, {})", (chunk.labels[row], self.num_classes)),
    ]
    return tf.switch_case(code[row] - _FIRST_RECORD_CODE, [lambda d=d: d for d in details])

  def _decode(self, chunk: _Chunk, mismatch, file_index, record_index):
    """The batch fields of every record of the chunk (bad ones included), leading dim n."""
    tf = self.tf
    n = tf.shape(chunk.counts)[0]
    num_frames = tf.minimum(tf.reduce_min(chunk.counts, axis=1), self.max_frames)
    example = {}
    if self.student_frames is None:
      frames = records.decode_frames(chunk.lists, self.feature_sizes, self.max_frames)
      example["frames"] = tf.cond(tf.reduce_any(mismatch), lambda: _zero_rows_from(frames, num_frames),
                                  lambda: frames)
    else:  # only the student's frames are decoded; they are all below num_frames
      indices, num_k = self._student_indices(chunk, num_frames, file_index, record_index)
      example["frames"] = self._picked_frames(chunk, indices, num_k)
      example["num_frames_k"] = num_k
    labels = chunk.labels
    valid_labels = tf.boolean_mask(
        tf.stack([tf.cast(labels.value_rowids(), tf.int64), labels.values], axis=1), chunk.label_ok)
    example.update({
        "num_frames": num_frames,
        "labels": tf.scatter_nd(valid_labels, tf.ones(tf.shape(valid_labels)[:1], tf.int32),
                                tf.cast([n, self.num_classes], tf.int64)) > 0,
        "video_id": chunk.video_id,
        "valid": tf.ones([n], tf.bool),
    })
    return example

  def _picked_frames(self, chunk: _Chunk, indices, count, features=()):
    """uint8[n, J, D]: frames `indices` i32[n, J] of features `features` (default all), zero rows at slots
    j >= count[i], copied from the located frames or decoded from the parsed lists."""
    features = tuple(features) or tuple(range(len(self.feature_names)))
    if chunk.layout is not None:
      return self._layout.picked_frames(chunk.serialized, chunk.layout, indices, count, features)
    return records.decode_picked_frames([chunk.lists[f] for f in features],
                                        [self.feature_sizes[f] for f in features], indices, count)

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
    found = tf.stack([tf.strings.split(subset, sep=records.map_key_field(name)).row_lengths() > 1
                      for name in self.feature_names], axis=1)
    present = tf.tensor_scatter_nd_update(tf.ones_like(zero_counts), rows[:, None], found)
    return zero_counts & tf.logical_not(present)

  def _student_indices(self, chunk: _Chunk, num_frames, file_index, record_index):
    """The student's frame indices per video, i32[n, k], and num_frames_k i32[n]."""
    tf = self.tf
    k, method = self.student_frames
    if self.host_scorer is not None:  # the scored stream of the real frames only, zero rows after
      f = self._scored_feature
      every = tf.broadcast_to(tf.range(self.max_frames)[None, :], [tf.shape(num_frames)[0], self.max_frames])
      stream = self._picked_frames(chunk, every, num_frames, features=(f,))
      return self.host_scorer.indices(stream, num_frames, k)
    if method != "random":
      return tf.gather(self._index_table, num_frames), tf.gather(self._num_k_table, num_frames)

    def draw(lengths, file_indices, record_indices):
      indices = np.zeros([len(lengths), k], np.int32)
      num_k = np.zeros([len(lengths)], np.int32)
      for row, (n, fi, ri) in enumerate(zip(lengths, file_indices, record_indices)):
        rng = np.random.default_rng([self.seed, int(fi), int(ri)])  # per record: chunking-invariant
        idx, nk = rules.frame_indices_np(np.array([n], np.int32), k, method, seed_or_rng=rng,
                                            max_frames=self.max_frames)
        indices[row], num_k[row] = idx[0], nk[0]
      return indices, num_k

    indices, num_k = tf.numpy_function(draw, [num_frames, file_index, record_index],
                                       (tf.int32, tf.int32), stateful=False)
    return tf.ensure_shape(indices, [None, k]), tf.ensure_shape(num_k, [None])


def _zero_rows_from(frames, num_frames):
  """frames uint8[n, T, D] with rows t >= num_frames[i] set to zero."""
  tf = _tf()
  keep = tf.range(tf.shape(frames)[1])[None, :] < num_frames[:, None]
  return tf.where(keep[:, :, None], frames, tf.zeros([], frames.dtype))


def _frames_of_blobs(blobs, size: int):
  """A "tfds" record's feature (string[n, (values)], normally one value of all its frames) as the
  per-frame lists of a "yt8m" record: string[n, (frames), (1)], frame f = bytes [f * size, (f + 1) * size)
  of the record's values joined; a shorter last piece is kept (a bad frame size for the validation)."""
  tf = _tf()
  joined = tf.strings.reduce_join(blobs, axis=1)
  length = tf.strings.length(joined)
  frames = (length + size - 1) // size
  width = tf.reduce_max(tf.concat([frames, [0]], 0))
  starts = tf.range(width)[None, :] * size
  real = tf.range(width)[None, :] < frames[:, None]
  pieces = tf.strings.substr(joined[:, None], tf.where(real, starts, 0),  # broadcast: no copy of a record
                             tf.where(real, tf.minimum(size, length[:, None] - starts), 0))
  splits_dtype = blobs.row_splits.dtype  # as the "yt8m" parse gives them
  per_record = tf.RaggedTensor.from_tensor(pieces, lengths=tf.cast(frames, splits_dtype),
                                           row_splits_dtype=splits_dtype)
  one_value = tf.RaggedTensor.from_row_lengths(per_record.values, tf.ones(tf.shape(per_record.values), splits_dtype))
  return per_record.with_values(one_value)


def _row_any(flags, row_splits):
  """bool[n]: any of `flags` (bool[N]) in each row of `row_splits` (int[n + 1]), by prefix sums."""
  tf = _tf()
  cumulative = tf.concat([[0], tf.cumsum(tf.cast(flags, tf.int32))], 0)
  return tf.gather(cumulative, row_splits[1:]) > tf.gather(cumulative, row_splits[:-1])


class RequestReader(RecordReader):
  """The parse + validation + decode of a batch of serialized records handed over in memory (a serving
  request, `export.py`): no files, one chunk per request, bad records always raise.

  As `RecordReader.parse_chunk`, with two differences for serving: a bad record fails an in-graph
  assertion (`tf.errors.InvalidArgumentError` when run) whose text names the request's row (`request
  record R`, 0-based) and the reason; a record's labels are not read (a serving request may have none,
  and any it has are ignored, so `labels` comes out all False). The release check follows
  `check_release` as in training. Arguments as in `yt8m.make_dataset`; `student_frames` takes a
  deterministic rule only (the 'random' rule draws on the host in numpy, which a SavedModel cannot hold).
  """

  def __init__(self, *, num_classes, max_frames, feature_names, feature_sizes, id_key="auto",
               check_release=True, student_frames=None):
    if student_frames is not None and student_frames[1] == "random":
      raise ValueError("RequestReader: the 'random' rule selects on the device (student_frames=None)")
    super().__init__([], num_classes=num_classes, max_frames=max_frames, feature_names=feature_names,
                     feature_sizes=feature_sizes, id_key=id_key, on_error="raise", check_release=check_release,
                     student_frames=student_frames, locate_frames=False)
    self._names = self.tf.constant([REQUEST_SOURCE])

  def parse_request(self, serialized):
    """string[n] serialized SequenceExamples -> the batch dict of `parse_chunk` (leading dim n; frames
    uint8[n, T, D], or [n, k, D] plus num_frames_k with `student_frames`)."""
    tf = self.tf
    n = tf.size(serialized, out_type=tf.int64)
    return self.parse_chunk(tf.zeros([n], tf.int64), tf.range(n), serialized)

  def _parse(self, file_index, record_index, serialized) -> _Chunk:
    chunk = super()._parse(file_index, record_index, serialized)
    tf = self.tf
    no_labels = tf.RaggedTensor.from_row_lengths(tf.zeros([0], tf.int64),
                                                 tf.zeros(tf.shape(serialized), tf.int64))
    return chunk._replace(where=tf.strings.join(["request record ", tf.strings.as_string(record_index)]),
                          labels=no_labels, label_ok=tf.zeros([0], tf.bool))


REQUEST_SOURCE = "<request>"  # the "file" that TF's own parser errors name (`file <request>, record R`)
