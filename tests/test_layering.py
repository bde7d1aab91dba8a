"""The package's import graph runs one way: core <- data <- trainer <- methods, no cycles.

Walks every module of the installed `implicit_fields` with `ast` and collects
its imports of `implicit_fields` modules, at module level and inside
functions:

* the core (the flat modules) never imports the data layer, a method or the trainer;
* the data layer never imports a method or the trainer;
* the trainer finds methods by name (importlib), never by an import statement,
  and does not import the data layer;
* no method imports another;
* no module imports one that imports it back (no cycles, counting imports
  inside functions too);
* imports of the package sit at module level (a function-level import hides a
  dependency; only optional third-party packages are imported lazily);
* the library never imports `experiments`, `benchmarks` or `tests`.
"""

import ast
import os

import implicit_fields

PACKAGE_DIR = os.path.dirname(implicit_fields.__file__)


def _module_name(path):
    rel = os.path.relpath(path, os.path.dirname(PACKAGE_DIR))[: -len(".py")].split(os.sep)
    if rel[-1] == "__init__":
        rel = rel[:-1]
    return ".".join(rel)


def _modules():
    out = {}
    for root, _, files in os.walk(PACKAGE_DIR):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(root, name)
                out[_module_name(path)] = path
    return out


MODULES = _modules()


def _resolve(module, node):
    """The modules an import node names (only those of our package and the top-level projects)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        parts = module.split(".")
        is_package = MODULES[module].endswith("__init__.py")
        parts = parts[: len(parts) - node.level + (1 if is_package else 0)]
        base = ".".join(parts + ([base] if base else []))
    names = []
    for alias in node.names:
        full = f"{base}.{alias.name}"
        names.append(full if full in MODULES else base)
    return names


def _imports():
    """{module: [(imported module, at module level?)]} for every module of the package."""
    graph = {}
    for module, path in MODULES.items():
        tree = ast.parse(open(path, encoding="utf-8").read(), path)
        top = {id(n) for n in tree.body}
        # Imports inside `if`/`try` at module level count as module level.
        for node in tree.body:
            if isinstance(node, (ast.If, ast.Try)):
                top.update(id(n) for n in ast.walk(node))
        edges = []
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for name in _resolve(module, node):
                    edges.append((name, id(node) in top))
        graph[module] = edges
    return graph


GRAPH = _imports()


def _ours(edges):
    return [(n, top) for n, top in edges if n == "implicit_fields" or n.startswith("implicit_fields.")]


def _layer(module):
    parts = module.split(".")
    if len(parts) == 1:
        return "package"
    if parts[1] == "data":
        return "data"
    if parts[1] == "methods":
        return "methods"
    if parts[1] == "trainer":
        return "trainer"
    return "core"


def test_the_walk_sees_every_layer():
    layers = {_layer(m) for m in MODULES}
    assert layers == {"package", "core", "data", "trainer", "methods"}
    assert "implicit_fields.methods.onet" in MODULES and "implicit_fields.methods.dvr" in MODULES
    # And the walk finds real edges (e.g. the DVR task on the data layer and the trainer).
    names = {n for n, _ in GRAPH["implicit_fields.methods.dvr.task"]}
    assert {"implicit_fields.trainer", "implicit_fields.data.multiview"} <= names


def test_lower_layers_never_import_higher_ones():
    forbidden = {
        "core": ("data", "methods", "trainer"),
        "data": ("methods", "trainer"),
        "trainer": ("data", "methods"),
    }
    bad = []
    for module, edges in GRAPH.items():
        for name, _ in _ours(edges):
            if name in MODULES and _layer(name) in forbidden.get(_layer(module), ()):
                bad.append(f"{module} -> {name}")
            elif name.startswith("implicit_fields.methods") and _layer(module) != "methods":
                bad.append(f"{module} -> {name}")
    assert bad == []


def test_no_method_imports_another():
    bad = []
    for module, edges in GRAPH.items():
        if _layer(module) != "methods" or module == "implicit_fields.methods":
            continue
        own = module.split(".")[2]
        for name, _ in _ours(edges):
            parts = name.split(".")
            if len(parts) > 2 and parts[1] == "methods" and parts[2] != own:
                bad.append(f"{module} -> {name}")
    assert bad == []


def test_no_import_cycles():
    graph = {m: sorted({n for n, _ in _ours(e) if n in MODULES and n != m}) for m, e in GRAPH.items()}
    # A package's __init__ importing its own submodules is not a cycle with them.
    for module in graph:
        graph[module] = [n for n in graph[module] if not module.startswith(n + ".")]
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for nxt in graph[node]:
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt) :] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    assert cycles == []


def test_package_imports_sit_at_module_level():
    lazy = [f"{m} -> {n}" for m, edges in GRAPH.items() for n, top in _ours(edges) if not top]
    assert lazy == []


def test_the_library_never_imports_the_scripts_or_tests():
    bad = [
        f"{m} -> {n}"
        for m, edges in GRAPH.items()
        for n, _ in edges
        if n.split(".")[0] in ("experiments", "benchmarks", "tests", "conftest")
    ]
    assert bad == []
