"""The student-only input path that locates its frames in the records' bytes (fewframes_jax.data.record_layout,
`make_dataset(student_frames=..., locate_frames=True)`) gives exactly what the path that parses every frame
gives: the same batches on well-formed records of every shape, and the same errors, skips and counts on bad
ones; and `locate` vouches only for records whose frames the parser would find where it says."""
import numpy as np
import pytest

from fewframes_jax.data import bad_records, record_layout, records, yt8m

FS = (8, 4)
T = 12
C = 6


def _record(rng, index, rgb, audio=None, *, labels=(1,), id_key="id", extra=None, order=("rgb", "audio"),
            sizes=FS):
  audio = rgb if audio is None else audio
  frames = {"rgb": rng.integers(0, 256, (rgb, sizes[0]), dtype=np.uint8),
            "audio": rng.integers(0, 256, (audio, sizes[1]), dtype=np.uint8)}
  features = {name: frames[name] for name in order}
  features.update(extra or {})
  return records.encode_sequence_example(video_id=b"v%03d" % index, labels=list(labels), features=features,
                                         id_key=id_key)


def _good_records(rng, sizes=FS, max_frames=T):
  """Every shape the located path must read as the parser does: empty, shorter than k, exactly k, longer
  than max_frames (truncated), features of different lengths, both id keys, several labels, feature lists
  in the other order, a feature list the reader does not read."""
  lengths = (0, 1, 3, 4, 5, 9, max_frames - 1, max_frames, max_frames + 1, 3 * max_frames)
  out = [_record(rng, i, n, sizes=sizes) for i, n in enumerate(lengths)]
  out += [_record(rng, 20, 7, 3, sizes=sizes), _record(rng, 21, 2, max_frames + 5, sizes=sizes),
          _record(rng, 22, 6, id_key="video_id", sizes=sizes), _record(rng, 23, 5, labels=(0, 2, 5), sizes=sizes),
          _record(rng, 24, 8, labels=(), sizes=sizes), _record(rng, 25, 6, order=("audio", "rgb"), sizes=sizes),
          _record(rng, 26, 6, extra={"other": np.ones((2, 3), np.uint8)}, sizes=sizes)]
  return out


def _read(pattern, student_frames, *, locate, sizes=FS, max_frames=T, counter=None, **kwargs):
  kwargs = dict(dict(num_classes=C, max_frames=max_frames, feature_sizes=sizes, process_index=0, process_count=1,
                     training=False, student_frames=student_frames, locate_frames=locate, skip_counter=counter,
                     check_release=False), **kwargs)
  batches = list(yt8m.as_numpy_batches(yt8m.make_dataset(pattern, 5, **kwargs)))
  return {key: np.concatenate([b[key] for b in batches]) for key in batches[0]}


def _assert_same(a, b):
  assert a.keys() == b.keys()
  for key in a:
    assert a[key].dtype == b[key].dtype and a[key].shape == b[key].shape, key
    np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.fixture(scope="module")
def good_pattern(tmp_path_factory):
  rng = np.random.default_rng(0)
  root = tmp_path_factory.mktemp("layout")
  recs = _good_records(rng)
  records.write_tfrecord(str(root / "a.tfrecord"), recs[:9])
  records.write_tfrecord(str(root / "b.tfrecord"), recs[9:])
  return str(root / "*.tfrecord"), recs


def test_locate_finds_every_frame_of_well_formed_records(good_pattern):
  tf = records.tensorflow()
  _, recs = good_pattern
  layout = record_layout.RecordLayout(("rgb", "audio"), FS)
  located = layout.locate(tf.constant(recs))
  assert located.regular.numpy().all()
  _, lists, _ = tf.io.parse_sequence_example(
      recs, sequence_features={name: tf.io.RaggedFeature(tf.string) for name in ("rgb", "audio")})
  for f, name in enumerate(("rgb", "audio")):
    frames = lists[name].to_list()
    assert located.counts.numpy()[:, f].tolist() == [len(v) for v in frames]
    for i, record in enumerate(recs):
      start = int(located.data_start.numpy()[i, f])
      stride = layout.strides[f]
      got = [record[start + t * stride:start + t * stride + FS[f]] for t in range(len(frames[i]))]
      assert got == [v[0] for v in frames[i]]


@pytest.mark.parametrize("method", ["uniform", "random"])
def test_located_student_input_equals_the_parsed_one(good_pattern, method):
  pattern, _ = good_pattern
  # Chunks of 3 against the parsed path's default: the output does not depend on the chunk size.
  _assert_same(_read(pattern, (4, method), locate=True, chunk_size=3), _read(pattern, (4, method), locate=False))


@pytest.mark.parametrize("names", [("rgb",), ("audio",)])
def test_one_stream_configs(good_pattern, names):
  pattern, _ = good_pattern
  sizes = tuple(FS[("rgb", "audio").index(n)] for n in names)
  kwargs = dict(feature_names=names, sizes=sizes)
  _assert_same(_read(pattern, (5, "uniform"), locate=True, **kwargs),
               _read(pattern, (5, "uniform"), locate=False, **kwargs))


def test_youtube8m_sizes_and_lengths(tmp_path):
  sizes, max_frames = (1024, 128), 300
  rng = np.random.default_rng(1)
  recs = [_record(rng, i, n, sizes=sizes) for i, n in enumerate((0, 1, 9, 10, 11, 150, 299, 300, 301, 360))]
  recs.append(_record(rng, 10, 200, 180, sizes=sizes))
  path = str(tmp_path / "yt8m.tfrecord")
  records.write_tfrecord(path, recs)
  kwargs = dict(sizes=sizes, max_frames=max_frames)
  _assert_same(_read(path, (10, "uniform"), locate=True, **kwargs), _read(path, (10, "uniform"), locate=False, **kwargs))


def test_locate_vouches_only_for_what_the_parser_reads_there():
  """Damaged copies of good records (a byte changed anywhere, cut short, bytes appended): where `locate`
  vouches for one, the parser reads its frames where `locate` says, and its context as it reads the context
  prefix (the same values, or for a damaged context the same error)."""
  tf = records.tensorflow()
  rng = np.random.default_rng(2)
  layout = record_layout.RecordLayout(("rgb", "audio"), FS)
  damaged = []
  for i, good in enumerate(_good_records(rng)[2:8:2] + [_record(rng, 30, 3, extra={"x": np.ones((1, 2), np.uint8)})]):
    for position in range(len(good)):
      for value in {0x00, 0x0A, 0x12, 0x80, good[position] ^ 0x01, good[position] ^ 0x80}:
        damaged.append(good[:position] + bytes([value]) + good[position + 1:])
    damaged += [good[:cut] for cut in range(0, len(good), 3)] + [good + b"\x0a\x00", good + b"\x12\x00"]
  located = layout.locate(tf.constant(damaged))
  regular = located.regular.numpy()
  assert 0 < regular.sum() < len(damaged)
  spec = {name: tf.io.RaggedFeature(tf.string) for name in ("rgb", "audio")}
  context_spec = {"labels": tf.io.RaggedFeature(tf.int64), "id": tf.io.RaggedFeature(tf.string)}
  prefixes = record_layout.context_prefix(tf.constant(damaged), located).numpy()
  def parse(serialized, **kwargs):
    try:
      return tf.io.parse_sequence_example([serialized], context_features=context_spec, **kwargs)
    except tf.errors.InvalidArgumentError as e:
      return e.message.split("}}")[-1]  # without the op's name, which names its output types

  context_errors = 0
  for i in np.flatnonzero(regular):
    record = damaged[i]
    parsed, prefix_parsed = parse(record, sequence_features=spec), parse(prefixes[i])
    if isinstance(parsed, str) or isinstance(prefix_parsed, str):  # a damaged context: the same error
      assert parsed == prefix_parsed, i
      context_errors += 1
      continue
    (context, lists, _), (prefix_context, _, _) = parsed, prefix_parsed
    for key in context_spec:
      assert context[key].to_list() == prefix_context[key].to_list(), (i, key)
    for f, name in enumerate(("rgb", "audio")):
      frames = [v for v in lists[name].to_list()[0]]
      assert all(len(v) == 1 and len(v[0]) == FS[f] for v in frames), i
      assert int(located.counts.numpy()[i, f]) == len(frames), i
      start, stride = int(located.data_start.numpy()[i, f]), layout.strides[f]
      assert [record[start + t * stride:start + t * stride + FS[f]] for t in range(len(frames))] == [
          v[0] for v in frames], i
  assert 0 < context_errors < regular.sum()


def _bad_corpus(rng):
  """name -> one bad record (and the good ones around it are `_record`s): every reason of the reader, and
  what TF's parser rejects."""
  good = lambda: rng.integers(0, 256, (3, FS[0]), dtype=np.uint8)  # pylint: disable=unnecessary-lambda-assignment
  encode = lambda **kw: records.encode_sequence_example(  # pylint: disable=unnecessary-lambda-assignment
      video_id=b"bad", **{"labels": [1], "id_key": "id", **kw})
  audio = np.zeros((3, FS[1]), np.uint8)
  return {
      "frame_size": encode(features={"rgb": [b"x" * 8, b"y" * 7, b"z" * 8], "audio": audio}),
      "negative_label": encode(labels=[1, -1], features={"rgb": good(), "audio": audio}),
      "label_too_big": encode(labels=[C], features={"rgb": good(), "audio": audio}),
      "missing_feature": encode(features={"rgb": good()}),
      "missing_id": encode(id_key="", features={"rgb": good(), "audio": audio}),
      "labels_as_bytes": encode(features={"rgb": good(), "audio": audio},
                                extra_context={"labels": records._bytes_feature([b"1"])}),  # pylint: disable=protected-access
      "garbage": b"\x01\x02 not a proto",
      "release": encode(id_key="video_id", features={"rgb": good(), "audio": audio}),
  }


def _outcome(pattern, on_error, locate, **kwargs):
  counter = bad_records.SkipCounter()
  try:
    batches = _read(pattern, (2, "uniform"), locate=locate, counter=counter, on_error=on_error, **kwargs)
  except (bad_records.BadRecordError, bad_records.ReleaseMismatchError) as e:
    return type(e).__name__, str(e)
  return batches, counter.by_reason(), counter.frame_count_mismatches


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
  rng = np.random.default_rng(4)
  root = tmp_path_factory.mktemp("bad")
  files = {}
  for name, bad in _bad_corpus(rng).items():
    path = str(root / f"{name}.tfrecord")
    records.write_tfrecord(path, [_record(rng, 0, 4), _record(rng, 1, 2, 5), bad, _record(rng, 3, 6)])
    files[name] = path
  mixed = [_record(rng, 10, 3)] + [bad for name, bad in _bad_corpus(rng).items()
                                   if name not in ("garbage", "labels_as_bytes", "release")] + [_record(rng, 11, 7)]
  files["mixed"] = str(root / "mixed.tfrecord")
  records.write_tfrecord(files["mixed"], mixed)
  with open(files["mixed"], "rb") as f:
    data = f.read()
  files["truncated"] = str(root / "truncated.tfrecord")
  with open(files["truncated"], "wb") as f:
    f.write(data[:-10])
  return files


# A reason of each kind: found by the located path's own checks (a label, an id: the chunk is then parsed in
# full; the release check; a context the parser rejects), or a record it does not vouch for.
@pytest.mark.parametrize("name", ["frame_size", "negative_label", "missing_id", "labels_as_bytes", "garbage", "release",
                                  "truncated"])
def test_bad_records_raise_the_same_error(bad_files, name):
  kwargs = dict(check_release=True) if name == "release" else {}
  located = _outcome(bad_files[name], "raise", True, **kwargs)
  assert isinstance(located[0], str), name  # it raised
  assert located == _outcome(bad_files[name], "raise", False, **kwargs)


def test_bad_records_are_skipped_and_counted_the_same(bad_files):
  for name in ("mixed", "truncated"):
    located, parsed = _outcome(bad_files[name], "skip", True), _outcome(bad_files[name], "skip", False)
    _assert_same(located[0], parsed[0])
    assert located[1:] == parsed[1:] and sum(located[1].values()) > 0, name
