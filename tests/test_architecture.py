"""The package's module map: no import circle, and a coordinator that only publishes.

Read from the source with ``ast``: every relative import of
``custom_components/zevvy`` (``TYPE_CHECKING`` imports and imports inside
functions included) is an edge of the module graph.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "custom_components" / "zevvy"
# Modules that make readings: they hand them to the pipeline (through
# ``runtime_data``) and never import it or the coordinator.
PRODUCERS = ("history", "gap_fill", "services", "sources", "quarters", "readings")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _import_graph() -> dict[str, set[str]]:
    """Return each module's relative imports (module names within the package)."""
    modules = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom) or not node.level:
                continue
            base = package.split(".") if package else []
            base = base[: len(base) - (node.level - 1)]
            if node.module:
                imported.add(".".join([*base, node.module]))
                continue
            for alias in node.names:  # from . import x: a module, or a name
                candidate = ".".join([*base, alias.name])
                imported.add(candidate if candidate in modules else ".".join(base))
        graph[name] = {module for module in imported if module != name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """Return one import circle of the graph (depth first), or None."""
    done: set[str] = set()
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        if module in path:
            return [*path[path.index(module) :], module]
        if module in done or module not in graph:
            return None
        path.append(module)
        for imported in sorted(graph[module]):
            if (found := visit(imported)) is not None:
                return found
        path.pop()
        done.add(module)
        return None

    for module in sorted(graph):
        if (found := visit(module)) is not None:
            return found
    return None


def test_the_graph_is_read() -> None:
    """The walk sees the imports it is meant to judge (no empty graph)."""
    graph = _import_graph()
    assert "coordinator" in graph["pipeline"]
    assert "outbox" in graph["pipeline"]
    assert "outbox.core" in graph["outbox"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_circle() -> None:
    """No module imports itself through others, TYPE_CHECKING included."""
    assert _cycle(_import_graph()) is None


def test_the_coordinator_only_publishes() -> None:
    """At most 4 modules import the coordinator, and no producer does."""
    graph = _import_graph()
    importers = sorted(
        name for name, imported in graph.items() if "coordinator" in imported
    )
    assert len(importers) <= 4, importers
    assert not set(importers) & set(PRODUCERS), importers
    producers_of_pipeline = [p for p in PRODUCERS if "pipeline" in graph[p]]
    assert producers_of_pipeline == []


def test_the_outbox_imports_no_issue_code() -> None:
    """The outbox stores and reports; the pipeline raises the repair issues."""
    graph = _import_graph()
    for name, imported in graph.items():
        if name == "outbox" or name.startswith("outbox."):
            assert "issues" not in imported, name
            assert "coordinator" not in imported, name
            assert "pipeline" not in imported, name
