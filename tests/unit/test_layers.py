"""The layering rules of STYLE.md, checked on the import statements of every module.

runtime's core knows nothing of jobs; handlers know nothing of the runtime; web talks
to the store, never to SQL; only the composition root imports everything.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

COMPOSITION_ROOT = {"runtime/cli.py", "runtime/compose.py", "runtime/up.py",
                    "runtime/worker_main.py", "runtime/client_cli.py"}

# package -> top-level modules it must never import
FORBIDDEN = {
    "runtime": {"actors", "handlers", "web", "schema"},
    "handlers": {"trio", "runtime", "actors", "web", "schema", "psycopg"},
    "web": {"psycopg", "actors"},
    "schema": {"web", "actors", "handlers"},
    "actors": {"web"},
}
# process entry points that may import what they run
EXCEPTIONS = {("actors/child.py", "handlers"),
              # imported lazily, only to run an async handler inside its child process
              ("handlers/registry.py", "trio")}


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def modules() -> list[Path]:
    return sorted(p for pkg in FORBIDDEN for p in (ROOT / pkg).rglob("*.py"))


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_module_respects_the_layering(path: Path) -> None:
    rel = str(path.relative_to(ROOT))
    if rel in COMPOSITION_ROOT:
        return
    package = rel.split("/")[0]
    bad = {m for m in imported_roots(path) & FORBIDDEN[package] if (rel, m) not in EXCEPTIONS}
    assert set() == bad, f"{rel} imports {sorted(bad)}"


def test_the_composition_root_exists() -> None:
    assert all((ROOT / p).exists() for p in COMPOSITION_ROOT)
