"""records.tensorflow(): TensorFlow's C++ start-up lines hidden, everything else passed on."""
import os
import subprocess
import sys
import textwrap

import pytest

IMPORT = "from fewframes_jax.data import records; records.tensorflow(); print('imported')"


def python(code, *, level, pythonpath=()):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=str(level))
  env["PYTHONPATH"] = os.pathsep.join([*pythonpath, os.getcwd(), env.get("PYTHONPATH", "")])
  return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)


def test_real_tensorflow_starts_without_a_line_on_stderr():
  proc = python(IMPORT, level=2)
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.strip() == "imported"
  assert proc.stderr == ""


@pytest.fixture(scope="module")
def fake_tensorflow(tmp_path_factory):
  """A `tensorflow` package that writes C++-style lines to file descriptor 2 while it is imported, and
  fails its import when FAKE_TF_FAIL is set."""
  root = tmp_path_factory.mktemp("fake_tf")
  (root / "tensorflow").mkdir()
  (root / "tensorflow" / "__init__.py").write_text(textwrap.dedent("""\
      import os
      os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n"
                  b"I0000 00:00:1796532318.207408    2870 port.cc:153] oneDNN custom operations are on.\\n"
                  b"W0000 00:00:1796532318.207408    2870 cpu_feature_guard.cc:227] optimized for\\n"
                  b"To enable the following instructions: AVX2, in other operations, rebuild\\n"
                  b"E0000 00:00:1796532318.207408    2870 cuda_platform.cc:52] failed call to cuInit\\n"
                  b"something else entirely\\n")
      if os.environ.get("FAKE_TF_FAIL"):
          raise ImportError("fake TensorFlow is broken")
      class _Config:
          def set_visible_devices(self, devices, kind):
              pass
      config = _Config()
      """))
  return str(root)


@pytest.mark.parametrize("level, kept", [
    (1, ["E0000 00:00:1796532318.207408    2870 cuda_platform.cc:52] failed call to cuInit",
         "something else entirely"]),
    (3, ["something else entirely"]),
])
def test_start_up_lines_are_dropped_and_the_rest_passed_on(fake_tensorflow, level, kept):
  proc = python(IMPORT, level=level, pythonpath=[fake_tensorflow])
  assert proc.returncode == 0, proc.stderr
  assert proc.stderr.splitlines() == kept


def test_level_0_shows_every_line(fake_tensorflow):
  proc = python(IMPORT, level=0, pythonpath=[fake_tensorflow])
  assert proc.returncode == 0, proc.stderr
  assert len(proc.stderr.splitlines()) == 6


def test_a_failed_import_shows_everything_it_printed(fake_tensorflow):
  os.environ["FAKE_TF_FAIL"] = "1"
  try:
    proc = python(IMPORT, level=2, pythonpath=[fake_tensorflow])
  finally:
    del os.environ["FAKE_TF_FAIL"]
  assert proc.returncode == 1
  assert "oneDNN custom operations" in proc.stderr and "fake TensorFlow is broken" in proc.stderr
