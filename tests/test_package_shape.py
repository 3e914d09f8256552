"""The package's shape: no import cycle between jaxdr modules, ops below the models, no module
over ~450 lines.

Imports are read statically (every ``import``/``from`` in a module, function-level ones too),
so a cycle hidden behind a deferred import is still one.
"""
import ast
import os

import pytest

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "jaxdr")
MAX_LINES = 450


def _modules():
  out = {}
  for folder, _, files in os.walk(ROOT):
    for f in files:
      if f.endswith(".py"):
        path = os.path.join(folder, f)
        rel = os.path.relpath(path, os.path.dirname(ROOT))[:-3].replace(os.sep, ".")
        out[rel[:-len(".__init__")] if rel.endswith(".__init__") else rel] = path
  return out


def _imports(name, path, modules):
  package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
  found = set()
  for node in ast.walk(ast.parse(open(path).read())):
    if isinstance(node, ast.Import):
      targets = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        parts = package.split(".")
        base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
      targets = [f"{base}.{a.name}" for a in node.names] + [base]
    else:
      continue
    for t in targets:
      while t and t not in modules:
        t = t.rpartition(".")[0]
      if t and t != name and t.startswith("jaxdr"):
        found.add(t)
  return found


def test_no_import_cycles():
  modules = _modules()
  graph = {m: _imports(m, p, modules) for m, p in modules.items()}
  # A package's __init__ re-exporting its submodules is not a cycle with them.
  for m in graph:
    graph[m] = {t for t in graph[m] if not (m.startswith(t + ".") and t in modules)}
  state, stack = {}, []

  def visit(m):
    state[m] = "open"
    stack.append(m)
    for t in sorted(graph[m]):
      if state.get(t) == "open":
        cycle = stack[stack.index(t):] + [t]
        pytest.fail("import cycle: " + " -> ".join(cycle))
      if t not in state:
        visit(t)
    stack.pop()
    state[m] = "done"

  for m in sorted(graph):
    if m not in state:
      visit(m)


def test_no_module_is_too_long():
  long = {m: n for m, p in _modules().items() if (n := sum(1 for _ in open(p))) > MAX_LINES}
  assert not long, f"modules over {MAX_LINES} lines (split them along their concepts): {long}"


def test_ops_know_nothing_of_models_or_masks():
  """jaxdr.ops is the layer below the zoo: conv algorithms must not reach back into it."""
  modules = _modules()
  assert "jaxdr.ops.conv" in modules
  for m, p in modules.items():
    if m.startswith("jaxdr.ops"):
      up = {t for t in _imports(m, p, modules) if t.startswith(("jaxdr.models", "jaxdr.masks"))}
      assert not up, f"{m} imports {up}"
