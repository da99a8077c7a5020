"""Adaptive k by early exit: read a video's frames in its nested order and stop once the prediction is
settled (FrameExit, CVPR'21, adapted to multi-label YouTube-8M).

An any-k student (`specs.Budgets`, trained by `train/student_loss.py`) is applied at exit points k_1 < k_2 < ... < k_E (default 6, 10, 15, 20,
30): exit e sees the first k_e frames of the video's nested order, re-sorted by time. After every exit
but the last a decision says whether to stop there:

  stable      the top-20 classes are the same as at the previous exit: the overlap of the two top-20
              sets (a fraction of 20) >= threshold. It cannot stop at the first exit.
  confident   the highest class probability >= threshold.
  gate        a learned gate (`exit_gate.py`) predicts, from the predictions so far, how much of the
              final top-20 the current top-20 already holds; stop when its score >= threshold.

Computation reused between exits: NetVLAD and NeXtVLAD sum per-frame terms over frames (the VLAD
residuals and assignment masses; at inference every per-frame layer, batch norm included, acts on one
frame), so exit e feeds only its k_e - k_{e-1} new frames and adds their sums to the carried ones; only
the normalisations, the hidden layer, the gating and the head run again (`VideoModel.accumulate`). The
recurrent families (H-RNN, LSTM/GRU) read frames in time order, and a new exit's frames interleave with
the ones already read, so each exit recomputes the forward over its k_e frames: the FLOPs of every exit
up to the one a video stops at are counted (`exit_flops`).

Every exit reads from one "view" of a video: its first k_max frames in the nested order, kept in time
order (`NestedView`): what the student-only input path decodes for the coarse-to-fine order (only those
k_max frames of each record), or what `view_from_frames` cuts out of all T frames.

`ExitPlan.outputs` computes every exit for a batch (the offline exit curve: a threshold sweep picks,
per video, the first exit that stops; `exit_curve.py`); `run_waves` is the batched execution that a
deployment runs: all videos to the first exit, only the ones that did not stop continue, compacted into
full batches (the per-video results equal `outputs` at the chosen exit).
"""
import dataclasses
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from fewframes_jax import models
from fewframes_jax import inference
from fewframes_jax import specs
from fewframes_jax.sampling import rules
from fewframes_jax.models.common import VideoModel
from fewframes_jax.sampling import nested

TOP_K = 20


class NestedView(NamedTuple):
  """A batch's first k_max frames of the nested order, in time order.

  frames: f32[B, k_max, D] dequantized, rows >= min(n, k_max) zero; ranks: i32[B, k_max] each slot's
  rank in the nested order (k_max for padding slots); num_frames: i32[B] the videos' true lengths n.
  """
  frames: jax.Array
  ranks: jax.Array
  num_frames: jax.Array


def view_from_frames(frames: jax.Array, num_frames: jax.Array, k_max: int, order: str, *,
                     ranks: Optional[jax.Array] = None) -> NestedView:
  """The view of dequantized full frames f32[B, T, D] (any nested order; `ranks` i32[B, T]: its
  `nested.frame_ranks` when already computed, as the learned order's are by `ExitPlan.ranks`)."""
  if ranks is None:
    ranks = nested.frame_ranks(frames, num_frames, order)
  indices, nk = nested.budget_indices(ranks, num_frames, k_max, k_max)
  slot_ranks = jnp.take_along_axis(ranks, indices, axis=1)
  slot_ranks = jnp.where(jnp.arange(k_max)[None, :] < nk[:, None], slot_ranks, k_max)
  return NestedView(rules.gather_frames(frames, indices, nk), slot_ranks, num_frames.astype(jnp.int32))


def view_from_preselected(frames_k: jax.Array, num_frames: jax.Array, max_frames: int) -> NestedView:
  """The view of the coarse-to-fine order as the student-only input path decodes it
  (`student_frames=(k_max, 'coarse_to_fine')`: the first k_max frames of the order, f32[B, k_max, D] in
  time order, rows >= min(n, k_max) zero) and the videos' true lengths i32[B] (clipped to max_frames)."""
  k_max = frames_k.shape[1]
  n = jnp.clip(num_frames.astype(jnp.int32), 0, max_frames)
  positions, nk = rules.frame_indices(n, k_max, "coarse_to_fine", max_frames=max_frames)
  ranks = jnp.take_along_axis(jnp.asarray(rules.coarse_to_fine_ranks(max_frames))[n], positions, axis=1)
  ranks = jnp.where(jnp.arange(k_max)[None, :] < nk[:, None], ranks, k_max)
  return NestedView(frames_k, ranks.astype(jnp.int32), n)


def _slots_where(selected: jax.Array, width: int) -> Tuple[jax.Array, jax.Array]:
  """(indices i32[B, width] of the True slots of bool[B, S] first, in slot order; their count i32[B])."""
  s = selected.shape[1]
  pos = jnp.arange(s, dtype=jnp.int32)[None, :]
  order = jnp.argsort(jnp.where(selected, pos, s + pos), axis=1)[:, :width].astype(jnp.int32)
  count = jnp.minimum(jnp.sum(selected, axis=1), width).astype(jnp.int32)
  return jnp.where(jnp.arange(width)[None, :] < count[:, None], order, 0), count


def is_incremental(model: VideoModel) -> bool:
  """Whether the family sums over frames, so an exit adds only its new frames (NetVLAD, NeXtVLAD)."""
  return bool(getattr(model.encoder, "sums_over_frames", False))


def top_k_overlap(ids_a: jax.Array, ids_b: jax.Array) -> jax.Array:
  """f32[B]: |A ∩ B| / k for two i32[B, k] sets of class ids."""
  same = jnp.any(ids_a[:, :, None] == ids_b[:, None, :], axis=-1)
  return jnp.mean(same.astype(jnp.float32), axis=-1)


@dataclasses.dataclass(frozen=True)
class ExitPlan:
  """An any-k student (built for k_max frames) and its exit points."""
  model: VideoModel
  exits: Tuple[int, ...]
  k_max: int
  order: str = "coarse_to_fine"
  scorer: Any = None  # the learned order's `sampling.learned.FrameScorer` (its parameters: the student's)

  @property
  def incremental(self) -> bool:
    return is_incremental(self.model)

  def ranks(self, variables, frames: jax.Array, num_frames: jax.Array) -> jax.Array:
    """i32[B, T]: the nested order's ranks of dequantized full frames f32[B, T, D]; the learned order
    scores them with the scorer's parameters in `variables` (`inference.split_selector`)."""
    if self.order != "learned":
      return nested.frame_ranks(frames, num_frames, self.order)
    _, selector = inference.split_selector(variables)
    if self.scorer is None or selector is None:
      raise ValueError("the learned nested order needs the student's scorer and its parameters")
    scores = self.scorer.apply({"params": selector}, frames, num_frames)
    return nested.frame_ranks(frames, num_frames, self.order, scores=scores)

  def view(self, variables, frames: jax.Array, num_frames: jax.Array) -> NestedView:
    """The view of dequantized full frames f32[B, T, D] in the plan's order (`view_from_frames`)."""
    return view_from_frames(frames, num_frames, self.k_max, self.order,
                            ranks=self.ranks(variables, frames, num_frames))

  def exit_frames(self, view: NestedView, e: int):
    """The frames exit e feeds the model: (frames [B, S, D], count i32[B], model).

    Incremental families: the new frames, ranks in [k_{e-1}, k_e) (S = k_e - k_{e-1}); recurrent: all
    k_e frames in time order, at the budget's width (`models.at_budget`)."""
    k = self.exits[e]
    if self.incremental:
      previous = self.exits[e - 1] if e else 0
      indices, count = _slots_where((view.ranks >= previous) & (view.ranks < k), k - previous)
      return rules.gather_frames(view.frames, indices, count), count, self.model
    model, slots = models.at_budget(self.model, k, self.k_max)
    indices, count = _slots_where(view.ranks < k, min(slots, self.k_max))
    frames = rules.gather_frames(view.frames, indices, count)
    if slots > frames.shape[1]:
      frames = jnp.pad(frames, ((0, 0), (0, slots - frames.shape[1]), (0, 0)))
    return frames, count, model

  def exit_step(self, variables, view: NestedView, e: int, carry=None):
    """Exit e's probabilities f32[B, C] and the carried sums for exit e + 1 (None if not incremental)."""
    frames, count, model = self.exit_frames(view, e)
    variables, _ = inference.split_selector(variables)  # a learned order's scorer is not the model's
    rngs = inference.model_rngs(inference.eval_key(0))
    if self.incremental:
      out, sums = model.apply(variables, frames, count, carry, method=VideoModel.accumulate,
                              mutable=["vlad_sums"], rngs=rngs)
      return out.probabilities, sums["vlad_sums"]
    return model.apply(variables, frames, count, train=False, rngs=rngs).probabilities, None

  def outputs(self, variables, view: NestedView) -> List[jax.Array]:
    """Every exit's probabilities, [f32[B, C]] * E (the offline exit curve)."""
    probs, carry = [], None
    for e in range(len(self.exits)):
      p, carry = self.exit_step(variables, view, e, carry)
      probs.append(p)
    return probs

  def frames_read(self, num_frames: np.ndarray, exit_index: np.ndarray) -> np.ndarray:
    """i32[N]: frames the model has read when a video stops at `exit_index`: min(n, k_exit)."""
    return np.minimum(np.asarray(num_frames), np.asarray(self.exits)[np.asarray(exit_index)])


def exit_scores(rule: str, probs: jax.Array, previous: Optional[jax.Array], e: int, num_exits: int,
                gate=None) -> jax.Array:
  """f32[B]: the value compared with the threshold after exit e (stop when >= threshold).

  probs: f32[B, C] at exit e; previous: at exit e - 1 (None at the first exit); gate: an
  `exit_gate.Gate` (rule 'gate')."""
  if rule == "confident":
    return jnp.max(probs, axis=-1)
  if rule == "stable":
    if previous is None:
      return jnp.full(probs.shape[:1], -jnp.inf)
    k = min(TOP_K, probs.shape[-1])
    return top_k_overlap(jax.lax.top_k(probs, k)[1], jax.lax.top_k(previous, k)[1])
  if rule == "gate":
    return gate.score_exit(probs, previous, e, num_exits)
  raise ValueError(f"exit rule {rule!r}: expected one of {specs.EXIT_RULES}")


@dataclasses.dataclass
class WaveResult:
  """`run_waves`'s per-video results: probabilities f32[N, C] at the exit taken, exit_index i32[N],
  frames_read i32[N], and the number of batches each exit ran (the compute actually spent)."""
  probabilities: np.ndarray
  exit_index: np.ndarray
  frames_read: np.ndarray
  batches_per_exit: List[int]


def _take(tree, rows):
  return jax.tree.map(lambda x: x[rows], tree)


def run_waves(plan: ExitPlan, policy: specs.ExitPolicy, variables, frames: np.ndarray, ranks: np.ndarray,
              num_frames: np.ndarray, *, batch_size: int, gate=None, step_cache: Optional[Dict] = None
              ) -> WaveResult:
  """Batched early exit over N videos: every video to the first exit, then only the videos that did
  not stop, compacted into full batches of `batch_size` (the last one padded), exit after exit.

  frames f32[N, k_max, D], ranks i32[N, k_max], num_frames i32[N]: a `NestedView`'s arrays (host or
  device). The carried VLAD sums and the previous exit's probabilities of the surviving videos are
  gathered with them. `step_cache`: a dict the jitted per-exit steps are kept in between calls.
  """
  n_videos = frames.shape[0]
  step_cache = {} if step_cache is None else step_cache
  num_exits = len(plan.exits)

  def step(e):
    key = (e, policy.rule)
    if key not in step_cache:
      def fn(variables, frames, ranks, n, carry, previous):
        view = NestedView(frames, ranks, n)
        probs, carry = plan.exit_step(variables, view, e, carry)
        prev = previous if e else None
        score = exit_scores(policy.rule, probs, prev, e, num_exits, gate) if e < num_exits - 1 else None
        return probs, carry, score
      step_cache[key] = jax.jit(fn)
    return step_cache[key]

  active = np.arange(n_videos)
  carry = previous = None
  final = None
  exit_index = np.full([n_videos], num_exits - 1, np.int32)
  batches_per_exit = []
  for e in range(num_exits):
    if not len(active):
      batches_per_exit.append(0)
      continue
    outs, carries, scores = [], [], []
    batches = -(-len(active) // batch_size)
    batches_per_exit.append(batches)
    for b in range(batches):
      rows = np.arange(b * batch_size, (b + 1) * batch_size)
      real = rows < len(active)
      rows = np.where(real, rows, 0)  # padding rows repeat the first survivor; dropped below
      videos = active[rows]
      c = _take(carry, rows) if carry is not None else None
      p_prev = previous[rows] if previous is not None else None
      probs, new_carry, score = step(e)(variables, frames[videos], ranks[videos], num_frames[videos], c, p_prev)
      keep = np.flatnonzero(real)
      outs.append(np.asarray(probs)[keep])
      if new_carry is not None:
        carries.append(_take(new_carry, keep))
      if score is not None:
        scores.append(np.asarray(score)[keep])
    probs = np.concatenate(outs)
    if final is None:
      final = np.zeros([n_videos, probs.shape[1]], np.float32)
    if e == num_exits - 1:
      final[active] = probs
      break
    stop = np.concatenate(scores) >= policy.threshold
    final[active[stop]] = probs[stop]
    exit_index[active[stop]] = e
    go_on = ~stop
    active = active[go_on]
    carry = jax.tree.map(lambda *xs: jnp.concatenate(xs)[go_on], *carries) if carries else None
    previous = probs[go_on]
  if final is None:  # no videos: [0, C], C from the first exit's output shape
    probs = jax.eval_shape(step(0), variables, frames, ranks, num_frames, None, None)[0]
    final = np.zeros(probs.shape, np.float32)
  return WaveResult(probabilities=final, exit_index=exit_index,
                    frames_read=plan.frames_read(num_frames, exit_index), batches_per_exit=batches_per_exit)


__all__ = ["ExitPlan", "NestedView", "WaveResult",
           "exit_scores", "is_incremental", "run_waves", "top_k_overlap", "view_from_frames"]
