"""The job status sets are written once, in schema/wire.py; the .sql files spell theirs
out (a partial index's predicate must be a literal, and a literal list lets the planner
use one), so these tests check every status list of the SQL against the Python sets."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from scheduler_core.schema import wire
from scheduler_core.schema.queries import parse
from scheduler_core.schema.retention_store import DEADLETTER_STATUSES, SUCCEEDED_STATUSES
from scheduler_core.schema.wire import JobStatus

NAMED_SETS: dict[str, frozenset[str]] = {
    "JOB_STATUSES": frozenset(wire.JOB_STATUSES),
    "TERMINAL": frozenset(wire.TERMINAL),
    "ACTIVE": frozenset(wire.ACTIVE),
    # The older migrations' literals, before 0013 added Waiting.
    "JOB_STATUSES_BEFORE_WAITING": frozenset(wire.JOB_STATUSES) - {JobStatus.WAITING},
    "ACTIVE_BEFORE_WAITING": frozenset(wire.ACTIVE_BEFORE_WAITING),
    "WAITING": frozenset(wire.WAITING),
    "DUE_LATER": frozenset(wire.DUE_LATER),
    "RETRYABLE": frozenset(wire.RETRYABLE),
    "NOT_STARTED": frozenset(wire.NOT_STARTED),
    # A parent that ended without succeeding (its dependents' failure policy applies).
    "ENDED_BADLY": frozenset(wire.TERMINAL) - {JobStatus.SUCCEEDED},
}

# Where the SQL lists statuses, and the set each list must equal, in order of appearance.
EXPECTED: dict[str, list[str]] = {
    "queries/jobs.sql:cancel_job": ["ACTIVE"],
    "queries/jobs.sql:cancel_workflow": ["ACTIVE"],
    "queries/jobs.sql:list_workflows": ["ACTIVE"],
    "queries/jobs.sql:retry_job": ["RETRYABLE"],
    "queries/jobs.sql:replace_unique_job": ["NOT_STARTED"],
    "queries/jobs.sql:promote_due": ["DUE_LATER"],
    "queries/jobs.sql:next_due_in": ["DUE_LATER", "WAITING"],
    "queries/jobs.sql:job_waiting": ["WAITING"],
    "queries/queues.sql:queue_names": ["WAITING", "WAITING"],
    "queries/queues.sql:queue_details": ["WAITING"],
    "queries/runs.sql:complete_runs": ["TERMINAL"],
    "queries/schedules.sql:latest_fire_unfinished": ["TERMINAL"],
    "queries/schedules.sql:latest_workflow_unfinished": ["ACTIVE"],
    "queries/stats.sql:stats_active_counts": ["ACTIVE"],
    "queries/stats.sql:stats_finished_counts": ["TERMINAL"],
    "queries/stats.sql:stats_queue_lag": ["WAITING"] * 5,
    "queries/stats.sql:stats_queue_settings": ["WAITING"] * 5,
    "migrations/0001_initial.sql": ["JOB_STATUSES_BEFORE_WAITING", "WAITING", "DUE_LATER"],
    "migrations/0002_schedules.sql": ["ACTIVE_BEFORE_WAITING", "ACTIVE_BEFORE_WAITING",
                                      "TERMINAL"],
    "migrations/0006_queues.sql": ["WAITING"],
    "migrations/0009_leases_in_jobs.sql": ["WAITING"],
    "migrations/0010_rate_limits.sql": ["WAITING", "WAITING", "WAITING"],
    "migrations/0011_keys.sql": ["WAITING"] * 13,
    "migrations/0012_rate_steps.sql": ["WAITING"] * 5,
    "migrations/0013_dependencies.sql": ["JOB_STATUSES", "TERMINAL"],
    "migrations/0015_scheduled_workflows.sql": ["ACTIVE", "ACTIVE", "ACTIVE", "TERMINAL"],
    "migrations/0016_sql_enqueue.sql": ["ENDED_BADLY"],
    "migrations/0017_unique_jobs.sql": ["JOB_STATUSES", "ACTIVE", "ENDED_BADLY"],
    "migrations/0023_claim_fast_path.sql": ["WAITING"] * 6,
}

_LIST = re.compile(r"status\s+(?:NOT\s+)?IN\s*\(([^)]*)\)|ARRAY\[([^\]]*)\]", re.IGNORECASE)
_COMPARED = re.compile(r"\bstatus\s*(?:=|<>|!=)\s*'(\w+)'", re.IGNORECASE)


def sql_sources() -> dict[str, str]:
    """Every named query as ``queries/<file>:<name>``, every migration as its file."""
    root = resources.files("scheduler_core.schema")
    out: dict[str, str] = {}
    for entry in sorted(root.joinpath("queries").iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".sql"):
            for name, sql in parse(entry.read_text()).items():
                out[f"queries/{entry.name}:{name}"] = sql
    for entry in sorted(root.joinpath("migrations").iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".sql"):
            out[f"migrations/{entry.name}"] = entry.read_text()
    return out


def set_name(items: list[str]) -> str:
    found = frozenset(items)
    names = [name for name, members in NAMED_SETS.items() if members == found]
    return names[0] if names else f"no set: {sorted(found)}"


def test_every_status_list_in_the_sql_is_the_set_it_stands_for() -> None:
    found: dict[str, list[str]] = {}
    for where, sql in sql_sources().items():
        for match in _LIST.finditer(sql):
            items = re.findall(r"'(\w+)'", match.group(1) or match.group(2))
            if items:
                found.setdefault(where, []).append(set_name(items))
    assert EXPECTED == found


def test_every_status_the_sql_compares_with_is_a_job_status() -> None:
    compared = {word for sql in sql_sources().values() for word in _COMPARED.findall(sql)}
    assert set() == compared - set(JobStatus)
    assert {"Running", "Scheduled"} <= compared  # the pattern does find comparisons


def test_the_named_sets_are_distinct() -> None:
    assert len(NAMED_SETS) == len(set(NAMED_SETS.values()))


def test_active_and_terminal_split_every_status() -> None:
    assert frozenset() == frozenset(wire.ACTIVE) & wire.TERMINAL
    assert frozenset(JobStatus) == frozenset(wire.ACTIVE) | wire.TERMINAL


@pytest.mark.parametrize("subset", ["WAITING", "DUE_LATER"])
def test_a_job_awaiting_a_run_is_active(subset: str) -> None:
    assert NAMED_SETS[subset] < NAMED_SETS["ACTIVE"]


def test_the_retention_rules_cover_the_terminal_statuses_once_each() -> None:
    assert sorted(wire.TERMINAL) == sorted([*SUCCEEDED_STATUSES, *DEADLETTER_STATUSES])


def test_a_status_is_its_string() -> None:
    assert "DeadLetter" == JobStatus.DEAD_LETTER
    assert ["Waiting", "Scheduled", "Pending", "Running", "Succeeded", "Failed",
            "DeadLetter", "Cancelled"] == [str(s) for s in wire.JOB_STATUSES]
