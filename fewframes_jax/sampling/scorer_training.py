"""How a learned frame scorer (`learned.FrameScorer`) learns from the frozen teacher.

`student.selector.train`:
  rank        distilled from the teacher (SOSampler's recipe with the teacher as the frame judge): per
              step, `frames_per_video` real frames of each video are drawn; the frozen teacher classifies
              each of them ALONE (a one-frame video), and the frame's target is how well that prediction
              agrees with the video's labels, the mean log-probability of its true classes
                  y_t = sum_c labels_c * log p_teacher(c | frame t) / max(1, sum_c labels_c).
              The scorer is fitted to rank the drawn frames by y with a pairwise logistic (RankNet) loss,
              each pair weighted by tanh(|y_i - y_j|) (pairs of near-equal targets carry little). The
              student sees the scorer's hard top-k and sends no gradient to it.
  labels      the same ranking, judged by the labels instead of a teacher: a frame judge (a linear
              classifier of one frame, sigmoid per class, `judge_params` under `JUDGE_KEY` in the student's
              parameters) learns the video labels from the drawn frames (multiple-instance: a label says some
              frame shows the class, a missing label that no frame does: `label_targets`), and the frame's
              target is the judge's `label_surprise`: for the true class it shows best, its log-probability
              above the video's average frame's. A frame the judge cannot tell from the frames of other
              classes (an intro, a fade, a title card that every class shares) gets the class prior, below
              the video's average, however unusual it is within its video; a frame of a short event gets
              more than a frame of a label shown all through the video (which any frame shows). Needs no
              teacher (works in every mode), and is not bounded by the teacher's single-frame judgement.
  end_to_end  no target: the student's own loss (its distillation loss in serial or parallel mode, CE
              alone for a student_only baseline) reaches the scores through the perturbed top-k
              (`learned.select_learned(differentiable=True)`).

Cost: `rank` targets cost one teacher forward per drawn frame (B * frames_per_video one-frame videos per
step); `labels` one judge forward per drawn frame (2 * D * C FLOPs each). Nothing at inference: the judge
is dropped from the student's variables there (`inference.network_variables`).
"""
import math
from typing import Any, Dict, NamedTuple, Tuple

import jax
import jax.numpy as jnp

from fewframes_jax.models.common import frame_mask

JUDGE_KEY = "frame_judge"  # the `labels` judge's parameters in the student's parameter tree (training only)


class Draw(NamedTuple):
  """The frames one step judges: positions i32[B, m], valid bool[B, m], frames f32[B, m, D]."""
  positions: jax.Array
  valid: jax.Array
  frames: jax.Array


def draw_frames(rng: jax.Array, num_frames: jax.Array, max_frames: int, m: int) -> Tuple[jax.Array, jax.Array]:
  """m distinct real frames per video, drawn uniformly without replacement.
  -> (positions i32[B, m], valid bool[B, m]); a video of n < m frames has m - n invalid slots (position 0),
  m > max_frames included."""
  real = frame_mask(num_frames, max_frames)
  keys = jnp.where(real, jax.random.uniform(rng, real.shape), 2.0)  # padding sorts last
  positions = jnp.argsort(keys, axis=1)[:, :m].astype(jnp.int32)
  positions = jnp.pad(positions, ((0, 0), (0, m - positions.shape[1])))  # m > max_frames: invalid slots
  valid = jnp.arange(m)[None, :] < jnp.minimum(num_frames, m)[:, None]
  return jnp.where(valid, positions, 0), valid


def single_frame_input_length(model: Any) -> int:
  """The fewest frame slots `model` accepts (an H-RNN needs one slot per block: its `num_blocks`)."""
  encoder = getattr(model, "encoder", None)
  return max(1, int(getattr(encoder, "num_blocks", 1) or 1))


def single_frame_probabilities(teacher_model, teacher_variables: Dict[str, Any], frames: jax.Array,
                               rng: jax.Array) -> jax.Array:
  """The teacher's eval-mode probabilities of each frame alone. frames f32[B, m, D] -> f32[B, m, C].

  Each frame is a one-frame video in the model's shortest input (`single_frame_input_length` slots,
  the rest zero padding, num_frames = 1): the model contract makes padding irrelevant, so this is the
  teacher's prediction from that frame alone."""
  b, m, d = frames.shape
  slots = single_frame_input_length(teacher_model)
  x = jnp.zeros([b * m, slots, d], frames.dtype).at[:, 0].set(frames.reshape(b * m, d))
  out = teacher_model.apply(teacher_variables, x, jnp.ones([b * m], jnp.int32), train=False,
                            rngs={"frames": rng, "dropout": rng})
  return out.probabilities.reshape(b, m, -1)


def label_agreement(probabilities: jax.Array, labels: jax.Array) -> jax.Array:
  """y f32[B, m]: the mean log-probability of each video's true classes under each frame's prediction.
  probabilities f32[B, m, C]; labels f32[B, C] multi-hot (a video without labels gets 0 everywhere)."""
  log_p = jnp.log(jnp.clip(probabilities.astype(jnp.float32), 1e-6, 1.0))
  positives = jnp.sum(labels, axis=-1)
  return jnp.einsum("bmc,bc->bm", log_p, labels) / jnp.maximum(positives, 1.0)[:, None]


def label_surprise(probabilities: jax.Array, labels: jax.Array, valid: jax.Array) -> jax.Array:
  """y f32[B, m]: how much more each frame says of its video's best-shown true class than the video's
  average frame does, max over the true classes c of log p(c | frame) - mean over the valid frames of
  log p(c | frame'). probabilities f32[B, m, C]; labels f32[B, C] multi-hot; valid bool[B, m]. 0 for a video
  without labels or valid frames.

  Centering per class makes evidence that is everywhere in a video (a sustained label, which any frame
  shows) worth less than evidence only a few frames carry (a short event), and a frame that shows none of
  the video's labels (an intro, a fade) falls below the video's average; the max keeps one label's rare
  evidence from being averaged away by the video's other labels."""
  log_p = jnp.log(jnp.clip(probabilities.astype(jnp.float32), 1e-6, 1.0))            # [B, m, C]
  w = valid.astype(jnp.float32)[..., None]
  mean = jnp.sum(log_p * w, axis=1, keepdims=True) / jnp.maximum(jnp.sum(w, axis=1, keepdims=True), 1.0)
  centered = jnp.where(labels[:, None, :] > 0, log_p - mean, -jnp.inf)
  best = jnp.max(centered, axis=-1)
  return jnp.where(jnp.isfinite(best) & valid, best, 0.0)


def ranking_loss(scores: jax.Array, targets: jax.Array, valid: jax.Array, weights: jax.Array) -> jax.Array:
  """Pairwise logistic loss of `scores` f32[B, m] ranked by `targets` f32[B, m] (valid bool[B, m]):
  over the pairs with y_i > y_j, softplus(s_j - s_i) weighted by tanh(y_i - y_j), averaged over the pair
  weight of the videos with `weights` f32[B] > 0. 0 when no pair differs."""
  diff_y = targets[:, :, None] - targets[:, None, :]                 # [B, m, m]: y_i - y_j
  diff_s = scores[:, :, None] - scores[:, None, :]
  pair = valid[:, :, None] & valid[:, None, :] & (diff_y > 0)
  w = jnp.where(pair, jnp.tanh(diff_y), 0.0) * weights[:, None, None]
  return jnp.sum(w * jax.nn.softplus(-diff_s)) / jnp.maximum(jnp.sum(w), 1e-12)


def draw(rng: jax.Array, frames: jax.Array, num_frames: jax.Array, m: int) -> Draw:
  """`draw_frames`' m frames per video, with their features ([B, m, D] in the frames' dtype, zeros at invalid
  slots)."""
  positions, valid = draw_frames(rng, num_frames, frames.shape[1], m)
  drawn = jnp.take_along_axis(frames, positions[..., None], axis=1)
  return Draw(positions, valid, jnp.where(valid[..., None], drawn, jnp.zeros([], drawn.dtype)))


def init_judge(rng: jax.Array, feature_dim: int, num_classes: int) -> Dict[str, jax.Array]:
  """The `labels` frame judge: {'kernel': f32[D, C] (LeCun normal), 'bias': f32[C]}, the bias at the
  logit of 1/C (a class prior of that size, so the first steps do not spend themselves on the bias)."""
  kernel = jax.nn.initializers.lecun_normal()(rng, (feature_dim, num_classes), jnp.float32)
  return {"kernel": kernel, "bias": jnp.full([num_classes], -math.log(max(num_classes - 1, 1)), jnp.float32)}


def judge_logits(judge_params: Dict[str, jax.Array], frames: jax.Array) -> jax.Array:
  """f32[..., C]: the judge's per-class logits of each frame alone; frames f32[..., D]."""
  return frames.astype(jnp.float32) @ judge_params["kernel"] + judge_params["bias"]


def label_targets(judge_params: Dict[str, jax.Array], drawn: Draw, labels: jax.Array, weights: jax.Array):
  """The `labels` judge on one step's drawn frames -> ((positions, valid, y f32[B, m]), judge loss).

  y is `label_surprise` of the judge's probabilities (a constant for the scorer: no gradient). The loss,
  which trains the judge, is multiple-instance: a video's label says that at least one of its frames shows
  the class, and its missing labels that none does. Per video, summed over classes (as the student's L_CE):
  for a true class, the binary cross-entropy of the drawn frames' largest logit against 1; for every other
  class, the mean over the valid drawn frames of each frame's cross-entropy against 0. Averaged over the
  videos with `weights` f32[B] > 0 and a valid frame; labels f32[B, C]."""
  logits = judge_logits(judge_params, drawn.frames)                                    # [B, m, C]
  targets = jax.lax.stop_gradient(label_surprise(jax.nn.sigmoid(logits), labels, drawn.valid))
  valid = drawn.valid[..., None]
  positive = labels.astype(jnp.float32) > 0                                             # [B, C]
  top = jnp.max(jnp.where(valid, logits, -jnp.inf), axis=1)                              # [B, C]
  count = jnp.maximum(jnp.sum(drawn.valid, axis=1), 1).astype(jnp.float32)[:, None]
  absent = jnp.sum(jnp.where(valid, jax.nn.softplus(logits), 0.0), axis=1) / count       # [B, C]
  per_video = jnp.sum(jnp.where(positive, jax.nn.softplus(-jnp.where(jnp.isfinite(top), top, 0.0)), absent), -1)
  w = (weights > 0).astype(jnp.float32) * jnp.any(drawn.valid, axis=1).astype(jnp.float32)
  loss = jnp.sum(per_video * w) / jnp.maximum(jnp.sum(w), 1.0)
  return (drawn.positions, drawn.valid, targets), loss


def rank_targets(teacher_model, teacher_variables, frames, num_frames, labels, rng, m: int):
  """The distilled scorer's step targets: (positions i32[B, m], valid bool[B, m], y f32[B, m]), the teacher
  frozen (no gradient)."""
  rng_draw, rng_model = jax.random.split(rng)
  drawn = draw(rng_draw, frames, num_frames, m)
  probs = single_frame_probabilities(teacher_model, teacher_variables, drawn.frames, rng_model)
  return drawn.positions, drawn.valid, jax.lax.stop_gradient(label_agreement(probs, labels))
