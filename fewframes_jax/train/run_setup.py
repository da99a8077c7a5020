"""The static set-up of a run, built once from its spec, and its initial state.

  TrainSetup     the two networks, their optimizers and frame selection, and the student's loss settings;
  make_setup     builds it from the run's `specs.RunSpec` (representation sizes by shape inference decide whether L_rep needs a projection);
  init_state / create_state   the initial `DistillState`, created already placed on the mesh.
"""
import dataclasses
import functools
from typing import Any, Dict, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from fewframes_jax import specs
from fewframes_jax.specs import DistillState, NetState
from fewframes_jax import inference
from fewframes_jax import parallel
from fewframes_jax.errors import ConfigError
from fewframes_jax.sampling import learned
from fewframes_jax.sampling import scorer_training
from fewframes_jax.models import build_model
from fewframes_jax.models.common import VideoModel
from fewframes_jax.train.optim import learning_rate_schedule, make_optimizer

@dataclasses.dataclass(frozen=True)
class TrainSetup:
  """The static part of a run, built once from its spec (`make_setup`): the two networks, their
  optimizers and frame selection, and the student's loss."""
  mode: str
  teacher_model: Optional[nn.Module]
  student_model: Optional[VideoModel]
  selection: inference.Selection              # the student's frames (an any-k student's largest budget)
  student_forward: Optional[inference.Forward]  # the student as evaluated (an any-k student at its eval budget)
  budgets: Optional[specs.Budgets]             # an any-k student's budgets (None: a fixed-k student)
  teacher_tx: Optional[optax.GradientTransformation]
  student_tx: Optional[optax.GradientTransformation]
  schedule: Any
  max_frames: int
  feature_dim: int
  shared_head: bool
  projection_dim: int          # >0: the student's representation is projected to this size for L_rep
  loss_weights: Tuple[Tuple[str, float], ...]
  pred_distance: str
  selector: Optional[specs.SelectorSpec] = None  # a learned frame selector's settings (sampling='learned')
  num_classes: int = 0                             # the label vocabulary (a `labels`-trained selector's judge)

  @property
  def has_teacher(self) -> bool:
    return self.teacher_model is not None

  @property
  def has_student(self) -> bool:
    return self.student_model is not None

  @property
  def train_teacher(self) -> bool:
    return self.mode in specs.TEACHER_TRAINED

  @property
  def train_student(self) -> bool:
    return self.mode in specs.STUDENT_TRAINED

  @property
  def k(self) -> int:
    return self.selection.k

  def weight(self, term: str) -> float:
    return dict(self.loss_weights).get(term, 0.0)

  def forwards(self) -> Dict[str, inference.Forward]:
    """The networks of the run, ready for `evaluate.eval_outputs`: {'teacher'|'student': Forward}."""
    out = {}
    if self.has_teacher:
      out["teacher"] = inference.Forward(self.teacher_model)
    if self.has_student:
      out["student"] = self.student_forward
    return out


def student_loss_weights(spec: specs.RunSpec) -> Dict[str, float]:
  """The student's loss weights for the mode: CE only for the baselines and for fine-tuning."""
  if spec.mode in ("student_only", "finetune"):
    return {"ce": 1.0, "rep": 0.0, "rep_intermediate": 0.0, "pred": 0.0}
  return spec.loss.weights()


def representation_dim(model: nn.Module, *, frames: int, feature_dim: int) -> int:
  """E of a model, by shape inference (no parameters allocated)."""
  x, n = _dummy_inputs(1, frames, feature_dim)

  def fn(rng):
    variables = model.init({"params": rng, "dropout": rng, "frames": rng}, x, n, train=False)
    return model.apply(variables, x, n, train=False, rngs={"frames": rng}).representation

  return int(jax.eval_shape(fn, jax.random.PRNGKey(0)).shape[-1])


def check_representation_sizes(spec: specs.RunSpec, teacher_dim: int, student_dim: int) -> None:
  """A shared classifier needs the student's representation to have the teacher's size."""
  if spec.share_classifier and spec.mode in specs.DISTILLING and teacher_dim != student_dim:
    raise ConfigError(f"share_classifier=True needs equal representation sizes, got teacher {teacher_dim} and "
                      f"student {student_dim} (cross-family: set share_classifier=False)")


def make_setup(spec: specs.RunSpec, *, teacher_model: Optional[nn.Module] = None) -> TrainSetup:
  """Builds the run's modules and optimizers, once, from its prepared spec (`run_config.prepare`);
  `teacher_model` replaces the spec's teacher (serial mode: the frozen run's model or ensemble).
  Representation sizes (by shape inference) decide whether L_rep needs a projection."""
  d, mode = spec.data, spec.mode
  kw = dict(num_classes=d.num_classes, feature_sizes=d.feature_sizes, dtype=spec.dtype)
  if teacher_model is None and spec.has_teacher:
    teacher_model = build_model(spec.teacher, **kw)
  student_model = build_model(spec.student, **kw) if spec.has_student else None
  weights = student_loss_weights(spec)
  projection_dim = 0
  if mode in specs.DISTILLING:
    t_dim = representation_dim(teacher_model, frames=d.max_frames, feature_dim=d.feature_dim)
    s_dim = representation_dim(student_model, frames=spec.student.k, feature_dim=d.feature_dim)
    check_representation_sizes(spec, t_dim, s_dim)
    projection_dim = t_dim if (weights["rep"] > 0 and t_dim != s_dim) else 0
  trains_student = spec.has_student
  return TrainSetup(
      mode=mode, teacher_model=teacher_model, student_model=student_model,
      selection=inference.student_selection(spec),
      student_forward=inference.student_forward(spec, student_model) if trains_student else None,
      budgets=spec.student.budgets if trains_student else None,
      teacher_tx=make_optimizer(spec.optim, d.batch_size) if mode in specs.TEACHER_TRAINED else None,
      student_tx=make_optimizer(spec.optim, d.batch_size) if trains_student else None,
      schedule=learning_rate_schedule(spec.optim, d.batch_size), max_frames=d.max_frames,
      feature_dim=d.feature_dim, shared_head=spec.share_classifier and mode in specs.DISTILLING,
      projection_dim=projection_dim, loss_weights=tuple(sorted(weights.items())),
      pred_distance=spec.loss.pred_distance,
      selector=spec.student.selector if trains_student and spec.student.learned else None,
      num_classes=d.num_classes)


# ----------------------------------------------------------------------------------------------
# The initial state


def _dummy_inputs(batch: int, frames: int, feature_dim: int):
  return jnp.zeros([batch, frames, feature_dim], jnp.float32), jnp.full([batch], frames, jnp.int32)


def init_variables(model: VideoModel, rng: jax.Array, *, frames: int, feature_dim: int,
                   encoder_only: bool = False) -> Dict[str, Any]:
  """Initial {'params', 'batch_stats'} of a model (only its encoder when `encoder_only`)."""
  x, n = _dummy_inputs(2, frames, feature_dim)
  rngs = {"params": rng, "dropout": rng, "frames": rng}
  method = VideoModel.encode if encoder_only else None
  # Jitted: one compile instead of one per op (an eager init of a small model takes seconds on a CPU).
  variables = jax.jit(functools.partial(model.init, train=False, method=method))(rngs, x, n)
  return {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}


def init_projection(rng: jax.Array, in_dim: int, out_dim: int) -> Dict[str, jax.Array]:
  """The student's L_rep projection [in_dim -> out_dim] (cross-family distillation)."""
  kernel = nn.initializers.lecun_normal()(rng, (in_dim, out_dim), jnp.float32)
  return {"kernel": kernel, "bias": jnp.zeros([out_dim], jnp.float32)}


def new_net_state(variables: Dict[str, Any], tx: Optional[optax.GradientTransformation]) -> NetState:
  params = variables["params"]
  return NetState(params=params, batch_stats=variables.get("batch_stats", {}),
                  opt_state=tx.init(params) if tx is not None else None)


def init_state(setup: TrainSetup, rng: jax.Array, *, teacher_variables: Optional[Dict[str, Any]] = None,
               student_variables: Optional[Dict[str, Any]] = None) -> DistillState:
  """The state at step 0 (pure: jit it with `create_state`). A network whose variables are given
  (serial: the frozen teacher; finetune: the stage-1 student) starts from them; the others are
  initialised from `rng`."""
  rng_teacher, rng_student, rng_projection, rng_base = jax.random.split(rng, 4)
  rng_selector = jax.random.fold_in(rng_projection, 1)
  teacher = student = None
  if setup.has_teacher:
    variables = teacher_variables or init_variables(setup.teacher_model, rng_teacher, frames=setup.max_frames,
                                                    feature_dim=setup.feature_dim)
    teacher = new_net_state(variables, setup.teacher_tx)
  if setup.has_student:
    variables = student_variables
    if variables is None:
      variables = init_variables(setup.student_model, rng_student, frames=setup.k, feature_dim=setup.feature_dim,
                                 encoder_only=setup.shared_head)
      if setup.projection_dim:
        rep_dim = representation_dim(setup.student_model, frames=setup.k, feature_dim=setup.feature_dim)
        variables["params"] = dict(variables["params"], projection=init_projection(
            rng_projection, rep_dim, setup.projection_dim))
      if setup.selection.learned:  # the learned selector's scorer trains with the student (`sampling/learned.py`)
        variables["params"] = dict(variables["params"], **{learned.SELECTOR_KEY: learned.init_params(
            setup.selection.scorer, rng_selector, frames=setup.max_frames)})
      if setup.selector is not None and setup.selector.train == "labels":  # its frame judge (training only)
        variables["params"] = dict(variables["params"], **{scorer_training.JUDGE_KEY: scorer_training.init_judge(
            jax.random.fold_in(rng_selector, 1), setup.feature_dim, setup.num_classes)})
    student = new_net_state(variables, setup.student_tx)
  return DistillState(step=jnp.zeros([], jnp.int32), rng=rng_base, teacher=teacher, student=student)


def create_state(setup: TrainSetup, rng: jax.Array, mesh, *, abstract: bool = False, **variables
                 ) -> DistillState:
  """`init_state` computed once, directly into its place on the mesh (replicated), as big_vision
  creates its state; `abstract`: only the shapes, dtypes and shardings (a restore target, no memory).
  `variables`: `init_state`'s teacher_variables / student_variables."""
  init = jax.jit(functools.partial(init_state, setup), out_shardings=parallel.replicated(mesh))
  if abstract:
    return jax.eval_shape(init, rng, **variables)
  return init(rng, **variables)


# ----------------------------------------------------------------------------------------------
# The train step
