"""No SQL is assembled from strings in schema/ and web/: what reaches ``execute()`` is
a named query (``q(name)``: looked up among the .sql files' queries), a literal, or a migration file's text, and every value
travels as a bound parameter (STYLE.md rule 3).

Read from the source (ast), so a new ``execute(f"... {x}")`` fails here before it
runs anywhere.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("schema", "web")
EXECUTES = {"execute", "executemany"}


def formatting_in(node: ast.AST) -> str | None:
    """What in ``node`` builds a string at run time (an f-string, ``%``, ``+``,
    ``.format``, ``.join``), or None."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.JoinedStr):
            return "an f-string"
        if isinstance(sub, ast.BinOp) and isinstance(sub.op, ast.Mod | ast.Add):
            return "% or + on strings"
        if (isinstance(sub, ast.Call) and isinstance(sub.func, ast.Attribute)
                and sub.func.attr in ("format", "join", "replace")):
            return f".{sub.func.attr}()"
    return None


def problems(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else \
            func.id if isinstance(func, ast.Name) else None
        if name in EXECUTES and node.args:
            what = formatting_in(node.args[0])
            if what is not None:
                found.append(f"line {node.lineno}: {name}() of a query built with {what}")
    return found


def sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_query_is_built_from_strings(path: Path) -> None:
    assert [] == problems(path.read_text())


@pytest.mark.parametrize(("code", "flagged"), [
    ('conn.execute(f"SELECT * FROM jobs WHERE id = {job_id}")', True),
    ('conn.execute("SELECT * FROM jobs WHERE id = %s" % job_id)', True),
    ('conn.execute("SELECT * FROM " + table)', True),
    ('cur.executemany("INSERT INTO t VALUES ({})".format(v), rows)', True),
    ('conn.execute(" ".join(parts))', True),
    ('conn.execute(q(name), params)', False),  # a lookup among the .sql files' queries
    ('conn.execute(q("get_job"), {"id": job_id})', False),
    ('conn.execute("SELECT version FROM schema_migrations")', False),
    ('conn.execute("SELECT pg_advisory_lock(%s)", (key,))', False),
    ('conn.execute(m.sql.encode())', False),
])
def test_the_check_tells_bound_parameters_from_formatting(code: str, flagged: bool) -> None:
    assert flagged == bool(problems(code))


def test_the_check_reads_the_store() -> None:
    assert ROOT / "schema" / "store.py" in sources()
