"""TFRecord benchmarks: the input pipeline alone (batches and videos counted), and end-to-end eval rows."""
import os

import numpy as np
import pytest

from configs import base
from fewframes_jax.benchmark import pipeline
from fewframes_jax.data import records
from fewframes_jax.data import synthetic

T, C = 12, 6
LENGTHS = [T, 3, 20, 7, 1, 12]  # 20 > T: truncated


@pytest.fixture(scope="module")
def pattern(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("bench"))
  synthetic.write_split(out, "train", 12, spec=synthetic.SyntheticSpec(num_classes=5), seed=0,
                        num_shards=3)
  return os.path.join(out, "train-*.tfrecord")


def test_benchmark_input_counts_batches_and_videos(pattern):
  r = pipeline.benchmark_input(pattern, 4, 5, warmup_batches=1, num_classes=5, max_frames=20)
  assert r["batches"] == 5 and r["videos"] == 20  # training mode repeats: every batch is full
  assert r["videos_per_sec"] > 0 and r["batches_per_sec"] == pytest.approx(r["videos_per_sec"] / 4)
  assert r["frame_bytes"] == 1152 and r["max_frames"] == 20 and len(r["load_average"]["before"]) == 3
  student = pipeline.benchmark_input(pattern, 4, 2, warmup_batches=0, num_classes=5, max_frames=20,
                                     student_frames=(3, "uniform"))
  assert student["student_frames"] == [3, "uniform"] and student["videos"] == 8


def test_benchmark_input_eval_pass_counts_valid_videos_only(pattern):
  # 12 videos in batches of 5: 3 batches, the last with 2 valid rows; no warm-up so all are timed.
  r = pipeline.benchmark_input(pattern, 5, 100, warmup_batches=0, num_classes=5, max_frames=20,
                               training=False)
  assert r["batches"] == 3 and r["videos"] == 12
  assert "| full | 20 | 5 | 3 |" in pipeline.format_input([r])


def test_input_paths_side_by_side(pattern):
  r = pipeline.benchmark_input_paths(pattern, 4, 2, k=3, rounds=1, warmup_batches=0, num_classes=5, max_frames=20)
  assert [row["pipeline"] for row in r["rows"]] == list(pipeline.INPUT_PATHS)
  assert [run["videos"] for run in r["runs"]] == [8] * 4 and {run["round"] for run in r["runs"]} == {0}
  assert set(r["ratios"]) == {"student_vs_full", "student_vs_bare", "student_vs_student_parsed"}
  table = pipeline.format_input_paths(r)
  assert "bare tf.data read + parse" in table and "student / full:" in table


def test_yt8m_shaped_records_have_youtube_8m_lengths(tmp_path):
  glob = pipeline.yt8m_shaped_records(str(tmp_path), num_videos=16, num_classes=C, num_shards=2,
                                      feature_sizes=(12, 4))
  r = pipeline.benchmark_input(glob, 16, 1, warmup_batches=0, num_classes=C, max_frames=400,
                               feature_sizes=(12, 4), training=False)
  assert r["videos"] == 16 and r["frame_bytes"] == 16
  # 4716 classes: the 2017 release's key (`video_id`), so the reader's release check passes.
  glob = pipeline.yt8m_shaped_records(str(tmp_path / "2017"), num_videos=2, num_classes=4716, num_shards=1,
                                      feature_sizes=(12, 4))
  r = pipeline.benchmark_input(glob, 2, 1, warmup_batches=0, num_classes=4716, max_frames=400,
                               feature_sizes=(12, 4), training=False)
  assert r["videos"] == 2


@pytest.fixture(scope="module")
def tiny_records(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("eval") / "eval.tfrecord")
  rng = np.random.default_rng(0)
  records.write_tfrecord(path, [records.encode_sequence_example(
      video_id=f"v{i}".encode(), labels=[i % C],
      features={"rgb": rng.integers(0, 256, (n, 12), dtype=np.uint8),
                "audio": rng.integers(0, 256, (n, 4), dtype=np.uint8)}) for i, n in enumerate(LENGTHS)])
  return path


def tiny_config():
  c = base.experiment("nextvlad", k=4, arg="tiny")
  c.data.max_frames, c.data.feature_sizes, c.data.num_classes = T, (12, 4), C
  c.data.eval_batch_size = 4
  return c


def test_benchmark_eval_rows(fast_compile, tiny_records):
  result = pipeline.benchmark_eval(tiny_config(), file_pattern=tiny_records, ks=[4], rounds=1)
  rows = result["rows"]
  assert [(r["name"], r["pipeline"], r["k"], r["method"]) for r in rows] == [
      ("teacher", "full", None, None), ("student_k4", "student", 4, "uniform"),
      ("student_k4_sampled", "full", 4, "uniform")]
  for r in rows:  # 6 videos in 2 batches of 4 (the last padded): every valid video, once per pass
    assert (r["batches"], r["videos"], r["batch_size"]) == (2, 6, 4)
    assert r["mean_num_frames"] == pytest.approx(sum(min(n, T) for n in LENGTHS) / 6)
    seen = [min(n, T, 4) for n in LENGTHS] if r["pipeline"] == "student" else [min(n, T) for n in LENGTHS]
    assert r["decoded_frames_per_video"] == pytest.approx(sum(seen) / 6)
    assert r["decoded_bytes_per_video"] == pytest.approx(sum(seen) / 6 * (12 + 4))
    assert len(r["videos_per_sec_rounds"]) == 1 and r["videos_per_sec"] == r["videos_per_sec_rounds"][0]
  assert [q["throughput_ratio"] for q in result["ratios"]] == pytest.approx(
      [r["videos_per_sec"] / rows[0]["videos_per_sec"] for r in rows[1:]])
  assert pipeline.format_eval(result).count("\n") == 2 + 3 - 1


def test_one_run_times_every_selector_and_counts_what_each_reads(fast_compile, tiny_records):
  rows = pipeline.benchmark_eval(tiny_config(), file_pattern=tiny_records, ks=[4], rounds=1, sampled=False,
                                 selectors=("uniform", "far_from_mean", "learned:audio", "learned:all"))["rows"]
  assert [(r["name"], r["pipeline"], r["method"]) for r in rows] == [
      ("teacher", "full", None), ("student_k4_uniform", "student", "uniform"),
      ("student_k4_far_from_mean", "full", "far_from_mean"), ("student_k4_learned_audio", "student", "learned:audio"),
      ("student_k4_learned_all", "full", "learned:all")]
  every, chosen = (sum(min(n, T, m) for n in LENGTHS) / 6 for m in (T, 4))
  want = {"uniform": chosen * 16, "far_from_mean": every * 16, "learned:audio": chosen * 16 + every * 4,
          "learned:all": every * 16}
  for r in rows[1:]:
    assert r["decoded_bytes_per_video"] == pytest.approx(want[r["method"]]) and r["videos"] == 6
  # A content-aware student is fed every frame, as the teacher is.
  assert rows[2]["decoded_frames_per_video"] == rows[0]["decoded_frames_per_video"] == pytest.approx(every)
  assert "| 4 (far_from_mean) |" in pipeline.format_eval({"rows": rows})
  with pytest.raises(ValueError, match="only 'learned'"):
    pipeline.selector_config(tiny_config(), "uniform:audio")


def test_input_variants_of_a_config(tiny_records):
  results = pipeline.benchmark_input_variants(tiny_config(), file_pattern=tiny_records, ks=[4, 2], rounds=1)
  assert [r["student_frames"] for r in results] == [None, [4, "uniform"], [2, "uniform"]]
  # Batches of 4: the first warms the pipeline up, the second (2 videos) is timed.
  assert all(r["videos"] == 2 and r["round"] == 0 and not r["training"] for r in results)


def test_benchmark_export_rows_and_ratios(fast_compile, tiny_records):
  # Requests (batches) of 3 of the 6 videos: one shape to compile per network and path.
  result = pipeline.benchmark_export(tiny_config(), file_pattern=tiny_records, ks=[4], batch_size=3, rounds=1)
  rows = {r["name"]: r for r in result["rows"]}
  assert list(rows) == ["export_teacher", "eval_teacher", "export_student_k4", "eval_student_k4"]
  for r in rows.values():  # every video once per pass
    assert (r["videos"], r["batches"], r["batch_size"]) == (6, 2, 3) and r["videos_per_sec"] > 0
    assert r["path"] == r["name"].split("_")[0] and r["k"] == (None if "teacher" in r["name"] else 4)
    assert r["cpu_ms_per_video"] > 0 and r["in_flight"] == (2 if r["path"] == "export" else None)
    # the set-up (to the first batch) and the rest are apart: together they are the whole pass's CPU
    assert r["setup_cpu_ms"] > 0 and r["steady_cpu_ms_per_video"] > 0
    assert r["setup_cpu_ms"] + 6 * r["steady_cpu_ms_per_video"] == pytest.approx(6 * r["cpu_ms_per_video"])
  assert rows["eval_teacher"]["setup_cpu_ms"] > rows["export_teacher"]["setup_cpu_ms"]  # eval builds its pipeline
  (q,) = result["ratios"]
  assert q["export_ratio"] == pytest.approx(rows["export_student_k4"]["videos_per_sec"]
                                            / rows["export_teacher"]["videos_per_sec"])
  assert q["eval_ratio"] == pytest.approx(rows["eval_student_k4"]["videos_per_sec"]
                                          / rows["eval_teacher"]["videos_per_sec"])
  assert q["export_vs_eval"] == pytest.approx(q["export_ratio"] / q["eval_ratio"])
  assert q["export_cpu_ratio"] == pytest.approx(rows["export_teacher"]["cpu_ms_per_video"]
                                                / rows["export_student_k4"]["cpu_ms_per_video"])
  assert q["export_vs_eval_cpu"] == pytest.approx(q["export_cpu_ratio"] / q["eval_cpu_ratio"])
  table = pipeline.format_export(result)
  assert "| export_student_k4 | 4 | 3 | 6 |" in table and f"| k=4 | {q['export_ratio']:.2f}x |" in table
