"""The run's vocabulary and state types: the words every layer shares, with no package imports.

  modes         `MODES` and what each trains (`has_teacher`, `has_student`, `TEACHER_TRAINED`, ...);
  states        `NetState` (one network's params, batch stats, optimizer state) and `DistillState`
                (the step, the base rng and both networks), what a train step reads and writes and a
                checkpoint saves;
  budgets       `Budgets`: an any-k student's frame budgets (`budgets_of(config)` reads them once);
  exits         `ExitPolicy` (when an any-k student stops reading) and `exits_of(config)`, its exit points;
  names         the loss terms, prediction distances and gradient clipping modes a config may name.

Modes (`config.mode`):
  teacher       the Teacher-Skyline: the teacher alone, CE only.
  student_only  the paper's k-frame baselines: the student alone on its k frames, CE only, no teacher.
  parallel      teacher and student trained together (the teacher's loss is CE only).
  serial        the teacher is restored from `config.teacher_workdir` and frozen (none given: the run trains
                it first, in <workdir>/teacher).
  finetune      the paper's stage 2: the student restored from `config.init_workdir`, CE only.
"""
import dataclasses
from typing import Any, Dict, Optional, Tuple

import flax
import jax
import jax.numpy as jnp

MODES = ("teacher", "student_only", "parallel", "serial", "finetune")
TEACHER_TRAINED = ("teacher", "parallel")
STUDENT_TRAINED = ("student_only", "parallel", "serial", "finetune")
DISTILLING = ("parallel", "serial")  # the modes whose student learns from a teacher
# Names of the student loss terms; each one's weight is `config.loss.<name>`.
TERM_NAMES = ("ce", "rep", "rep_intermediate", "pred")
PREDICTION_DISTANCES = ("mse", "binary_kl", "categorical_kl")
CLIP_MODES = ("per_tensor", "global", "none")  # `config.optim.clip_mode` (`train/optim.py`)
# The nested frame orders an any-k student reads its budgets in (`sampling/nested.py`).
NESTED_ORDERS = ("coarse_to_fine", "far_from_mean", "learned")


def has_teacher(mode: str) -> bool:
  """Whether a run of this mode holds a teacher (finetune: the student alone, stage 2)."""
  return mode not in ("student_only", "finetune")


def has_student(mode: str) -> bool:
  return mode != "teacher"


class NetState(flax.struct.PyTreeNode):
  """One network's state. `opt_state` is None for a frozen network (serial mode's teacher)."""
  params: Any
  batch_stats: Any
  opt_state: Any = None

  @property
  def variables(self) -> Dict[str, Any]:
    return {"params": self.params, "batch_stats": self.batch_stats}


class DistillState(flax.struct.PyTreeNode):
  """Everything a step reads and writes. `rng` is the base key: step keys are folded in from it."""
  step: jax.Array
  rng: jax.Array
  teacher: Optional[NetState]
  student: Optional[NetState]


@dataclasses.dataclass(frozen=True)
class Budgets:
  """The budgets an any-k student is trained for: k in [k_min, k_max], `per_step` of them per step,
  the frames of each chosen by the nested `order`."""
  k_min: int
  k_max: int
  per_step: int
  order: str

  def __post_init__(self):
    if not 1 <= self.k_min <= self.k_max:
      raise ValueError(f"any-k budgets: need 1 <= k_min={self.k_min} <= k_max={self.k_max}")
    if self.per_step < 2:
      raise ValueError(f"any-k budgets: per_step={self.per_step}: the sandwich rule needs >= 2 "
                       "(the smallest and the largest budget)")
    if self.order not in NESTED_ORDERS:
      raise ValueError(f"any-k budgets: order {self.order!r}: expected a nested order, one of {NESTED_ORDERS}")

  def sample(self, rng: jax.Array) -> jax.Array:
    """i32[per_step]: k_min, k_max, then per_step - 2 budgets uniform in [k_min, k_max]."""
    drawn = jax.random.randint(rng, (self.per_step - 2,), self.k_min, self.k_max + 1, dtype=jnp.int32)
    return jnp.concatenate([jnp.array([self.k_min, self.k_max], jnp.int32), drawn])


DEFAULT_PER_STEP = 4


def budgets_of(config) -> Optional[Budgets]:
  """The run's any-k budgets (`config.student.k_min` set), or None for a fixed-k student (also a run
  saved before any-k students existed)."""
  s = config.student
  if s.get("k_min") is None:
    return None
  return Budgets(k_min=int(s.k_min), k_max=int(s.k), per_step=int(s.get("budgets_per_step") or DEFAULT_PER_STEP),
                 order=str(s.sampling))


EXIT_RULES = ("stable", "confident", "gate")
DEFAULT_EXITS = (6, 10, 15, 20, 30)


@dataclasses.dataclass(frozen=True)
class ExitPolicy:
  """When to stop: `rule` (EXIT_RULES) and its `threshold`."""
  rule: str
  threshold: float

  def __post_init__(self):
    if self.rule not in EXIT_RULES:
      raise ValueError(f"exit rule {self.rule!r}: expected one of {EXIT_RULES}")

  @classmethod
  def parse(cls, spec: str) -> Optional["ExitPolicy"]:
    """'' -> None (no early exit); '<rule>:<threshold>', e.g. 'stable:0.9', 'gate:0.7'."""
    if not spec:
      return None
    rule, sep, value = spec.partition(":")
    try:
      threshold = float(value)
    except ValueError:
      threshold = None
    if not sep or threshold is None or rule not in EXIT_RULES:
      raise ValueError(f"student.exit={spec!r}: expected '<rule>:<threshold>' with rule one of {EXIT_RULES}")
    return cls(rule, threshold)


def exits_of(config) -> Tuple[int, ...]:
  """An any-k student's exit points: `student.exits` ('6,10,15,20,30'), checked to be strictly increasing
  budgets in [k_min, k]; unset: those of DEFAULT_EXITS inside [k_min, k]."""
  s = config.student
  k_min, k_max = int(s.k_min), int(s.k)
  if not s.get("exits"):
    return tuple(k for k in DEFAULT_EXITS if k_min <= k <= k_max)
  try:
    exits = tuple(int(k) for k in str(s.exits).split(","))
  except ValueError:
    exits = ()
  if not exits or any(b <= a for a, b in zip(exits, exits[1:])) or exits[0] < k_min or exits[-1] > k_max:
    raise ValueError(f"student.exits={s.exits!r}: need strictly increasing budgets in [k_min={k_min}, k={k_max}], "
                     "e.g. '6,10,15,20,30'")
  return exits
