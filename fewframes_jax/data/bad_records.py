"""What the YouTube-8M reader (`reader.py`) rejects and how it reports it: the bad-record reasons and
`on_error` modes, the errors it raises (one line naming the file and record), the `SkipCounter` of what it
skipped and of the records whose features have different frame counts, the release check (the id
key of the records against `num_classes`) and the video-level check (records of YouTube-8M's
video-level partition, which hold no frames).
"""
from typing import Dict

from absl import logging

from fewframes_jax import errors
from fewframes_jax.data import records

ON_ERROR = ("raise", "skip")
ID_KEYS = ("id", "video_id")              # context keys of the id: 2018+ releases, 2017 release
ID_KEY_CHOICES = ("auto",) + ID_KEYS      # `id_key`: auto = per record, `id` if present, else `video_id`
RELEASE_NUM_CLASSES = {"id": 3862, "video_id": 4716}  # each release's vocabulary size
REASONS = ("corrupt_file", "missing_id", "missing_feature", "bad_frame_size", "bad_label")
ERROR_MARKER = "fewframes_jax bad record"  # starts the text of the in-graph assertions, by kind
RELEASE_MARKER = "fewframes_jax release mismatch"
VIDEO_LEVEL_MARKER = "fewframes_jax video-level record"
# Context features of a video-level record (`tf.train.Example`: one mean vector per video, no frames).
VIDEO_LEVEL_KEYS = ("mean_rgb", "mean_audio")
# Where each release's frame-level partitions are (the official download script's `partition=`).
FRAME_LEVEL_PARTITIONS = {"2018+": "2/frame/{train,validate,test}", "2017": "1/frame_level/{train,validate,test}"}


class BadRecordError(errors.UserError):
  """A record (or file) failed validation; the message names the file and the record index."""


class VideoLevelRecordError(BadRecordError):
  """A record of YouTube-8M's video-level partition given to the frame-level reader; the message (one
  line) names the file and record, says what the record is and which partition to download instead."""


class ReleaseMismatchError(errors.UserError):
  """The records' id key belongs to a YouTube-8M release whose class count is not num_classes; the
  message (one line) says which count is right and the flags to set."""


class SkipCounter:
  """What the reader did to records, readable after (or during) a pass: the bad records it skipped
  (`on_error="skip"`), by reason, and the records it read with features of different frame counts.

  The counts live in TF variables that the pipeline updates in-graph, so one counter can be shared by
  several datasets and keeps counting across epochs.
  """

  def __init__(self):
    tf = records.tensorflow()
    with tf.device("/CPU:0"):
      self.counts = tf.Variable(tf.zeros([len(REASONS)], tf.int64), trainable=False, name="skip_counts")
      self.mismatches = tf.Variable(tf.constant(0, tf.int64), trainable=False,
                                    name="frame_count_mismatches")

  @property
  def total(self) -> int:
    """Records skipped, all reasons together."""
    return int(self.counts.numpy().sum())

  @property
  def frame_count_mismatches(self) -> int:
    """Records read whose features have different frame counts (kept, cut to the shortest)."""
    return int(self.mismatches.numpy())

  def by_reason(self) -> Dict[str, int]:
    """reason -> skips, for every reason in `REASONS` (zeros included)."""
    return {r: int(c) for r, c in zip(REASONS, self.counts.numpy())}

  def reset(self) -> None:
    self.counts.assign(self.counts * 0)
    self.mismatches.assign(0)

  def log(self) -> None:
    """Logs the skip counts and the frame-count mismatches (nothing when both are zero)."""
    if self.total:
      nonzero = {r: c for r, c in self.by_reason().items() if c}
      logging.warning("YT-8M reader skipped %d bad records: %s", self.total, nonzero)
    if self.frame_count_mismatches:
      logging.warning("YT-8M reader read %d records whose features have different frame counts "
                      "(each cut to its shortest feature)", self.frame_count_mismatches)


def release_conflict(id_key: str, num_classes: int) -> bool:
  """Whether records keyed `id_key` contradict `num_classes`: 4716 classes is the 2017 release,
  keyed `video_id`; any other count goes with the 2018+ key `id` (3862 classes, or data of your own)."""
  return (id_key == "video_id") != (num_classes == RELEASE_NUM_CLASSES["video_id"])


def release_message(id_key: str, num_classes: int, fix: str = "") -> str:
  """One line: the key seen, the class count given, the right one, and what to do (`fix`; default:
  the config flags to set)."""
  release = "the 2017 release" if id_key == "video_id" else "the 2018+ releases"
  right = RELEASE_NUM_CLASSES[id_key]
  fix = fix or (f"set --config.data.num_classes={right}, or --config.data.check_release=False to "
                "proceed")
  return (f"records keyed '{id_key}' ({release} of YouTube-8M, {right} classes) are read with "
          f"num_classes={num_classes}; {fix}")


def video_level_message(feature_names) -> str:
  """One line: what a video-level record is and which frame-level partitions to download instead."""
  partitions = " or ".join(f"partition={p} ({release})" for release, p in FRAME_LEVEL_PARTITIONS.items())
  return (f"a video-level YouTube-8M record (context {', '.join(VIDEO_LEVEL_KEYS)}: one mean vector per "
          f"video, no frames), but this reader needs frame-level records (feature lists "
          f"{', '.join(feature_names)}: one vector per frame): download the frame-level partitions with the "
          f"official download script, {partitions}, not the video-level ones (2/video/..., 1/video_level/...)")
