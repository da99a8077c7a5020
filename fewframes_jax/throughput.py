"""Throughput of the teacher, the student at each k, and the train steps, on in-memory synthetic batches.

No TensorFlow: batches are uint8 numpy arrays made here (`synthetic_batch`), put on the device once, and
each compiled function is called `warmup` times and then timed for `steps` calls, each call waited for
with `block_until_ready`. What is timed is the device computation only (dequantization included, the
host-to-device copy of the batch not included; `benchmark input` measures the input pipeline).

Each result row (a dict, see `ROW_FIELDS`) reports:
  videos_per_sec, ms_per_step (median of the timed steps; `step_ms` lists them all),
  flops_per_video: XLA's cost analysis of the SAME compiled computation, with scans counted for every
    step (`flops.scan_aware_flops`); for train steps the rng is an 'unsafe_rbg' key, so that no random-bit
    loop hides FLOPs (timing uses the step's real threefry key; the FLOPs do not depend on the generator),
  tflops_per_sec: flops_per_video * videos_per_sec / 1e12,
  mfu: tflops_per_sec over the device's dense peak for the compute dtype (`peak_tflops`; null when the
    device is not in the table, e.g. any CPU),
  peak_memory_bytes: the device allocator's peak (`memory_stats()['peak_bytes_in_use']`, since the process
    started; null where the backend has no allocator statistics, e.g. CPU),
  compiled_memory_bytes: XLA's memory analysis of the compiled function (arguments + outputs + temporaries
    - aliased), available on every backend.

Inference rows: `teacher` on u8[B, T, D]; `student_k{k}` on u8[B, k, D], the k frames the student input
path ships (`data/student_input.py`); `student_k{k}_sampled` on u8[B, T, D] with the frames picked on the
device (what `train.eval_step` does). Train rows: `train_teacher` (mode=teacher), `train_student_k{k}`
(mode=student_only), `train_parallel_k{k}` (the joint teacher + student step). `ratio_rows` pairs each
student with the teacher: throughput ratio (inference: the median over the interleaved rounds of the
per-round ratio) next to the FLOP ratio of the two compiled functions.
"""
import datetime
import functools
import os
import platform
import statistics
import subprocess
import time
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from fewframes_jax import flops as flops_lib
from fewframes_jax import sampling
from fewframes_jax import train as train_lib
from fewframes_jax import train_loop
from fewframes_jax.data.quantization import dequantize
from fewframes_jax.models import build_model

# Dense (no sparsity) peak TFLOP/s by device kind: (substring of `device.device_kind`, bf16, float32).
# The float32 column is the TF32 tensor-core peak on NVIDIA GPUs (XLA's default precision for float32
# matmuls there); TPUs run float32 matmuls as bf16 passes, so their float32 peak is left unknown.
# First match wins, so the more specific names come first.
PEAK_TFLOPS = (
    ("H100 PCIe", 756.0, 378.0),
    ("H100", 989.0, 494.0),      # SXM (device_kind "NVIDIA H100 80GB HBM3")
    ("H200", 989.0, 494.0),
    ("GH200", 989.0, 494.0),
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


# ----------------------------------------------------------------------------------------------
# Inputs and timing


def synthetic_batch(*, batch_size: int, frames: int, feature_dim: int, num_classes: int,
                    seed: int = 0) -> Dict[str, np.ndarray]:
  """A full-length batch: frames u8[B, T, D], num_frames i32[B] (all T), labels u8[B, C], valid bool[B].

  Every video is T frames long, the length the FLOP counts assume.
  """
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


def _memory(compiled) -> Dict[str, Optional[int]]:
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


def _row(*, name: str, kind: str, network: str, frames: int, k: Optional[int], batch_size: int, dtype: str,
         warmup: int, times: Sequence[float], flops_per_step: float,
         memory: Dict[str, Any]) -> Dict[str, Any]:
  device_kind = jax.devices()[0].device_kind
  seconds = statistics.median(times)
  vps = batch_size / seconds
  flops_per_video = flops_per_step / batch_size
  tflops = flops_per_video * vps / 1e12
  peak = peak_tflops(device_kind, dtype)
  row = dict(name=name, kind=kind, network=network, frames=frames, k=k, batch_size=batch_size, dtype=dtype,
             warmup=warmup, steps=len(times), videos_per_sec=vps, ms_per_step=1e3 * seconds,
             step_ms=[1e3 * t for t in times], flops_per_video=flops_per_video, tflops_per_sec=tflops,
             mfu=tflops / peak if peak else None, device_kind=device_kind, **memory)
  assert set(row) == set(ROW_FIELDS), sorted(set(row) ^ set(ROW_FIELDS))
  return row


# ----------------------------------------------------------------------------------------------
# Inference


def student_model_config(config: ml_collections.ConfigDict, k: int) -> ml_collections.ConfigDict:
  """The student's model config at k frames (H-RNN: ceil(k / 6) blocks, as `configs.base.experiment`)."""
  from configs import base  # pylint: disable=g-import-not-at-top
  m = ml_collections.ConfigDict(config.student.to_dict())
  m.hrnn.num_blocks = base.hrnn_student_blocks(k)
  return m


def cast_params_for_inference(model, variables, *, frames: int, feature_dim: int, dtype: Any) -> Any:
  """`variables` with every leaf that the eval forward only ever uses cast to `dtype` stored in `dtype`.

  With `config.dtype=bfloat16` the parameters stay float32 and each matmul casts its kernel on every
  call: for a student at batch 256 that cast reads and writes more bytes than its matmuls (NeXtVLAD's
  hidden kernel is 36,864 x 2,048). Casting once, before serving, gives bit-identical outputs, since
  the forward would compute exactly the same casts. Which leaves qualify is read from the traced forward
  (every top-level use is a `convert_element_type` to `dtype`), so batch-norm statistics, VLAD centres
  and anything used in float32 stay float32. A float32 `dtype` returns `variables` unchanged.
  """
  dtype = jnp.dtype(dtype)
  if dtype == jnp.float32:
    return variables
  x = jax.ShapeDtypeStruct((1, frames, feature_dim), jnp.float32)
  n = jax.ShapeDtypeStruct((1,), jnp.int32)
  closed = jax.make_jaxpr(lambda v, x, n: model.apply(v, x, n, train=False).probabilities)(variables, x, n)
  leaves, treedef = jax.tree.flatten(variables)
  param_vars = closed.jaxpr.invars[:len(leaves)]
  castable = {id(v): True for v in param_vars}
  for eqn in closed.jaxpr.eqns:
    for v in eqn.invars:
      if id(v) in castable and not (eqn.primitive.name == "convert_element_type"
                                    and jnp.dtype(eqn.params["new_dtype"]) == dtype):
        castable[id(v)] = False
  for v in closed.jaxpr.outvars:
    if id(v) in castable:
      castable[id(v)] = False
  return jax.tree.unflatten(treedef, [jnp.asarray(x, dtype) if castable[id(v)] else x
                                      for x, v in zip(leaves, param_vars)])


def inference_fn(model, *, k: Optional[int] = None, method: str = "uniform") -> Callable:
  """(variables, frames u8[B, T', D], num_frames i32[B]) -> probabilities f32[B, C], eval mode.

  With `k`, the k frames are picked on the device from the T' given (deterministic methods only)."""
  if method == "random" and k is not None:
    raise ValueError("inference_fn: sampling on the device needs a deterministic method, not 'random'")

  def forward(variables, frames_u8, num_frames):
    if k is not None:
      frames_u8, num_frames = sampling.sample_frames(frames_u8, num_frames, k, method)
    frames = dequantize(frames_u8, num_frames)
    return model.apply(variables, frames, num_frames, train=False).probabilities

  return forward


class _Forward(NamedTuple):
  """A compiled eval forward, its arguments, and what its result row needs."""
  meta: Dict[str, Any]
  compiled: Any
  args: Tuple[Any, ...]
  flops_per_step: float


def _step_flops(fn: Callable, args: Sequence[Any], compiled,
                flops_args: Optional[Sequence[Any]] = None) -> float:
  """XLA's FLOPs of one call. Without while loops the compiled program's own count is exact; otherwise
  (scans; threefry's rolled loop on CPU) `scan_aware_flops` counts every scan step, on `flops_args`
  (e.g. with an 'unsafe_rbg' key) when given."""
  if compiled is not None and not flops_lib.while_loops(compiled.as_text()):
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    if not cost:
      raise ValueError(f"XLA cost analysis is not available on this backend (got {cost!r})")
    return float(cost.get("flops", 0.0))
  return flops_lib.scan_aware_flops(fn, *(flops_args if flops_args is not None else args))


def compile_forward(model, variables, *, name: str, network: str, frames: int, k: Optional[int] = None,
                    batch_size: int, feature_dim: int, num_classes: int, dtype: str,
                    sample_on_device: bool = False, seed: int = 0, flops_model=None) -> _Forward:
  """Compiles the eval forward of `model` on a u8[B, frames, D] synthetic batch (already on the device).

  `sample_on_device`: the input has `frames` frames and the model sees the `k` picked on the device.
  `flops_model`: the same model with scans not unrolled, whose FLOPs are counted (`scan_aware_flops`
  needs one loop trip per scan step); default `model`.
  """
  fn = inference_fn(model, k=k if sample_on_device else None)
  batch = synthetic_batch(batch_size=batch_size, frames=frames, feature_dim=feature_dim,
                          num_classes=num_classes, seed=seed)
  args = (variables, jax.device_put(batch["frames"]), jax.device_put(batch["num_frames"]))
  compiled = jax.jit(fn).lower(*args).compile()
  meta = dict(name=name, kind="infer", network=network, frames=frames, k=k, batch_size=batch_size,
              dtype=dtype)
  if flops_model is not None and flops_model is not model:
    flops = flops_lib.scan_aware_flops(inference_fn(flops_model, k=k if sample_on_device else None), *args)
  else:
    flops = _step_flops(fn, args, compiled)
  return _Forward(meta, compiled, args, flops)


def time_forwards(forwards: Sequence[_Forward], *, warmup: int = 1, steps: int = 3) -> List[Dict[str, Any]]:
  """Times compiled forwards in interleaved rounds (one call of each per round), so that a shared
  machine's changing load hits them alike; each round starts one function later, so that no function
  always runs right after the same one (the first call after a big teacher step runs slower). One
  result row each."""
  calls = [functools.partial(f.compiled, *f.args) for f in forwards]
  for _ in range(warmup):
    for call in calls:
      jax.block_until_ready(call())
  times = [[] for _ in forwards]
  for step in range(steps):
    for i in range(len(calls)):
      j = (i + step) % len(calls)
      times[j].extend(time_steps(calls[j], warmup=0, steps=1))
  return [_row(**f.meta, warmup=warmup, times=t, flops_per_step=f.flops_per_step, memory=_memory(f.compiled))
          for f, t in zip(forwards, times)]


def benchmark_forward(model, variables, *, warmup: int = 1, steps: int = 3, **kwargs) -> Dict[str, Any]:
  """`compile_forward` then `time_forwards` for one model: its result row."""
  return time_forwards([compile_forward(model, variables, **kwargs)], warmup=warmup, steps=steps)[0]


def run_infer(config: ml_collections.ConfigDict, *, ks: Sequence[int], warmup: int = 1, steps: int = 3,
              batch_size: Optional[int] = None, sampled: bool = True, precast: bool = True,
              seed: int = 0) -> List[Dict[str, Any]]:
  """Eval-forward throughput of the config's teacher (T = data.max_frames) and its student at each k,
  timed in interleaved rounds.

  batch_size: default `data.eval_batch_size`. sampled: also time each student fed all T frames with
  its k picked on the device (`student_k{k}_sampled`; uniform sampling). precast: store the parameters
  that the forward casts to the compute dtype in that dtype (`cast_params_for_inference`; bfloat16 only).
  """
  d = config.data
  feature_dim, T = sum(d.feature_sizes), d.max_frames
  batch_size = batch_size or d.eval_batch_size
  kw = dict(num_classes=d.num_classes, feature_sizes=tuple(d.feature_sizes), dtype=config.dtype)
  common = dict(batch_size=batch_size, feature_dim=feature_dim, num_classes=d.num_classes, dtype=config.dtype,
                seed=seed)
  rng = jax.random.PRNGKey(seed)
  teacher = build_model(config.teacher, **kw)
  variables = train_lib.init_variables(teacher, rng, frames=T, feature_dim=feature_dim)
  if precast:
    variables = cast_params_for_inference(teacher, variables, frames=T, feature_dim=feature_dim,
                                          dtype=kw["dtype"])
  forwards = [compile_forward(teacher, variables, name="teacher", network=config.teacher.name, frames=T,
                              flops_model=build_model(config.teacher, unroll=1, **kw), **common)]
  for k in ks:
    student = build_model(student_model_config(config, k), **kw)
    common["flops_model"] = build_model(student_model_config(config, k), unroll=1, **kw)
    variables = train_lib.init_variables(student, rng, frames=k, feature_dim=feature_dim)
    if precast:
      variables = cast_params_for_inference(student, variables, frames=k, feature_dim=feature_dim,
                                            dtype=kw["dtype"])
    forwards.append(compile_forward(student, variables, name=f"student_k{k}", network=config.student.name,
                                    frames=k, k=k, **common))
    if sampled:  # its own copy of the weights: no cache left warm by the row before it
      variables = jax.tree.map(jnp.copy, variables)
      forwards.append(compile_forward(student, variables, name=f"student_k{k}_sampled",
                                      network=config.student.name, frames=T, k=k, sample_on_device=True,
                                      **common))
  return time_forwards(forwards, warmup=warmup, steps=steps)


# ----------------------------------------------------------------------------------------------
# Training


def _unrolled(config: ml_collections.ConfigDict) -> bool:
  return any(m[f].unroll > 1 for m in (config.teacher, config.student) for f in ("hrnn", "rnn"))


def _not_unrolled(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The config with every scan at unroll=1: the program whose FLOPs are counted (same parameters)."""
  c = ml_collections.ConfigDict(config.to_dict())
  for m in (c.teacher, c.student):
    m.hrnn.unroll = m.rnn.unroll = 1
  return c


def _with_rbg_rng(state: train_lib.DistillState) -> train_lib.DistillState:
  """The state with an 'unsafe_rbg' base key: same FLOPs, no threefry loop (see `flops.py`)."""
  return state.replace(rng=jax.random.key(0, impl="unsafe_rbg"))


def train_config(config: ml_collections.ConfigDict, *, mode: str, k: Optional[int] = None,
                 batch_size: Optional[int] = None) -> ml_collections.ConfigDict:
  """A copy of `config` for one train benchmark: `mode`, the student at `k`, the train batch size."""
  c = ml_collections.ConfigDict(config.to_dict())
  c.mode = mode
  if k is not None:
    c.student = student_model_config(config, k)
    c.student.k = k
  if batch_size:
    c.data.batch_size = batch_size
  return c


def benchmark_train_step(config: ml_collections.ConfigDict, *, name: str, warmup: int = 1, steps: int = 3,
                         seed: int = 0) -> Dict[str, Any]:
  """Times `train.jit_train_step` (state donated) for the config's mode on one synthetic batch."""
  d = config.data
  feature_dim = sum(d.feature_sizes)
  nets = train_loop.build(config)
  state = train_loop.create_state(config, nets, feature_dim=feature_dim, rng=jax.random.PRNGKey(seed))
  batch = jax.device_put(synthetic_batch(batch_size=d.batch_size, frames=d.max_frames,
                                         feature_dim=feature_dim, num_classes=d.num_classes, seed=seed))
  compiled = train_lib.jit_train_step(nets).lower(state, batch).compile()
  flops_nets = nets if not _unrolled(config) else train_loop.build(_not_unrolled(config))
  fn = functools.partial(train_lib.train_step, nets=flops_nets)
  flops = _step_flops(fn, (state, batch), compiled if flops_nets is nets else None,
                      flops_args=(_with_rbg_rng(state), batch))
  holder = [state]

  def step():
    holder[0], metrics = compiled(holder[0], batch)
    return holder[0], metrics

  times = time_steps(step, warmup=warmup, steps=steps)
  network = {"teacher": config.teacher.name}.get(config.mode, config.student.name)
  if config.mode == "parallel":
    network = f"{config.teacher.name}+{config.student.name}"
  k = None if config.mode == "teacher" else config.student.k
  return _row(name=name, kind="train", network=network, frames=d.max_frames, k=k, batch_size=d.batch_size,
              dtype=config.dtype, warmup=warmup, times=times, flops_per_step=flops, memory=_memory(compiled))


def run_train(config: ml_collections.ConfigDict, *, ks: Sequence[int], warmup: int = 1, steps: int = 3,
              batch_size: Optional[int] = None, seed: int = 0,
              which: Sequence[str] = ("teacher", "student", "parallel")) -> List[Dict[str, Any]]:
  """Train-step throughput: the teacher alone, the student alone at each k, and the joint parallel step
  (at `config.student.k`). batch_size: default `data.batch_size`."""
  bad = set(which) - {"teacher", "student", "parallel"}
  if bad:
    raise ValueError(f"run_train: unknown benchmarks {sorted(bad)}; expected teacher, student, parallel")
  kw = dict(warmup=warmup, steps=steps, seed=seed)
  rows = []
  if "teacher" in which:
    rows.append(benchmark_train_step(train_config(config, mode="teacher", batch_size=batch_size),
                                     name="train_teacher", **kw))
  if "student" in which:
    for k in ks:
      rows.append(benchmark_train_step(train_config(config, mode="student_only", k=k, batch_size=batch_size),
                                       name=f"train_student_k{k}", **kw))
  if "parallel" in which:
    k = config.student.k
    rows.append(benchmark_train_step(train_config(config, mode="parallel", k=k, batch_size=batch_size),
                                     name=f"train_parallel_k{k}", **kw))
  return rows


# ----------------------------------------------------------------------------------------------
# Ratios and output


def _throughput_ratio(teacher: Dict[str, Any], student: Dict[str, Any]) -> float:
  """student videos/s over teacher videos/s. Rows timed in the same interleaved rounds (inference) are
  paired round by round and the median of the per-round ratios is taken: on a shared machine the load
  changes between rounds far more than within one. Otherwise (train steps): the ratio of the medians."""
  t, s = teacher["step_ms"], student["step_ms"]
  scale = student["batch_size"] / teacher["batch_size"]
  if teacher["kind"] == "infer" and len(t) == len(s):
    return scale * statistics.median(a / b for a, b in zip(t, s))
  return student["videos_per_sec"] / teacher["videos_per_sec"]


def ratio_rows(rows: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
  """Student vs teacher of the same kind: throughput ratio student/teacher (`_throughput_ratio`) next to
  the FLOP ratio teacher/student of the same compiled functions, and the first as a fraction of the
  second."""
  teachers = {r["kind"]: r for r in rows if r["name"] in ("teacher", "train_teacher")}
  out = []
  for r in rows:
    t = teachers.get(r["kind"])
    if t is None or r["k"] is None or r["name"].startswith("train_parallel"):
      continue
    throughput = _throughput_ratio(t, r)
    flop_ratio = t["flops_per_video"] / r["flops_per_video"]
    out.append(dict(kind=r["kind"], student=r["name"], k=r["k"], throughput_ratio=throughput,
                    flop_ratio=flop_ratio, fraction_of_flop_ratio=throughput / flop_ratio))
  return out


def _fmt(x, spec: str) -> str:
  return "-" if x is None else format(x, spec)


def format_table(rows: Sequence[Dict[str, Any]], ratios: Sequence[Dict[str, Any]] = ()) -> str:
  """Markdown tables of result rows and, when given, the student/teacher ratios."""
  lines = ["| benchmark | network | frames | k | batch | dtype | videos/s | ms/step | GFLOPs/video | "
           "TFLOP/s | MFU | peak mem | compiled mem |",
           "|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
  for r in rows:
    mem = lambda b: "-" if b is None else f"{b / 2**30:.2f} GiB"  # noqa: E731
    mfu = "-" if r["mfu"] is None else f"{100 * r['mfu']:.1f}%"
    lines.append(
        f"| {r['name']} | {r['network']} | {r['frames']} | {_fmt(r['k'], 'd')} | {r['batch_size']} | "
        f"{r['dtype']} | {r['videos_per_sec']:.1f} | {r['ms_per_step']:.1f} | "
        f"{r['flops_per_video'] / 1e9:.4f} | {r['tflops_per_sec']:.4f} | "
        f"{mfu} | {mem(r['peak_memory_bytes'])} | "
        f"{mem(r['compiled_memory_bytes'])} |")
  if ratios:
    lines += ["", "| kind | student | k | throughput student/teacher | XLA FLOPs teacher/student | "
              "fraction of FLOP ratio |", "|---|---|---:|---:|---:|---:|"]
    for q in ratios:
      lines.append(f"| {q['kind']} | {q['student']} | {q['k']} | {q['throughput_ratio']:.2f}x | "
                   f"{q['flop_ratio']:.2f}x | {100 * q['fraction_of_flop_ratio']:.0f}% |")
  return "\n".join(lines)


__all__ = ["PEAK_TFLOPS", "RATIO_FIELDS", "ROW_FIELDS", "benchmark_forward", "benchmark_train_step",
           "cast_params_for_inference", "compile_forward",
           "format_table", "inference_fn", "machine_info", "peak_tflops", "ratio_rows", "run_infer",
           "run_train", "student_model_config", "synthetic_batch", "time_forwards", "time_steps",
           "train_config"]
