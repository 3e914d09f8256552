"""jaxdr's modules import each other without cycles (function-level imports included)."""
import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "jaxdr"


def _module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict:
  """jaxdr module -> the jaxdr modules it imports anywhere in its source. ``from a.b import c``
  counts as importing a.b.c when that is a module, else a.b; a package's own submodules
  importing each other do not count the package's __init__ (Python runs it first anyway)."""
  modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
  graph = {}
  for name, path in modules.items():
    deps = set()
    for node in ast.walk(ast.parse(path.read_text())):
      targets = []
      if isinstance(node, ast.Import):
        targets = [a.name for a in node.names]
      elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                   for a in node.names]
      for target in targets:
        if target in modules and target != name and not name.startswith(target + "."):
          deps.add(target)
    graph[name] = deps
  return graph


def find_cycle(graph: dict):
  """One import cycle as a list of modules, or None."""
  state = {}

  def visit(node, stack):
    state[node] = "open"
    for dep in sorted(graph[node]):
      if state.get(dep) == "open":
        return stack[stack.index(dep):] + [dep]
      if dep not in state:
        cycle = visit(dep, stack + [dep])
        if cycle:
          return cycle
    state[node] = "done"
    return None

  for node in sorted(graph):
    if node not in state:
      cycle = visit(node, [node])
      if cycle:
        return cycle
  return None


def test_no_import_cycle():
  graph = import_graph()
  assert "jaxdr.ops.conv" in graph and "jaxdr.models.layers" in graph
  assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_checker_finds_cycles():
  assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
  assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_ops_know_nothing_of_models_or_masks():
  graph = import_graph()
  for name, deps in graph.items():
    if name.startswith("jaxdr.ops"):
      assert not {d for d in deps if d.startswith(("jaxdr.models", "jaxdr.masks"))}, name
