"""One cell of the paper's grid (`python -m launch.paper_tables`, RESULTS.md), as a config of its own.

Rerun any cell of a sweep by hand, e.g. the Serial L_rep + L_pred + L_CE student at k = 10 of the
`small` preset (the sweep's `<out>/runs/hrnn/seed0/serial_rep_pred_ce_k10`):

  python -m fewframes_jax.main --config=configs/paper.py:preset=small,family=hrnn,mode=teacher \
      --workdir=runs/hrnn_teacher                                                   # the Teacher-Skyline
  python -m fewframes_jax.main \
      --config=configs/paper.py:preset=small,family=hrnn,mode=serial,loss=rep_pred_ce,k=10,seed=0 \
      --config.teacher_workdir=runs/hrnn_teacher --workdir=runs/hrnn_serial_k10      # a serial student

The argument (`fewframes_jax.paper.grid.make_cell`'s options):
  preset      paper | small | long | realistic | tiny (`PRESETS`; default small)
  family      the teacher's family (hrnn, lstm, nextvlad, ...; '+'-joined teachers: an ensemble); for a
              baseline, the student's family
  mode        teacher | student_only (a baseline) | parallel | serial
  loss        rep | rep_ce | rep_pred_ce | pred | pred_ce (parallel/serial; `grid.LOSSES`)
  k, seed, sampling (a baseline's frame rule), fraction (Table 2's share of the training data),
  student     the student's family when it differs from the teacher's (cross-family, ensembles)
  intermediate   L_rep^I instead of L_rep (Table 4)
  finetune    the stage-2 CE fine-tune of that parallel/serial cell: add
              `--config.init_workdir=<its stage-1 run>`
  schedule_scale  every run this many times longer (`--schedule_scale` of the sweep)
Serial cells read a trained teacher: add `--config.teacher_workdir=<the teacher's run>` (an ensemble:
`--config.teacher_workdirs=<run>,<run>`). Real data: `--config.data.train_pattern=...` as for any config.

`PRESETS` and `cell_config` are what the sweep (`fewframes_jax.paper.sweep.run`) builds every cell with.
"""
import dataclasses
from typing import Any, Callable, Mapping

import ml_collections

from fewframes_jax.configs import base
from fewframes_jax.paper.grid import LOSSES, SELECTOR_BASELINES, Cell, make_cell
from fewframes_jax.paper.preset import Preset

_QUIET = (("train.progress_bar", False), ("train.eval_every", 0))
# The CPU presets (small, long): 64-cell H-RNN/LSTM, batches of 32, 300 steps (teachers and fine-tunes:
# the presets' teacher_steps / finetune_steps), one checkpoint kept; per-family learning rates larger
# than the paper's, for runs this short.
_CPU_WIDTHS_AND_SCHEDULE = (
    ("data.batch_size", 32), ("teacher.hrnn.cells", 64), ("student.hrnn.cells", 64),
    ("teacher.rnn.cells", 64), ("student.rnn.cells", 64),
    ("train.num_steps", 300), ("train.log_every", 100), ("train.checkpoint_every", 300),
    ("train.keep_checkpoints", 1))
_CPU_LEARNING_RATES = (("hrnn", (("optim.learning_rate", 0.01),)), ("lstm", (("optim.learning_rate", 0.01),)),
                       ("nextvlad", (("optim.learning_rate", 0.002),)), ("netvlad", (("optim.learning_rate", 0.002),)))


def _youtube_length_preset(spec: str) -> Preset:
  """A preset on a bundled split of YouTube-8M-length videos (`long`, `realistic`): max_frames 300 and the
  paper's H-RNN teacher geometry (20 blocks of 15 frames), the small preset's widths, learning rates and step
  counts; k = 6, 10, 30 with the content-aware selectors next to the paper's baselines."""
  return Preset(
      name=spec, size="cpu",
      overrides=_QUIET + _CPU_WIDTHS_AND_SCHEDULE + (
          ("data.bundled.spec", spec), ("data.bundled.num_train", base.LONG_TRAIN_VIDEOS),
          ("data.bundled.num_eval", base.LONG_EVAL_VIDEOS),
          ("data.max_frames", 300), ("data.eval_batch_size", 200), ("teacher.hrnn.num_blocks", 20)),
      family_overrides=_CPU_LEARNING_RATES, finetune_steps=100, teacher_steps=600,
      grid=(("anchor_k", 10), ("ks", (6, 10, 30)), ("table3_ks", (10, 30)), ("sections", ("table1", "table3")),
            ("baselines", ("uniform", "random") + SELECTOR_BASELINES)),
      timing_repeats=3)


PRESETS = {
    # The paper's sizes, 5 epochs (train.num_epochs), per-family batch and optimizer (configs/base.py).
    "paper": Preset(
        name="paper", size="paper",
        overrides=_QUIET + (("train.log_every", 500), ("train.checkpoint_every", 5000)),
        grid=(("anchor_k", 30),), timing_videos=4096),
    # The same grid on 2 CPU cores: the bundled data (4000 train / 1000 eval videos, 64 classes) cut
    # to 60 frames; 64-cell H-RNN/LSTM (H-RNN teacher 10 blocks x 6 frames, students ceil(k/6) blocks),
    # NeXtVLAD at the `cpu` size; 300 steps of 32 videos (2.4 epochs; stage-2 fine-tunes 100) at a larger
    # learning rate than the paper's, which keeps the sweep under an hour on 2 cores. Teachers train
    # 600 steps: a network over all 60 frames learns more slowly than one over k, and at 300 steps the
    # H-RNN teacher fell below Uniform-k (the paper trains every model to convergence).
    # anchor_k = 10: the bundled videos are short (median ~12 frames), so k = 30 sees most of them whole;
    # k = 10 of at most 60 frames is closer to the paper's k = 30 of ~200.
    "small": Preset(
        name="small", size="cpu",
        overrides=_QUIET + _CPU_WIDTHS_AND_SCHEDULE + (
            ("data.max_frames", 60), ("data.eval_batch_size", 250), ("teacher.hrnn.num_blocks", 10)),
        family_overrides=_CPU_LEARNING_RATES, finetune_steps=100, teacher_steps=600, grid=(("anchor_k", 10),),
        timing_repeats=3),
    # Beyond the paper (frame selection): the `long` bundled data (YouTube-8M lengths, 120-500
    # frames stored, read up to 300; 1,800 train / 400 eval videos), max_frames 300 and the paper's H-RNN
    # teacher geometry (20 blocks of 15 frames), the small preset's widths, learning rates and step
    # counts; k = 6, 10, 30 with the content-aware selectors next to the paper's baselines. Its teacher's
    # seed spread here: GAP 0.559±0.007 over 3 seeds (RESULTS.md), a stable but weak teacher.
    "long": _youtube_length_preset("long"),
    # Beyond the paper: the `realistic` bundled data (the lengths of `long` with label-free intros, outros,
    # fades, title cards and cut-aways, sustained labels beside events, graded difficulty;
    # docs/realistic_data.md), everything else as the `long` preset.
    "realistic": _youtube_length_preset("realistic"),
    # Unit tests: test sizes (8 classes, 64/24 videos), 20 frames, a few steps.
    "tiny": Preset(
        name="tiny", size="tiny",
        overrides=_QUIET + (("data.max_frames", 20), ("teacher.hrnn.num_blocks", 4), ("train.num_steps", 3),
                            ("train.checkpoint_every", 3), ("train.keep_checkpoints", 1)),
        finetune_steps=2, grid=(("anchor_k", 10), ("table3_ks", (10,))), timing_repeats=1, fast_compile=True),
}
_SIZE_ARG = {"paper": "", "cpu": ",cpu", "tiny": ",tiny"}


def _set(config: ml_collections.ConfigDict, dotted: str, value: Any) -> None:
  *path, leaf = dotted.split(".")
  node = config
  for part in path:
    node = node[part]
  if leaf not in node:
    raise KeyError(f"preset override {dotted!r}: no such config field")
  node[leaf] = value


def _set_losses(config: ml_collections.ConfigDict, cell: Cell) -> None:
  """The cell's loss terms on, at its student family's weights; L_rep as L_rep^I for `intermediate`."""
  weights = base.FAMILY_LOSS[cell.student]
  loss = LOSSES[cell.loss]
  config.loss.ce = weights["ce"] if loss.ce else 0.0
  config.loss.pred = weights["pred"] if loss.pred else 0.0
  rep = weights["rep"] if loss.rep else 0.0
  config.loss.rep, config.loss.rep_intermediate = (0.0, rep) if cell.intermediate else (rep, 0.0)


def _set_schedule(config: ml_collections.ConfigDict, cell: Cell, preset: Preset) -> None:
  """The preset's fine-tune and teacher lengths, then every run times `preset.schedule_scale`."""
  if cell.mode == "finetune" and preset.finetune_steps:
    config.train.num_steps = preset.finetune_steps
  if cell.mode == "teacher" and preset.teacher_steps:
    config.train.num_steps = preset.teacher_steps
  if preset.schedule_scale != 1.0:
    if config.train.num_steps:
      config.train.num_steps = max(1, round(config.train.num_steps * preset.schedule_scale))
    else:
      config.train.num_epochs *= preset.schedule_scale


def cell_config(cell: Cell, preset: Preset, *, workdir_of: Callable[[str], str],
                data: Mapping[str, Any] = ()) -> ml_collections.ConfigDict:
  """The full training config of one cell. `workdir_of(key)` locates a dependency's run; `data`
  overrides `config.data` fields (real-data patterns, class count)."""
  size = _SIZE_ARG[preset.size]
  k = cell.k or preset.anchor_k
  mode = "serial" if cell.mode == "finetune" and cell.teachers else cell.mode
  if len(cell.teachers) > 1:  # an ensemble: the config's own teacher is unused
    config = base.experiment(cell.student, k=k, arg=f"mode={mode}{size}")
  else:
    config = base.experiment(cell.family, k=k, arg=f"mode={mode},sampling={cell.sampling},"
                                                   f"student={cell.student}{size}")
  trained = cell.family if cell.mode in ("teacher", "parallel") else cell.student
  if trained != cell.family:  # only the student trains: its family's optimizer, not the teacher's
    opt = dict(base.FAMILY_OPTIM[trained])
    if preset.size == "paper":
      config.data.batch_size = opt["batch_size"]
    opt.pop("batch_size")
    config.optim.update(opt)
  for key, value in preset.overrides + dict(preset.family_overrides).get(trained, ()):
    _set(config, key, value)
  for key, value in dict(data).items():
    config.data[key] = value
  config.seed = cell.seed
  config.data.train_fraction = cell.fraction
  if cell.mode in ("parallel", "serial") or cell.init:
    _set_losses(config, cell)
  if len(cell.teachers) == 1:
    config.teacher_workdir = workdir_of(cell.teachers[0])
  elif cell.teachers:
    config.teacher_workdirs = ",".join(workdir_of(t) for t in cell.teachers)
    config.share_classifier = False
  if cell.mode == "finetune":
    config.mode = "finetune"
    config.init_workdir = workdir_of(cell.init)
    config.teacher_workdir = config.teacher_workdirs = ""
  _set_schedule(config, cell, preset)
  return config


def get_config(arg=None) -> ml_collections.ConfigDict:
  """One cell's config; dependencies (teacher_workdir, init_workdir) are left for the command line."""
  a = base.parse_arg(arg, preset="small", family="hrnn", mode="teacher", loss="rep_pred_ce", k=0, seed=0,
                     sampling="uniform", fraction=1.0, student="", intermediate=False, finetune=False,
                     schedule_scale=1.0)
  if a.preset not in PRESETS:
    raise ValueError(f"preset={a.preset!r}: expected one of {sorted(PRESETS)}")
  preset = dataclasses.replace(PRESETS[a.preset], schedule_scale=a.schedule_scale)
  cell = make_cell(a.family, a.mode, seed=a.seed, k=a.k or preset.anchor_k, sampling=a.sampling, loss=a.loss,
                   student_family=a.student, fraction=a.fraction, intermediate=a.intermediate,
                   finetune=a.finetune)
  config = cell_config(cell, preset, workdir_of=lambda key: "")
  if not config.teacher_workdirs.strip(","):  # an ensemble's teachers are given on the command line
    config.teacher_workdirs = ""
  return config
