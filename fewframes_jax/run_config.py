"""The config layer: a ConfigDict resolved, validated and turned into typed specs, once, before anything
compiles.

`resolve(config)` fills what a run derives (the bundled data's patterns and class count, an H-RNN
student's blocks from its final k); `validate(config, workdir=...)` raises a `ConfigError` naming the
field for every invalid setting, including a config that does not fit the checkpoints it would resume
or load (read from their saved JSON configs only, so nothing is restored or compiled before the error);
`prepare(config, workdir=...)` validates and returns the run's `specs.RunSpec`, which every layer below
receives instead of the ConfigDict. A serial run with no teacher run is two stages (`teacher_stage`,
`student_stage`), each prepared on its own. All of it runs at a run's start (`train/loop.py`).

The names a config may use are defined by the modules that own them and only checked here: modes
(`specs.MODES`), model families (`models.MODEL_NAMES`), frame selection methods (`sampling.methods.SELECTION_METHODS`),
prediction distances (`specs.PREDICTION_DISTANCES`), clipping modes (`specs.CLIP_MODES`), compute
dtypes (`models.DTYPES`), and the reader's error policies and id keys (`data/bad_records.py`).
"""
import math
import os
from typing import Dict, Mapping, Optional, Tuple

import ml_collections

from fewframes_jax import specs
from fewframes_jax import checkpoint as ckpt_lib
from fewframes_jax import models
from fewframes_jax.sampling import methods
from fewframes_jax.sampling import learned
from fewframes_jax.data import bad_records
from fewframes_jax.errors import ConfigError


def _require(condition: bool, message: str) -> None:
  if not condition:
    raise ConfigError(message)


def resolve(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A copy of `config` with its data's file patterns filled in: a prepared TFDS dataset's splits
  (`data.tfds_name`), else the bundled dataset when no train pattern is given."""
  config = ml_collections.ConfigDict(config.to_dict())
  d = config.data
  if d.get("tfds_name"):
    from fewframes_jax.data import tfds_yt8m  # pylint: disable=g-import-not-at-top  (TensorFlow Datasets)
    tfds_yt8m.use_prepared(d)
  if not d.train_pattern:
    from fewframes_jax.data import bundled, synthetic  # pylint: disable=g-import-not-at-top
    b = d.bundled
    _require(b.spec in ("",) + synthetic.SPEC_NAMES,
             f"data.bundled.spec={b.spec!r}: expected one of {synthetic.SPEC_NAMES}")
    train, evals, num_classes = bundled.ensure_bundled(cache_dir=b.cache_dir, num_train=b.num_train,
                                                       num_eval=b.num_eval, num_classes=b.num_classes,
                                                       seed=b.seed, spec=b.spec or "short")
    d.train_pattern, d.num_classes = train, num_classes
    d.eval_pattern = d.eval_pattern or evals
    if not d.num_train_examples:
      d.num_train_examples = b.num_train
  _require(bool(d.eval_pattern), "data.eval_pattern is empty: give the eval files (TFRecord glob)")
  if config.student.hrnn.num_blocks == 0:  # 0: derived from the final k (an explicit value wins)
    config.student.hrnn.num_blocks = models.hrnn_student_blocks(config.student.k)
  return config


def _validate_model(m: ml_collections.ConfigDict, where: str, frames: int) -> None:
  _require(m.name in models.MODEL_NAMES, f"{where}.name={m.name!r}: expected one of {models.MODEL_NAMES}")
  if m.name == "hrnn":
    _require(1 <= m.hrnn.num_blocks <= frames,
             f"{where}.hrnn.num_blocks={m.hrnn.num_blocks} does not fit the {frames} frames this network "
             f"sees: need 1 <= num_blocks <= {frames}")
    _require(m.hrnn.cells > 0 and m.hrnn.layers > 0, f"{where}.hrnn.cells/layers must be positive")
  if m.name in ("lstm", "gru"):
    _require(m.rnn.cells > 0 and m.rnn.layers > 0, f"{where}.rnn.cells/layers must be positive")
  if m.name == "netvlad":
    _require(m.netvlad.cluster_size >= 2, f"{where}.netvlad.cluster_size must be >= 2")
  if m.name == "nextvlad":
    n = m.nextvlad
    _require(n.groups >= 2 and n.groups % 2 == 0, f"{where}.nextvlad.groups={n.groups}: need an even number >= 2")
    _require(n.cluster_size >= 2, f"{where}.nextvlad.cluster_size must be >= 2")
    _require(0.0 <= n.dropout < 1.0, f"{where}.nextvlad.dropout={n.dropout}: need 0 <= dropout < 1")
  if m.input_norm == "reverse_whitening":
    _require(bool(m.whitening_eigenvalues) and os.path.exists(m.whitening_eigenvalues),
             f"{where}.whitening_eigenvalues={m.whitening_eigenvalues!r}: reverse whitening needs a readable .npy")


def saved_run_config(workdir: str, field: str) -> ml_collections.ConfigDict:
  """The config saved with the latest complete checkpoint of the run in `workdir`.

  `field` names the setting that points there (for the messages). Raises ConfigError when the folder
  is missing or unreadable or holds no complete checkpoint (Orbax names a step folder by its number
  only once the save is complete).
  """
  ckpt = ckpt_lib.checkpoint_dir(workdir)
  _require(os.path.isdir(ckpt), f"{field}={workdir!r}: no checkpoints folder there ({ckpt})")
  _require(os.access(ckpt, os.R_OK | os.X_OK), f"{field}={workdir!r}: {ckpt} is not readable")
  steps = ckpt_lib.complete_steps(workdir)
  _require(bool(steps), f"{field}={workdir!r}: no complete checkpoint in {ckpt}")
  try:
    return ml_collections.ConfigDict(ckpt_lib.read_json_item(workdir, steps[-1], "config"))
  except (OSError, ValueError) as e:
    raise ConfigError(f"{field}={workdir!r}: cannot read the config of checkpoint {steps[-1]}: {e}") from None


def validate(config: ml_collections.ConfigDict, *, workdir: Optional[str] = None) -> None:
  """Raises ConfigError for any invalid setting. Call after `resolve`.

  `workdir`: the run's folder (must not be a file); when it holds a checkpoint (a resume), the config
  must fit it. Serial and finetune modes also check the runs they load (teacher_workdir(s), init_workdir).
  """
  _require(config.mode in specs.MODES, f"mode={config.mode!r}: expected one of {specs.MODES}")
  _require(config.dtype in models.DTYPES, f"dtype={config.dtype!r}: expected one of {tuple(models.DTYPES)}")
  _validate_data(config.data)
  if specs.has_teacher(config.mode):
    _validate_model(config.teacher, "teacher", config.data.max_frames)
  if specs.has_student(config.mode):
    s = config.student
    _require(1 <= s.k <= config.data.max_frames,
             f"student.k={s.k}: need 1 <= k <= data.max_frames={config.data.max_frames}")
    _require(s.sampling in methods.SELECTION_METHODS,
             f"student.sampling={s.sampling!r}: expected one of {methods.SELECTION_METHODS}")
    _validate_model(s, "student", s.k)
    _validate_budgets(config)
    _validate_selector(config)
  _validate_loss(config)
  _validate_loaded_runs(config)
  _validate_schedule(config)
  if workdir:
    _require(not os.path.exists(workdir) or os.path.isdir(workdir),
             f"workdir={workdir!r} is a file, not a folder")
    if ckpt_lib.has_checkpoint(workdir):
      check_resume_compatible(config, saved_run_config(workdir, "workdir"), workdir)


def _validate_selector(config: ml_collections.ConfigDict) -> None:
  """A learned frame selector's settings (`sampling/learned.py`); its 'rank' training needs a teacher."""
  s = config.student
  if s.sampling != learned.METHOD:
    given = sorted(k for k, v in (s.get("selector") or {}).items()
                   if v is not None and v != "" and v != specs.FORMERLY_UNSET.get(f"student.selector.{k}"))
    _require(not given, f"student.selector.{', '.join(given)} changed but student.sampling={s.sampling!r}: only "
                        f"sampling='{learned.METHOD}' has a learned selector")
    return
  spec = specs.SelectorSpec.from_config(s.get("selector"))
  try:
    spec.validate()
    learned.stream_slice(config.data.feature_sizes, spec.streams)
  except ValueError as e:
    raise ConfigError(str(e)) from None
  # finetune (stage 2, no teacher) keeps a rank-trained scorer as it is: the hard top-k passes it no gradient
  _require(spec.train != "rank" or config.mode in ("parallel", "serial", "finetune"),
           f"student.selector.train='rank' learns from the teacher: mode={config.mode!r} has none (use "
           "mode=serial or parallel, or selector.train=end_to_end)")
  _require(not config.teacher_workdirs or spec.train != "rank",
           "student.selector.train='rank' judges frames with one teacher, not an ensemble (teacher_workdirs)")


def _validate_budgets(config: ml_collections.ConfigDict) -> None:
  """An any-k student's budgets and exits (`specs.Budgets`, `specs.StudentSpec.exits`); a fixed-k student must not ask
  for a budget or an exit."""
  s = config.student
  if s.get("k_min") is None:
    _require(s.get("budget") is None, f"student.budget={s.get('budget')}: only an any-k student takes a "
                                      "budget (set student.k_min)")
    _require(not s.get("exit"), f"student.exit={s.get('exit')!r}: early exit needs an any-k student (set "
                                "student.k_min)")
    return
  _require(1 <= s.k_min <= s.k, f"student.k_min={s.k_min}: need 1 <= k_min <= student.k={s.k}")
  _require(s.sampling in specs.NESTED_ORDERS,
           f"student.sampling={s.sampling!r}: an any-k student needs a nested order, one of "
           f"{specs.NESTED_ORDERS}")
  _require(s.sampling != learned.METHOD or specs.SelectorSpec.from_config(s.get("selector")).train in specs.RANKED,
           f"student.selector.train={s.selector.train!r}: an any-k student ranks frames by its scorer for "
           f"every budget at once, which only a ranking-trained scorer learns (selector.train in {specs.RANKED})")
  _require(s.budgets_per_step is not None and s.budgets_per_step >= 2,
           f"student.budgets_per_step={s.budgets_per_step}: the sandwich rule needs >= 2")
  _require(s.budget is None or 1 <= s.budget <= s.k, f"student.budget={s.budget}: need 1 <= budget <= k={s.k}")
  _require(not (s.name == "netvlad" and s.netvlad.random_frames),
           "student.netvlad.random_frames re-samples frames with replacement: not an any-k student's input")
  try:
    exits = specs.StudentSpec.from_config(s).exits
  except ValueError as e:
    raise ConfigError(str(e)) from None
  _require(bool(exits), f"student.exits={s.exits!r}: no exit point in [k_min={s.k_min}, k={s.k}]")


def _validate_data(d: ml_collections.ConfigDict) -> None:
  _require(d.num_classes >= 1, f"data.num_classes={d.num_classes}: must be >= 1")
  _require(d.max_frames >= 1, f"data.max_frames={d.max_frames}: must be >= 1")
  _require(len(d.feature_names) == len(d.feature_sizes) and len(d.feature_names) >= 1,
           f"data.feature_names {tuple(d.feature_names)} and data.feature_sizes {tuple(d.feature_sizes)} "
           "must have the same, non-zero length")
  _require(all(s > 0 for s in d.feature_sizes), f"data.feature_sizes={tuple(d.feature_sizes)}: must be positive")
  _require(d.on_error in bad_records.ON_ERROR, f"data.on_error={d.on_error!r}: expected one of {bad_records.ON_ERROR}")
  _require(d.id_key in bad_records.ID_KEY_CHOICES,
           f"data.id_key={d.id_key!r}: expected one of {bad_records.ID_KEY_CHOICES}")
  _require(d.batch_size >= 1 and d.eval_batch_size >= 1, "data.batch_size and data.eval_batch_size must be >= 1")
  _require(0.0 < d.train_fraction <= 1.0, f"data.train_fraction={d.train_fraction}: need 0 < f <= 1")


def _validate_loss(config: ml_collections.ConfigDict) -> None:
  lo = config.loss
  for term in specs.TERM_NAMES:
    _require(lo[term] >= 0, f"loss.{term}={lo[term]}: weights must be >= 0")
  _require(lo.pred_distance in specs.PREDICTION_DISTANCES,
           f"loss.pred_distance={lo.pred_distance!r}: expected one of {specs.PREDICTION_DISTANCES}")
  if config.mode in specs.DISTILLING:
    _require(sum(lo[term] for term in specs.TERM_NAMES) > 0, "loss: every student loss weight is 0")
    if lo.rep_intermediate > 0:
      _require(config.teacher.name in models.RECURRENT and config.student.name in models.RECURRENT,
               f"loss.rep_intermediate>0 needs recurrent teacher and student (per-step states); got "
               f"teacher.name={config.teacher.name!r}, student.name={config.student.name!r}")


def _loaded_run(workdir: str, field: str) -> ml_collections.ConfigDict:
  _require(os.path.isdir(os.path.join(workdir, "checkpoints")),
           f"{field}={workdir!r}: no checkpoints folder there (train that run first)")
  return saved_run_config(workdir, field)


def prepare(config: ml_collections.ConfigDict, *, workdir: Optional[str] = None) -> specs.RunSpec:
  """The typed specs of a resolved config, after `validate(config, workdir=workdir)`."""
  validate(config, workdir=workdir)
  return specs.RunSpec.from_config(config)


TEACHER_SUBDIR = "teacher"  # where a serial run with no teacher run given trains its teacher


def teacher_stage(config: ml_collections.ConfigDict, workdir: str) -> Tuple[ml_collections.ConfigDict, str]:
  """The first stage of a serial run that trains its own teacher (`trains_teacher_first`): (the
  teacher-only config, its workdir `<workdir>/teacher`): `config` with mode=teacher, the same data,
  teacher, optimizer and seed, for `train.teacher_stage_epochs` (unset: num_epochs)."""
  teacher = ml_collections.ConfigDict(config.to_dict())
  teacher.mode = "teacher"
  if config.train.get("teacher_stage_epochs") is not None:
    teacher.train.num_epochs = config.train.teacher_stage_epochs
  return teacher, os.path.join(workdir, TEACHER_SUBDIR)


def student_stage(config: ml_collections.ConfigDict, teacher_workdir: str) -> ml_collections.ConfigDict:
  """The second stage: `config` (serial) reading the teacher trained in `teacher_workdir`."""
  student = ml_collections.ConfigDict(config.to_dict())
  student.teacher_workdir = teacher_workdir
  return student


def trains_teacher_first(config: ml_collections.ConfigDict) -> bool:
  """Serial mode with no teacher run given (neither teacher_workdir nor teacher_workdirs): the run trains
  its teacher first, in `<workdir>/teacher`, then the serial student against it (`train/loop.py`)."""
  return config.mode == "serial" and not config.teacher_workdir and not config.teacher_workdirs


def _validate_loaded_runs(config: ml_collections.ConfigDict) -> None:
  """The runs that serial (a frozen teacher or an ensemble) and finetune (a stage-1 student) load; serial
  mode without them trains its own teacher first (`trains_teacher_first`)."""
  if config.teacher_workdirs:
    _require(config.mode == "serial", f"teacher_workdirs (an ensemble) needs mode=serial, got mode={config.mode!r}")
    _require(not config.share_classifier,
             "teacher_workdirs: an ensemble of teachers has no single classifier to share; set share_classifier=False")
    for member in (w.strip() for w in config.teacher_workdirs.split(",")):
      teacher_run = _loaded_run(member, "teacher_workdirs")
      _require(teacher_run.mode != "student_only", f"teacher_workdirs: {member!r} has no teacher (a student_only run)")
      check_data_matches(config, teacher_run, member)
  elif config.mode == "serial" and config.teacher_workdir:
    teacher_run = _loaded_run(config.teacher_workdir, "teacher_workdir")
    _require(teacher_run.mode != "student_only",
             f"teacher_workdir={config.teacher_workdir!r} has no teacher (a student_only run)")
    check_teacher_matches(config, teacher_run, config.teacher_workdir)
  if config.mode == "finetune":
    _require(bool(config.init_workdir), "mode=finetune needs init_workdir (a trained student run)")
    student_run = _loaded_run(config.init_workdir, "init_workdir")
    _require(student_run.mode != "teacher", f"init_workdir={config.init_workdir!r} has no student (a teacher run)")
    _require(_architecture(config.student) == _architecture(student_run.student),
             f"student checkpoint in {config.init_workdir!r} does not match config.student: checkpoint "
             f"{_architecture(student_run.student)} vs config {_architecture(config.student)}")
    check_data_matches(config, student_run, config.init_workdir)


def _validate_schedule(config: ml_collections.ConfigDict) -> None:
  o, t = config.optim, config.train
  _require(o.learning_rate > 0 and o.decay_examples > 0 and 0 < o.decay_rate <= 1,
           "optim: learning_rate > 0, decay_examples > 0 and 0 < decay_rate <= 1 are required")
  _require(o.clip_mode in specs.CLIP_MODES, f"optim.clip_mode={o.clip_mode!r}: expected one of {specs.CLIP_MODES}")
  _require(t.num_steps > 0 or t.num_epochs > 0, "train: set num_steps > 0 or num_epochs > 0")
  _require(t.num_steps > 0 or config.data.num_train_examples > 0,
           "train.num_epochs needs data.num_train_examples (or set train.num_steps)")
  stage = t.get("teacher_stage_epochs")
  _require(stage is None or stage > 0, f"train.teacher_stage_epochs={stage}: must be > 0 (or unset)")
  _require(t.log_every >= 1 and t.checkpoint_every >= 1, "train.log_every and train.checkpoint_every must be >= 1")
  _require(t.keep_checkpoints >= 1, f"train.keep_checkpoints={t.keep_checkpoints}: must be >= 1")


ARCHITECTURE_FIELDS = ("name", "hrnn", "rnn", "netvlad", "nextvlad", "input_norm")


def _architecture(m) -> Dict:
  m = m.to_dict() if hasattr(m, "to_dict") else dict(m)
  arch = {k: m.get(k) for k in ARCHITECTURE_FIELDS}
  family = models.FAMILY_FIELDS[arch["name"]]
  out = {"name": arch["name"], "input_norm": arch["input_norm"], family: arch[family]}
  for key in ("unroll",):  # performance knobs do not change the architecture
    if isinstance(out.get(family), dict):
      out[family] = {k: v for k, v in out[family].items() if k != key}
  return out


def check_teacher_matches(config, teacher_run_config, workdir: str) -> None:
  """The frozen teacher of `workdir` must have the architecture, classes and inputs this config expects."""
  ours, theirs = _architecture(config.teacher), _architecture(teacher_run_config.teacher)
  _require(ours == theirs, f"teacher checkpoint in {workdir!r} does not match config.teacher: "
                           f"checkpoint {theirs} vs config {ours}")
  check_data_matches(config, teacher_run_config, workdir)


def check_data_matches(config, run_config, workdir: str) -> None:
  """A frozen teacher's classes and inputs must be those of this run (its architecture may differ)."""
  for field in ("num_classes", "feature_sizes", "max_frames"):
    a, b = config.data[field], run_config.data[field]
    if isinstance(a, (list, tuple)):
      a, b = tuple(a), tuple(b)
    _require(a == b, f"data.{field}={a} differs from the teacher checkpoint's ({b}) in {workdir!r}")


def check_resume_compatible(config, checkpoint_config, workdir: str) -> None:
  """Resuming `workdir` with a config whose classes or architectures differ is an error."""
  _require(config.data.num_classes == checkpoint_config.data.num_classes,
           f"data.num_classes={config.data.num_classes} differs from the checkpoint's "
           f"({checkpoint_config.data.num_classes}) in {workdir!r}")
  _require(tuple(config.data.feature_sizes) == tuple(checkpoint_config.data.feature_sizes),
           f"data.feature_sizes={tuple(config.data.feature_sizes)} differs from the checkpoint's "
           f"({tuple(checkpoint_config.data.feature_sizes)}) in {workdir!r}")
  _require(config.mode == checkpoint_config.mode,
           f"mode={config.mode!r} differs from the checkpoint's ({checkpoint_config.mode!r}) in {workdir!r}")
  for net in ("teacher", "student"):
    ours, theirs = _architecture(config[net]), _architecture(checkpoint_config[net])
    _require(ours == theirs, f"config.{net} architecture differs from the checkpoint's in {workdir!r}: "
                             f"checkpoint {theirs} vs config {ours}")


def check_finite(metrics: Mapping[str, float], step: int) -> None:
  """Stops training on a non-finite loss, naming the step and the loss term."""
  bad = [f"{name}={value}" for name, value in sorted(metrics.items()) if not math.isfinite(value)]
  if bad:
    raise FloatingPointError(f"non-finite loss at step {step}: {', '.join(bad)}; training stopped, the last "
                             "good checkpoint is kept")
