"""`train_and_evaluate(config, workdir)`: the whole run, from data to the final summary table.

Serial mode with no teacher run given (`run_config.trains_teacher_first`) is two runs in one command:
the teacher alone (mode=teacher, the same data, model, optimizer and schedule; `train.teacher_stage_epochs`
epochs when set) in `<workdir>/teacher`, then the serial student in `<workdir>`, reading it. A teacher
already trained there is not retrained; an interrupted one resumes; a preemption signal in either stage
stops the command as it stops one run, and the same command resumes where it stopped. An explicit
`teacher_workdir(s)` is one run, as any other mode.

Each run is one pass of set-up, then the loop:
1. the config is resolved, validated and turned into the run's typed `specs.RunSpec` once
   (`run_config.prepare`: bundled data when no pattern is given; every check, including the fit of the
   runs it resumes or loads, before anything compiles); everything below reads the spec, never the
   ConfigDict;
2. the runs it loads are read once (serial: the frozen teacher of `teacher_workdir(s)`;
   finetune: the student of `init_workdir`), the networks and optimizers are built once
   (`run_setup.make_setup`), and the state is created once, directly replicated on the mesh, or restored
   from the latest checkpoint of `workdir` into its abstract shape (a resume);
3. train with the jitted step, logging each loss term, the learning rate and throughput to
   TensorBoard and a progress bar; evaluate every `train.eval_every` steps and at the end (the
   inference path of `evaluate.py`, the same that scores a saved workdir);
4. checkpoint every `train.checkpoint_every` steps and at the end (latest N plus best eval GAP);
5. print a summary: teacher and student GAP, mAP, Hit@1, FLOPs per video, and one line of what the
   student keeps and saves (GAP kept, FLOPs, and with `measure_speed` the measured videos/s of each
   network's eval forward, `forward_speed.py`).

Resuming is exact: the step RNG is folded from (seed, step), and the training input is a
deterministic function of the seed, so a resumed run skips the batches it has consumed.
"""
import json
import os
import time
from typing import Any, Dict, NamedTuple, Optional

import jax
import ml_collections
import numpy as np
from absl import logging

from fewframes_jax import checkpoint as ckpt_lib
from fewframes_jax import specs
from fewframes_jax.errors import ConfigError
from fewframes_jax import run_config
from fewframes_jax.evaluation import evaluate as eval_lib
from fewframes_jax import parallel
from fewframes_jax.train import forward_speed
from fewframes_jax.train import preemption
from fewframes_jax.train import summary as summary_lib
from fewframes_jax.train import trainer as train_lib
from fewframes_jax.train import run_setup
from fewframes_jax.data import stream
from fewframes_jax.models.ensemble import TeacherEnsemble


def print_status(message: str) -> None:
  """One line for the user, on process 0 only (also logged)."""
  logging.info(message)
  if jax.process_index() == 0:
    print(message, flush=True)


class LoadedNetworks(NamedTuple):
  """What a run loads from other runs: serial's frozen teacher (model and variables: a trained
  teacher or an ensemble of them), finetune's stage-1 student variables."""
  teacher_model: Any = None
  teacher_variables: Optional[Dict[str, Any]] = None
  student_variables: Optional[Dict[str, Any]] = None


def _restored_network(workdir: str, which: str):
  restored = ckpt_lib.restore(workdir, best=True)
  model = restored.model if which == "teacher" else restored.student_model
  variables = restored.variables if which == "teacher" else restored.student_variables
  if variables is None:
    raise ConfigError(f"the checkpoint in {workdir!r} has no {which}")
  return model, variables


def load_networks(spec: specs.RunSpec) -> LoadedNetworks:
  """The best checkpoint's teacher of `spec.teacher_workdir`, or the ensemble of the teachers of
  `spec.teacher_workdirs` (families may differ); or, for finetune, the best checkpoint's student of
  `spec.init_workdir` (with its classifier)."""
  if spec.mode == "finetune":
    return LoadedNetworks(student_variables=_restored_network(spec.init_workdir, "student")[1])
  if spec.mode != "serial":
    return LoadedNetworks()
  if not spec.teacher_workdirs:
    return LoadedNetworks(*_restored_network(spec.teacher_workdir, "teacher"))
  members, params, batch_stats = [], {}, {}
  for m, workdir in enumerate(spec.teacher_workdirs):
    model, variables = _restored_network(workdir, "teacher")
    members.append(model)
    params[f"members_{m}"] = variables["params"]
    batch_stats[f"members_{m}"] = variables["batch_stats"]
  return LoadedNetworks(TeacherEnsemble(tuple(members)), {"params": params, "batch_stats": batch_stats})


def initial_state(spec: specs.RunSpec, setup: run_setup.TrainSetup, loaded: LoadedNetworks,
                  manager, mesh):
  """Where to start, placed on the mesh: the latest checkpoint of the run (restored into the abstract
  state, no throw-away initialisation) and its input position, else a fresh state at the start of the
  stream. -> (state, start step, this process's `stream.Position`)."""
  rng = jax.random.PRNGKey(spec.seed)
  variables = dict(teacher_variables=loaded.teacher_variables, student_variables=loaded.student_variables)
  latest = manager.latest_step()
  if latest is None:
    return run_setup.create_state(setup, rng, mesh, **variables), 0, stream.Position()
  abstract = run_setup.create_state(setup, rng, mesh, abstract=True, **variables)
  state, meta = ckpt_lib.restore_state(manager, latest, abstract)
  return state, int(meta["step"]), resume_position(meta)


def saved_positions(position: stream.Position) -> Dict[str, Any]:
  """The `data_position` saved with a checkpoint: every process's next record, in process order
  (a collective: every process calls it at the same step)."""
  if jax.process_count() == 1:
    positions = [list(position)]
  else:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    positions = np.asarray(multihost_utils.process_allgather(np.asarray(position, np.int64))).tolist()
  return {"positions": [[int(v) for v in p] for p in positions]}


def resume_position(meta: Dict[str, Any]) -> stream.Position:
  """This process's stream position from a checkpoint's meta (`saved_positions`)."""
  saved = meta.get("data_position")
  if not isinstance(saved, dict) or "positions" not in saved:
    raise ConfigError(
        f"the checkpoint of step {meta.get('step')} has no input position (data_position={saved!r}: it was "
        "saved by an older version, which resumed by re-reading its batches); resume it with that version, "
        "or start a new workdir")
  positions = saved["positions"]
  if len(positions) != jax.process_count():
    raise ConfigError(
        f"the checkpoint of step {meta.get('step')} was saved by {len(positions)} processes, each with its own "
        f"input position; resume it with {len(positions)} processes (now {jax.process_count()})")
  return stream.Position(*positions[jax.process_index()])


def _check_data_files(data: specs.DataSpec) -> None:
  """Fails now, before any network is built, restored or compiled, when the train or eval pattern
  matches no file (FileNotFoundError naming the pattern: a one-line user error in `main`)."""
  from fewframes_jax.data import yt8m  # pylint: disable=g-import-not-at-top  (TensorFlow)
  for pattern in (data.train_pattern, data.eval_pattern):
    yt8m.list_files(pattern)


def _train_batches(spec: specs.RunSpec, start: stream.Position, counter=None, process_index=None,
                   process_count=None):
  """This process's training batches from stream position `start` (each row has its `position`)."""
  from fewframes_jax.data import yt8m  # pylint: disable=g-import-not-at-top  (TensorFlow)
  d = spec.data
  ds = yt8m.make_dataset(d.train_pattern, parallel.local_batch_size(d.batch_size, process_count),
                         training=True, seed=spec.seed, shuffle_buffer=d.shuffle_buffer,
                         file_fraction=d.train_fraction, skip_counter=counter, process_index=process_index,
                         process_count=process_count, start=start, **yt8m.config_options(d))
  return yt8m.as_numpy_batches(ds, skip_counter=counter)


def run_eval(spec: specs.RunSpec, setup: run_setup.TrainSetup, state, eval_step, mesh) -> Dict[str, Dict[str, float]]:
  """{'teacher'|'student': metrics} of the live state over the eval set, with the record counts
  (`evaluate.evaluate_dataset`)."""
  return eval_lib.evaluate_dataset(setup.forwards(), train_lib.eval_variables(state), spec.data, mesh=mesh,
                                   eval_step=eval_step)


def selection_gap(results: Dict[str, Dict[str, float]]) -> Dict[str, float]:
  """The metric that ranks checkpoints: the student's GAP when there is a student, else the teacher's."""
  net = "student" if "student" in results else "teacher"
  return {"gap": float(results[net]["gap"])}


class _Logger:
  """TensorBoard scalars and the progress bar (process 0), with the training throughput."""

  def __init__(self, spec: specs.RunSpec, workdir: str, start_step: int, num_steps: int):
    self.writer = self.progress = None
    if jax.process_index() == 0:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self.writer = SummaryWriter(os.path.join(workdir, "tensorboard"))
      if spec.train.progress_bar:
        from tqdm import tqdm  # pylint: disable=g-import-not-at-top
        self.progress = tqdm(total=num_steps, initial=start_step, desc=spec.mode, dynamic_ncols=True)
    self.batch_size = spec.data.batch_size
    self._start, self._videos = time.perf_counter(), 0

  def step(self) -> None:
    self._videos += self.batch_size
    if self.progress is not None:
      self.progress.update(1)

  def train_metrics(self, metrics: Dict[str, float], step: int) -> None:
    metrics = dict(metrics, videos_per_sec=self._videos / max(time.perf_counter() - self._start, 1e-9))
    self._start, self._videos = time.perf_counter(), 0
    self.scalars("train", metrics, step)
    if self.progress is not None:
      self.progress.set_postfix({key: f"{metrics[key]:.4g}" for key in ("teacher/ce", "student/loss",
                                                                         "videos_per_sec") if key in metrics})

  def scalars(self, prefix: str, values: Dict[str, float], step: int) -> None:
    if self.writer is not None:
      for key, value in values.items():
        self.writer.add_scalar(f"{prefix}/{key}", float(value), step)
      self.writer.flush()

  def close(self) -> None:
    if self.progress is not None:
      self.progress.close()
    if self.writer is not None:
      self.writer.close()


def _check_finite(pending) -> None:
  """Every step's losses are checked before anything is saved, so a NaN never reaches a checkpoint."""
  for step, metrics in jax.device_get(pending):
    run_config.check_finite({k: float(v) for k, v in metrics.items()}, step)
  pending.clear()


def finished_step(spec: specs.RunSpec, workdir: str) -> Optional[int]:
  """The step of the last complete checkpoint in `workdir` when the run of `spec` trained all its
  steps there, else None (no checkpoint, or an interrupted run)."""
  steps = ckpt_lib.saved_steps(workdir)
  if steps and steps[-1] >= spec.num_train_steps:
    return steps[-1]
  return None


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *, measure_speed: bool = False
                       ) -> Dict[str, Any]:
  """Trains and evaluates; returns {'step', 'eval', 'summary', 'kept_and_saved' (`summary.kept_and_saved`),
  'state', 'preempted', 'skipped_records' (training records skipped, by reason), 'frame_count_mismatches'
  (training records with unequal rgb/audio frame counts)}. A serial config with no teacher run trains its
  teacher first (`run_config.teacher_stage`); the result is then the student's run's. `config` is read
  only by `run_config`; each stage runs on its `specs.RunSpec`.

  measure_speed: time each network's eval forward after training (`forward_speed`), for the summary.
  """
  config = run_config.resolve(config)
  spec = run_config.prepare(config, workdir=workdir)
  if not run_config.trains_teacher_first(config):
    return _train_one(spec, workdir, measure_speed=measure_speed)
  teacher_config, teacher_workdir = run_config.teacher_stage(config, workdir)
  teacher_spec = run_config.prepare(teacher_config, workdir=teacher_workdir)
  done = finished_step(teacher_spec, teacher_workdir)
  if done is None:
    print_status(f"Stage 1 of 2: the teacher alone, in {teacher_workdir}")
    teacher = _train_one(teacher_spec, teacher_workdir, summary=False)
    if teacher["preempted"]:
      return teacher
  else:
    print_status(f"Stage 1 of 2: the teacher in {teacher_workdir} is trained (step {done}); not retrained")
  spec = run_config.prepare(run_config.student_stage(config, teacher_workdir), workdir=workdir)
  print_status(f"Stage 2 of 2: the student, serial, against the frozen teacher, in {workdir}")
  return _train_one(spec, workdir, measure_speed=measure_speed)


def _train_one(spec: specs.RunSpec, workdir: str, *, summary: bool = True,
               measure_speed: bool = False) -> Dict[str, Any]:
  """One run of a prepared spec in `workdir` (`train_and_evaluate`); `summary`: print the summary table
  at the end (it is saved in summary.json either way)."""
  from fewframes_jax.data import bad_records  # pylint: disable=g-import-not-at-top  (TensorFlow)
  mesh = parallel.make_mesh()
  parallel.check_batch_size(spec.data.batch_size, mesh)
  parallel.check_batch_size(spec.data.eval_batch_size, mesh, what="data.eval_batch_size")
  _check_data_files(spec.data)
  os.makedirs(workdir, exist_ok=True)
  loaded = load_networks(spec)
  setup = run_setup.make_setup(spec, teacher_model=loaded.teacher_model)
  num_steps = spec.num_train_steps
  manager = ckpt_lib.make_manager(workdir, keep=spec.train.keep_checkpoints)
  state, start_step, position = initial_state(spec, setup, loaded, manager, mesh)
  if start_step:
    print_status(f"Resumed from {workdir} at step {start_step}")
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "config.json"), "w") as f:
      json.dump(spec.saved, f, indent=2, default=str)

  train_step = train_lib.jit_train_step(setup)
  eval_step = eval_lib.make_eval_step(setup.forwards(), mesh)
  logger = _Logger(spec, workdir, start_step, num_steps)
  counter = bad_records.SkipCounter()
  batches = _train_batches(spec, position, counter)
  results: Dict[str, Dict[str, float]] = {}
  step, pending, preempted = start_step, [], False
  with preemption.PreemptionWatch(manager, install_handler=jax.process_count() == 1) as watch:
    while step < num_steps and not preempted:
      batch = next(batches)
      position = stream.Position.after(batch["position"][-1])
      state, step_metrics = train_step(state, parallel.to_global(batch, mesh))
      step += 1
      pending.append((step, step_metrics))
      logger.step()
      is_last = step == num_steps
      preempted = not is_last and watch.should_stop(step)
      do_log = step % spec.train.log_every == 0 or is_last
      do_eval = is_last or (spec.train.eval_every and step % spec.train.eval_every == 0)
      do_save = is_last or preempted or step % spec.train.checkpoint_every == 0
      if do_log or do_eval or do_save:
        _check_finite(pending)
      if do_log:
        logger.train_metrics({k: float(v) for k, v in jax.device_get(step_metrics).items()}, step)
      if do_eval:
        results = run_eval(spec, setup, state, eval_step, mesh)
        print_status(f"step {step} eval: {eval_lib.format_metrics(results)}")
        logger.scalars("eval", {f"{net}/{k}": v for net, r in results.items() for k, v in r.items()}, step)
      if do_save:  # asynchronous: training goes on while Orbax writes (the next save waits for it)
        ckpt_lib.save(manager, state, spec, metrics=selection_gap(results) if do_eval else None,
                      data_position=saved_positions(position), force=is_last or preempted)
    # inside the watch: a second SIGTERM cannot kill the save being written
    manager.wait_until_finished()
    manager.close()
  if step == start_step and start_step > 0:  # nothing left to train: evaluate the restored state
    results = run_eval(spec, setup, state, eval_step, mesh)
  counts = _record_counts(counter)
  if preempted:
    logger.close()
    print_status(f"Stopped at step {step} on a preemption signal; the checkpoint of step {step} is saved. "
                 "Run the same command again to resume there.")
    return {"step": step, "eval": {}, "summary": "", "kept_and_saved": None, "state": state, "preempted": True,
            **counts}
  speed = None
  if measure_speed and setup.has_teacher and setup.has_student:
    speed = forward_speed.eval_forward_speed(setup.forwards(), train_lib.eval_variables(state),
                                             eval_lib.eval_batches(spec.data), mesh=mesh)
  return _finish(spec, workdir, setup, state, step, results, counts, logger, speed=speed, show=summary)


def _record_counts(counter) -> Dict[str, Any]:
  """The training records skipped (by reason) and those with unequal rgb/audio frame counts, summed over
  processes (a collective)."""
  return {"skipped_records": parallel.sum_over_processes(counter.by_reason()),
          "frame_count_mismatches": eval_lib.record_counts(counter)["frame_count_mismatches"]}


def _finish(spec, workdir, setup, state, step, results, counts, logger, *, speed=None, show=True
            ) -> Dict[str, Any]:
  """Reports the training records skipped (by reason) or with unequal rgb/audio frame counts, then
  prints (`show`) and saves the summary, with what the student keeps and saves (`speed`: measured
  videos/s of each network's eval forward, or None)."""
  skipped, mismatches = counts["skipped_records"], counts["frame_count_mismatches"]
  if sum(skipped.values()):
    print_status(f"skipped {sum(skipped.values())} bad training records: "
                 f"{({k: v for k, v in skipped.items() if v})}")
  if mismatches:
    print_status(f"{mismatches} training records had unequal rgb/audio frame counts (read up to the shorter)")
  logger.scalars("data", {"skipped_records": sum(skipped.values()), "frame_count_mismatches": mismatches}, step)
  logger.close()
  flops = summary_lib.flops_per_video(spec, setup)
  kept = summary_lib.kept_and_saved(results, flops, speed)
  summary = summary_lib.summary_table(spec, setup, step, results, flops=flops, kept=kept)
  if jax.process_index() == 0:
    if show:
      print(summary, flush=True)
    with open(os.path.join(workdir, "summary.json"), "w") as f:
      json.dump({"step": step, "eval": results, "flops_per_video": flops, "kept_and_saved": kept, **counts}, f,
                indent=2, default=float)
  return {"step": step, "eval": results, "summary": summary, "kept_and_saved": kept, "state": state,
          "preempted": False, **counts}
