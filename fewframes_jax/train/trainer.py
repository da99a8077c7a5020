"""The jitted train step of a teacher and its student (the student's loss in it: `student_loss.py`; the
run's set-up and initial state: `run_setup.py`).

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

Any-k student (`config.student.k_min` set, `specs.Budgets`): each step draws the sandwich rule's budgets
(k_min, k and `budgets_per_step - 2` random ones), selects each budget's frames from one nested order of
the batch (`sampling/nested.py`) in static [B, k, D] tensors, and averages the student's loss (the same
terms as a fixed-k student) over them; the batch statistics pass from one budget's forward to the next.

Cross-entropy is summed over classes (the YouTube-8M starter's convention), which scales the gradient
by about C relative to a mean: the paper's learning rates assume it.

Evaluation is `evaluate.eval_outputs` over `TrainSetup.forwards()` and `eval_variables(state)`: the same
inference path (`inference.py`) that scores a saved run.
"""
import functools
from typing import Any, Dict, Tuple

import jax
import jax.numpy as jnp
import optax

from fewframes_jax.specs import DistillState, NetState
from fewframes_jax import inference
from fewframes_jax import losses
from fewframes_jax.train import student_loss
from fewframes_jax.data.quantization import dequantize
from fewframes_jax.models import common

from fewframes_jax.train.run_setup import TrainSetup


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
