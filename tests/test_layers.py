"""Import contracts: the layers of DESIGN.md, and a planner that touches no I/O.

A small AST walk rather than import-linter: the contracts fit in one screen, need no extra
dependency, and see every import, the lazy ones inside functions and those under
``TYPE_CHECKING`` included (a lazy import is still a dependency, only a cheaper one).

Layers, top to bottom; a module may import its own layer and any layer below, never above::

    cli        syncd.__main__, cli, cli_daemon, cli_status, progress
    daemon     daemon, control, scheduler, watch, metrics, web (the dashboard: only daemon imports it)
    engine     syncd.engine.*
    config     config (it validates each remote's settings, so it sits above the remotes)
    remotes | index      two siblings that never import each other
    lock       lock (the index records which process holds it)
    base       syncd (the package: __version__), errors, models, outcomes, paths, times, display

Every module must have a place, so a new one is placed on purpose.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

SYNCD = Path(__file__).resolve().parents[1] / "syncd"

LAYERS: list[list[set[str]]] = [
    [
        {
            "syncd.__main__",
            "syncd.cli",
            "syncd.cli_daemon",
            "syncd.cli_status",
            "syncd.cli_admin",
            "syncd.init_config",
            "syncd.progress",
            "syncd.service_install",
            "syncd.shell_docs",
        }
    ],
    [
        {
            "syncd.daemon",
            "syncd.control",
            "syncd.scheduler",
            "syncd.watch",
            "syncd.metrics",
            "syncd.web",
            "syncd.cluster",
        }
    ],
    [{"syncd.engine"}],
    [{"syncd.config"}],
    [{"syncd.remotes"}, {"syncd.index"}],
    [{"syncd.lock"}],
    [
        {
            "syncd",
            "syncd.errors",
            "syncd.models",
            "syncd.outcomes",
            "syncd.paths",
            "syncd.times",
            "syncd.display",
            "syncd.bwlimit",
        }
    ],
]

PLANNER = {"syncd.engine.plan", "syncd.engine.conflicts", "syncd.engine.safety"}
# What pure code may import from outside syncd: data structures, text, arithmetic, types.
# Anything else (os, io, pathlib, socket, sqlite3, threading, time, requests, boto3, ...) is I/O,
# or a clock, or a way to reach one.
PURE_STDLIB = {
    "__future__",
    "abc",
    "bisect",
    "collections",
    "dataclasses",
    "datetime",
    "enum",
    "fnmatch",
    "functools",
    "heapq",
    "itertools",
    "math",
    "operator",
    "posixpath",
    "re",
    "string",
    "types",
    "typing",
    "unicodedata",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(SYNCD.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(SYNCD.rglob("*.py"))}


def imports_of(name: str) -> Iterator[str]:
    """Every module ``name`` imports, anywhere in its file. ``from syncd import cli`` imports
    the module ``syncd.cli``; ``from syncd import __version__`` the package ``syncd``."""
    tree = ast.parse(modules()[name].read_text(encoding="utf-8"))
    package = name if modules()[name].name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from .x import y
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                yield submodule if submodule in modules() else base


def place(name: str) -> tuple[int, int] | None:
    """(layer, component) of a syncd module: the longest prefix named in LAYERS."""
    matches = [
        (len(prefix), layer, index)
        for layer, components in enumerate(LAYERS)
        for index, component in enumerate(components)
        for prefix in component
        if name == prefix or name.startswith(prefix + ".")
    ]
    if not matches:
        return None
    _, layer, index = max(matches)
    return layer, index


def syncd_imports(name: str) -> set[str]:
    return {target for target in imports_of(name) if target == "syncd" or target.startswith("syncd.")}


def test_every_module_has_a_layer() -> None:
    unplaced = sorted(name for name in modules() if place(name) is None)
    assert not unplaced, f"place these modules in tests/test_layers.py LAYERS: {unplaced}"


def test_imports_point_down_the_layers() -> None:
    upward = []
    for name in modules():
        here = place(name)
        assert here is not None
        for target in syncd_imports(name):
            there = place(target)
            assert there is not None, f"{name} imports {target}, which is not a module of syncd"
            if there[0] < here[0]:
                upward.append(f"{name} -> {target} (layer {here[0]} imports layer {there[0]})")
            elif there[0] == here[0] and there[1] != here[1]:
                upward.append(f"{name} -> {target} (siblings in layer {here[0]} must not import each other)")
    assert not upward, "imports against the layers of DESIGN.md:\n" + "\n".join(sorted(upward))


def test_only_the_daemon_imports_the_dashboard() -> None:
    """syncd.web is an edge of the daemon: it may call into the daemon's layer and below,
    but nothing else depends on it (a dashboard that fails never stops syncing)."""
    inside = {name for name in modules() if name == "syncd.web" or name.startswith("syncd.web.")}
    users = {
        name
        for name in modules()
        if name not in inside and any(t == "syncd.web" or t.startswith("syncd.web.") for t in syncd_imports(name))
    }
    assert users == {"syncd.daemon"}, users
    assert not any(t == "syncd.daemon" for name in inside for t in syncd_imports(name))  # no cycle back


def pure_closure() -> set[str]:
    """The planner's modules and every syncd module they import, transitively: a planner
    is only as pure as what it calls."""
    seen: set[str] = set()
    todo = list(PLANNER)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(target for target in syncd_imports(name) if target in modules())
    return seen


def test_the_planner_imports_no_io() -> None:
    impure = []
    for name in sorted(pure_closure()):
        for target in imports_of(name):
            top = target.partition(".")[0]
            if top == "syncd":
                continue
            if top not in PURE_STDLIB:
                impure.append(f"{name} imports {target}")
    assert not impure, "the planner (and what it imports) must do no I/O:\n" + "\n".join(impure)


def test_the_planner_reaches_no_remote_index_or_config() -> None:
    base = (len(LAYERS) - 1, 0)
    beyond = {name for name in pure_closure() - PLANNER if place(name) != base}
    assert not beyond, f"the planner reaches modules beyond models/paths/errors: {sorted(beyond)}"


def test_the_contract_sees_what_it_must() -> None:
    """The walk itself: lazy and TYPE_CHECKING imports count, ``from syncd import x`` resolves."""
    assert "syncd.engine.sync" in set(imports_of("syncd.cli"))  # lazy, inside a function
    assert "syncd.index.store" in set(imports_of("syncd.cli_status"))  # under TYPE_CHECKING
    assert "syncd" in set(imports_of("syncd.remotes.storj"))  # from syncd import __version__
    assert {"os", "socket"} <= set(imports_of("syncd.daemon"))
