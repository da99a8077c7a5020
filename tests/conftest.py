"""Test set-up: every test runs on the CPU backend, with XLA's CPU compiler set for compile time and one
JAX compilation cache per session; `-n auto` starts one xdist worker more than there are CPUs."""
import os

os.environ["JAX_PLATFORMS"] = "cpu"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import tempfile  # noqa: E402

# The bundled dataset is generated once per test session into a private cache (subprocesses inherit it).
if "FEWFRAMES_CACHE" not in os.environ:
  os.environ["FEWFRAMES_CACHE"] = tempfile.mkdtemp(prefix="fewframes_test_cache_")
# Compile time dominates the tests on 2 cores, and many compile the same tiny programs (in several
# tests, both xdist workers and the processes they start): JAX's persistent compilation cache, in the
# session's private cache (where `paper.sweep.default_jax_cache_dir` puts it), serves every repeat.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(os.environ["FEWFRAMES_CACHE"], "jax_compilation"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

# XLA's CPU compiler, set for compile time (about a third less per program here; tests run tiny programs
# whose compile time is most of the suite): the older elemental fusion emitters and the plain scheduler.
# Numerics stay those of unfused float32 code (the tests' tolerances are unchanged). XLA aborts on a flag it
# does not know, so they are set only for the jaxlib and TensorFlow (whose XLA reads XLA_FLAGS too)
# releases they were checked with; subprocesses inherit them (tests/runs_testlib.py keeps them).
COMPILE_TIME_XLA_FLAGS = ("--xla_cpu_use_fusion_emitters=false "
                          "--xla_cpu_enable_concurrency_optimized_scheduler=false "
                          "--xla_cpu_copy_insertion_use_region_analysis=false")
CHECKED_RELEASES = {"jaxlib": ("0.10.",), "tensorflow-cpu": ("2.21.",), "tensorflow": ("2.21.",)}


def _flags_are_known() -> bool:
  from importlib import metadata  # pylint: disable=g-import-not-at-top
  for package, prefixes in CHECKED_RELEASES.items():
    try:
      version = metadata.version(package)
    except metadata.PackageNotFoundError:
      continue
    if not version.startswith(prefixes):
      return False
  return True


if COMPILE_TIME_XLA_FLAGS not in os.environ.get("XLA_FLAGS", "") and _flags_are_known():
  os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {COMPILE_TIME_XLA_FLAGS}".strip()

import pytest  # noqa: E402


def pytest_xdist_auto_num_workers(config):  # pylint: disable=unused-argument
  """`-n auto`: one worker more than the CPUs this process may use. A worker often waits (on the worker
  processes a test starts, on TensorFlow's file reads), so one more keeps both CPUs of a 2-core machine
  busy: measured back to back there, 690 tests in 7 min 47 s with 3 workers against 8 min 19 s with 2."""
  return len(os.sched_getaffinity(0)) + 1 if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1) + 1


@pytest.fixture(scope="module")
def fast_compile():
  """For tests about semantics, not the numerics of optimised code: XLA compiles with most
  optimisations off (compile time dominates small tests on 2 cores). Restored afterwards."""
  import jax  # pylint: disable=g-import-not-at-top
  previous = jax.config.values["jax_disable_most_optimizations"]
  jax.config.update("jax_disable_most_optimizations", True)
  yield
  jax.config.update("jax_disable_most_optimizations", previous)
