"""The timing harness: timed and interleaved calls, result rows, ratios and tables, on fabricated rows."""
import jax.numpy as jnp
import numpy as np
import pytest

from fewframes_jax.benchmark import timing


def test_peak_table():
  assert timing.peak_tflops("NVIDIA H100 80GB HBM3", "bfloat16") == 989.0
  assert timing.peak_tflops("NVIDIA H100 80GB HBM3", "float32") == 494.0
  assert timing.peak_tflops("NVIDIA H100 PCIe", "bfloat16") == 756.0
  assert timing.peak_tflops("NVIDIA H200", "bfloat16") == 989.0
  assert timing.peak_tflops("NVIDIA A100-SXM4-80GB", "bfloat16") == 312.0
  assert timing.peak_tflops("TPU v5 lite", "bfloat16") == 197.0 and timing.peak_tflops("TPU v5", "bfloat16") == 459.0
  assert timing.peak_tflops("TPU v4", "float32") is None
  assert timing.peak_tflops("cpu", "bfloat16") is None


def test_synthetic_batch_is_full_length_uint8():
  b = timing.synthetic_batch(batch_size=5, frames=7, feature_dim=3, num_classes=4, seed=1)
  assert b["frames"].dtype == np.uint8 and b["frames"].shape == (5, 7, 3)
  assert b["num_frames"].tolist() == [7] * 5 and b["valid"].all()
  assert b["labels"].shape == (5, 4) and (b["labels"].sum(1) >= 1).all()


def test_time_steps_waits_and_counts():
  calls = []
  times = timing.time_steps(lambda: calls.append(1) or jnp.ones(3), warmup=2, steps=3)
  assert len(calls) == 5 and len(times) == 3 and all(t >= 0 for t in times)
  with pytest.raises(ValueError, match="steps"):
    timing.time_steps(lambda: None, warmup=0, steps=0)


def test_interleaved_rounds_rotate_the_order():
  order = []
  calls = [lambda name=name: order.append(name) for name in "abc"]
  times = timing.time_interleaved(calls, warmup=1, steps=3)
  assert [len(t) for t in times] == [3, 3, 3]
  assert "".join(order) == "abc" + "abc" + "bca" + "cab"  # warm-up, then each round one function later


def _row(name, *, kind="infer", k=None, batch_size=8, step_ms=(100.0, 100.0, 100.0), flops_per_video=1e9):
  """A result row with the fields ratio_rows reads (videos_per_sec from the median step)."""
  return dict(name=name, kind=kind, k=k, batch_size=batch_size, step_ms=list(step_ms),
              videos_per_sec=batch_size * 1e3 / float(np.median(step_ms)), flops_per_video=flops_per_video)


def test_result_row_arithmetic():
  row = timing.result_row(name="teacher", kind="infer", network="nextvlad", frames=300, k=None, batch_size=4,
                          dtype="bfloat16", warmup=1, times=[0.4, 0.2, 0.3], flops_per_step=8e12,
                          memory={"peak_memory_bytes": None, "compiled_memory_bytes": 10},
                          device_kind="NVIDIA H100 80GB HBM3")
  assert set(row) == set(timing.ROW_FIELDS)
  assert row["ms_per_step"] == pytest.approx(300.0) and row["step_ms"] == pytest.approx([400.0, 200.0, 300.0])
  assert row["videos_per_sec"] == pytest.approx(4 / 0.3) and row["flops_per_video"] == 2e12
  assert row["tflops_per_sec"] == pytest.approx(2 * 4 / 0.3)
  assert row["mfu"] == pytest.approx(row["tflops_per_sec"] / 989.0)
  cpu = timing.result_row(name="t", kind="train", network="n", frames=3, k=None, batch_size=1, dtype="bfloat16",
                          warmup=0, times=[1.0], flops_per_step=1.0, device_kind="cpu",
                          memory={"peak_memory_bytes": None, "compiled_memory_bytes": None})
  assert cpu["mfu"] is None


def test_inference_ratios_pair_rounds_and_train_ratios_use_medians():
  teacher = _row("teacher", step_ms=(100.0, 300.0, 200.0), flops_per_video=12e9)
  # Round by round the student is 10x, 3x and 4x faster; the median of those is 4x, while the ratio of
  # the medians (200 / 30) would be 6.7x.
  student = _row("student_k10", k=10, step_ms=(10.0, 100.0, 50.0), flops_per_video=1.5e9)
  sampled = _row("student_k10_sampled", k=10, batch_size=16, step_ms=(20.0, 20.0, 20.0), flops_per_video=2e9)
  train_teacher = _row("train_teacher", kind="train", step_ms=(900.0,), flops_per_video=30e9)
  train_student = _row("train_student_k10", kind="train", k=10, batch_size=16, step_ms=(300.0,),
                       flops_per_video=3e9)
  parallel = _row("train_parallel_k10", kind="train", k=10, step_ms=(1000.0,), flops_per_video=33e9)
  ratios = timing.ratio_rows([teacher, student, sampled, train_teacher, train_student, parallel])
  assert [(q["kind"], q["student"]) for q in ratios] == [
      ("infer", "student_k10"), ("infer", "student_k10_sampled"), ("train", "train_student_k10")]
  assert all(set(q) == set(timing.RATIO_FIELDS) for q in ratios)
  s, sm, tr = ratios
  assert s["throughput_ratio"] == pytest.approx(4.0) and s["flop_ratio"] == pytest.approx(8.0)
  assert s["fraction_of_flop_ratio"] == pytest.approx(0.5)
  assert sm["throughput_ratio"] == pytest.approx(2 * 10.0)  # twice the videos per step, per round 5x, 15x, 10x
  assert tr["throughput_ratio"] == pytest.approx((16 / 0.3) / (8 / 0.9)) and tr["flop_ratio"] == pytest.approx(10.0)
  assert timing.ratio_rows([student]) == []  # no teacher of its kind


def test_format_table_lists_rows_and_ratios():
  row = timing.result_row(name="student_k10", kind="infer", network="nextvlad", frames=10, k=10, batch_size=4,
                          dtype="float32", warmup=1, times=[0.5], flops_per_step=4e9,
                          memory={"peak_memory_bytes": 2**30, "compiled_memory_bytes": None}, device_kind="cpu")
  ratio = dict(kind="infer", student="student_k10", k=10, throughput_ratio=9.9, flop_ratio=11.0,
               fraction_of_flop_ratio=0.9)
  lines = timing.format_table([row], [ratio]).splitlines()
  assert lines[2] == ("| student_k10 | nextvlad | 10 | 10 | 4 | float32 | 8.0 | 500.0 | 1.0000 | 0.0080 | - | "
                      "1.00 GiB | - |")
  assert lines[-1] == "| infer | student_k10 | 10 | 9.90x | 11.00x | 90% |"
  assert len(timing.format_table([row]).splitlines()) == 3
