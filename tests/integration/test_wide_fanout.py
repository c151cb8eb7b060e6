"""Wide fan-outs (migration 0018, docs/decisions/0021-dependencies.md "Wide fan-outs"):
a Succeeded parent with more than 1,000 children leaves their release to a coordinator's
releaser, just after its own commit; up to 1,000 are released inside it, as before.

In process against a real PostgreSQL (the release store alone: what each step writes),
then one parent with 10,000 children and a join over all of them, run by real workers.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
import trio

from scheduler_core.runtime import db
from scheduler_core.schema.release_store import ReleaseStore
from tests.support import Coordinator, Worker, query, running_coordinator, submit_batch, wait_until


def family(dsn: str, children: int, *, parents: int = 1) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
    """``parents`` Running jobs and ``children`` Waiting jobs that depend on every one
    of them, written directly (as a dependent submit leaves them)."""
    ps = [uuid.uuid4() for _ in range(parents)]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO jobs (id, type, status, run_at, max_attempts, timeout_seconds, "
            "has_dependents) SELECT p, 'noop', 'Running', now(), 3, 300, true "
            "FROM unnest(%s::uuid[]) p", (ps,))
        rows = conn.execute(
            "INSERT INTO jobs (id, type, status, queue, run_at, max_attempts, timeout_seconds, "
            "deps_open, dep_depth) SELECT gen_random_uuid(), 'noop', 'Waiting', 'nowhere', "
            "now(), 3, 300, %s, 1 FROM generate_series(1, %s) RETURNING id",
            (parents, children)).fetchall()
        kids = [r[0] for r in rows]
        conn.execute(
            "INSERT INTO job_deps (parent, child, on_failure) "
            "SELECT p, c, 'cancel' FROM unnest(%s::uuid[]) p, unnest(%s::uuid[]) c",
            (ps, kids))
    return ps, kids


def succeed(dsn: str, job_id: uuid.UUID) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE jobs SET status = 'Succeeded', finished_at = now() WHERE id = %s",
                     (job_id,))


def statuses(dsn: str, ids: list[uuid.UUID]) -> dict[str, int]:
    rows = query(dsn, "SELECT status, count(*) AS n FROM jobs WHERE id = ANY(%s) "
                      "GROUP BY status", ids)
    return {r["status"]: r["n"] for r in rows}


def releases(dsn: str) -> list[uuid.UUID]:
    return [r["parent"] for r in query(dsn, "SELECT parent FROM job_releases ORDER BY parent")]


def release(dsn: str, limit: int = 10) -> tuple[int, int]:
    async def main() -> tuple[int, int]:
        rung: list[int] = []
        async with db.open_pool(dsn, max_size=1) as pool:
            out = await ReleaseStore(pool, wake=lambda: rung.append(1)).release(limit)
        assert bool(rung) == bool(out[1])  # the claims are woken when, and only when
        return out
    return trio.run(main)


def test_a_parent_with_a_thousand_children_releases_them_in_its_own_commit(
        db_dsn: str) -> None:
    [parent], kids = family(db_dsn, 1000)
    succeed(db_dsn, parent)
    assert {"Pending": 1000} == statuses(db_dsn, kids)
    assert [] == releases(db_dsn)


def test_a_wider_parent_leaves_its_release_to_the_releaser_exactly_once(db_dsn: str) -> None:
    [parent], kids = family(db_dsn, 1500)
    succeed(db_dsn, parent)
    assert {"Waiting": 1500} == statuses(db_dsn, kids)  # its commit did not touch them
    assert [parent] == releases(db_dsn)
    assert (1, 1500) == release(db_dsn)
    assert {"Pending": 1500} == statuses(db_dsn, kids)
    assert [] == releases(db_dsn)
    assert (0, 0) == release(db_dsn)  # nothing twice
    assert {0} == {r["deps_open"] for r in query(
        db_dsn, "SELECT deps_open FROM jobs WHERE id = ANY(%s)", kids)}


def test_a_child_of_a_wide_and_a_narrow_parent_waits_for_both_in_either_order(
        db_dsn: str) -> None:
    ps, kids = family(db_dsn, 1001, parents=2)
    wide, narrow = ps
    succeed(db_dsn, wide)  # deferred: 1,001 open edges
    assert [wide] == releases(db_dsn)
    succeed(db_dsn, narrow)  # also 1,001: deferred too
    assert (2, 1001) == release(db_dsn)
    assert {"Pending": 1001} == statuses(db_dsn, kids)
    # And in the other order, with the narrow one's children fewer than the wide's.
    ps2, kids2 = family(db_dsn, 1001, parents=1)
    [extra] = ps2
    with psycopg.connect(db_dsn, autocommit=True) as conn:  # one more, narrow, parent
        conn.execute("INSERT INTO jobs (id, type, status, run_at, max_attempts, "
                     "timeout_seconds, has_dependents) VALUES (%s, 'noop', 'Running', now(), "
                     "3, 300, true)", (narrow2 := uuid.uuid4(),))
        conn.execute("INSERT INTO job_deps (parent, child, on_failure) VALUES (%s, %s, 'cancel')",
                     (narrow2, kids2[0]))
        conn.execute("UPDATE jobs SET deps_open = 2 WHERE id = %s", (kids2[0],))
    succeed(db_dsn, narrow2)  # one child: inline, counted but not released (1 left)
    assert "Waiting" == query(db_dsn, "SELECT status FROM jobs WHERE id = %s", kids2[0])[0][
        "status"]
    succeed(db_dsn, extra)
    assert (1, 1001) == release(db_dsn)
    assert {"Pending": 1001} == statuses(db_dsn, kids2)


def test_a_release_locked_by_another_coordinator_is_skipped_then_done(db_dsn: str) -> None:
    [parent], kids = family(db_dsn, 1200)
    succeed(db_dsn, parent)
    with psycopg.connect(db_dsn) as other:
        other.execute("SELECT 1 FROM job_releases WHERE parent = %s FOR UPDATE", (parent,))
        assert (0, 0) == release(db_dsn)  # held elsewhere: skipped, not waited for
        other.rollback()  # the other coordinator's pass failed: nothing was done
    assert {"Waiting": 1200} == statuses(db_dsn, kids)
    assert (1, 1200) == release(db_dsn)


def test_a_failed_wide_parent_cancels_its_children_in_its_own_transaction(
        db_dsn: str) -> None:
    [parent], kids = family(db_dsn, 1500)
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        conn.execute("UPDATE jobs SET status = 'DeadLetter', finished_at = now() WHERE id = %s",
                     (parent,))
    assert {"Cancelled": 1500} == statuses(db_dsn, kids)
    assert [] == releases(db_dsn)


# -- one parent, 10,000 children, one join: real processes ------------------------------------

FAST = {"SCHEDULER_HEARTBEAT_SECONDS": "0.5", "SCHEDULER_CLAIM_WAIT_SECONDS": "5"}


@pytest.fixture(scope="module")
def api(module_dsn: str) -> Iterator[Coordinator]:
    with running_coordinator(module_dsn, env=FAST) as c:
        yield c


def test_ten_thousand_children_then_a_join_the_join_runs_once_after_the_last(
        api: Coordinator, module_dsn: str) -> None:
    queue = f"fan-{uuid.uuid4().hex[:8]}"
    job: dict[str, Any] = {"type": "noop_inline", "payload": {}, "queue": queue}
    with httpx.Client(base_url=api.url, timeout=60) as http:
        [parent] = submit_batch(http, [job])
        children: list[str] = []
        for _ in range(10):
            children += submit_batch(http, [{**job, "dependsOn": [parent]}] * 1000)
        resp = http.post("/api/jobs", json={**job, "dependsOn": children})
        assert 201 == resp.status_code, resp.text
        join = resp.json()["id"]
    workers = [Worker(api.url, slots=16, env=FAST, extra=["--queues", queue])
               for _ in range(2)]
    try:
        wait_until(lambda: query(module_dsn, "SELECT status FROM jobs WHERE id = %s",
                                 uuid.UUID(join))[0]["status"] == "Succeeded",
                   timeout=240, what="the join Succeeded")
    finally:
        for w in workers:
            w.stop()
    ids = [uuid.UUID(i) for i in children]
    assert {"Succeeded": 10000} == statuses(module_dsn, ids)
    runs = query(module_dsn, "SELECT job_id, outcome, started_at, finished_at FROM job_runs "
                             "WHERE job_id = ANY(%s)", [*ids, uuid.UUID(parent), uuid.UUID(join)])
    by_job: dict[uuid.UUID, list[dict[str, Any]]] = {}
    for r in runs:
        by_job.setdefault(r["job_id"], []).append(r)
    [join_run] = by_job[uuid.UUID(join)]  # the join ran once
    [parent_run] = by_job[uuid.UUID(parent)]
    last_child = max(r["finished_at"] for i in ids for r in by_job[i] if r["outcome"] == "Succeeded")
    assert join_run["started_at"] >= last_child
    assert min(r["started_at"] for i in ids for r in by_job[i]) >= parent_run["finished_at"]
    assert all(sum(r["outcome"] == "Succeeded" for r in by_job[i]) == 1 for i in ids)
    assert [] == releases(module_dsn)
