"""What `pip install .` installs: the package `fewframes_jax` alone (the repository's `configs` and
`launch` inside it), and the documented commands run from that layout, outside any clone.

The install's file tree is setuptools' `build_py` output for a copy of the repository (what a wheel of
this pure-Python project holds besides its metadata), built offline with the setuptools at hand.
"""
import os
import shutil
import subprocess
import sys

import pytest

from fewframes_jax import cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCES = ("pyproject.toml", "README.md", "fewframes_jax", "configs", "launch")
# Repository folder -> where its modules install.
INSTALLED_AS = {"fewframes_jax": "fewframes_jax", "configs": "fewframes_jax/configs",
                "launch": "fewframes_jax/launch"}


@pytest.fixture(scope="module")
def install(tmp_path_factory):
  """(build_lib, egg_info): the installed file tree and the metadata folder of a copy of the repository."""
  pytest.importorskip("setuptools")
  root = tmp_path_factory.mktemp("packaging")
  source = root / "source"
  for name in SOURCES:
    src, dst = os.path.join(REPO, name), source / name
    if os.path.isdir(src):
      shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    else:
      source.mkdir(exist_ok=True)
      shutil.copy(src, dst)
  build_lib = root / "site-packages"
  result = subprocess.run([sys.executable, "-c", "import setuptools; setuptools.setup()", "egg_info",
                           "build_py", "--build-lib", str(build_lib)], cwd=source, capture_output=True,
                          text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  return build_lib, source / "fewframes_jax.egg-info"


def _package_modules(folder: str):
  """Relative paths of the .py files of every package (a folder with __init__.py) under `folder`."""
  found = set()
  for dirpath, dirnames, filenames in os.walk(folder):
    dirnames[:] = [d for d in dirnames if d != "__pycache__"]
    if "__init__.py" in filenames:
      rel = os.path.relpath(dirpath, folder)
      found.update(os.path.normpath(os.path.join(rel, f)) for f in filenames if f.endswith(".py"))
  return found


def test_only_fewframes_jax_is_installed_at_the_top(install):
  build_lib, egg_info = install
  assert sorted(os.listdir(build_lib)) == ["fewframes_jax"]
  assert (egg_info / "top_level.txt").read_text().split() == ["fewframes_jax"]


def test_every_module_of_the_repository_is_installed(install):
  """Every package folder of the repository installs whole, where `INSTALLED_AS` says (a new
  subpackage missing from pyproject.toml's list fails here)."""
  build_lib, _ = install
  for folder, target in INSTALLED_AS.items():
    expected = _package_modules(os.path.join(REPO, folder))
    installed = _package_modules(os.path.join(build_lib, target))
    if folder == "fewframes_jax":  # the mapped folders are checked on their own
      installed = {p for p in installed if p.split(os.sep)[0] not in ("configs", "launch")}
    assert expected and installed == expected, (folder, sorted(expected ^ installed))


def _run_installed(build_lib, cwd, *args):
  """`python -m <args>` with the installed tree first on the path, from `cwd` (no clone there); prints,
  at exit, whether a top-level `configs` module was ever imported."""
  probe = ("import atexit, runpy, sys; "
           "atexit.register(lambda: print('top-level configs imported:', 'configs' in sys.modules)); "
           f"sys.argv = {list(args[1:])!r}; sys.argv.insert(0, {args[0]!r}); "
           f"runpy.run_module({args[0]!r}, run_name='__main__', alter_sys=True)")
  env = dict(os.environ, PYTHONPATH=str(build_lib), JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, "-c", probe], cwd=cwd, env=env, capture_output=True, text=True,
                        timeout=300, check=False)


def test_main_command_resolves_the_installed_config(install, tmp_path):
  """The README's command, spelled as documented (`--config=configs/...`), run outside the clone: the
  config file is the installed one, and the library never imports a top-level `configs`."""
  build_lib, _ = install
  result = _run_installed(build_lib, tmp_path, "fewframes_jax.main", "--config=configs/nextvlad_k10.py:tiny",
                          "--mode=flops")
  assert result.returncode == 0, result.stderr[-3000:]
  assert "nextvlad student" in result.stdout
  assert "top-level configs imported: False" in result.stdout


def test_launch_command_runs_from_the_install(install, tmp_path):
  """From an install a launch script is `python -m fewframes_jax.launch.<script>`."""
  build_lib, _ = install
  result = _run_installed(build_lib, tmp_path, "fewframes_jax.launch.paper_tables", "--help")
  assert result.returncode == 0, result.stderr[-3000:]
  assert "--preset" in result.stdout + result.stderr


def test_resolve_config_path(tmp_path, monkeypatch):
  """A path that exists is kept; `configs/<file>.py` that does not exist in the working folder is the
  installed file, with its argument; anything else is left for config_flags to report."""
  monkeypatch.chdir(tmp_path)
  installed = os.path.join(cli.installed_configs(), "nextvlad_k10.py")
  assert os.path.isfile(installed)
  assert cli.resolve_config_path("configs/nextvlad_k10.py:tiny,k=4") == installed + ":tiny,k=4"
  assert cli.resolve_config_path("./configs/nextvlad_k10.py") == installed
  assert cli.resolve_config_path("configs/no_such.py:cpu") == "configs/no_such.py:cpu"
  assert cli.resolve_config_path("elsewhere/nextvlad_k10.py") == "elsewhere/nextvlad_k10.py"
  (tmp_path / "configs").mkdir()
  (tmp_path / "configs" / "nextvlad_k10.py").write_text("# the user's own\n")
  assert cli.resolve_config_path("configs/nextvlad_k10.py:tiny") == "configs/nextvlad_k10.py:tiny"
  assert cli.resolve_config_args(["prog", "--config", "configs/hrnn.py:k=10", "--config.seed=1"]) == [
      "prog", "--config", os.path.join(cli.installed_configs(), "hrnn.py") + ":k=10", "--config.seed=1"]
