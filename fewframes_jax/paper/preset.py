"""`Preset`: what every cell of one sweep shares (sizes, schedules, grid defaults, Table 3 timing).

The presets themselves (`paper`, `small`, `tiny`) and the function that turns a cell into its training
config live with the configs (`configs/paper.py`); the sweep (`sweep.py`) reads the fields that concern
it (timing, fast compilation, the report's title).
"""
import dataclasses
from typing import Any, Mapping, Tuple

from fewframes_jax.errors import UserError
from fewframes_jax.paper.grid import Grid

Overrides = Tuple[Tuple[str, Any], ...]  # (dotted config key, value), applied in order


@dataclasses.dataclass(frozen=True)
class Preset:
  """Sizes and schedules of every cell, plus the grid defaults that suit them.

  size: `configs.base.apply_size` argument (paper | cpu | tiny).
  overrides: dotted config key -> value, applied to every cell after `base.experiment`.
  family_overrides: family of the trained network -> overrides (for a serial/baseline/fine-tune cell
    the student's family, else the teacher's).
  finetune_steps: train.num_steps of the stage-2 fine-tunes (0: the cells' own schedule).
  teacher_steps: train.num_steps of the Teacher-Skyline runs (0: the cells' own schedule).
  grid: `Grid` field defaults (the command line overrides families, seeds, sections, ...).
  timing_videos / timing_repeats: Table 3's timed eval passes (0 videos: the whole eval set).
  fast_compile: `jax_disable_most_optimizations` (compile time dominates tiny runs).
  schedule_scale: every run's length (steps, or epochs where a preset counts epochs) times this, e.g.
    3 to check whether an ordering survives longer training (command line `--schedule_scale`).
  """
  name: str
  size: str
  overrides: Overrides = ()
  family_overrides: Tuple[Tuple[str, Overrides], ...] = ()
  finetune_steps: int = 0
  teacher_steps: int = 0
  grid: Overrides = ()
  timing_videos: int = 0
  timing_repeats: int = 3
  fast_compile: bool = False
  schedule_scale: float = 1.0

  def __post_init__(self):
    if not self.schedule_scale > 0:
      raise UserError(f"schedule_scale must be > 0, got {self.schedule_scale}")

  def make_grid(self, **fields) -> Grid:
    """The preset's grid with `fields` (those not None) overriding it."""
    kw = dict(self.grid)
    kw.update({k: v for k, v in fields.items() if v is not None})
    return Grid(**kw)

  @property
  def anchor_k(self) -> int:
    """The k of a cell that names none (a teacher): the grid's `anchor_k`."""
    return self.make_grid().anchor_k

  @property
  def title(self) -> str:
    scale = f" x {self.schedule_scale:g} schedule" if self.schedule_scale != 1.0 else ""
    return f"preset `{self.name}`{scale}"


def named(presets: Mapping[str, Preset], name: str) -> Preset:
  """`presets[name]`, or a `UserError` that lists the names."""
  if name not in presets:
    raise UserError(f"--preset={name!r}: expected one of {sorted(presets)}")
  return presets[name]
