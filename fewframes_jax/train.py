"""Teacher + student train state and the jitted train and eval steps.

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
and classifies its representation with the teacher's head. In parallel mode the head is trained by
the teacher's CE alone (the student's gradient flows through the head into the student's encoder,
but is not applied to the head); in serial mode it is the frozen teacher's head.

Cross-family distillation: when the representation sizes differ, `L_rep` compares the teacher's
representation with a learned linear projection of the student's; the projection belongs to the
student (`student.params['projection']`).

Cross-entropy is summed over classes (the YouTube-8M starter's convention), which scales the gradient
by about C relative to a mean: the paper's learning rates assume it.
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

from fewframes_jax import losses
from fewframes_jax import metrics as metrics_lib
from fewframes_jax import parallel
from fewframes_jax import sampling
from fewframes_jax.data.quantization import dequantize
from fewframes_jax.models import build_model
from fewframes_jax.models.common import VideoModel
from fewframes_jax.optim import learning_rate_schedule, make_optimizer

MODES = ("teacher", "student_only", "parallel", "serial", "finetune")
TEACHER_TRAINED = ("teacher", "parallel")
STUDENT_TRAINED = ("student_only", "parallel", "serial", "finetune")


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
class Networks:
  """The static part of training: modules, optimizers and the flags derived from the config."""
  mode: str
  teacher_model: Optional[VideoModel]
  student_model: Optional[VideoModel]
  teacher_tx: Optional[optax.GradientTransformation]
  student_tx: Optional[optax.GradientTransformation]
  schedule: Any
  k: int
  sampling: str
  max_frames: int
  shared_head: bool
  projection_dim: int          # >0: the student's rep is projected to this size for L_rep
  loss_weights: Tuple[Tuple[str, float], ...]
  pred_distance: str
  top_k: int = 20

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

  def weight(self, term: str) -> float:
    return dict(self.loss_weights).get(term, 0.0)


def student_loss_weights(config: ml_collections.ConfigDict) -> Dict[str, float]:
  """The student's loss weights for the mode: CE only for the baselines and for fine-tuning."""
  if config.mode in ("student_only", "finetune"):
    return {"ce": 1.0, "rep": 0.0, "rep_intermediate": 0.0, "pred": 0.0}
  lo = config.loss
  return {"ce": lo.ce, "rep": lo.rep, "rep_intermediate": lo.rep_intermediate, "pred": lo.pred}


def make_networks(config: ml_collections.ConfigDict, *, num_classes: int,
                  teacher_rep_dim: int = 0, student_rep_dim: int = 0,
                  teacher_model: Optional[nn.Module] = None) -> Networks:
  """Builds modules and optimizers. Representation sizes decide whether L_rep needs a projection.
  `teacher_model` replaces the config's teacher (serial mode: the frozen run's model or ensemble)."""
  d = config.data
  mode = config.mode
  if mode not in MODES:
    raise ValueError(f"mode={mode!r}: expected one of {MODES}")
  has_teacher = mode not in ("student_only", "finetune")  # finetune: the student alone (stage 2)
  has_student = mode != "teacher"
  kw = dict(num_classes=num_classes, feature_sizes=tuple(d.feature_sizes), dtype=config.dtype)
  if teacher_model is None and has_teacher:
    teacher_model = build_model(config.teacher, **kw)
  student_model = build_model(config.student, **kw) if has_student else None
  schedule = learning_rate_schedule(config.optim, d.batch_size)
  weights = student_loss_weights(config)
  shared = bool(config.share_classifier) and mode in ("parallel", "serial")
  needs_projection = (mode in ("parallel", "serial") and weights["rep"] > 0
                      and teacher_rep_dim and student_rep_dim and teacher_rep_dim != student_rep_dim)
  return Networks(
      mode=mode, teacher_model=teacher_model, student_model=student_model,
      teacher_tx=make_optimizer(config.optim, d.batch_size) if mode in TEACHER_TRAINED else None,
      student_tx=make_optimizer(config.optim, d.batch_size) if has_student else None,
      schedule=schedule, k=config.student.k, sampling=config.student.sampling,
      max_frames=d.max_frames, shared_head=shared,
      projection_dim=int(teacher_rep_dim) if needs_projection else 0,
      loss_weights=tuple(sorted(weights.items())), pred_distance=config.loss.pred_distance)


# ----------------------------------------------------------------------------------------------
# Initialisation


def _dummy_inputs(batch: int, frames: int, feature_dim: int):
  return jnp.zeros([batch, frames, feature_dim], jnp.float32), jnp.full([batch], frames, jnp.int32)


def init_variables(model: VideoModel, rng: jax.Array, *, frames: int, feature_dim: int,
                   encoder_only: bool = False) -> Dict[str, Any]:
  """Initial {'params', 'batch_stats'} of a model (only its encoder when `encoder_only`)."""
  x, n = _dummy_inputs(2, frames, feature_dim)
  rngs = {"params": rng, "dropout": rng, "frames": rng}
  method = VideoModel.encode if encoder_only else None
  # Jitted: one compile instead of one per op (eager init of a tiny model takes seconds on a CPU).
  variables = jax.jit(functools.partial(model.init, train=False, method=method))(rngs, x, n)
  return {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}


def representation_dim(model: nn.Module, *, frames: int, feature_dim: int) -> int:
  """E of a model, by shape inference (no parameters allocated)."""
  x, n = _dummy_inputs(1, frames, feature_dim)

  def fn(rng):
    variables = model.init({"params": rng, "dropout": rng, "frames": rng}, x, n, train=False)
    return model.apply(variables, x, n, train=False).representation

  return int(jax.eval_shape(fn, jax.random.PRNGKey(0)).shape[-1])


def init_projection(rng: jax.Array, in_dim: int, out_dim: int) -> Dict[str, jax.Array]:
  """The student's L_rep projection [in_dim -> out_dim] (cross-family distillation)."""
  kernel = nn.initializers.lecun_normal()(rng, (in_dim, out_dim), jnp.float32)
  return {"kernel": kernel, "bias": jnp.zeros([out_dim], jnp.float32)}


def new_net_state(variables: Dict[str, Any], tx: Optional[optax.GradientTransformation]) -> NetState:
  params = variables["params"]
  return NetState(params=params, batch_stats=variables.get("batch_stats", {}),
                  opt_state=tx.init(params) if tx is not None else None)


# ----------------------------------------------------------------------------------------------
# Forward pieces


def _apply(model: VideoModel, variables, *args, train: bool, rng=None, method=None):
  """model.apply that returns (output, new_batch_stats) in train mode and (output, None) in eval."""
  rngs = {"dropout": rng, "frames": rng} if rng is not None else None
  if train:
    out, updates = model.apply(variables, *args, train=True, rngs=rngs, method=method,
                               mutable=["batch_stats"])
    return out, updates.get("batch_stats", {})
  return model.apply(variables, *args, train=False, rngs=rngs, method=method), None


def _merge(old: Any, new: Any) -> Any:
  """Batch stats after a partial apply: the subtrees the apply touched replace the old ones."""
  if not new:
    return old
  merged = dict(old)
  merged.update(new)
  return merged


def student_forward(nets: Networks, student_params, student_bs, teacher: Optional[NetState],
                    frames_k, num_frames_k, *, train: bool, rng=None):
  """The student on its k frames. -> (representation, intermediates, probabilities, new_batch_stats).

  With a shared head the teacher's head classifies the student's representation; its parameters
  enter through stop_gradient, and it runs in eval mode when the teacher is frozen.
  """
  variables = {"params": student_params, "batch_stats": student_bs}
  if not nets.shared_head:
    out, bs = _apply(nets.student_model, variables, frames_k, num_frames_k, train=train, rng=rng)
    return out.representation, out.intermediates, out.probabilities, _merge(student_bs, bs)
  (rep, inter), bs = _apply(nets.student_model, variables, frames_k, num_frames_k, train=train, rng=rng,
                            method=VideoModel.encode)
  head_vars = jax.lax.stop_gradient({
      "params": {"head": teacher.params["head"]},
      "batch_stats": {"head": teacher.batch_stats["head"]} if "head" in teacher.batch_stats else {}})
  head_train = train and nets.train_teacher
  probs, _ = _apply(nets.teacher_model, head_vars, rep, train=head_train, method=VideoModel.classify)
  return rep, inter, probs, _merge(student_bs, bs)


def project(student_params, representation):
  """The student's representation mapped to the teacher's size, when a projection exists."""
  if "projection" not in student_params:
    return representation
  p = student_params["projection"]
  return representation @ p["kernel"] + p["bias"]


# ----------------------------------------------------------------------------------------------
# Steps


def _apply_updates(state: NetState, grads, tx, batch_stats) -> NetState:
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  return NetState(params=optax.apply_updates(state.params, updates), batch_stats=batch_stats,
                  opt_state=opt_state)


def train_step(state: DistillState, batch: Dict[str, jax.Array], *, nets: Networks
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
  out_metrics = {"learning_rate": nets.schedule(state.step)}
  teacher, student = state.teacher, state.student

  teacher_out = None
  if nets.train_teacher:
    def teacher_loss(params):
      out, bs = _apply(nets.teacher_model, {"params": params, "batch_stats": teacher.batch_stats},
                       frames, num_frames, train=True, rng=rng_teacher)
      return losses.cross_entropy(out.probabilities, labels, weights=weights), (out, bs)

    (t_ce, (teacher_out, t_bs)), t_grads = jax.value_and_grad(teacher_loss, has_aux=True)(teacher.params)
    out_metrics["teacher/ce"] = t_ce
    new_teacher = _apply_updates(teacher, t_grads, nets.teacher_tx, _merge(teacher.batch_stats, t_bs))
  else:
    new_teacher = teacher
    if nets.has_teacher and nets.train_student and any(
        nets.weight(t) > 0 for t in ("rep", "rep_intermediate", "pred")):
      teacher_out, _ = _apply(nets.teacher_model, teacher.variables, frames, num_frames, train=False)

  new_student = student
  if nets.train_student:
    frames_k, num_frames_k, indices = sampling.sample_frames(
        frames, num_frames, nets.k, nets.sampling, rng=rng_frames, return_indices=True)
    t = jax.lax.stop_gradient(teacher_out) if teacher_out is not None else None

    def student_loss(params):
      rep, inter, probs, bs = student_forward(nets, params, student.batch_stats, teacher, frames_k,
                                              num_frames_k, train=True, rng=rng_student)
      terms = {}
      if nets.weight("ce") > 0:
        terms["ce"] = losses.cross_entropy(probs, labels, weights=weights)
      if nets.weight("rep") > 0:
        terms["rep"] = losses.representation_loss(t.representation, project(params, rep), weights=weights)
      if nets.weight("rep_intermediate") > 0:
        terms["rep_intermediate"] = losses.intermediate_representation_loss(
            sampling.gather_frames(t.intermediates, indices, num_frames_k), inter, num_frames_k,
            weights=weights)
      if nets.weight("pred") > 0:
        terms["pred"] = losses.prediction_loss(t.probabilities, probs, d=nets.pred_distance,
                                               weights=weights)
      total, weighted = losses.combine_student_losses(terms, dict(nets.loss_weights))
      return total, (terms, bs)

    (s_total, (terms, s_bs)), s_grads = jax.value_and_grad(student_loss, has_aux=True)(student.params)
    out_metrics["student/loss"] = s_total
    out_metrics.update({f"student/{name}": value for name, value in terms.items()})
    new_student = _apply_updates(student, s_grads, nets.student_tx, s_bs)

  new_state = DistillState(step=state.step + 1, rng=state.rng, teacher=new_teacher, student=new_student)
  return new_state, out_metrics


def eval_step(state: DistillState, batch: Dict[str, jax.Array], rng: jax.Array, *, nets: Networks
              ) -> Dict[str, Dict[str, jax.Array]]:
  """Scores one eval batch. Only O(B * top_k + C) per network leaves the device.

  Returns {'valid': bool[B], 'teacher'|'student': {'scores': f32[B,k], 'class_ids': i32[B,k],
  'hits': bool[B,k], 'num_labels': i32[B], 'perr': f32[B], 'class_positives': i32[C] (over valid
  rows), 'ce': f32[] (sum over valid rows), 'rep_distance': f32[] (student, sum over valid rows)}}.
  `rng` only matters for the 'random' sampling method (a fixed key per eval batch).
  """
  num_frames = batch["num_frames"].astype(jnp.int32)
  frames = dequantize(batch["frames"], num_frames)
  labels = batch["labels"].astype(jnp.float32)
  valid = batch["valid"]
  weights = valid.astype(jnp.float32)
  results = {"valid": valid}

  def summarize(probabilities):
    top = metrics_lib.top_k_hits(probabilities, labels, nets.top_k)
    ce_sum = losses.cross_entropy(probabilities, labels, weights=weights) * jnp.sum(weights)
    return {"scores": top.scores, "class_ids": top.class_ids, "hits": top.hits, "num_labels": top.num_labels,
            "perr": metrics_lib.perr_per_video(probabilities, labels),
            "class_positives": metrics_lib.class_positive_counts(labels, valid), "ce": ce_sum}

  teacher_out = None
  if nets.has_teacher:
    teacher_out, _ = _apply(nets.teacher_model, state.teacher.variables, frames, num_frames, train=False)
    results["teacher"] = summarize(teacher_out.probabilities)
  if nets.has_student:
    frames_k, num_frames_k = sampling.sample_frames(frames, num_frames, nets.k, nets.sampling, rng=rng)
    rep, _, probs, _ = student_forward(nets, state.student.params, state.student.batch_stats,
                                       state.teacher, frames_k, num_frames_k, train=False)
    results["student"] = summarize(probs)
    if teacher_out is not None and teacher_out.representation.shape == rep.shape:
      dist = jnp.sum(jnp.square(teacher_out.representation - rep), axis=-1)
      results["student"]["rep_distance"] = jnp.sum(dist * weights)
  return results


def jit_train_step(nets: Networks):
  """The jitted train step; the state's buffers are donated."""
  return jax.jit(functools.partial(train_step, nets=nets), donate_argnums=(0,))


def jit_eval_step(nets: Networks, mesh):
  """The jitted eval step; outputs are replicated so every process sees the whole global batch."""
  return jax.jit(functools.partial(eval_step, nets=nets), out_shardings=parallel.replicated(mesh))
