"""Teacher + student train state, the set-up of a run, and the jitted train step (the student's loss
in it: `student_loss.py`).

Modes (`config.mode`):
  teacher       the Teacher-Skyline: the teacher alone, CE only.
  student_only  the paper's k-frame baselines: the student alone on its k frames, CE only, no teacher.
  parallel      teacher and student trained together. The teacher's loss is CE only; the student's is
                the configured combination. Every teacher output enters the student's loss through
                `stop_gradient`, so no student loss reaches the teacher's parameters.
  serial        the teacher is restored from `config.teacher_workdir` and frozen: it has no optimizer
                state, runs in eval mode (batch-norm running statistics, no dropout), and its
                variables are constants of the step.
  finetune      the paper's stage 2: the student (restored from `config.init_workdir`) plus its
                classifier, trained on CE only. A student that shared the teacher's classifier gets a
                copy of it, which is now trained with the student.

Shared classifier (`config.share_classifier`, the paper's choice): the student has no head of its own
and classifies its representation with the teacher's head, which runs in inference mode for the
student (its batch norm, if any, uses the teacher's running statistics, in training as at eval), so
the student is trained through exactly the head it is evaluated with. In parallel mode the head is
trained by the teacher's CE alone (the student's gradient flows through the head into the student's
encoder, but is not applied to the head); in serial mode it is the frozen teacher's head.

Cross-family distillation: when the representation sizes differ, `L_rep` compares the teacher's
representation with a learned linear projection of the student's; the projection belongs to the
student (`student.params['projection']`).

Any-k student (`config.student.k_min` set, `anyk.py`): each step draws the sandwich rule's budgets
(k_min, k and `budgets_per_step - 2` random ones), selects each budget's frames from one nested order of
the batch (`selection/nested.py`) in static [B, k, D] tensors, and averages the student's loss (the same
terms as a fixed-k student) over them; the batch statistics pass from one budget's forward to the next.

Cross-entropy is summed over classes (the YouTube-8M starter's convention), which scales the gradient
by about C relative to a mean: the paper's learning rates assume it.

Evaluation is `evaluate.eval_outputs` over `TrainSetup.scorers()` and `eval_variables(state)`: the same
inference path (`inference.py`) that scores a saved run.
"""
import dataclasses
import functools
from typing import Any, Dict, Optional, Tuple

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from fewframes_jax import anyk
from fewframes_jax import inference
from fewframes_jax import losses
from fewframes_jax import parallel
from fewframes_jax import student_loss
from fewframes_jax.data.quantization import dequantize
from fewframes_jax.selection import learned
from fewframes_jax.models import build_model
from fewframes_jax.models import common
from fewframes_jax.models.common import VideoModel
from fewframes_jax.optim import learning_rate_schedule, make_optimizer

MODES = ("teacher", "student_only", "parallel", "serial", "finetune")
TEACHER_TRAINED = ("teacher", "parallel")
STUDENT_TRAINED = ("student_only", "parallel", "serial", "finetune")
DISTILLING = ("parallel", "serial")  # the modes whose student learns from a teacher


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
class TrainSetup:
  """The static part of a run, built once from its config (`make_setup`): the two networks, their
  optimizers and frame selection, and the student's loss."""
  mode: str
  teacher_model: Optional[nn.Module]
  student_model: Optional[VideoModel]
  selection: inference.Selection              # the student's frames (an any-k student's largest budget)
  student_scorer: Optional[inference.Scorer]  # the student as evaluated (an any-k student at its eval budget)
  budgets: Optional[anyk.Budgets]             # an any-k student's budgets (None: a fixed-k student)
  teacher_tx: Optional[optax.GradientTransformation]
  student_tx: Optional[optax.GradientTransformation]
  schedule: Any
  max_frames: int
  feature_dim: int
  shared_head: bool
  projection_dim: int          # >0: the student's representation is projected to this size for L_rep
  loss_weights: Tuple[Tuple[str, float], ...]
  pred_distance: str
  selector: Optional[learned.SelectorSpec] = None  # a learned frame selector's settings (sampling='learned')

  @property
  def has_teacher(self) -> bool:
    return self.teacher_model is not None

  @property
  def has_student(self) -> bool:
    return self.student_model is not None

  @property
  def train_teacher(self) -> bool:
    return self.mode in TEACHER_TRAINED

  @property
  def train_student(self) -> bool:
    return self.mode in STUDENT_TRAINED

  @property
  def k(self) -> int:
    return self.selection.k

  def weight(self, term: str) -> float:
    return dict(self.loss_weights).get(term, 0.0)

  def scorers(self) -> Dict[str, inference.Scorer]:
    """The networks of the run, ready for `evaluate.eval_outputs`: {'teacher'|'student': Scorer}."""
    out = {}
    if self.has_teacher:
      out["teacher"] = inference.Scorer(self.teacher_model)
    if self.has_student:
      out["student"] = self.student_scorer
    return out


def student_loss_weights(config: ml_collections.ConfigDict) -> Dict[str, float]:
  """The student's loss weights for the mode: CE only for the baselines and for fine-tuning."""
  if config.mode in ("student_only", "finetune"):
    return {"ce": 1.0, "rep": 0.0, "rep_intermediate": 0.0, "pred": 0.0}
  lo = config.loss
  return {"ce": lo.ce, "rep": lo.rep, "rep_intermediate": lo.rep_intermediate, "pred": lo.pred}


def representation_dim(model: nn.Module, *, frames: int, feature_dim: int) -> int:
  """E of a model, by shape inference (no parameters allocated)."""
  x, n = _dummy_inputs(1, frames, feature_dim)

  def fn(rng):
    variables = model.init({"params": rng, "dropout": rng, "frames": rng}, x, n, train=False)
    return model.apply(variables, x, n, train=False, rngs={"frames": rng}).representation

  return int(jax.eval_shape(fn, jax.random.PRNGKey(0)).shape[-1])


def make_setup(config: ml_collections.ConfigDict, *, teacher_model: Optional[nn.Module] = None) -> TrainSetup:
  """Builds the run's modules and optimizers, once. `config` is resolved and validated
  (`configs_lib`); `teacher_model` replaces the config's teacher (serial mode: the frozen run's model
  or ensemble). Representation sizes (by shape inference) decide whether L_rep needs a projection."""
  from fewframes_jax import configs_lib  # pylint: disable=g-import-not-at-top  (configs_lib imports MODES)
  d, mode = config.data, config.mode
  feature_dim = sum(d.feature_sizes)
  kw = dict(num_classes=d.num_classes, feature_sizes=tuple(d.feature_sizes), dtype=config.dtype)
  if teacher_model is None and has_teacher(mode):
    teacher_model = build_model(config.teacher, **kw)
  student_model = build_model(config.student, **kw) if has_student(mode) else None
  weights = student_loss_weights(config)
  projection_dim = 0
  if mode in DISTILLING:
    t_dim = representation_dim(teacher_model, frames=d.max_frames, feature_dim=feature_dim)
    s_dim = representation_dim(student_model, frames=config.student.k, feature_dim=feature_dim)
    configs_lib.check_representation_sizes(config, t_dim, s_dim)
    projection_dim = t_dim if (weights["rep"] > 0 and t_dim != s_dim) else 0
  return TrainSetup(
      mode=mode, teacher_model=teacher_model, student_model=student_model,
      selection=inference.student_selection(config),
      student_scorer=inference.student_scorer(config, student_model) if student_model is not None else None,
      budgets=anyk.budgets_of(config) if student_model is not None else None,
      teacher_tx=make_optimizer(config.optim, d.batch_size) if mode in TEACHER_TRAINED else None,
      student_tx=make_optimizer(config.optim, d.batch_size) if has_student(mode) else None,
      schedule=learning_rate_schedule(config.optim, d.batch_size), max_frames=d.max_frames,
      feature_dim=feature_dim, shared_head=bool(config.share_classifier) and mode in DISTILLING,
      projection_dim=projection_dim, loss_weights=tuple(sorted(weights.items())),
      pred_distance=config.loss.pred_distance,
      selector=(learned.SelectorSpec.from_config(config.student)
                if has_student(mode) and config.student.sampling == learned.METHOD else None))


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
      if setup.selection.learned:  # the learned selector's scorer trains with the student (`selection/learned.py`)
        variables["params"] = dict(variables["params"], **{learned.SELECTOR_KEY: learned.init_params(
            setup.selection.scorer, rng_selector, frames=setup.max_frames)})
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


def _apply_updates(state: NetState, grads, tx, batch_stats) -> NetState:
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  return NetState(params=optax.apply_updates(state.params, updates), batch_stats=batch_stats,
                  opt_state=opt_state)


def _teacher_step(setup: TrainSetup, teacher: NetState, frames, num_frames, labels, weights, rng):
  """The teacher's CE step (teacher and parallel modes) -> (new state, its outputs, its CE)."""

  def teacher_loss(params):
    out, bs = common.apply_model(setup.teacher_model, {"params": params, "batch_stats": teacher.batch_stats},
                                 frames, num_frames, train=True, rng=rng)
    return losses.cross_entropy(out.probabilities, labels, weights=weights), (out, bs)

  (ce, (out, bs)), grads = jax.value_and_grad(teacher_loss, has_aux=True)(teacher.params)
  new = _apply_updates(teacher, grads, setup.teacher_tx, common.updated_batch_stats(teacher.batch_stats, bs))
  return new, out, ce


def train_step(state: DistillState, batch: Dict[str, jax.Array], *, setup: TrainSetup
               ) -> Tuple[DistillState, Dict[str, jax.Array]]:
  """One optimisation step of every trained network on one global batch.

  batch: frames u8[B, T, D], num_frames i32[B], labels [B, C] (multi-hot), valid bool[B].
  Returns the new state and scalar metrics (loss terms, learning rate).
  """
  rng = jax.random.fold_in(state.rng, state.step)
  rng_teacher, rng_student, rng_frames = jax.random.split(rng, 3)
  num_frames = batch["num_frames"].astype(jnp.int32)
  frames = dequantize(batch["frames"], num_frames)
  labels = batch["labels"].astype(jnp.float32)
  weights = batch["valid"].astype(jnp.float32)
  metrics = {"learning_rate": setup.schedule(state.step)}
  teacher, student = state.teacher, state.student

  teacher_out = None
  if setup.train_teacher:
    teacher, teacher_out, metrics["teacher/ce"] = _teacher_step(setup, teacher, frames, num_frames, labels,
                                                                weights, rng_teacher)
  elif setup.has_teacher and setup.train_student and any(
      setup.weight(t) > 0 for t in ("rep", "rep_intermediate", "pred")):
    teacher_out, _ = common.apply_model(setup.teacher_model, teacher.variables, frames, num_frames,
                                        train=False, rng=rng_teacher)

  if setup.train_student:
    # The head the student shares is the teacher's *before* this step's teacher update.
    loss_fn = student_loss.make_loss_fn(
        setup, student=student, teacher=state.teacher,
        teacher_out=jax.lax.stop_gradient(teacher_out) if teacher_out is not None else None, frames=frames,
        num_frames=num_frames, labels=labels, weights=weights, rng=rng_student, rng_frames=rng_frames)
    (total, (terms, bs)), grads = jax.value_and_grad(loss_fn, has_aux=True)(student.params)
    metrics["student/loss"] = total
    metrics.update({f"student/{name}": value for name, value in terms.items()})
    student = _apply_updates(student, grads, setup.student_tx, bs)

  return DistillState(step=state.step + 1, rng=state.rng, teacher=teacher, student=student), metrics


def jit_train_step(setup: TrainSetup):
  """The jitted train step; the state's buffers are donated."""
  return jax.jit(functools.partial(train_step, setup=setup), donate_argnums=(0,))


def eval_variables(state: DistillState) -> Dict[str, Dict[str, Any]]:
  """{'teacher'|'student': {'params', 'batch_stats'}} of a live state, as `inference.network_variables`
  builds them from a checkpoint (a sharing student gets the teacher's head): what `evaluate` scores."""
  tree = {"teacher": state.teacher.variables if state.teacher is not None else None,
          "student": state.student.variables if state.student is not None else None}
  return {which: inference.network_variables(tree, which) for which in inference.NETWORKS if tree[which]}
