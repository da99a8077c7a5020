"""The package's import layers (docs/design.md): no module imports a module of a higher layer, imports
inside functions included, and there is no import circle."""
import ast
import os

import pytest

PACKAGE = "fewframes_jax"
ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), PACKAGE)

# Bottom to top; a module may import its own layer's modules (without a circle) and those below.
LAYERS = (
    ("errors", "cli", "specs", "parallel"),
    ("models", "metrics", "sampling", "losses"),
    ("data",),
    ("inference",),
    ("checkpoint",),
    ("run_config",),
    ("exits",),
    ("evaluation",),
    ("train",),
    ("serve",),
    ("benchmark", "paper", "main"),
)
MAX_ROOT_MODULES = 10


def _modules():
  """{dotted module name: file path} of every module of the package."""
  out = {}
  for folder, _, files in os.walk(ROOT):
    for f in files:
      if f.endswith(".py"):
        rel = os.path.relpath(os.path.join(folder, f), os.path.dirname(ROOT))[:-3].replace(os.sep, ".")
        out[rel[:-len(".__init__")] if rel.endswith(".__init__") else rel] = os.path.join(folder, f)
  return out


def _imports(name, path, modules):
  """The package modules `name` imports anywhere in its file (functions included)."""
  package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
  found = set()
  for node in ast.walk(ast.parse(open(path, encoding="utf-8").read(), path)):
    if isinstance(node, ast.Import):
      found.update(a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        parts = package.split(".")
        base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
      for a in node.names:
        found.add(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base)
  return {m for m in found if m in modules and m != name}


def _layer(module):
  top = module.split(".")[1] if "." in module else ""
  for i, layer in enumerate(LAYERS):
    if top in layer:
      return i
  return None


@pytest.fixture(scope="module")
def graph():
  modules = _modules()
  return {name: _imports(name, path, modules) for name, path in modules.items()}


def test_every_module_has_a_layer(graph):
  assert [m for m in graph if m != PACKAGE and _layer(m) is None] == []


def test_no_module_imports_a_higher_layer(graph):
  upward = [f"{m} -> {d}" for m, deps in graph.items() if m != PACKAGE for d in deps
            if d != PACKAGE and _layer(d) > _layer(m)]
  assert upward == []


def test_no_import_circle(graph):
  state, circles = {}, []

  def visit(m, stack):
    state[m] = "open"
    for d in sorted(graph[m]):
      if state.get(d) == "open":
        circles.append(stack[stack.index(d):] + [d])
      elif d not in state:
        visit(d, stack + [d])
    state[m] = "done"

  for m in sorted(graph):
    if m not in state:
      visit(m, [m])
  assert circles == []


def test_the_root_keeps_few_modules():
  root = [f for f in os.listdir(ROOT) if f.endswith(".py") and f != "__init__.py"]
  assert len(root) <= MAX_ROOT_MODULES, sorted(root)


def test_the_checker_sees_an_upward_import(tmp_path):
  """The checker itself: an import of a higher layer inside a function is found."""
  path = tmp_path / "m.py"
  path.write_text("def f():\n  from fewframes_jax.train import loop\n")
  modules = {"fewframes_jax.models.m": str(path), "fewframes_jax.train.loop": ""}
  deps = _imports("fewframes_jax.models.m", str(path), modules)
  assert deps == {"fewframes_jax.train.loop"} and _layer("fewframes_jax.train.loop") > _layer("fewframes_jax.models.m")
