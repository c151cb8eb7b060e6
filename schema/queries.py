"""Named SQL queries, loaded once at import from the .sql files in schema/queries/.

A file holds blocks of the form::

    -- name: claim_jobs
    -- What it does, in a line or two.
    SELECT ...;

Parameters are always bound (psycopg ``%(name)s`` placeholders); no SQL is built by
string formatting anywhere in the project.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import LiteralString

_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


class UnknownQuery(KeyError):
    """A query name that no .sql file under schema/queries/ defines."""


def parse(text: str) -> dict[str, str]:
    """Split one .sql file into ``{name: sql}``; duplicate names are an error."""
    out: dict[str, str] = {}
    parts = _NAME.split(text)
    # parts = [preamble, name1, body1, name2, body2, ...]
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in out:
            raise ValueError(f"query {name!r} is defined twice")
        sql = "\n".join(line for line in body.strip().splitlines()
                        if not line.lstrip().startswith("--")).strip()
        out[name] = sql.rstrip(";").strip()
    return out


def _load() -> dict[str, str]:
    queries: dict[str, str] = {}
    folder = resources.files("scheduler_core.schema").joinpath("queries")
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".sql"):
            for name, sql in parse(entry.read_text()).items():
                if name in queries:
                    raise ValueError(f"query {name!r} is defined in two files")
                queries[name] = sql
    return queries


QUERIES = _load()


def q(name: str) -> LiteralString:
    """The SQL of query ``name`` (a LiteralString: it comes from our files only)."""
    try:
        return QUERIES[name]  # our files only: a literal for all purposes
    except KeyError:
        raise UnknownQuery(name) from None
