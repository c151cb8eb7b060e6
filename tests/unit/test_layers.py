"""The layer rule of docs/architecture.md, checked on the import graph of the installed
packages: every import (lazy ones inside functions too) goes to a lower floor or stays in
its own package, and no import circle exists. No whitelist."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NS = "scheduler_core"

# Floors, lowest first. Packages on one floor must not import each other.
FLOORS: list[set[str]] = [
    {"runtime"},
    {"schema"},
    {"handlers"},
    {"actors"},
    {"web", "client"},
    {"command"},
]
FLOOR = {package: n for n, floor in enumerate(FLOORS) for package in floor}

def package_dirs() -> dict[str, Path]:
    """``scheduler_core.x`` -> its folder, from pyproject's package-dir mapping."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    mapping = config["tool"]["setuptools"]["package-dir"]
    return {name: ROOT / folder for name, folder in mapping.items()}


def module_files() -> dict[str, Path]:
    files: dict[str, Path] = {}
    for package, folder in package_dirs().items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            files[".".join([package, *parts])] = path
    return files


MODULES = module_files()


def imports_of(name: str, path: Path) -> set[str]:
    """First-party modules ``name`` imports, anywhere in its body."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = name.split(".")
                keep = len(parts) - node.level + (1 if is_package else 0)
                base = ".".join(parts[:keep] + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                       for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target.startswith(NS + ".") and target != name:
                found.add(target)
    return found


GRAPH = {name: imports_of(name, path) for name, path in MODULES.items()}


def package_of(module: str) -> str:
    return module.split(".")[1]


def back_arrows(module: str) -> list[str]:
    own = package_of(module)
    return sorted(t for t in GRAPH[module]
                  if package_of(t) != own and FLOOR[package_of(t)] >= FLOOR[own])


def circles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
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

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    return found


def param(module: str) -> object:
    return pytest.param(module, id=module.removeprefix(NS + "."))


def test_every_package_has_a_floor() -> None:
    assert {name.split(".")[1] for name in package_dirs()} == set(FLOOR)


def test_the_graph_sees_the_imports() -> None:
    """A check on the checker: known arrows are found (lazy imports included)."""
    assert f"{NS}.runtime.db" in GRAPH[f"{NS}.schema.store"]
    assert f"{NS}.handlers" in GRAPH[f"{NS}.command.child"]


@pytest.mark.parametrize("module", sorted(GRAPH), ids=lambda m: m.removeprefix(NS + "."))
def test_module_imports_only_lower_floors(module: str) -> None:
    assert [] == back_arrows(module), f"{module} imports against the layer order"


@pytest.mark.parametrize("module", [param(m) for m in sorted(GRAPH)])
def test_module_is_on_no_import_circle(module: str) -> None:
    assert [] == [c for c in circles() if module in c]


def test_the_client_depends_on_the_wire_structs_only() -> None:
    client = {m: deps for m, deps in GRAPH.items() if package_of(m) == "client"}
    below = {d for deps in client.values() for d in deps if package_of(d) != "client"}
    assert below <= {f"{NS}.schema.wire"}


SIDES = (f"{NS}.actors.coordinator", f"{NS}.actors.worker")


def side_of(module: str) -> str | None:
    return next((s for s in SIDES if module == s or module.startswith(s + ".")), None)


def test_the_side_check_sees_both_sides() -> None:
    """A check on the checker: each side has modules, and known same-side arrows."""
    assert f"{NS}.actors.worker.coordinator_link" in GRAPH[f"{NS}.actors.worker.heartbeat"]
    assert {side_of(m) for m in GRAPH if package_of(m) == "actors"} >= set(SIDES)


@pytest.mark.parametrize("module", [param(m) for m in sorted(GRAPH) if side_of(m)])
def test_actor_imports_no_actor_of_the_other_side(module: str) -> None:
    """The coordinator's actors and the worker's actors share nothing but lower floors."""
    own = side_of(module)
    assert [] == sorted(t for t in GRAPH[module] if side_of(t) not in (None, own))
