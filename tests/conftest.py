"""Test set-up: every test runs on the CPU backend, with a fixed, small thread budget."""
import os

os.environ["JAX_PLATFORMS"] = "cpu"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import tempfile  # noqa: E402

# The bundled dataset is generated once per test session into a private cache (subprocesses inherit it).
if "FEWFRAMES_CACHE" not in os.environ:
  os.environ["FEWFRAMES_CACHE"] = tempfile.mkdtemp(prefix="fewframes_test_cache_")

import pytest  # noqa: E402


@pytest.fixture(scope="module")
def fast_compile():
  """For tests about semantics, not the numerics of optimised code: XLA compiles with most
  optimisations off (compile time dominates small tests on 2 cores). Restored afterwards."""
  import jax  # pylint: disable=g-import-not-at-top
  previous = jax.config.values["jax_disable_most_optimizations"]
  jax.config.update("jax_disable_most_optimizations", True)
  yield
  jax.config.update("jax_disable_most_optimizations", previous)
