"""The YouTube-8M feature quantization: uint8 bytes <-> floats in about [-2, 2].

`dequantize` is the starter code's `Dequantize(feat, max_quantized_value=2, min_quantized_value=-2)`
([G] utils.py): `x = u8 * (4/255) + (4/512 - 2)`. The bias is half a bin above -2, so byte 0 gives
-1.9921875 and byte 255 gives 2.0078125. The starter reader zero-pads *after* dequantizing, so padding
rows are exact zeros; `dequantize(frames, num_frames)` reproduces that.

The starter evaluates `u8 * f32(4/255) + bias` in float32, which is up to 3e-7 off the exact formula
(1.2e-7 at byte 128). We split the scale into `_SCALE_HI` (15 significant bits, so `u8 * _SCALE_HI +
BIAS` is exact in float32) and the small rest `_SCALE_LO`; the one rounding left puts every byte within
6e-8 of the exact value (and within one float32 ulp of the starter's), jitted or not.

This module needs no TensorFlow (the trainer dequantizes on the device), and JAX only inside
`dequantize`: the data writers (`synthetic.py`) quantize with numpy alone and start faster without it.
"""
import numpy as np

MAX_QUANTIZED_VALUE = 2.0
MIN_QUANTIZED_VALUE = -2.0
SCALE = (MAX_QUANTIZED_VALUE - MIN_QUANTIZED_VALUE) / 255.0  # 4/255, one quantisation bin
BIAS = (MAX_QUANTIZED_VALUE - MIN_QUANTIZED_VALUE) / 512.0 + MIN_QUANTIZED_VALUE  # 4/512 - 2
_SCALE_HI = float((np.array(SCALE, np.float32).view(np.uint32) & np.uint32(0xFFFFFE00)).view(np.float32))
_SCALE_LO = SCALE - _SCALE_HI


def dequantize(frames_u8, num_frames=None, *, dtype=np.float32):
  """Maps uint8 features to floats exactly as the YT-8M starter code does.

  Args:
    frames_u8: uint8[..., T, D] (any leading batch dims; usually [B, T, D]).
    num_frames: optional int[...] true lengths (the leading dims of `frames_u8`); rows t >= num_frames
      become exact zeros.
    dtype: output dtype (the arithmetic is float32).

  Returns:
    A jax array dtype[..., T, D].
  """
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  x = affine(jnp.asarray(frames_u8).astype(jnp.float32))
  if num_frames is not None:
    t = jnp.arange(x.shape[-2])
    mask = t < jnp.asarray(num_frames)[..., None]
    x = jnp.where(mask[..., None], x, jnp.float32(0))
  return x.astype(dtype)


def affine(u):
  """The dequantization formula on bytes already cast to float32, for any array type with * and + (JAX,
  TensorFlow, numpy): `dequantize` on the device and `host_scorer` in TensorFlow apply the same float32
  operations in the same order, so they give the same values."""
  return (u * np.float32(_SCALE_HI) + np.float32(BIAS)) + u * np.float32(_SCALE_LO)


def quantize(x: np.ndarray) -> np.ndarray:
  """The inverse of `dequantize` on the host: the nearest byte, clipped to [0, 255].

  Args:
    x: float[...] values (about [-2, 2]; values outside are clipped).

  Returns:
    uint8[...] with `dequantize(quantize(x))` within half a bin (2/255) of `x` inside the range.
  """
  q = np.rint((np.asarray(x, np.float32) - np.float32(BIAS)) * np.float32(1.0 / SCALE))
  return np.clip(q, 0, 255).astype(np.uint8)
