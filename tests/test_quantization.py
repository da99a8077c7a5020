"""Tests of fewframes_jax.data.quantization (no TensorFlow needed)."""
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fewframes_jax
from fewframes_jax.data import quantization


def _reference(u8):
  """The starter's formula in float64: u8 * 4/255 + (4/512 - 2)."""
  return np.asarray(u8, np.float64) * (4.0 / 255.0) + (4.0 / 512.0 - 2.0)


def test_constants_of_the_issue():
  x = np.asarray(quantization.dequantize(np.array([0, 128, 255], np.uint8)))
  np.testing.assert_allclose(x, [-1.9921875, 0.0156556, 2.0078125], atol=1e-7)
  assert x.dtype == np.float32


@pytest.mark.parametrize("jit", [False, True])
def test_every_byte_matches_the_formula_to_1e7(jit):
  u = np.arange(256, dtype=np.uint8).reshape(2, 128, 1)
  fn = jax.jit(quantization.dequantize) if jit else quantization.dequantize
  np.testing.assert_allclose(np.asarray(fn(u)), _reference(u), rtol=0, atol=1e-7)


def test_padding_rows_are_exact_zeros():
  rng = np.random.default_rng(0)
  frames = rng.integers(0, 256, size=(3, 5, 4), dtype=np.uint8)
  num_frames = np.array([0, 2, 5], np.int32)
  x = np.asarray(jax.jit(quantization.dequantize)(frames, num_frames))
  for b, n in enumerate(num_frames):
    np.testing.assert_allclose(x[b, :n], _reference(frames[b, :n]), atol=1e-7)
    assert np.all(x[b, n:] == 0.0) and not np.signbit(x[b, n:]).any()
  # Without num_frames every row is dequantized (byte 0 is -1.99, not 0).
  assert np.all(np.asarray(quantization.dequantize(frames))[0] != 0.0)


def test_output_dtype():
  x = quantization.dequantize(np.full((1, 2, 3), 255, np.uint8), np.array([1]), dtype=jnp.bfloat16)
  assert x.dtype == jnp.bfloat16
  np.testing.assert_array_equal(np.asarray(x, np.float32)[0, 1], 0.0)


def test_quantize_inverts_dequantize():
  u = np.arange(256, dtype=np.uint8)
  np.testing.assert_array_equal(quantization.quantize(_reference(u)), u)
  np.testing.assert_array_equal(quantization.quantize(np.asarray(quantization.dequantize(u))), u)


def test_quantize_rounds_to_nearest_and_clips():
  rng = np.random.default_rng(1)
  x = rng.uniform(-3.0, 3.0, size=1000)
  q = quantization.quantize(x)
  assert q.dtype == np.uint8
  inside = (x > -1.99) & (x < 2.0)
  assert np.abs(_reference(q) - x)[inside].max() <= 2.0 / 255.0 + 1e-6
  assert np.all(q[x < -2.0] == 0) and np.all(q[x > 2.01] == 255)


def test_no_tensorflow_import():
  # The module (and the data package) must not pull TensorFlow in: the trainer dequantizes on device.
  code = ("import sys; import fewframes_jax.data, fewframes_jax.data.quantization; "
          "assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
  subprocess.run([sys.executable, "-c", code], check=True, env=_env_with_repo_on_path())


def _env_with_repo_on_path():
  repo = os.path.dirname(os.path.dirname(os.path.abspath(fewframes_jax.__file__)))
  env = dict(os.environ)
  env["PYTHONPATH"] = os.pathsep.join(p for p in (repo, env.get("PYTHONPATH", "")) if p)
  return env
