"""The run's vocabulary, its typed specs and its state types: what every layer shares.

  modes         `MODES` and what each trains (`has_teacher`, `has_student`, `TEACHER_TRAINED`, ...);
  run specs     `RunSpec`, the resolved config as small frozen dataclasses: `DataSpec`, a `NetworkSpec`
                per network (its family's `HrnnSpec` / `RnnSpec` / `NetVLADSpec` / `NeXtVLADSpec`), the
                student's `StudentSpec` (k, its frames' `sampling`, a learned scorer's `SelectorSpec`,
                an any-k student's `Budgets`, exit points and `ExitPolicy`), `LossSpec`, `OptimSpec` and
                `TrainSpec`. `RunSpec.from_config` is the one place a ConfigDict becomes specs
                (`run_config.prepare` resolves and validates it first); every layer below the config
                layer receives specs;
  states        `NetState` (one network's params, batch stats, optimizer state) and `DistillState`
                (the step, the base rng and both networks), what a train step reads and writes and a
                checkpoint saves;
  names         the loss terms, prediction distances, clipping modes, nested orders, exit rules and
                selector settings a config may name.

Modes (`config.mode`):
  teacher       the Teacher-Skyline: the teacher alone, CE only.
  student_only  the paper's k-frame baselines: the student alone on its k frames, CE only, no teacher.
  parallel      teacher and student trained together (the teacher's loss is CE only).
  serial        the teacher is restored from `config.teacher_workdir` and frozen (none given: the run trains
                it first, in <workdir>/teacher).
  finetune      the paper's stage 2: the student restored from `config.init_workdir`, CE only.
"""
import dataclasses
import math
from typing import Any, Dict, Mapping, Optional, Tuple

import flax
import jax
import jax.numpy as jnp

from fewframes_jax.errors import ConfigError

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
# A learned frame scorer's settings (`student.selector`, `sampling/learned.py`).
LEARNED = "learned"              # the `student.sampling` value that asks for a learned selector
SELECTOR_STREAMS = ("all", "audio", "rgb")
SELECTOR_TRAINING = ("rank", "labels", "end_to_end")
RANKED = ("rank", "labels")      # trained by a ranking loss on per-frame targets (a teacher's or a label judge's)
SELECTOR_PRIORS = ("none", "far_from_mean")  # what the scorer starts from (a zero-initialised learned residual)


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


# Fields that configs left unset (None or '') until configs/base.py gave each its default as a value, and
# what unset meant: a run saved before reads them so (`SelectorSpec.from_config`, `_budgets`), and the
# paper's run cache leaves a field at this value out of a config's hash, as it left the unset field out, so
# results cached before stay valid (`paper/run_cache.config_hash`). tests/test_specs.py pins every value
# to configs/base.py's.
FORMERLY_UNSET = {
    "student.budgets_per_step": 4,
    "student.selector.streams": "all",
    "student.selector.train": "rank",
    "student.selector.hidden": 4,
    "student.selector.mlp": 16,
    "student.selector.prior": "none",
    "student.selector.frames_per_video": 16,
    "student.selector.weight": 1.0,
    "student.selector.sigma": 0.5,
    "student.selector.samples": 8,
}


def _budgets(student: Mapping) -> Optional[Budgets]:
  """An any-k student's budgets (`student.k_min` set), or None for a fixed-k student (also a run saved
  before any-k students existed)."""
  if student.get("k_min") is None:
    return None
  per_step = student.get("budgets_per_step") or FORMERLY_UNSET["student.budgets_per_step"]
  return Budgets(k_min=int(student["k_min"]), k_max=int(student["k"]), per_step=int(per_step),
                 order=str(student["sampling"]))


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


def _exits(student: Mapping) -> Tuple[int, ...]:
  """An any-k student's exit points: `student.exits` ('6,10,15,20,30'), checked to be strictly increasing
  budgets in [k_min, k]; unset: those of DEFAULT_EXITS inside [k_min, k]."""
  k_min, k_max = int(student["k_min"]), int(student["k"])
  given = student.get("exits")
  if not given:
    return tuple(k for k in DEFAULT_EXITS if k_min <= k <= k_max)
  try:
    exits = tuple(int(k) for k in str(given).split(","))
  except ValueError:
    exits = ()
  if not exits or any(b <= a for a, b in zip(exits, exits[1:])) or exits[0] < k_min or exits[-1] > k_max:
    raise ValueError(f"student.exits={given!r}: need strictly increasing budgets in [k_min={k_min}, k={k_max}], "
                     "e.g. '6,10,15,20,30'")
  return exits


@dataclasses.dataclass(frozen=True)
class SelectorSpec:
  """A learned frame scorer's settings (`student.selector`; their defaults: `configs/base.py`)."""
  streams: str
  train: str
  hidden: int
  mlp: int
  prior: str
  frames_per_video: int
  weight: float
  sigma: float
  samples: int

  @classmethod
  def from_config(cls, selector: Optional[Mapping]) -> "SelectorSpec":
    """From `student.selector`; a field a saved run left unset (None or '') or lacks takes the value of
    `FORMERLY_UNSET`, what it meant then."""
    given = dict(selector.items()) if selector is not None else {}
    values = {}
    for f in dataclasses.fields(cls):
      value, path = given.get(f.name), f"student.selector.{f.name}"
      if value is None or value == "":
        if path not in FORMERLY_UNSET:
          raise ConfigError(f"the config has no value for {path} (a run saved by an older version: add it to "
                            "its config.json with the value it ran with)")
        value = FORMERLY_UNSET[path]
      values[f.name] = value
    return cls(**values)

  def validate(self) -> None:
    """Raises ValueError naming the field for a setting out of range."""
    for name, choices in (("streams", SELECTOR_STREAMS), ("prior", SELECTOR_PRIORS), ("train", SELECTOR_TRAINING)):
      if getattr(self, name) not in choices:
        raise ValueError(f"student.selector.{name}={getattr(self, name)!r}: expected one of {choices}")
    for name in ("hidden", "mlp", "frames_per_video", "samples"):
      if int(getattr(self, name)) < (2 if name == "frames_per_video" else 1):
        raise ValueError(f"student.selector.{name}={getattr(self, name)}: must be a positive count"
                         + (" >= 2 (pairs of frames)" if name == "frames_per_video" else ""))
    if not self.sigma > 0 or self.weight < 0:
      raise ValueError(f"student.selector: need sigma > 0 and weight >= 0 (sigma={self.sigma}, "
                       f"weight={self.weight})")


# ----------------------------------------------------------------------------------------------
# The run's specs: the resolved config, typed, built once (`RunSpec.from_config`)


def _typed(cls, block: Mapping, **overrides):
  """`cls` from the fields of a config block that it declares (a block may hold more). A field the block
  lacks (a run saved by a version before that field existed) is a ConfigError naming it."""
  missing = [f.name for f in dataclasses.fields(cls) if f.name not in block and f.name not in overrides]
  if missing:
    raise ConfigError(f"the config has no {', '.join(missing)} for {cls.__name__} (a run saved by an older "
                      "version: add the field(s) to its config.json with the value it ran with)")
  values = {f.name: block[f.name] for f in dataclasses.fields(cls) if f.name in block}
  values.update(overrides)
  return cls(**values)


@dataclasses.dataclass(frozen=True)
class DataSpec:
  """`config.data` of a resolved run: its files, record schema, batches and error policy (the bundled and
  TFDS settings are resolved into the patterns and counts by `run_config.resolve`)."""
  train_pattern: str
  eval_pattern: str
  num_classes: int
  max_frames: int
  feature_names: Tuple[str, ...]
  feature_sizes: Tuple[int, ...]
  id_key: str
  check_release: bool
  batch_size: int
  eval_batch_size: int
  on_error: str
  shuffle_buffer: int
  train_fraction: float
  max_eval_videos: int
  num_train_examples: int

  @property
  def feature_dim(self) -> int:
    """D: the frame width (rgb + audio)."""
    return sum(self.feature_sizes)

  @classmethod
  def from_config(cls, data: Mapping) -> "DataSpec":
    return _typed(cls, data, feature_names=tuple(str(n) for n in data["feature_names"]),
                  feature_sizes=tuple(int(n) for n in data["feature_sizes"]))


@dataclasses.dataclass(frozen=True)
class HrnnSpec:
  num_blocks: int
  cells: int
  layers: int
  unroll: int
  moe_mixtures: int


@dataclasses.dataclass(frozen=True)
class RnnSpec:
  cells: int
  layers: int
  unroll: int
  moe_mixtures: int


@dataclasses.dataclass(frozen=True)
class NetVLADSpec:
  cluster_size: int
  hidden_size: int
  moe_mixtures: int
  prob_gating: bool
  random_frames: bool
  num_random_frames: int


@dataclasses.dataclass(frozen=True)
class NeXtVLADSpec:
  cluster_size: int
  hidden_size: int
  groups: int
  expansion: int
  gating_reduction: int
  dropout: float


# The sub-block of a network's config that each family reads, and its spec.
FAMILY_SPECS = {"hrnn": HrnnSpec, "rnn": RnnSpec, "netvlad": NetVLADSpec, "nextvlad": NeXtVLADSpec}


@dataclasses.dataclass(frozen=True)
class NetworkSpec:
  """One network's architecture (`config.teacher`, or the model part of `config.student`): its family
  `name`, input normalisation (None: the family's default, `models.input_norm_of`) and every family's
  settings (`models.build_model` reads its own)."""
  name: str
  input_norm: Optional[str]
  whitening_eigenvalues: str
  hrnn: HrnnSpec
  rnn: RnnSpec
  netvlad: NetVLADSpec
  nextvlad: NeXtVLADSpec

  @staticmethod
  def _fields(model: Mapping) -> Dict[str, Any]:
    return dict(name=str(model["name"]), input_norm=model.get("input_norm") or None,
                whitening_eigenvalues=str(model.get("whitening_eigenvalues") or ""),
                **{family: _typed(spec, model[family]) for family, spec in FAMILY_SPECS.items()})

  @classmethod
  def from_config(cls, model: Mapping) -> "NetworkSpec":
    return cls(**cls._fields(model))


@dataclasses.dataclass(frozen=True)
class StudentSpec(NetworkSpec):
  """The student (`config.student`): its network, the k frames it sees (`sampling`: a method of
  `sampling/methods.py`), a learned scorer's settings, and for an any-k student (`budgets` set) its exit
  points, its eval budget (None: k) and its early exit (None: off)."""
  k: int
  sampling: str
  selector: SelectorSpec
  budgets: Optional[Budgets]
  budget: Optional[int]
  exits: Tuple[int, ...]
  exit: Optional[ExitPolicy]

  @property
  def learned(self) -> bool:
    return self.sampling == LEARNED

  @classmethod
  def from_config(cls, student: Mapping) -> "StudentSpec":
    budgets = _budgets(student)
    budget = student.get("budget")
    return cls(**cls._fields(student), k=int(student["k"]), sampling=str(student["sampling"]),
               selector=SelectorSpec.from_config(student.get("selector")), budgets=budgets,
               budget=None if budget is None else int(budget), exits=_exits(student) if budgets else (),
               exit=ExitPolicy.parse(student.get("exit") or ""))


@dataclasses.dataclass(frozen=True)
class LossSpec:
  """The student's loss weights (`config.loss`; the teacher's loss is CE only) and L_pred's distance."""
  ce: float
  rep: float
  rep_intermediate: float
  pred: float
  pred_distance: str

  def weights(self) -> Dict[str, float]:
    return {term: float(getattr(self, term)) for term in TERM_NAMES}


@dataclasses.dataclass(frozen=True)
class OptimSpec:
  """One network's optimizer (`config.optim`, `train/optim.py`)."""
  learning_rate: float
  decay_rate: float
  decay_examples: int
  clip_norm: float
  clip_mode: str
  l2: float
  b1: float
  b2: float
  eps: float


@dataclasses.dataclass(frozen=True)
class TrainSpec:
  """The loop's lengths, logging and checkpointing (`config.train`)."""
  num_epochs: float
  teacher_stage_epochs: Optional[float]
  num_steps: int
  log_every: int
  eval_every: int
  checkpoint_every: int
  keep_checkpoints: int
  progress_bar: bool


@dataclasses.dataclass(frozen=True)
class RunSpec:
  """A resolved run config, typed. `saved` is that config as a plain dict: what a checkpoint and the
  run's config.json record, so a saved run is rebuilt by `RunSpec.from_config(saved)`."""
  mode: str
  seed: int
  dtype: str
  share_classifier: bool
  teacher_workdir: str
  teacher_workdirs: Tuple[str, ...]
  init_workdir: str
  data: DataSpec
  teacher: NetworkSpec
  student: StudentSpec
  loss: LossSpec
  optim: OptimSpec
  train: TrainSpec
  saved: Dict[str, Any] = dataclasses.field(default_factory=dict, compare=False, repr=False, hash=False)

  @property
  def has_teacher(self) -> bool:
    return has_teacher(self.mode)

  @property
  def has_student(self) -> bool:
    return has_student(self.mode)

  @property
  def num_train_steps(self) -> int:
    """train.num_steps, or num_epochs over data.num_train_examples (x train_fraction)."""
    t, d = self.train, self.data
    if t.num_steps > 0:
      return int(t.num_steps)
    if d.num_train_examples <= 0:
      raise ConfigError("train.num_epochs needs data.num_train_examples (or set train.num_steps)")
    examples = d.num_train_examples * d.train_fraction
    return max(1, int(math.ceil(t.num_epochs * examples / d.batch_size)))

  @classmethod
  def from_config(cls, config: Mapping) -> "RunSpec":
    """The specs of a resolved config (a ConfigDict or its plain dict). Raises ValueError for an exit
    setting it cannot parse (`run_config.validate` checks every field first, naming it)."""
    saved = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    workdirs = tuple(w.strip() for w in str(config.get("teacher_workdirs") or "").split(",") if w.strip())
    return cls(mode=str(config["mode"]), seed=int(config["seed"]), dtype=str(config["dtype"]),
               share_classifier=bool(config["share_classifier"]),
               teacher_workdir=str(config.get("teacher_workdir") or ""), teacher_workdirs=workdirs,
               init_workdir=str(config.get("init_workdir") or ""), data=DataSpec.from_config(config["data"]),
               teacher=NetworkSpec.from_config(config["teacher"]),
               student=StudentSpec.from_config(config["student"]),
               loss=_typed(LossSpec, config["loss"]), optim=_typed(OptimSpec, config["optim"]),
               train=_typed(TrainSpec, config["train"], teacher_stage_epochs=config["train"].get("teacher_stage_epochs")),
               saved=saved)
