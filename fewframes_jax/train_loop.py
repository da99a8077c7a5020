"""`train_and_evaluate(config, workdir)`: the whole run, from data to the final summary table.

1. validate and resolve the config (bundled data when no pattern is given);
2. build the networks and their state, or resume the latest checkpoint of `workdir`;
   serial mode loads the frozen teacher from `config.teacher_workdir`, finetune mode the student from
   `config.init_workdir`;
3. train with the jitted step, logging each loss term, the learning rate and throughput to
   TensorBoard and a progress bar; evaluate every `train.eval_every` steps and at the end;
4. checkpoint every `train.checkpoint_every` steps and at the end (latest N plus best eval GAP);
5. print a summary: teacher and student GAP, mAP, Hit@1, FLOPs per video and their ratio.

Resuming is exact: the step RNG is folded from (seed, step), and the training input is a
deterministic function of the seed, so a resumed run skips the batches it has consumed.
"""
import json
import os
import time
from typing import Any, Dict, NamedTuple, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from fewframes_jax import checkpoint as ckpt_lib
from fewframes_jax import configs_lib
from fewframes_jax import evaluate as eval_lib
from fewframes_jax import parallel
from fewframes_jax import report
from fewframes_jax import train as train_lib
from fewframes_jax.models.ensemble import TeacherEnsemble


def say(message: str) -> None:
  """One line for the user on process 0 (logs are kept at WARNING by main: Orbax is verbose)."""
  logging.info(message)
  if jax.process_index() == 0:
    print(message, flush=True)


def _writer(workdir: str):
  if jax.process_index() != 0:
    return None
  from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
  return SummaryWriter(os.path.join(workdir, "tensorboard"))


def _restore_network(workdir: str, which: str, *, best: bool = True) -> Dict[str, Any]:
  """{'model', 'variables', 'config'} of the teacher or student of another run's checkpoint."""
  restored = ckpt_lib.restore(workdir, best=best)
  variables = restored.variables if which == "teacher" else restored.student_variables
  if variables is None:
    raise ValueError(f"the checkpoint in {workdir!r} has no {which}")
  model = restored.model if which == "teacher" else restored.student_model
  return {"model": model, "variables": variables, "config": restored.config}


class FrozenTeacher(NamedTuple):
  """Serial mode's teacher: a trained teacher, or an ensemble of them, with its variables."""
  model: Any
  variables: Dict[str, Any]


def load_frozen_teacher(config: ml_collections.ConfigDict) -> FrozenTeacher:
  """The best checkpoint's teacher of `config.teacher_workdir`, or the ensemble of the teachers of
  `config.teacher_workdirs` (comma-separated; families may differ)."""
  if not config.teacher_workdirs:
    loaded = _restore_network(config.teacher_workdir, "teacher")
    configs_lib.check_teacher_matches(config, loaded["config"], config.teacher_workdir)
    return FrozenTeacher(loaded["model"], loaded["variables"])
  members, params, batch_stats = [], {}, {}
  for m, workdir in enumerate(w.strip() for w in config.teacher_workdirs.split(",")):
    loaded = _restore_network(workdir, "teacher")
    configs_lib.check_data_matches(config, loaded["config"], workdir)
    members.append(loaded["model"])
    params[f"members_{m}"] = loaded["variables"]["params"]
    batch_stats[f"members_{m}"] = loaded["variables"]["batch_stats"]
  return FrozenTeacher(TeacherEnsemble(tuple(members)), {"params": params, "batch_stats": batch_stats})


def create_state(config: ml_collections.ConfigDict, nets: train_lib.Networks, *, feature_dim: int,
                 rng: jax.Array, frozen: Optional[FrozenTeacher] = None) -> train_lib.DistillState:
  """A fresh state for the mode. Serial: the teacher is `frozen` (loaded when not given). Finetune:
  the student (with its classifier) comes from `init_workdir`."""
  rng_teacher, rng_student, rng_proj, rng_base = jax.random.split(rng, 4)
  T, k = config.data.max_frames, config.student.k
  teacher = student = None
  if config.mode == "serial":
    frozen = frozen or load_frozen_teacher(config)
    teacher = train_lib.new_net_state(frozen.variables, None)
  elif nets.has_teacher and config.mode != "finetune":
    teacher = train_lib.new_net_state(
        train_lib.init_variables(nets.teacher_model, rng_teacher, frames=T, feature_dim=feature_dim),
        nets.teacher_tx)
  if config.mode == "finetune":
    loaded = _restore_network(config.init_workdir, "student")
    student = train_lib.new_net_state(loaded["variables"], nets.student_tx)
  elif nets.has_student:
    variables = train_lib.init_variables(nets.student_model, rng_student, frames=k, feature_dim=feature_dim,
                                         encoder_only=nets.shared_head)
    if nets.projection_dim:
      rep_dim = train_lib.representation_dim(nets.student_model, frames=k, feature_dim=feature_dim)
      variables["params"] = dict(variables["params"],
                                 projection=train_lib.init_projection(rng_proj, rep_dim, nets.projection_dim))
    student = train_lib.new_net_state(variables, nets.student_tx)
  return train_lib.DistillState(step=jnp.zeros([], jnp.int32), rng=rng_base, teacher=teacher, student=student)


def build(config: ml_collections.ConfigDict, frozen: Optional[FrozenTeacher] = None) -> train_lib.Networks:
  """Networks for a resolved config, with representation sizes inferred from the models. In serial
  mode the teacher module is the frozen teacher's (loaded when not given)."""
  d = config.data
  feature_dim = sum(d.feature_sizes)
  if config.mode == "serial":
    frozen = frozen or load_frozen_teacher(config)
  teacher_model = frozen.model if frozen is not None else None
  probe = train_lib.make_networks(config, num_classes=d.num_classes, teacher_model=teacher_model)
  t_dim = s_dim = 0
  if probe.has_teacher and probe.has_student:
    t_dim = train_lib.representation_dim(probe.teacher_model, frames=d.max_frames, feature_dim=feature_dim)
    s_dim = train_lib.representation_dim(probe.student_model, frames=config.student.k, feature_dim=feature_dim)
    configs_lib.check_representation_sizes(config, t_dim, s_dim)
  return train_lib.make_networks(config, num_classes=d.num_classes, teacher_rep_dim=t_dim,
                                 student_rep_dim=s_dim, teacher_model=teacher_model)


def _eval_batches(config, skip_counter=None):
  from fewframes_jax.data import yt8m  # pylint: disable=g-import-not-at-top
  d = config.data
  local = parallel.local_batch_size(d.eval_batch_size)
  # Multi-host: every process must run as many eval steps as the largest shard needs (collectives).
  pad = yt8m.num_eval_batches(d.eval_pattern, local) if jax.process_count() > 1 else None
  ds = yt8m.make_dataset(d.eval_pattern, local, training=False, pad_to_batches=pad, skip_counter=skip_counter,
                         **yt8m.config_options(d))
  return yt8m.as_numpy_batches(ds, skip_counter=skip_counter)


def _train_batches(config, skip_batches: int, skip_counter=None, process_index=None, process_count=None):
  from fewframes_jax.data import yt8m  # pylint: disable=g-import-not-at-top
  d = config.data
  ds = yt8m.make_dataset(d.train_pattern, parallel.local_batch_size(d.batch_size, process_count),
                         training=True, seed=config.seed, shuffle_buffer=d.shuffle_buffer,
                         file_fraction=d.train_fraction, skip_counter=skip_counter, process_index=process_index,
                         process_count=process_count, **yt8m.config_options(d))
  if skip_batches:
    ds = ds.skip(skip_batches)
  return yt8m.as_numpy_batches(ds, skip_counter=skip_counter)


def run_eval(config, state, eval_step, mesh) -> Dict[str, Dict[str, float]]:
  """{'teacher'|'student': metrics} over the eval set. With data.on_error=skip, each metrics dict also
  has `skipped_records`: the bad eval records dropped in this pass, summed over processes (the
  metrics cover the other videos); a warning names the reasons."""
  skips = None
  if config.data.on_error == "skip":
    from fewframes_jax.data import yt8m  # pylint: disable=g-import-not-at-top
    skips = yt8m.SkipCounter()
  results = eval_lib.evaluate(state, _eval_batches(config, skips), eval_step, num_classes=config.data.num_classes,
                              mesh=mesh, max_videos=config.data.max_eval_videos)
  if skips is not None:
    by_reason = parallel.sum_over_processes(skips.by_reason())
    total = sum(by_reason.values())
    for metrics in results.values():
      metrics["skipped_records"] = total
    if total:
      logging.warning("eval skipped %d bad records: %s", total, {k: v for k, v in by_reason.items() if v})
  return results


def _log_eval(writer, results, step):
  if writer is None:
    return
  for net, r in results.items():
    for key, value in r.items():
      writer.add_scalar(f"eval/{net}/{key}", float(value), step)
  writer.flush()


def selection_gap(results: Dict[str, Dict[str, float]]) -> Dict[str, float]:
  """The metric that ranks checkpoints: the student's GAP when there is a student, else the teacher's."""
  net = "student" if "student" in results else "teacher"
  return {"gap": float(results[net]["gap"])}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> Dict[str, Any]:
  """Trains and evaluates; returns {'step', 'eval': {...}, 'summary': str}."""
  config = configs_lib.resolve(config)
  configs_lib.validate(config, workdir=workdir)
  os.makedirs(workdir, exist_ok=True)
  mesh = parallel.make_mesh()
  parallel.check_batch_size(config.data.batch_size, mesh)
  parallel.check_batch_size(config.data.eval_batch_size, mesh, what="data.eval_batch_size")
  frozen = load_frozen_teacher(config) if config.mode == "serial" else None
  nets = build(config, frozen)
  feature_dim = sum(config.data.feature_sizes)
  num_steps = configs_lib.num_train_steps(config)

  manager = ckpt_lib.make_manager(workdir, keep=config.train.keep_checkpoints)
  state = create_state(config, nets, feature_dim=feature_dim, rng=jax.random.PRNGKey(config.seed), frozen=frozen)
  state = parallel.replicate(state, mesh)
  start_step = 0
  if manager.latest_step() is not None:
    configs_lib.check_resume_compatible(
        config, ml_collections.ConfigDict(ckpt_lib.read_json_item(workdir, manager.latest_step(), "config")),
        workdir)
    state, meta = ckpt_lib.restore_state(manager, manager.latest_step(), state)
    state = parallel.replicate(state, mesh)
    start_step = int(meta["step"])
    say(f"Resumed from {workdir} at step {start_step}")
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2))

  train_step = train_lib.jit_train_step(nets)
  eval_step = train_lib.jit_eval_step(nets, mesh)
  writer = _writer(workdir)
  from fewframes_jax.data import yt8m  # pylint: disable=g-import-not-at-top
  skips = yt8m.SkipCounter()
  batches = _train_batches(config, start_step, skip_counter=skips)
  progress = None
  if config.train.progress_bar and jax.process_index() == 0:
    from tqdm import tqdm  # pylint: disable=g-import-not-at-top
    progress = tqdm(total=num_steps, initial=start_step, desc=config.mode, dynamic_ncols=True)

  results: Dict[str, Dict[str, float]] = {}
  step = start_step
  pending = []  # (step, device metrics) not yet checked for non-finite values
  window_start, window_videos = time.perf_counter(), 0
  while step < num_steps:
    batch = next(batches)
    state, step_metrics = train_step(state, parallel.to_global(batch, mesh))
    step += 1
    window_videos += config.data.batch_size
    pending.append((step, step_metrics))
    is_last = step == num_steps
    do_log = step % config.train.log_every == 0 or is_last
    do_eval = is_last or (config.train.eval_every and step % config.train.eval_every == 0)
    do_save = is_last or step % config.train.checkpoint_every == 0
    if do_log or do_eval or do_save:
      # Every step's losses are checked before anything is saved, so a NaN never reaches a checkpoint.
      for s, m in jax.device_get(pending):
        configs_lib.check_finite({k: float(v) for k, v in m.items()}, s)
      pending.clear()
    if do_log:
      m = {k: float(v) for k, v in jax.device_get(step_metrics).items()}
      elapsed = time.perf_counter() - window_start
      m["videos_per_sec"] = window_videos / max(elapsed, 1e-9)
      window_start, window_videos = time.perf_counter(), 0
      if writer is not None:
        for key, value in m.items():
          writer.add_scalar(f"train/{key}", value, step)
      if progress is not None:
        progress.set_postfix({key: f"{m[key]:.4g}" for key in ("teacher/ce", "student/loss", "videos_per_sec")
                              if key in m})
    if progress is not None:
      progress.update(1)
    if do_eval:
      results = run_eval(config, state, eval_step, mesh)
      say(f"step {step} eval: {eval_lib.format_metrics(results)}")
      _log_eval(writer, results, step)
    if do_save:
      ckpt_lib.save(manager, state, config, metrics=selection_gap(results) if do_eval else None,
                    data_position=step, force=is_last)
  if progress is not None:
    progress.close()
  if step == start_step and start_step > 0:
    # Nothing left to train: evaluate the restored state so the summary is complete.
    results = run_eval(config, state, eval_step, mesh)
  manager.wait_until_finished()
  manager.close()
  skipped = parallel.sum_over_processes(skips.by_reason())  # data.on_error=skip, all processes
  if sum(skipped.values()):
    say(f"skipped {sum(skipped.values())} bad training records: {({k: v for k, v in skipped.items() if v})}")
    if writer is not None:
      writer.add_scalar("data/skipped_records", sum(skipped.values()), step)
  summary = report.summary_table(config, nets, state, results)
  if writer is not None:
    writer.close()
  if jax.process_index() == 0:
    print(summary, flush=True)
    with open(os.path.join(workdir, "summary.json"), "w") as f:
      json.dump({"step": step, "eval": results, "skipped_records": skipped}, f, indent=2, default=float)
  return {"step": step, "eval": results, "summary": summary, "state": state, "skipped_records": skipped}
