"""schema.queries: named SQL blocks, parsed once at import."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from scheduler_core.schema import store, wire
from scheduler_core.schema.queries import QUERIES, UnknownQuery, parse, q

SAMPLE = """\
-- A file comment: not part of any query.

-- name: first
-- What it does.
SELECT 1;

-- name: second
--   An indented comment line.
SELECT a,
       b  -- a trailing comment stays: only whole comment lines go
FROM t
  -- an indented whole-line comment
WHERE x = %(x)s;
"""


def test_parse_finds_every_named_query_in_order() -> None:
    assert ["first", "second"] == list(parse(SAMPLE))


def test_parse_strips_comment_lines_and_the_final_semicolon() -> None:
    assert "SELECT 1" == parse(SAMPLE)["first"]


def test_parse_keeps_the_sql_lines_of_a_multi_line_query() -> None:
    assert ("SELECT a,\n       b  -- a trailing comment stays: only whole comment lines go\n"
            "FROM t\nWHERE x = %(x)s") == parse(SAMPLE)["second"]


def test_parse_ignores_text_before_the_first_name() -> None:
    assert {} == parse("-- just a comment\nSELECT 1;\n")


def test_parse_accepts_spacing_variations_of_the_name_line() -> None:
    assert {"spaced": "SELECT 2"} == parse("--name:   spaced   \nSELECT 2;\n")


def test_a_name_defined_twice_in_a_file_is_an_error() -> None:
    with pytest.raises(ValueError, match="'dup' is defined twice"):
        parse("-- name: dup\nSELECT 1;\n-- name: dup\nSELECT 2;\n")


def test_every_shipped_query_file_parses_into_non_empty_sql() -> None:
    folder = resources.files("scheduler_core.schema").joinpath("queries")
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            for name, sql in parse(entry.read_text()).items():
                assert sql, f"{entry.name}: query {name!r} is empty"
                assert not sql.endswith(";"), f"{entry.name}: {name!r}"
                assert not any(line.lstrip().startswith("--") for line in sql.splitlines())


def test_every_shipped_query_is_loaded_by_name() -> None:
    folder = resources.files("scheduler_core.schema").joinpath("queries")
    names = {name for entry in folder.iterdir() if entry.name.endswith(".sql")
             for name in parse(entry.read_text())}
    assert names == set(QUERIES)


def test_the_queries_the_store_uses_are_loaded() -> None:
    for name in ("insert_job", "get_job", "get_job_by_key", "list_jobs", "list_runs",
                 "cancel_job", "retry_job", "notify_jobs"):
        assert q(name) == QUERIES[name]


def test_shipped_queries_bind_parameters_by_name_only() -> None:
    for name, sql in QUERIES.items():
        # psycopg placeholders are %(name)s; a bare %s or a stray % would be a bug.
        assert not re.search(r"%(?!\(\w+\)s|%)", sql), name


def test_an_unknown_query_name_raises_unknown_query() -> None:
    with pytest.raises(UnknownQuery):
        q("no_such_query")


def test_insert_jobs_returns_exactly_the_fields_of_a_job_answer() -> None:
    # insert_jobs lists its RETURNING columns by hand (no lease columns to decode); the
    # store builds JobOut from them, so a field added to JobOut must be added there
    # (what a run reports, progress and the like, a new job has none of: the store
    # reads those only where a row has them).
    for name in ("insert_jobs", "insert_dependent_jobs"):
        returning = q(name).rsplit("RETURNING", 1)[1]
        columns = [c.strip() for c in returning.split(",")]
        assert columns == [f for f in wire.JobOut.__struct_fields__
                           if f not in ("runs", "waiting", "depends_on", "dependents",
                                        *store._REPORT_FIELDS)], name
