"""Pieces every model family shares: the output type, the encoder+head wrapper, frame masks,
per-frame input normalisation, and the two context-gating layers.

Model contract (DESIGN.md): a model maps dequantized frames `f32[B, T, D]` and true lengths
`i32[B]` to a `ModelOutput`. Frames at and after `num_frames` never change the output.

Every model here is a `VideoModel(encoder, head)`:
  * the encoder maps frames to the video representation E (the thing `L_rep` matches) and,
    for recurrent models, per-step states (the things `L_rep^I` matches);
  * the head (classifier) maps E to class probabilities.
The split lets the student reuse the teacher's head (the paper's shared output layer) by calling
`model.apply(teacher_variables, representation, train=..., method="classify")`; `apply_model` is how the
trainer applies one (the new batch statistics returned in training).
"""
import functools
from typing import Any, Optional, Tuple

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

INPUT_NORMS = ("l2", "none", "reverse_whitening")

# TF-slim's batch_norm uses decay 0.999 and epsilon 1e-3. We keep its epsilon but use decay 0.99 so the
# running statistics settle within the few hundred steps of a CPU run; a paper-length run is
# insensitive to the difference.
BN_MOMENTUM = 0.99
BN_EPSILON = 1e-3


def batch_norm(*, train: bool, name: str, axis_name=None) -> nn.BatchNorm:
  """Batch norm with centre and scale, statistics in float32, running averages at eval."""
  return nn.BatchNorm(use_running_average=not train, momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
                      dtype=jnp.float32, name=name, axis_name=axis_name)


@flax.struct.dataclass
class ModelOutput:
  """What every model returns.

  representation: f32[B, E], the video encoding fed to the classifier (E_T / E_S of the paper).
  logits: f32[B, C], the inverse sigmoid of `probabilities` clipped to [1e-6, 1 - 1e-6] (MoE heads
    output a mixture probability, not a logit, so every head is reported the same way).
  probabilities: f32[B, C], per-class probabilities (the paper's P_T / P_S).
  intermediates: f32[B, S, E'] per-step states (recurrent models) or None.
  """
  representation: Array
  logits: Array
  probabilities: Array
  intermediates: Optional[Array] = None


def frame_mask(num_frames: Array, max_frames: int) -> Array:
  """bool[B, T]: True for the real frames t < num_frames[b]."""
  return jnp.arange(max_frames)[None, :] < num_frames[:, None]


def stream_sizes(frames: Array, feature_sizes, *, model: str) -> Tuple[int, ...]:
  """The per-stream widths (rgb[, audio]) of `frames: [B, T, D]`, checked: 1 or 2 streams summing to D.
  `model` names the family in the error."""
  sizes = tuple(int(s) for s in feature_sizes)
  if len(sizes) not in (1, 2):
    raise ValueError(f"{model}: feature_sizes={sizes}: expected 1 or 2 streams (rgb[, audio])")
  if frames.shape[-1] != sum(sizes):
    raise ValueError(f"{model}: frames have {frames.shape[-1]} features, feature_sizes={sizes} "
                     f"sum to {sum(sizes)}")
  return sizes


def probability_logits(probabilities: Array, epsilon: float = 1e-6) -> Array:
  """Inverse sigmoid of f32[B, C] probabilities, clipped to [eps, 1-eps]."""
  p = jnp.clip(probabilities.astype(jnp.float32), epsilon, 1.0 - epsilon)
  return jnp.log(p) - jnp.log1p(-p)


def normalize_frames(frames: Array, num_frames: Array, *, mode: str,
                     whitening_scale: Optional[np.ndarray] = None,
                     whitening_offset: Optional[np.ndarray] = None) -> Array:
  """Per-frame input normalisation, computed in float32. Padding rows stay exact zeros.

  frames: f32[B, T, D] dequantized features (rgb then audio); num_frames: i32[B].
  mode:
    'l2'   : each D-dim frame (rgb and audio jointly) divided by max(||x||, 1e-6), as the YouTube-8M
             starter and WILLOW do (`tf.nn.l2_normalize(x, -1)`).
    'none' : unchanged.
    'reverse_whitening': Lin et al.'s NeXtVLAD input, `(x - offset) * scale`, with `offset` = 4/512 on
             the rgb dims and `scale` = sqrt(PCA eigenvalue) + 1e-4 on the rgb dims (1 on audio); the
             caller builds `whitening_scale`/`whitening_offset` f32[D] from an eigenvalue file.
  """
  if mode not in INPUT_NORMS:
    raise ValueError(f"model.input_norm={mode!r}: expected one of {INPUT_NORMS}")
  x = frames.astype(jnp.float32)
  if mode == "l2":
    squares = jnp.sum(x * x, axis=-1, keepdims=True)
    # sqrt's gradient at 0 is infinite: an all-zero row (padding) would send NaN to whatever produced
    # it (a learned selector trained end to end). The same values, a finite gradient.
    norm = jnp.where(squares > 0, jnp.sqrt(jnp.where(squares > 0, squares, 1.0)), 0.0)
    x = x / jnp.maximum(norm, 1e-6)
  elif mode == "reverse_whitening":
    if whitening_scale is None or whitening_offset is None:
      raise ValueError("input_norm='reverse_whitening' needs model.whitening_eigenvalues (a .npy file)")
    x = (x - jnp.asarray(whitening_offset, jnp.float32)) * jnp.asarray(whitening_scale, jnp.float32)
  mask = frame_mask(num_frames, frames.shape[1])
  return jnp.where(mask[..., None], x, 0.0)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def einsum_f32(subscripts: str, a: Array, b: Array) -> Array:
  """`jnp.einsum(subscripts, a, b)` accumulated in and returned as float32, whatever the input dtype.

  Its backward runs the two transposed products in the inputs' dtype (the float32 cotangent is rounded
  to it first). JAX's own transpose of `preferred_element_type=float32` would multiply the float32
  cotangent with the bfloat16 operand: a mixed-dtype matmul that XLA runs in float32 (TF32 at best on
  a GPU, half the bfloat16 rate). For float32 inputs this is exactly `jnp.einsum`, forward and backward.
  """
  return jnp.einsum(subscripts, a, b, preferred_element_type=jnp.float32)


def _einsum_f32_fwd(subscripts, a, b):
  return einsum_f32(subscripts, a, b), (a, b)


def _einsum_f32_bwd(subscripts, residuals, g):
  a, b = residuals
  g = g.astype(jnp.result_type(a, b))
  (grad_a,) = jax.linear_transpose(lambda a_: jnp.einsum(subscripts, a_, b), a)(g)
  (grad_b,) = jax.linear_transpose(lambda b_: jnp.einsum(subscripts, a, b_), b)(g)
  return grad_a.astype(a.dtype), grad_b.astype(b.dtype)


einsum_f32.defvjp(_einsum_f32_fwd, _einsum_f32_bwd)


def load_whitening(path: str, rgb_size: int, feature_dim: int):
  """Builds Lin et al.'s reverse-whitening `(scale, offset)`, each f32[feature_dim], from a .npy of
  PCA eigenvalues (shape [>= rgb_size] or [>= rgb_size, 1]); audio dims are left unchanged."""
  try:
    eig = np.load(path).reshape(-1).astype(np.float32)
  except (OSError, ValueError) as e:
    raise ValueError(f"model.whitening_eigenvalues: cannot read {path!r}: {e}") from e
  if eig.shape[0] < rgb_size or np.any(eig[:rgb_size] < 0):
    raise ValueError(f"model.whitening_eigenvalues {path!r}: need >= {rgb_size} non-negative values, "
                     f"got shape {eig.shape}")
  scale = np.ones([feature_dim], np.float32)
  offset = np.zeros([feature_dim], np.float32)
  scale[:rgb_size] = np.sqrt(eig[:rgb_size]) + 1e-4
  offset[:rgb_size] = 4.0 / 512.0
  return scale, offset


class ContextGating(nn.Module):
  """WILLOW's context gating: `y = x * sigmoid(BN(x @ W))`, W [E, E] without bias. x: [B, E]."""
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array, *, train: bool) -> Array:
    gates = nn.Dense(x.shape[-1], use_bias=False, dtype=self.dtype, name="gating")(x)
    gates = batch_norm(train=train, name="gating_bn")(gates)
    return x * jax.nn.sigmoid(gates).astype(x.dtype)


class SEContextGating(nn.Module):
  """NeXtVLAD's squeeze-excitation gating: `y = x * sigmoid(W2 relu(BN(W1 x)))`, no biases.

  x: [B, E]; W1 [E, E // reduction], W2 [E // reduction, E].
  """
  reduction: int = 8
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array, *, train: bool) -> Array:
    e = x.shape[-1]
    g = nn.Dense(e // self.reduction, use_bias=False, dtype=self.dtype, name="gating_1")(x)
    g = batch_norm(train=train, name="gating_bn")(g)
    g = nn.relu(g)
    g = nn.Dense(e, use_bias=False, dtype=self.dtype, name="gating_2")(g)
    return x * jax.nn.sigmoid(g.astype(jnp.float32)).astype(x.dtype)


class VideoModel(nn.Module):
  """encoder + head. `encoder(frames, num_frames, train) -> (representation, intermediates|None)`;
  `head(representation, train) -> probabilities f32[B, C]`."""
  encoder: nn.Module
  head: nn.Module

  def __call__(self, frames: Array, num_frames: Array, *, train: bool) -> ModelOutput:
    representation, intermediates = self.encoder(frames, num_frames, train=train)
    return self._output(representation, intermediates, train=train)

  def accumulate(self, frames: Array, num_frames: Array, carry=None) -> ModelOutput:
    """Inference forward of an encoder that sums over frames (NetVLAD, NeXtVLAD: `sums_over_frames`) on
    NEW frames, added to `carry`, the 'vlad_sums' collection of the frames read before (None: none).
    Apply with `mutable=['vlad_sums']` to get the sums of all frames read so far (early exit)."""
    representation, intermediates = self.encoder(frames, num_frames, train=False,
                                                 carry=None if carry is None else carry["encoder"])
    return self._output(representation, intermediates, train=False)

  def _output(self, representation: Array, intermediates: Optional[Array], *, train: bool) -> ModelOutput:
    probabilities = self.head(representation, train=train)
    return ModelOutput(representation=representation.astype(jnp.float32),
                       logits=probability_logits(probabilities),
                       probabilities=probabilities.astype(jnp.float32),
                       intermediates=None if intermediates is None else intermediates.astype(jnp.float32))

  def encode(self, frames: Array, num_frames: Array, *, train: bool):
    """-> (representation f32[B, E], intermediates f32[B, S, E'] | None)."""
    representation, intermediates = self.encoder(frames, num_frames, train=train)
    return (representation.astype(jnp.float32),
            None if intermediates is None else intermediates.astype(jnp.float32))

  def classify(self, representation: Array, *, train: bool) -> Array:
    """-> probabilities f32[B, C]."""
    return self.head(representation, train=train).astype(jnp.float32)


def apply_model(model: nn.Module, variables, *args, train: bool, rng=None, method=None):
  """model.apply -> (output, new batch_stats) in train mode, (output, None) in inference mode.

  `rng` feeds the 'dropout' and 'frames' streams; in inference mode it may be omitted only for
  models that draw nothing (every caller here passes one)."""
  rngs = {"dropout": rng, "frames": rng} if rng is not None else None
  if train:
    out, updates = model.apply(variables, *args, train=True, rngs=rngs, method=method,
                               mutable=["batch_stats"])
    return out, updates.get("batch_stats", {})
  return model.apply(variables, *args, train=False, rngs=rngs, method=method), None


def updated_batch_stats(old: Any, new: Any) -> Any:
  """Batch stats after a partial apply (e.g. the encoder only): the subtrees it updated replace the old."""
  if not new:
    return old
  merged = dict(old)
  merged.update(new)
  return merged
