"""The house stays as built: arrows point inward, nothing imports in a circle.

Every import of bridge/, schemas/, consumers/ and simulator/ is read from the source (at
any depth: inside functions and `if TYPE_CHECKING` too, so that a local import cannot
hide a circle), and checked against the layers of the README's architecture section.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("bridge", "schemas", "consumers", "simulator")

# Layer of a module: the first prefix it starts with (most specific first).
LAYERS = (
    ("bridge.domain", "domain"),
    ("bridge.errors", "domain"),
    ("schemas", "schemas"),
    ("bridge.metrics", "metrics"),
    ("bridge.failures", "failures"),
    ("bridge.settings", "settings"),
    ("bridge.services", "services"),
    ("bridge.adapters", "adapters"),
    ("consumers", "consumers"),
    ("bridge.api", "api"),
    ("bridge.bootstrap", "bootstrap"),
    ("bridge.entrypoints", "entrypoints"),
    ("bridge.__main__", "entrypoints"),
    ("simulator", "simulator"),
    ("bridge", "package"),
)
# What each layer may import (besides itself). Inner layers know nothing of outer ones;
# only the composition root builds adapters; the simulator is written from the contract
# alone, so that a misreading in one is caught by the other instead of mirrored.
MAY_IMPORT = {
    "domain": set(),
    "schemas": {"domain"},
    "metrics": set(),
    # How a log line may speak of an unexpected exception and of a child: for every layer
    # that logs; it knows only the pure core's redaction.
    "failures": {"domain"},
    "settings": set(),
    "services": {"domain", "schemas", "metrics", "failures"},
    "adapters": {"domain", "schemas", "metrics", "failures", "services"},
    "consumers": {"domain", "schemas", "metrics", "failures", "services"},
    "api": {"domain", "schemas", "failures", "services"},
    "bootstrap": {
        "domain",
        "schemas",
        "metrics",
        "failures",
        "settings",
        "services",
        "adapters",
        "consumers",
    },
    "entrypoints": {
        "domain",
        "schemas",
        "failures",
        "settings",
        "services",
        "api",
        "bootstrap",
        "simulator",
    },
    "simulator": set(),
    "package": set(),
}
# Libraries that do I/O (or render it): never in the pure core, never in a use case.
DRIVERS = {"asyncpg", "aiohttp", "aio_pika", "aiormq", "jinja2", "multidict", "yarl"}
NO_DRIVERS = {"domain", "services", "schemas", "failures"}
SQL = re.compile(r"\b(SELECT\s.+\sFROM|INSERT INTO|UPDATE\s+\w+\s+SET|DELETE FROM)\b", re.S)


@dataclass(frozen=True)
class Import:
    importer: str
    target: str
    line: int
    local: bool  # inside a function


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[module_name(path)] = path
    return found


MODULES = modules()


def resolve(name: str) -> str:
    """The project module *name* refers to (a module, else the package holding it)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def imports_of(name: str, path: Path) -> Iterator[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def visit(node: ast.AST, local: bool) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            inner = local or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield Import(name, alias.name, child.lineno, inner)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in child.names:
                    yield Import(name, f"{base}.{alias.name}", child.lineno, inner)
            yield from visit(child, inner)

    yield from visit(tree, False)


ALL_IMPORTS = [i for name, path in MODULES.items() for i in imports_of(name, path)]


def layer(name: str) -> str:
    return next(
        layer for prefix, layer in LAYERS if name == prefix or name.startswith(prefix + ".")
    )


def project_edges() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {name: set() for name in MODULES}
    for i in ALL_IMPORTS:
        target = resolve(i.target)
        # A package's __init__ is a docstring: importing through it adds no arrow.
        if target and target != i.importer and MODULES[target].name != "__init__.py":
            edges[i.importer].add(target)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            connect(v)
    return found


def test_the_checker_sees_the_project() -> None:
    assert {"bridge.bootstrap", "bridge.services.handoff", "consumers.events"} <= set(MODULES)
    assert any(i.target == "bridge.domain.handoff.Handoff" for i in ALL_IMPORTS)
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_imports_itself_back_through_others() -> None:
    assert cycles(project_edges()) == []


def test_every_arrow_points_inward() -> None:
    wrong = []
    for i in ALL_IMPORTS:
        target = resolve(i.target)
        if not target:
            continue
        source, destination = layer(i.importer), layer(target)
        if destination != source and destination not in MAY_IMPORT[source]:
            wrong.append(f"{i.importer}:{i.line} ({source}) imports {target} ({destination})")
    assert wrong == []


def test_no_project_import_hides_inside_a_function() -> None:
    local = [
        f"{i.importer}:{i.line} {i.target}" for i in ALL_IMPORTS if i.local and resolve(i.target)
    ]
    assert local == []


def test_the_core_and_the_use_cases_hold_no_driver() -> None:
    wrong = [
        f"{i.importer}:{i.line} {i.target}"
        for i in ALL_IMPORTS
        if layer(i.importer) in NO_DRIVERS and i.target.split(".")[0] in DRIVERS
    ]
    assert wrong == []


def test_only_adapters_hold_sql() -> None:
    wrong = []
    for name, path in MODULES.items():
        if layer(name) in ("adapters", "simulator"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            text = node.value if isinstance(node, ast.Constant) else None
            if isinstance(text, str) and SQL.search(text):
                wrong.append(f"{name}:{node.lineno}")
    assert wrong == []


def test_settings_are_read_by_the_composition_root_and_the_entry_points_only() -> None:
    readers = {layer(i.importer) for i in ALL_IMPORTS if resolve(i.target) == "bridge.settings"}
    assert readers <= {"bootstrap", "entrypoints"}
