"""The timing harness: synthetic batches, timed calls, result rows, student/teacher ratios, tables.

What is timed is the device computation only: a batch is put on the device once, each compiled function
is called `warmup` times and then timed for `steps` calls, each call waited for with `block_until_ready`
(dequantization included, the host-to-device copy not included: `pipeline.py` measures the input).

A result row (a dict with the fields `ROW_FIELDS`) reports:
  videos_per_sec, ms_per_step (median of the timed steps; `step_ms` lists them all),
  flops_per_video: XLA's cost analysis of the same compiled computation, scans counted for every step
    (`flops.compiled_call_flops`),
  tflops_per_sec: flops_per_video * videos_per_sec / 1e12,
  mfu: tflops_per_sec over the device's dense peak for the compute dtype (`peak_tflops`; None when the
    device is not in the table, e.g. any CPU),
  peak_memory_bytes: the device allocator's peak (`memory_stats()['peak_bytes_in_use']`, since the
    process started; None where the backend keeps no allocator statistics, e.g. CPU),
  compiled_memory_bytes: XLA's memory analysis of the compiled function (arguments + outputs +
    temporaries - aliased), on every backend.

`ratio_rows` pairs each student row with the teacher row of its kind: the throughput ratio next to the
FLOP ratio of the two compiled functions.
"""
import datetime
import os
import platform
import statistics
import subprocess
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import jax
import numpy as np

# Dense (no sparsity) peak TFLOP/s by device kind: (substring of `device.device_kind`, bf16, float32).
# The float32 column is the TF32 tensor-core peak on NVIDIA GPUs (XLA's default precision for float32
# matmuls there); TPUs run float32 matmuls as bf16 passes, so their float32 peak is left unknown.
# First match wins, so the more specific names come first.
PEAK_TFLOPS = (
    ("H100 PCIe", 756.0, 378.0),
    ("H100", 989.0, 494.0),      # SXM (device_kind "NVIDIA H100 80GB HBM3")
    ("GH200", 989.0, 494.0),
    ("H200", 989.0, 494.0),
    ("A100", 312.0, 156.0),
    ("L4", 121.0, 60.0),
    ("TPU v4", 275.0, None),
    ("TPU v5 lite", 197.0, None),
    ("TPU v5", 459.0, None),     # v5p
    ("TPU v6 lite", 918.0, None),
)

ROW_FIELDS = ("name", "kind", "network", "frames", "k", "batch_size", "dtype", "warmup", "steps",
              "videos_per_sec", "ms_per_step", "step_ms", "flops_per_video", "tflops_per_sec", "mfu",
              "peak_memory_bytes", "compiled_memory_bytes", "device_kind")
RATIO_FIELDS = ("kind", "student", "k", "throughput_ratio", "flop_ratio", "fraction_of_flop_ratio")
TEACHER_ROWS = ("teacher", "train_teacher")  # the row each student of the same kind is compared with


def peak_tflops(device_kind: str, dtype: str) -> Optional[float]:
  """Dense peak TFLOP/s of a device for a compute dtype ('bfloat16' | 'float32'); None when unknown."""
  for name, bf16, fp32 in PEAK_TFLOPS:
    if name.lower() in device_kind.lower():
      return bf16 if dtype == "bfloat16" else fp32
  return None


def machine_info() -> Dict[str, Any]:
  """Device, host CPU, load and date: the context every benchmark table is recorded with."""
  device = jax.devices()[0]
  cpu_model = platform.processor() or platform.machine()
  try:
    for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout.splitlines():
      if line.startswith("Model name:"):
        cpu_model = line.split(":", 1)[1].strip()
  except OSError:
    pass
  try:
    load = list(os.getloadavg())
  except OSError:
    load = None
  return {"platform": device.platform, "device_kind": device.device_kind, "num_devices": jax.device_count(),
          "cpu_model": cpu_model, "cpu_count": os.cpu_count(), "load_average": load,
          "jax_version": jax.__version__, "date": datetime.datetime.now().isoformat(timespec="seconds")}


def synthetic_batch(*, batch_size: int, frames: int, feature_dim: int, num_classes: int,
                    seed: int = 0) -> Dict[str, np.ndarray]:
  """A full-length batch: frames u8[B, T, D], num_frames i32[B] (all T), labels u8[B, C] (3 random
  classes per video), valid bool[B]. Every video is T frames long, the length the FLOP counts assume."""
  rng = np.random.default_rng(seed)
  labels = np.zeros([batch_size, num_classes], np.uint8)
  labels[np.arange(batch_size)[:, None], rng.integers(0, num_classes, [batch_size, 3])] = 1
  return {"frames": rng.integers(0, 256, [batch_size, frames, feature_dim], dtype=np.uint8),
          "num_frames": np.full([batch_size], frames, np.int32), "labels": labels,
          "valid": np.ones([batch_size], bool)}


def time_steps(step: Callable[[], Any], *, warmup: int, steps: int) -> List[float]:
  """Seconds of each of `steps` timed calls of `step()` after `warmup` untimed ones (each waited for)."""
  if steps < 1 or warmup < 0:
    raise ValueError(f"steps={steps} must be >= 1 and warmup={warmup} >= 0")
  for _ in range(warmup):
    jax.block_until_ready(step())
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    jax.block_until_ready(step())
    times.append(time.perf_counter() - start)
  return times


def time_interleaved(calls: Sequence[Callable[[], Any]], *, warmup: int, steps: int) -> List[List[float]]:
  """Seconds of each call in `steps` interleaved rounds (one call of each per round), after `warmup`
  untimed rounds, so that a shared machine's changing load hits them alike. Each round starts one
  function later, so that no function always runs right after the same one (the first call after a
  big teacher step runs slower). Returns one list of `steps` times per call."""
  if steps < 1 or warmup < 0:
    raise ValueError(f"steps={steps} must be >= 1 and warmup={warmup} >= 0")
  for _ in range(warmup):
    for call in calls:
      jax.block_until_ready(call())
  times = [[] for _ in calls]
  for step in range(steps):
    for i in range(len(calls)):
      j = (i + step) % len(calls)
      times[j].extend(time_steps(calls[j], warmup=0, steps=1))
  return times


def memory(compiled) -> Dict[str, Optional[int]]:
  """{'peak_memory_bytes': the allocator's peak or None, 'compiled_memory_bytes': XLA's memory
  analysis of `compiled` (a `jax.stages.Compiled`) or None}."""
  peak = None
  stats = jax.devices()[0].memory_stats()
  if stats and "peak_bytes_in_use" in stats:
    peak = int(stats["peak_bytes_in_use"])
  compiled_bytes = None
  try:
    m = compiled.memory_analysis()
    compiled_bytes = int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
                         - m.alias_size_in_bytes)
  except (AttributeError, NotImplementedError, TypeError):
    pass
  return {"peak_memory_bytes": peak, "compiled_memory_bytes": compiled_bytes}


def result_row(*, name: str, kind: str, network: str, frames: int, k: Optional[int], batch_size: int,
               dtype: str, warmup: int, times: Sequence[float], flops_per_step: float,
               memory: Dict[str, Optional[int]], device_kind: Optional[str] = None) -> Dict[str, Any]:
  """One result row (`ROW_FIELDS`) from the timed seconds of each step and XLA's FLOPs of one step.

  kind: 'infer' | 'train'; frames: the frames per video of the input; k: the student's k (None for the
  teacher); device_kind: default the first device's.
  """
  device_kind = device_kind or jax.devices()[0].device_kind
  seconds = statistics.median(times)
  vps = batch_size / seconds
  flops_per_video = flops_per_step / batch_size
  tflops = flops_per_video * vps / 1e12
  peak = peak_tflops(device_kind, dtype)
  return dict(name=name, kind=kind, network=network, frames=frames, k=k, batch_size=batch_size, dtype=dtype,
              warmup=warmup, steps=len(times), videos_per_sec=vps, ms_per_step=1e3 * seconds,
              step_ms=[1e3 * t for t in times], flops_per_video=flops_per_video, tflops_per_sec=tflops,
              mfu=tflops / peak if peak else None, device_kind=device_kind, **memory)


def throughput_ratio(teacher: Dict[str, Any], student: Dict[str, Any]) -> float:
  """student videos/s over teacher videos/s. Inference rows timed in the same interleaved rounds are
  paired round by round and the median of the per-round ratios is taken: on a shared machine the load
  changes between rounds far more than within one. Otherwise (train steps): the ratio of the medians."""
  t, s = teacher["step_ms"], student["step_ms"]
  if teacher["kind"] == "infer" and len(t) == len(s):
    scale = student["batch_size"] / teacher["batch_size"]
    return scale * statistics.median(a / b for a, b in zip(t, s))
  return student["videos_per_sec"] / teacher["videos_per_sec"]


def ratio_rows(rows: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
  """Each student row against the teacher row of its kind (`TEACHER_ROWS`): the throughput ratio
  student/teacher (`throughput_ratio`), the FLOP ratio teacher/student, and the first as a fraction of
  the second (`RATIO_FIELDS`). The joint parallel train step has no teacher to compare with."""
  teachers = {r["kind"]: r for r in rows if r["name"] in TEACHER_ROWS}
  out = []
  for r in rows:
    t = teachers.get(r["kind"])
    if t is None or r["k"] is None or r["name"].startswith("train_parallel"):
      continue
    throughput = throughput_ratio(t, r)
    flop_ratio = t["flops_per_video"] / r["flops_per_video"]
    out.append(dict(kind=r["kind"], student=r["name"], k=r["k"], throughput_ratio=throughput,
                    flop_ratio=flop_ratio, fraction_of_flop_ratio=throughput / flop_ratio))
  return out


def _gib(nbytes: Optional[int]) -> str:
  return "-" if nbytes is None else f"{nbytes / 2**30:.2f} GiB"


def format_table(rows: Sequence[Dict[str, Any]], ratios: Sequence[Dict[str, Any]] = ()) -> str:
  """Markdown tables of result rows and, when given, the student/teacher ratios."""
  lines = ["| benchmark | network | frames | k | batch | dtype | videos/s | ms/step | GFLOPs/video | "
           "TFLOP/s | MFU | peak mem | compiled mem |",
           "|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
  for r in rows:
    mfu = "-" if r["mfu"] is None else f"{100 * r['mfu']:.1f}%"
    lines.append(
        f"| {r['name']} | {r['network']} | {r['frames']} | {'-' if r['k'] is None else r['k']} | "
        f"{r['batch_size']} | {r['dtype']} | {r['videos_per_sec']:.1f} | {r['ms_per_step']:.1f} | "
        f"{r['flops_per_video'] / 1e9:.4f} | {r['tflops_per_sec']:.4f} | {mfu} | "
        f"{_gib(r['peak_memory_bytes'])} | {_gib(r['compiled_memory_bytes'])} |")
  if ratios:
    lines += ["", "| kind | student | k | throughput student/teacher | XLA FLOPs teacher/student | "
              "fraction of FLOP ratio |", "|---|---|---:|---:|---:|---:|"]
    for q in ratios:
      lines.append(f"| {q['kind']} | {q['student']} | {q['k']} | {q['throughput_ratio']:.2f}x | "
                   f"{q['flop_ratio']:.2f}x | {100 * q['fraction_of_flop_ratio']:.0f}% |")
  return "\n".join(lines)
