"""Tests for fewframes_jax.data.bad_records: the release rule and its one-line message, and the
`SkipCounter` (counts by reason, frame-count mismatches, reset, the log lines). The reader's use of
them, on real records: test_reader.py, test_yt8m.py."""
import logging

from fewframes_jax.data import bad_records


def test_release_rule():
  assert bad_records.release_conflict("id", 4716) and not bad_records.release_conflict("id", 3862)
  assert not bad_records.release_conflict("id", 8)  # data of your own in the 2018+ schema
  assert bad_records.release_conflict("video_id", 3862) and bad_records.release_conflict("video_id", 8)
  assert not bad_records.release_conflict("video_id", 4716)


def test_release_message_names_the_key_the_counts_and_the_flags():
  line = bad_records.release_message("id", 4716)
  assert "\n" not in line and "'id'" in line and "num_classes=4716" in line
  assert "--config.data.num_classes=3862" in line and "--config.data.check_release=False" in line
  assert "--config.data.num_classes=4716" in bad_records.release_message("video_id", 3862)


def test_skip_counter_counts_by_reason_and_resets(caplog):
  counter = bad_records.SkipCounter()
  counter.log()
  assert counter.total == 0 and not caplog.records  # nothing to say
  counter.counts.scatter_nd_add([[1], [4], [4]], [1, 2, 3])  # as the reader's graph adds them
  counter.mismatches.assign_add(2)
  assert counter.by_reason() == {"corrupt_file": 0, "missing_id": 1, "missing_feature": 0, "bad_frame_size": 0,
                                 "bad_label": 5}
  assert (counter.total, counter.frame_count_mismatches) == (6, 2)
  with caplog.at_level(logging.WARNING):
    counter.log()
  text = caplog.text
  assert "skipped 6 bad records" in text and "'bad_label': 5" in text and "'corrupt_file'" not in text
  assert "2 records whose features have different frame counts" in text
  counter.reset()
  assert (counter.total, counter.frame_count_mismatches) == (0, 0)
