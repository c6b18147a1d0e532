"""The package's layering: no import cycle between dst_jax modules, and benchmarks/ stands on
dst_jax alone (it imports nothing from experiments/)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at any depth of the file (lazy imports included)."""
    found = set()
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def _graph(folder: str) -> dict[str, set[str]]:
    files = sorted((ROOT / folder).rglob("*.py"))
    names = {_module_name(f) for f in files}
    return {_module_name(f): {m for m in _imports(f) if m in names} for f in files}


def test_no_import_cycle_between_dst_jax_modules():
    graph = _graph("dst_jax")
    assert "dst_jax.sweep.engine" in graph and graph["dst_jax.runner"]
    state: dict[str, str] = {}  # "open" while on the current path, "done" after

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if nxt == node:
                continue
            # A package's __init__ importing its own submodules is how packages expose names,
            # not a cycle: skip edges from a package to its children and back.
            if nxt.startswith(node + ".") or node.startswith(nxt + "."):
                continue
            assert state.get(nxt) != "open", " -> ".join([*path, node, nxt])
            if nxt not in state:
                visit(nxt, [*path, node])
        state[node] = "done"

    for node in graph:
        if node not in state:
            visit(node, [])


def test_benchmarks_import_nothing_from_experiments():
    for path in sorted((ROOT / "benchmarks").rglob("*.py")):
        bad = sorted(m for m in _imports(path) if m.split(".")[0] == "experiments")
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"
