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
  end_to_end  no target: the student's own loss (its distillation loss in serial or parallel mode, CE
              alone for a student_only baseline) reaches the scores through the perturbed top-k
              (`learned.select_learned(differentiable=True)`).

Cost: the targets cost one teacher forward per drawn frame (B * frames_per_video one-frame videos per
step); nothing at inference.
"""
from typing import Any, Dict, Tuple

import jax
import jax.numpy as jnp

from fewframes_jax.models.common import frame_mask


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


def ranking_loss(scores: jax.Array, targets: jax.Array, valid: jax.Array, weights: jax.Array) -> jax.Array:
  """Pairwise logistic loss of `scores` f32[B, m] ranked by `targets` f32[B, m] (valid bool[B, m]):
  over the pairs with y_i > y_j, softplus(s_j - s_i) weighted by tanh(y_i - y_j), averaged over the pair
  weight of the videos with `weights` f32[B] > 0. 0 when no pair differs."""
  diff_y = targets[:, :, None] - targets[:, None, :]                 # [B, m, m]: y_i - y_j
  diff_s = scores[:, :, None] - scores[:, None, :]
  pair = valid[:, :, None] & valid[:, None, :] & (diff_y > 0)
  w = jnp.where(pair, jnp.tanh(diff_y), 0.0) * weights[:, None, None]
  return jnp.sum(w * jax.nn.softplus(-diff_s)) / jnp.maximum(jnp.sum(w), 1e-12)


def rank_targets(teacher_model, teacher_variables, frames, num_frames, labels, rng, m: int):
  """The distilled scorer's step targets: (positions i32[B, m], valid bool[B, m], y f32[B, m]), the teacher
  frozen (no gradient)."""
  rng_draw, rng_model = jax.random.split(rng)
  positions, valid = draw_frames(rng_draw, num_frames, frames.shape[1], m)
  drawn = jnp.take_along_axis(frames, positions[..., None], axis=1)
  probs = single_frame_probabilities(teacher_model, teacher_variables, drawn, rng_model)
  return positions, valid, jax.lax.stop_gradient(label_agreement(probs, labels))
