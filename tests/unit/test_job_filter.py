"""The search filter's grammar (schema/job_filter.py): what parses, what it binds, and
what is refused naming the parameter; and the one filter clause the .sql files repeat."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from scheduler_core.schema.job_filter import (
    Condition,
    FilterError,
    JobFilter,
    parse_filter,
    parse_where,
)
from scheduler_core.schema.queries import QUERIES


@pytest.mark.parametrize(("text", "expected"), [
    ("payload.customerId=42", Condition("payload", ("customerId",), "=", 42)),
    ("result.status>=500", Condition("result", ("status",), ">=", 500)),
    ("payload.a.b<=1.5", Condition("payload", ("a", "b"), "<=", 1.5)),
    ("payload.region!=eu-1", Condition("payload", ("region",), "!=", "eu-1")),
    ('payload.id="42"', Condition("payload", ("id",), "=", "42")),
    ("payload.n>-3", Condition("payload", ("n",), ">", -3)),
    ("payload.n<1e3", Condition("payload", ("n",), "<", 1000.0)),
    ("payload.x-y_z=a=b", Condition("payload", ("x-y_z",), "=", "a=b")),
])
def test_where_parses_path_operator_and_typed_value(text: str, expected: Condition) -> None:
    assert expected == parse_where(text)


@pytest.mark.parametrize("text", [
    "payload=1", "payload.=1", "meta.a=1", "payload.a", "payload.a=", "payload.a b=1",
    'payload.a"=1', "payload.a\\=1", "payload.a.b.c.d.e.f.g.h.i=1", 'payload.a="x',
    "payload.a=\x00", "payload.a~=1", "payload.a==1'",
])
def test_bad_where_is_refused_naming_where(text: str) -> None:
    with pytest.raises(FilterError) as caught:
        parse_where(text)
    assert "where" == caught.value.field


def test_equalities_become_one_containment_document_and_the_rest_a_path() -> None:
    params = parse_filter({"where": ["payload.customer.id=42", "payload.region=eu",
                                     "payload.amount>=10", "result.code!=200"]}).params()
    assert {"customer": {"id": 42}, "region": "eu"} == params["payload_doc"].obj
    assert '$ ? (@."amount" >= $v0)' == params["payload_path"]
    assert {"v0": 10} == params["payload_vars"].obj
    assert params["result_doc"] is None
    assert '$ ? (@."code" != $v0)' == params["result_path"]


def test_contradicting_equalities_are_refused() -> None:
    with pytest.raises(FilterError) as caught:
        parse_filter({"where": ["payload.a=1", "payload.a=2"]})
    assert "where" == caught.value.field


def test_time_ranges_need_a_zone_and_come_back_in_utc() -> None:
    found = parse_filter({"createdAfter": "2026-01-02T03:04:05+02:00"})
    assert dt.datetime(2026, 1, 2, 1, 4, 5, tzinfo=dt.UTC) == found.created_after
    with pytest.raises(FilterError) as caught:
        parse_filter({"finishedBefore": "2026-01-02T03:04:05"})
    assert "finishedBefore" == caught.value.field


@pytest.mark.parametrize(("args", "field"), [
    ({"status": "Done"}, "status"),
    ({"tag": ["x" * 65]}, "tag"),
    ({"tag": [f"t{i}" for i in range(21)]}, "tag"),
    ({"where": [f"payload.a{i}=1" for i in range(11)]}, "where"),
    ({"lastError": "x" * 201}, "lastError"),
    ({"type": "a\x00b"}, "type"),
    ({"queue": ["a", "b"]}, "queue"),
])
def test_bad_parameters_are_refused_naming_them(args: dict[str, object], field: str) -> None:
    with pytest.raises(FilterError) as caught:
        parse_filter(args)  # type: ignore[arg-type]
    assert field == caught.value.field


def test_empty_values_count_as_absent_and_tags_are_deduplicated() -> None:
    assert JobFilter(tags=("a", "b")) == parse_filter(
        {"status": "", "tag": ["a", "b", "a", ""], "where": []})


def _clause(sql: str) -> str:
    """The shared filter clause: from the status condition to the lastError one."""
    m = re.search(r"\(%\(status\)s::text IS NULL.*?lower\(%\(last_error\)s::text\)\) > 0\)",
                  sql, re.DOTALL)
    assert m is not None
    return re.sub(r"\s+", " ", m.group(0))


def test_list_count_and_bulk_pick_share_one_filter_clause() -> None:
    clauses = {name: _clause(QUERIES[name])
               for name in ("list_jobs", "count_matching_jobs", "pick_bulk_jobs")}
    assert 1 == len(set(clauses.values())), clauses
