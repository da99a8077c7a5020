"""NeXtVLAD (Lin et al., ECCV-W 2018; [L] linrongc/youtube-8m `nextvlad.py`, `NeXtVLADModel`).

Encoder of [L]'s single-model script (`--groups=8 --nextvlad_cluster_size=128 --expansion=2
--nextvlad_hidden_size=2048 --gating_reduction=8 --drop_rate=0.5`):

  frames f32[B, T, 1152] -> normalize_frames ('none' by default, see below); no input batch norm
  -> video NeXtVLAD(1024, K, G) | audio NeXtVLAD(128, K/2, G/2)   (each: intra-L2, then `vlad_bn`)
  -> concat (36,864-d at paper size) -> dropout 0.5 (train only, rng 'dropout')
  -> Dense(hidden, no bias) -> batch norm (no ReLU) -> SEContextGating(reduction)
  -> representation [B, hidden] (fed to the logistic head).

Notes:
* The ReLU after the hidden batch norm was removed in [L] commit 3260ed8 (2018-09-02), after the
  competition; we follow the current code (no ReLU).
* Input normalisation: [L] applies a "reverse whitening" with PCA eigenvalues (`yt8m_pca/eigenvals.npy`)
  that are not shipped with the data, so the default here is 'none' (raw dequantized features). Set
  `model.input_norm='reverse_whitening'` and `model.whitening_eigenvalues=<.npy>` to reproduce [L].
* Batch norm over per-frame cluster logits uses only real frames (masked); the batch norms over per-video
  vectors (`vlad_bn`, hidden, gating) are over the batch, as in [L].
* Initialisers follow [L]'s `slim.variance_scaling_initializer()` (He normal, fan-in) for every weight.
"""
from typing import Any, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from fewframes_jax.models.common import (SEContextGating, batch_norm, frame_mask, normalize_frames,
                                         stream_sizes)
from fewframes_jax.models.netvlad import (carried_sums, frame_batch_norm, l2_normalize, residuals_from_sums,
                                          vlad_sums)

Array = jax.Array

# slim.variance_scaling_initializer(): factor 2, fan-in, truncated normal.
_he_normal = nn.initializers.variance_scaling(2.0, "fan_in", "truncated_normal")


class NeXtVLAD(nn.Module):
  """One NeXtVLAD stream.

  x_dot = x W_e + b_e                      (expansion to lambda*N)
  alpha = sigmoid(x_dot W_a + b_a) * mask  [B, T, G]
  a     = softmax_K(BN(x_dot W_c)) * alpha  [B, T, G, K]  (W_c [lambda*N, G*K] without bias)
  x~    = x_dot reshaped to [B, T*G, lambda*N/G]
  vlad  = a^T x~ - (sum a) c,  c [lambda*N/G, K];  L2 over lambda*N/G per cluster;
  flatten d-major to K*lambda*N/G; `vlad_bn` (no global L2).
  """
  feature_size: int
  cluster_size: int
  groups: int
  expansion: int = 2
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array, mask: Array, *, train: bool, carry=None) -> Array:
    """x: [B, T, N]; mask: bool[B, T] -> f32[B, K * lambda*N / G].
    carry: the sums of frames read before (early exit, see `netvlad.carried_sums`), or None."""
    n, k, g = self.feature_size, self.cluster_size, self.groups
    if x.shape[-1] != n:
      raise ValueError(f"NeXtVLAD: frames have {x.shape[-1]} features, expected feature_size={n}")
    wide = self.expansion * n
    if g < 1 or wide % g:
      raise ValueError(f"NeXtVLAD: expansion*feature_size={wide} is not divisible by groups={g}")
    d = wide // g
    batch, frames = x.shape[:2]
    x_dot = nn.Dense(wide, dtype=self.dtype, kernel_init=_he_normal, name="expansion")(x)
    attention = nn.Dense(g, dtype=self.dtype, kernel_init=_he_normal, name="attention")(x_dot)
    attention = jax.nn.sigmoid(attention.astype(jnp.float32)) * mask[..., None]
    logits = nn.Dense(g * k, use_bias=False, dtype=self.dtype, kernel_init=_he_normal,
                      name="cluster_weights")(x_dot)
    logits = frame_batch_norm(logits, mask, train=train, name="cluster_bn")
    assignments = jax.nn.softmax(logits.reshape(batch, frames, g, k), axis=-1) * attention[..., None]
    centres = self.param("centres", _he_normal, (d, k), jnp.float32)
    sums = vlad_sums(assignments.reshape(batch, frames * g, k), x_dot.reshape(batch, frames * g, d),
                     dtype=self.dtype)
    vlad = residuals_from_sums(carried_sums(self, sums, carry), centres)
    vlad = l2_normalize(vlad, axis=1)
    vlad = vlad.reshape(batch, d * k)
    return batch_norm(train=train, name="vlad_bn")(vlad)


class NeXtVLADEncoder(nn.Module):
  """Encoder of [L]'s `NeXtVLADModel`.

  feature_sizes: per-stream widths, rgb first; the audio branch uses K // 2 clusters and G // 2 groups.
  One stream -> only the video branch.
  Call: (frames f32[B, T, D], num_frames i32[B], *, train, carry=None) -> (representation [B, hidden] in
  `dtype`, None). `carry`: the 'vlad_sums' of the frames read before (early exit; inference only).
  """
  sums_over_frames = True  # the representation is a function of sums over frames (early exit)
  feature_sizes: Sequence[int] = (1024, 128)
  cluster_size: int = 128
  hidden_size: int = 2048
  groups: int = 8
  expansion: int = 2
  gating_reduction: int = 8
  dropout: float = 0.5
  input_norm: str = "none"
  whitening: Optional[Tuple[Any, Any]] = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, frames: Array, num_frames: Array, *, train: bool, carry=None):
    sizes = stream_sizes(frames, self.feature_sizes, model="nextvlad")
    carry = carry or {}
    if len(sizes) == 2 and (self.cluster_size < 2 or self.groups < 2):
      raise ValueError(f"nextvlad: cluster_size={self.cluster_size}, groups={self.groups}: the audio "
                       "branch needs cluster_size // 2 >= 1 and groups // 2 >= 1")
    scale, offset = self.whitening if self.whitening is not None else (None, None)
    x = normalize_frames(frames, num_frames, mode=self.input_norm, whitening_scale=scale,
                         whitening_offset=offset)
    mask = frame_mask(num_frames, x.shape[1])

    vlads = [NeXtVLAD(sizes[0], self.cluster_size, self.groups, self.expansion, dtype=self.dtype,
                      name="video_vlad")(x[..., :sizes[0]], mask, train=train, carry=carry.get("video_vlad"))]
    if len(sizes) == 2:
      vlads.append(NeXtVLAD(sizes[1], self.cluster_size // 2, self.groups // 2, self.expansion,
                            dtype=self.dtype, name="audio_vlad")(x[..., sizes[0]:], mask, train=train,
                                                                 carry=carry.get("audio_vlad")))
    vlad = jnp.concatenate(vlads, axis=-1)
    vlad = nn.Dropout(self.dropout, deterministic=not train, name="dropout")(vlad)

    hidden = nn.Dense(self.hidden_size, use_bias=False, dtype=self.dtype, kernel_init=_he_normal,
                      name="hidden")(vlad)
    hidden = batch_norm(train=train, name="hidden_bn")(hidden)
    representation = SEContextGating(reduction=self.gating_reduction, dtype=self.dtype,
                                     name="context_gating")(hidden.astype(self.dtype), train=train)
    return representation, None
