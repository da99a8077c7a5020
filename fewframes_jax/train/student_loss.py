"""The student's side of a train step: its forward on the frames it reads, and its loss.

The loss of one step (`make_loss_fn`) takes the student's parameters and returns
(total, ({term: value}, new batch_stats)); `trainer.train_step` differentiates it. Four shapes of it:

  fixed k, fixed rule   `loss_terms` on the selection of the step (uniform, random, far_from_mean, ...).
  fixed k, learned      the scorer in the student's parameters (`params['selector']`) picks the frames
                        inside the loss (through the perturbed top-k when it trains end to end), and its
                        ranking loss on the frozen teacher's judgements (`rank`) or on its label judge's
                        (`labels`, whose cross-entropy joins too) joins the total (`selector.weight`).
  any k                 `loss_over_budgets`: the mean of `loss_terms` over the step's budgets (the sandwich
                        rule), each read from one nested order of the batch, the batch statistics carried
                        from one budget's forward to the next.
  any k, learned        the same on the scorer's own nested order (no gradient through the ranking), plus
                        the scorer's ranking loss.

The terms are the paper's: L_CE (summed over classes), L_rep (the teacher's representation against the
student's, projected to the teacher's size across families), the intermediate L_rep (H-RNN blocks), and
L_pred; `losses.combine_student_losses` weights them. Every teacher output is a constant here: the caller
passes it through `stop_gradient`.
"""
import functools
from typing import TYPE_CHECKING, Dict, Optional

import jax
import jax.numpy as jnp

from fewframes_jax import losses
from fewframes_jax.sampling import rules
from fewframes_jax.models import common
from fewframes_jax.models.common import VideoModel
from fewframes_jax.sampling import learned
from fewframes_jax.sampling import nested
from fewframes_jax.sampling import scorer_training

from fewframes_jax.specs import NetState

if TYPE_CHECKING:  # run_setup's TrainSetup, for annotations only
  from fewframes_jax.train.run_setup import TrainSetup  # pylint: disable=g-bad-import-order


# ----------------------------------------------------------------------------------------------
# Forward pieces


def forward(setup: "TrainSetup", student_params, student_batch_stats, teacher: Optional["NetState"],
            frames_k, num_frames_k, *, train: bool, rng):
  """The student on its k frames [B, k, D]. -> (representation [B, E], intermediates, probabilities
  [B, C], new batch_stats).

  With a shared head the teacher's head classifies the student's representation, in inference mode
  (the teacher's running statistics) and through stop_gradient: the student trains against exactly
  the head it is evaluated with, and never moves it.
  """
  variables = {"params": student_params, "batch_stats": student_batch_stats}
  if not setup.shared_head:
    out, bs = common.apply_model(setup.student_model, variables, frames_k, num_frames_k, train=train, rng=rng)
    return (out.representation, out.intermediates, out.probabilities,
            common.updated_batch_stats(student_batch_stats, bs))
  (rep, inter), bs = common.apply_model(setup.student_model, variables, frames_k, num_frames_k, train=train,
                                        rng=rng, method=VideoModel.encode)
  head_variables = jax.lax.stop_gradient({
      "params": {"head": teacher.params["head"]},
      "batch_stats": {"head": teacher.batch_stats["head"]} if "head" in teacher.batch_stats else {}})
  probs, _ = common.apply_model(setup.teacher_model, head_variables, rep, train=False, rng=rng,
                                method=VideoModel.classify)
  return rep, inter, probs, common.updated_batch_stats(student_batch_stats, bs)


def project_to_teacher(student_params, representation):
  """The student's representation [B, E_s] mapped to the teacher's size [B, E_t] (cross-family L_rep),
  when the student has a projection; unchanged otherwise."""
  if "projection" not in student_params:
    return representation
  p = student_params["projection"]
  return representation @ p["kernel"] + p["bias"]


# ----------------------------------------------------------------------------------------------
# The loss on one selection of frames


def loss_terms(setup: "TrainSetup", params, student: "NetState", teacher: Optional["NetState"],
               teacher_out, selected, labels, weights, rng, learned_inputs=None):
  """The student's weighted loss on its selected frames -> (total, ({term: value}, new batch_stats)).

  selected: (frames [B, k, D], num_frames_k i32[B], indices i32[B, k]) or None with `learned_inputs`
  (a learned selector): (frames [B, T, D], num_frames i32[B], rank targets, a label judge's `Draw` or
  None); the frames are then chosen here, by the scorer in `params`, and its ranking loss joins the total
  (`selector.weight`)."""
  selector_terms = {}
  if learned_inputs is not None:
    frames, num_frames, rank = learned_inputs
    selected, selector_terms = learned_selection(setup, params, frames, num_frames, rank, weights,
                                                 jax.random.fold_in(rng, 7), labels=labels)
  frames_k, num_frames_k, indices = selected
  rep, inter, probs, bs = forward(setup, params, student.batch_stats, teacher, frames_k, num_frames_k,
                                  train=True, rng=rng)
  t = teacher_out
  terms = {}
  if setup.weight("ce") > 0:
    terms["ce"] = losses.cross_entropy(probs, labels, weights=weights)
  if setup.weight("rep") > 0:
    terms["rep"] = losses.representation_loss(t.representation, project_to_teacher(params, rep), weights=weights)
  if setup.weight("rep_intermediate") > 0:
    terms["rep_intermediate"] = losses.intermediate_representation_loss(
        rules.gather_frames(t.intermediates, indices, num_frames_k), inter, num_frames_k, weights=weights)
  if setup.weight("pred") > 0:
    terms["pred"] = losses.prediction_loss(t.probabilities, probs, d=setup.pred_distance, weights=weights)
  total, _ = losses.combine_student_losses(terms, dict(setup.loss_weights))
  total = _with_selector_term(setup, total, terms, selector_terms)
  return total, (terms, bs)


def learned_selection(setup: "TrainSetup", params, frames, num_frames, rank, weights, rng, labels=None):
  """A learned selector's step: the student's frames chosen by the scorer in `params` (through the
  perturbed top-k when it trains end to end) and its terms (`_selector_terms`: the ranking loss on the
  teacher's `rank` targets or its label judge's, and the judge's loss). -> (selected, {term: loss})."""
  spec = setup.selector
  scores = _selector_scores(setup, params, frames, num_frames)  # once
  selected = setup.selection.select(frames, num_frames, rng, return_indices=True, scores=scores,
                                    differentiable=spec.train == "end_to_end", sigma=spec.sigma,
                                    samples=spec.samples)
  return selected, _selector_terms(setup, params, scores, frames, num_frames, rank, labels, weights)


def _selector_scores(setup: "TrainSetup", params, frames, num_frames) -> jax.Array:
  """f32[B, T]: the learned selector's frame scores, by the scorer whose parameters are in the student's
  `params` (`params['selector']`); frames f32[B, T, D], num_frames i32[B]."""
  return setup.selection.scorer.apply({"params": params[learned.SELECTOR_KEY]}, frames, num_frames)


def _ranked(setup: "TrainSetup", scores, frames, num_frames) -> jax.Array:
  """What the ranking loss fits to its targets: the scores f32[B, T] (`rank`), or for a label judge's
  targets only their learned part, the scores less the scorer's prior (`learned.prior_scores`): the judge
  teaches what the prior does not know (that an unusual frame shows none of the labels) and the prior keeps
  what the judge does not (which frames stand out in their video)."""
  if setup.selector.train != "labels":
    return scores
  return scores - learned.prior_scores(setup.selection.scorer, frames, num_frames)


def _ranking_term(scores, rank, weights) -> Dict[str, jax.Array]:
  """{'selector': the scorer's ranking loss on the `rank` targets} ({} without targets)."""
  if rank is None:
    return {}
  positions, valid, targets = rank
  drawn = jnp.take_along_axis(scores, positions, axis=1)
  return {"selector": scorer_training.ranking_loss(drawn, targets, valid, weights)}


def _selector_terms(setup: "TrainSetup", params, scores, frames, num_frames, rank, labels, weights):
  """{'selector': the ranking loss, 'judge': a label judge's loss}, each when it applies ({} for a scorer
  trained end to end, or kept fixed in a fine-tune). scores f32[B, T]; `rank`: the teacher's targets, a
  label judge's `Draw`, or None."""
  rank, judge_terms = _judged(params, rank, labels, weights)
  return {**_ranking_term(_ranked(setup, scores, frames, num_frames), rank, weights), **judge_terms}


def _judged(params, rank, labels, weights):
  """The ranking targets of this step: `rank` as given (the teacher's, or None), or, for a `labels`
  selector (`rank` is the step's `scorer_training.Draw`), its judge's on the drawn frames, by the judge in
  `params` -> (rank targets or None, {'judge': the judge's cross-entropy} or {})."""
  if not isinstance(rank, scorer_training.Draw):
    return rank, {}
  rank, loss = scorer_training.label_targets(params[scorer_training.JUDGE_KEY], rank, labels, weights)
  return rank, {"judge": loss}


def _with_selector_term(setup: "TrainSetup", total, terms: Dict[str, jax.Array],
                        selector_terms: Dict[str, jax.Array]):
  """The student's `total` loss plus `selector.weight` x the scorer's ranking loss, plus a label judge's
  cross-entropy (weight 1: the judge's parameters feed nothing else); both join `terms` (unchanged
  without them)."""
  if not selector_terms:
    return total
  terms.update(selector_terms)
  if "selector" in selector_terms:
    total = total + setup.selector.weight * selector_terms["selector"]
  if "judge" in selector_terms:
    total = total + selector_terms["judge"]
  return total


# ----------------------------------------------------------------------------------------------
# The any-k student: the mean over the step's budgets


def budget_selections(setup: "TrainSetup", frames, num_frames, rng, ranks=None):
  """An any-k step's selections: the budgets of the sandwich rule, each as (frames [B, k_max, D],
  num_frames_k i32[B], indices i32[B, k_max]) of the nested order (one ranking for all budgets; `ranks`:
  given for the learned order, whose scorer's parameters are being differentiated)."""
  b = setup.budgets
  if ranks is None:
    ranks = nested.frame_ranks(frames, num_frames, b.order)
  ks = b.sample(rng)
  return [nested.select_budget(frames, num_frames, ks[i], b.order, b.k_max, ranks=ranks) for i in range(b.per_step)]


def loss_over_budgets(setup: "TrainSetup", params, student: "NetState", teacher: Optional["NetState"],
                      teacher_out, selections, labels, weights, rng):
  """An any-k student's loss: the mean over this step's budgets of `loss_terms`, each budget with its
  own selection (frames, counts, indices), the batch statistics carried from one to the next."""
  totals, all_terms = [], []
  for i, selected in enumerate(selections):
    total, (terms, bs) = loss_terms(setup, params, student, teacher, teacher_out, selected, labels, weights,
                                    jax.random.fold_in(rng, i))
    student = student.replace(batch_stats=bs)
    totals.append(total)
    all_terms.append(terms)
  mean_terms = {name: sum(t[name] for t in all_terms) / len(all_terms) for name in all_terms[0]}
  return sum(totals) / len(totals), (mean_terms, student.batch_stats)


def _learned_budgets_loss(setup: "TrainSetup", params, student: "NetState", teacher: Optional["NetState"],
                          teacher_out, labels, weights, rng, *, frames, num_frames, rank, rng_frames):
  """An any-k student on its own scorer's nested order: the scorer in `params` ranks the frames once
  (no gradient through the ranking), the budgets' mean loss as `loss_over_budgets`, plus the scorer's
  ranking loss on the teacher's or its label judge's targets (`selector.weight`)."""
  scores = _selector_scores(setup, params, frames, num_frames)
  ranks = nested.frame_ranks(frames, num_frames, "learned", scores=jax.lax.stop_gradient(scores))
  selections = budget_selections(setup, frames, num_frames, rng_frames, ranks=ranks)
  total, (terms, bs) = loss_over_budgets(setup, params, student, teacher, teacher_out, selections, labels,
                                         weights, rng)
  total = _with_selector_term(setup, total, terms,
                              _selector_terms(setup, params, scores, frames, num_frames, rank, labels, weights))
  return total, (terms, bs)


# ----------------------------------------------------------------------------------------------
# The step's loss function


def make_loss_fn(setup: "TrainSetup", *, student: "NetState", teacher: Optional["NetState"], teacher_out, frames,
            num_frames, labels, weights, rng, rng_frames):
  """The student's loss of one step as a function of its parameters -> (total, ({term: value}, new
  batch_stats)), for `jax.value_and_grad`.

  frames f32[B, T, D] (dequantized), num_frames i32[B], labels f32[B, C], weights f32[B] (0: a padding
  row); `teacher` is the state whose head a sharing student uses and whose judgements train a learned
  scorer (`rank`); `teacher_out` its outputs on the batch (constants) or None; `rng` the student's
  stream (dropout, random frames inside the model), `rng_frames` the frame selection's."""
  common = dict(student=student, teacher=teacher, teacher_out=teacher_out, labels=labels, weights=weights, rng=rng)
  if setup.selector is not None:
    rank = None
    if setup.selector.train == "rank" and setup.has_teacher:  # finetune: the scorer stays as it is
      rank = scorer_training.rank_targets(setup.teacher_model, teacher.variables, frames, num_frames, labels,
                                          rng_frames, setup.selector.frames_per_video)
    elif setup.selector.train == "labels":  # the judge in the student's params rates these frames
      rank = scorer_training.draw(rng_frames, frames, num_frames, setup.selector.frames_per_video)
    if setup.budgets is None:
      return functools.partial(loss_terms, setup, selected=None, learned_inputs=(frames, num_frames, rank),
                               **common)
    return functools.partial(_learned_budgets_loss, setup, frames=frames, num_frames=num_frames, rank=rank,
                             rng_frames=jax.random.fold_in(rng_frames, 1), **common)
  if setup.budgets is None:
    selected = setup.selection.select(frames, num_frames, rng_frames, return_indices=True)
    return functools.partial(loss_terms, setup, selected=selected, **common)
  return functools.partial(loss_over_budgets, setup, selections=budget_selections(setup, frames, num_frames,
                                                                                  rng_frames), **common)
