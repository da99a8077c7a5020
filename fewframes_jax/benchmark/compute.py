"""In-memory compute benchmarks: the eval forward of the teacher and of the student at each k, and the
train steps, on synthetic uint8 batches already on the device (no TensorFlow).

The forward is the project's inference path, `inference.Forward.apply` (dequantize, select the frames,
apply the model), with the weights stored as a served network stores them (`inference.cast_for_inference`);
the train step is `trainer.jit_train_step`. Result rows and ratios: `timing.py`.

Inference rows: `teacher` on u8[B, T, D]; `student_k{k}` on u8[B, k, D], the k frames the student input
path ships (`yt8m.make_dataset(student_frames=...)`); `student_k{k}_sampled` on u8[B, T, D] with its k
frames picked on the device (what the trainer's eval does). The forwards are timed in interleaved rounds
(`timing.time_interleaved`). Train rows: `train_teacher` (mode=teacher), `train_student_k{k}`
(mode=student_only), `train_parallel_k{k}` (the joint teacher + student step).

A student at another k than the config's is built with `models.network_at_k` (an H-RNN student
gets ceil(k / 6) blocks). Class counts and sizes are the config's own (4716 classes for the paper's
configs): the benchmarks read no data, so the config is not resolved against the bundled dataset.
FLOPs are counted with 'unsafe_rbg' keys, whose random bits compile without a loop (see `flops.py`);
they do not depend on the generator.
"""
import dataclasses
import functools
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import ml_collections

from fewframes_jax import inference
from fewframes_jax import specs
from fewframes_jax import parallel
from fewframes_jax.train import trainer as train_lib
from fewframes_jax.train import run_setup
from fewframes_jax.metrics import flops as flops_lib
from fewframes_jax.benchmark import timing
from fewframes_jax.models import build_model, hrnn_student_blocks, network_at_k
from fewframes_jax.sampling import learned

TRAIN_BENCHMARKS = ("teacher", "student", "parallel")


def _rbg_key(seed: int = 0) -> jax.Array:
  """A key whose random bits compile without a loop (threefry's is a loop on a CPU): FLOPs are counted
  with it, and benchmark weights drawn with it (their values do not change the time) compile faster."""
  return jax.random.key(seed, impl="unsafe_rbg")


def probabilities_fn(forward: inference.Forward, *, preselected: bool = False) -> Callable:
  """(variables, frames u8[B, T', D], num_frames i32[B], rng) -> probabilities f32[B, C]: the eval
  forward `forward.apply`; `preselected`: the input is already the network's k frames (T' = k)."""

  def fn(variables, frames_u8, num_frames, rng):
    return forward.apply(variables, frames_u8, num_frames, rng, preselected=preselected).probabilities

  return fn


# ----------------------------------------------------------------------------------------------
# Inference


class CompiledForward(NamedTuple):
  """A compiled eval forward, its arguments on the device, and what its result row needs."""
  meta: Dict[str, Any]
  compiled: Any
  args: Tuple[Any, ...]
  flops_per_step: float


def compile_forward(forward: inference.Forward, variables, *, name: str, network: str, frames: int,
                    batch_size: int, feature_dim: int, num_classes: int, dtype: str, preselected: bool = False,
                    flops_forward: Optional[inference.Forward] = None, seed: int = 0) -> CompiledForward:
  """Compiles `probabilities_fn(forward)` on a synthetic u8[B, frames, D] batch put on the device.

  frames: T' of the input (T for the teacher and for a student that selects on the device; k for a
  `preselected` student). flops_forward: the same network with scans not unrolled, whose FLOPs are
  counted (`scan_aware_flops` needs one loop trip per scan step); default `forward`.
  """
  fn = probabilities_fn(forward, preselected=preselected)
  batch = timing.synthetic_batch(batch_size=batch_size, frames=frames, feature_dim=feature_dim,
                                 num_classes=num_classes, seed=seed)
  args = (variables, jax.device_put(batch["frames"]), jax.device_put(batch["num_frames"]),
          inference.eval_key(0))
  compiled = jax.jit(fn).lower(*args).compile()
  flops_args = args[:3] + (_rbg_key(),)
  if flops_forward is not None:
    flops = flops_lib.scan_aware_flops(probabilities_fn(flops_forward, preselected=preselected), *flops_args)
  else:
    flops = flops_lib.compiled_call_flops(fn, args, compiled, flops_args=flops_args)
  meta = dict(name=name, kind="infer", network=network, frames=frames, k=forward.selection.k,
              batch_size=batch_size, dtype=dtype)
  return CompiledForward(meta, compiled, args, flops)


def time_forwards(forwards: Sequence[CompiledForward], *, warmup: int = 1, steps: int = 3) -> List[Dict[str, Any]]:
  """Times compiled forwards in interleaved rounds (`timing.time_interleaved`): one row each."""
  times = timing.time_interleaved([functools.partial(f.compiled, *f.args) for f in forwards],
                                  warmup=warmup, steps=steps)
  return [timing.result_row(**f.meta, warmup=warmup, times=t, flops_per_step=f.flops_per_step,
                            memory=timing.memory(f.compiled)) for f, t in zip(forwards, times)]


def _unrolled(config: ml_collections.ConfigDict) -> bool:
  return any(m[f].unroll > 1 for m in (config.teacher, config.student) for f in ("hrnn", "rnn"))


def teacher_forward(config: ml_collections.ConfigDict, *, unroll: int = 0) -> inference.Forward:
  """The config's teacher, on every frame. unroll: as `build_model` (1: the program FLOPs count)."""
  spec = specs.RunSpec.from_config(config)
  d = spec.data
  return inference.Forward(build_model(spec.teacher, num_classes=d.num_classes, feature_sizes=d.feature_sizes,
                                      dtype=spec.dtype, unroll=unroll))


def student_forward(config: ml_collections.ConfigDict, k: int, *, unroll: int = 0) -> inference.Forward:
  """The config's student at `k` frames (`network_at_k`), selected by `student.sampling`."""
  spec = specs.RunSpec.from_config(config)
  d = spec.data
  model = build_model(network_at_k(spec.student, k), num_classes=d.num_classes, feature_sizes=d.feature_sizes,
                      dtype=spec.dtype, unroll=unroll)
  selection = dataclasses.replace(inference.student_selection(spec), k=k)
  return inference.Forward(model, selection)


def served_variables(config: ml_collections.ConfigDict, forward: inference.Forward, *, seed: int = 0,
                     precast: bool = True) -> Dict[str, Any]:
  """Freshly initialised variables of a forward's network (the time does not depend on the weights),
  stored as a served network stores them (`inference.cast_for_inference`) unless `precast` is False."""
  d = config.data
  feature_dim = sum(d.feature_sizes)
  variables = run_setup.init_variables(forward.model, _rbg_key(seed), frames=forward.frames_seen(d.max_frames),
                                       feature_dim=feature_dim)
  if forward.selection.learned:  # a learned selector's scorer, in the student's tree as a trained run has it
    variables["params"] = dict(variables["params"], **{learned.SELECTOR_KEY: learned.init_params(
        forward.selection.scorer, _rbg_key(seed + 1), frames=d.max_frames)})
  if not precast:
    return variables
  return inference.cast_for_inference(forward, variables, max_frames=d.max_frames, feature_dim=feature_dim,
                                      dtype=config.dtype)


def run_infer(config: ml_collections.ConfigDict, *, ks: Sequence[int], warmup: int = 1, steps: int = 3,
              batch_size: Optional[int] = None, sampled: bool = True, precast: bool = True,
              seed: int = 0) -> List[Dict[str, Any]]:
  """Eval-forward throughput of the config's teacher (T = data.max_frames) and of its student at each
  k, timed in interleaved rounds: rows `teacher`, `student_k{k}` and (with `sampled`)
  `student_k{k}_sampled`. batch_size: default `data.eval_batch_size`. precast: see `served_variables`."""
  d = config.data
  common = dict(batch_size=batch_size or d.eval_batch_size, feature_dim=sum(d.feature_sizes),
                num_classes=d.num_classes, dtype=config.dtype, seed=seed)
  count_unrolled = _unrolled(config)
  teacher = teacher_forward(config)
  forwards = [compile_forward(teacher, served_variables(config, teacher, seed=seed, precast=precast), name="teacher",
                              network=config.teacher.name, frames=d.max_frames,
                              flops_forward=teacher_forward(config, unroll=1) if count_unrolled else None,
                              **common)]
  for k in ks:
    student = student_forward(config, k)
    variables = served_variables(config, student, seed=seed, precast=precast)
    kw = dict(common, network=config.student.name,
              flops_forward=student_forward(config, k, unroll=1) if count_unrolled else None)
    forwards.append(compile_forward(student, variables, name=f"student_k{k}", frames=k, preselected=True, **kw))
    if sampled:  # its own copy of the weights: no cache left warm by the row before it
      forwards.append(compile_forward(student, jax.tree.map(jnp.copy, variables), name=f"student_k{k}_sampled",
                                      frames=d.max_frames, **kw))
  return time_forwards(forwards, warmup=warmup, steps=steps)


# ----------------------------------------------------------------------------------------------
# Training


def train_config(config: ml_collections.ConfigDict, *, mode: str, k: Optional[int] = None,
                 batch_size: Optional[int] = None) -> ml_collections.ConfigDict:
  """A complete copy of `config` for one train benchmark: `mode`, the student at `k` (default
  `student.k`; an H-RNN student with `hrnn_student_blocks(k)` blocks), the train batch size (default
  `data.batch_size`)."""
  c = ml_collections.ConfigDict(config.to_dict())
  c.mode = mode
  k = config.student.k if k is None else k
  c.student.hrnn.num_blocks = hrnn_student_blocks(k)
  c.student.k = k
  if batch_size:
    c.data.batch_size = batch_size
  return c


def _not_unrolled(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The config with every scan at unroll=1: the program whose FLOPs are counted (same parameters)."""
  c = ml_collections.ConfigDict(config.to_dict())
  for m in (c.teacher, c.student):
    m.hrnn.unroll = m.rnn.unroll = 1
  return c


def _network_name(config: ml_collections.ConfigDict) -> str:
  if config.mode == "teacher":
    return config.teacher.name
  if config.mode == "parallel":
    return f"{config.teacher.name}+{config.student.name}"
  return config.student.name


def benchmark_train_step(config: ml_collections.ConfigDict, *, name: str, warmup: int = 1, steps: int = 3,
                         seed: int = 0) -> Dict[str, Any]:
  """Times `trainer.jit_train_step` (the state donated) of a complete config (`train_config`) on one
  synthetic batch of `data.batch_size` videos, sharded over every device: its result row."""
  d = config.data
  setup = run_setup.make_setup(specs.RunSpec.from_config(config))
  mesh = parallel.make_mesh()
  state = run_setup.create_state(setup, jax.random.PRNGKey(seed), mesh)
  batch = jax.device_put(timing.synthetic_batch(batch_size=d.batch_size, frames=d.max_frames,
                                                feature_dim=setup.feature_dim, num_classes=d.num_classes,
                                                seed=seed), parallel.batch_sharded(mesh))
  compiled = train_lib.jit_train_step(setup).lower(state, batch).compile()
  flops_setup = run_setup.make_setup(specs.RunSpec.from_config(_not_unrolled(config))) if _unrolled(config) else setup
  flops = flops_lib.compiled_call_flops(functools.partial(train_lib.train_step, setup=flops_setup),
                                        (state, batch), compiled if flops_setup is setup else None,
                                        flops_args=(state.replace(rng=_rbg_key()), batch))
  holder = [state]

  def step():
    holder[0], metrics = compiled(holder[0], batch)
    return holder[0], metrics

  times = timing.time_steps(step, warmup=warmup, steps=steps)
  return timing.result_row(name=name, kind="train", network=_network_name(config), frames=d.max_frames,
                           k=None if config.mode == "teacher" else config.student.k, batch_size=d.batch_size,
                           dtype=config.dtype, warmup=warmup, times=times, flops_per_step=flops,
                           memory=timing.memory(compiled))


def run_train(config: ml_collections.ConfigDict, *, ks: Sequence[int], warmup: int = 1, steps: int = 3,
              batch_size: Optional[int] = None, seed: int = 0,
              which: Sequence[str] = TRAIN_BENCHMARKS) -> List[Dict[str, Any]]:
  """Train-step throughput: the teacher alone, the student alone at each k, and the joint parallel
  step (at `student.k`), as selected by `which` (`TRAIN_BENCHMARKS`). batch_size: default
  `data.batch_size`."""
  bad = set(which) - set(TRAIN_BENCHMARKS)
  if bad:
    raise ValueError(f"unknown train benchmarks {sorted(bad)}; expected some of {TRAIN_BENCHMARKS}")
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
    rows.append(benchmark_train_step(train_config(config, mode="parallel", batch_size=batch_size),
                                     name=f"train_parallel_k{config.student.k}", **kw))
  return rows
