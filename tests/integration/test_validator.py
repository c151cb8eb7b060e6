"""The validation of SQL-enqueued jobs (schema/validation_store.py, actors/coordinator/
validator.py) in process, against a real PostgreSQL and no coordinator: what a waiting
job says before it is validated, what each verdict does to the row, and the races with
a parent ending and a cancel in between.
"""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
import psycopg
import trio
from psycopg.types.json import Jsonb

from scheduler_core.actors.coordinator.validator import decide
from scheduler_core.handlers import Registry, RunContext
from scheduler_core.runtime import db
from scheduler_core.schema.store import Store
from scheduler_core.schema.validation_store import Unvalidated, ValidationStore, Verdict
from tests.support import query


class Point(msgspec.Struct, forbid_unknown_fields=True):
    x: int


def registry() -> Registry:
    reg = Registry()

    @reg.handler("point", payload=Point, queue="points", max_attempts=9)
    def point(payload: Point, ctx: RunContext) -> None:
        return None

    return reg


def enqueue(dsn: str, job_type: str, payload: Any, **options: Any) -> uuid.UUID:
    named = "".join(f", {k} => %s" for k in options)
    with psycopg.connect(dsn) as conn:
        row = conn.execute(f"SELECT scheduler.enqueue(%s, %s{named})".encode(),
                           [job_type, Jsonb(payload), *options.values()]).fetchone()
        conn.commit()
    assert row is not None
    return uuid.UUID(str(row[0]))


def row_of(dsn: str, job_id: uuid.UUID) -> dict[str, Any]:
    [row] = query(dsn, "SELECT * FROM jobs WHERE id = %s", job_id)
    return row


def validate(dsn: str, limit: int = 100) -> dict[str, int]:
    async def main() -> dict[str, int]:
        rung = []
        async with db.open_pool(dsn, max_size=2) as pool:
            store = ValidationStore(pool, wake=lambda: rung.append(1))
            counts = await store.validate(
                limit, lambda jobs: decide(jobs, registry(), max_depth=64))
        released = counts.get("Pending", 0) + counts.get("Scheduled", 0)
        assert bool(rung) == bool(released)  # the claims are woken when, and only when
        return counts
    return trio.run(main)


def test_a_job_says_it_waits_for_validation_until_a_validator_moves_it(db_dsn: str) -> None:
    job_id = enqueue(db_dsn, "point", {"x": 1})

    async def seen() -> Any:
        async with db.open_pool(db_dsn, max_size=1) as pool:
            return await Store(pool).get_job(job_id)

    job = trio.run(seen)
    assert "Waiting" == job.status
    assert job.waiting is not None and "validating" == job.waiting.reason
    assert {"Pending": 1} == validate(db_dsn)
    row = row_of(db_dsn, job_id)
    assert (None, "Pending", "points", 9, 300) == (
        row["validation"], row["status"], row["queue"], row["max_attempts"],
        row["timeout_seconds"])
    assert {} == validate(db_dsn)  # nothing left


def test_each_verdict_and_a_job_due_later(db_dsn: str) -> None:
    later = enqueue(db_dsn, "point", {"x": 1}, run_at="2999-01-01T00:00:00Z")
    bad = enqueue(db_dsn, "point", {"x": "one"})
    unknown = enqueue(db_dsn, "nope", {})
    assert {"Scheduled": 1, "DeadLetter": 2} == validate(db_dsn)
    assert "Scheduled" == row_of(db_dsn, later)["status"]
    for job_id, named in ((bad, "payload.x"), (unknown, "unknown job type 'nope'")):
        row = row_of(db_dsn, job_id)
        assert "DeadLetter" == row["status"] and named in row["last_error"]
        assert row["finished_at"] is not None and row["validation"] is None


def test_a_parent_that_ends_before_its_child_is_validated_does_not_release_it_early(
        db_dsn: str) -> None:
    parent = enqueue(db_dsn, "point", {"x": 1})
    assert {"Pending": 1} == validate(db_dsn)
    child = enqueue(db_dsn, "point", {"x": 2}, depends_on=[parent])
    # The parent ends while the child is still unvalidated: counted, not released.
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        conn.execute("UPDATE jobs SET status = 'Succeeded', finished_at = now() WHERE id = %s",
                     (parent,))
    row = row_of(db_dsn, child)
    assert ("Waiting", 0) == (row["status"], row["deps_open"])
    assert row["validation"] is not None
    assert {"Pending": 1} == validate(db_dsn)  # the validator releases it
    assert "Pending" == row_of(db_dsn, child)["status"]


def test_a_child_validated_before_its_parent_ends_waits_then_is_released_by_it(
        db_dsn: str) -> None:
    parent = enqueue(db_dsn, "point", {"x": 1})
    child = enqueue(db_dsn, "point", {"x": 2}, depends_on=[parent])
    assert {"Pending": 1, "Waiting": 1} == validate(db_dsn)
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        conn.execute("UPDATE jobs SET status = 'Succeeded', finished_at = now() WHERE id = %s",
                     (parent,))
    assert "Pending" == row_of(db_dsn, child)["status"]


def test_an_invalid_parent_cancels_what_depends_on_it(db_dsn: str) -> None:
    parent = enqueue(db_dsn, "point", {"x": "bad"})
    child = enqueue(db_dsn, "point", {"x": 2}, depends_on=[parent])
    assert {"DeadLetter": 1, "Waiting": 1} == validate(db_dsn)
    row = row_of(db_dsn, child)
    assert "Cancelled" == row["status"]
    assert f"parent {parent} ended DeadLetter" == row["last_error"]


def test_a_job_cancelled_before_validation_stays_cancelled(db_dsn: str) -> None:
    job_id = enqueue(db_dsn, "point", {"x": "bad"})
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        conn.execute("UPDATE jobs SET status = 'Cancelled', finished_at = now() WHERE id = %s",
                     (job_id,))
    assert {"Cancelled": 1} == validate(db_dsn)
    row = row_of(db_dsn, job_id)
    assert ("Cancelled", None, None) == (row["status"], row["last_error"], row["validation"])


def test_two_validators_share_the_work_and_decide_each_job_once(db_dsn: str) -> None:
    ids = [enqueue(db_dsn, "point", {"x": i}) for i in range(40)]
    seen: list[uuid.UUID] = []

    def recording(jobs: Any) -> list[Verdict]:
        seen.extend(j.id for j in jobs)
        return decide(jobs, registry(), max_depth=64)

    async def main() -> list[dict[str, int]]:
        out: list[dict[str, int]] = []
        async with db.open_pool(db_dsn, max_size=4) as pool:
            store = ValidationStore(pool)

            async def one() -> None:
                out.append(await store.validate(25, recording))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(one)
                nursery.start_soon(one)
            out.append(await store.validate(25, recording))
        return out

    counts = trio.run(main)
    assert 40 == sum(c.get("Pending", 0) for c in counts)
    assert sorted(seen) == sorted(ids)  # each decided once
    assert all(r["status"] == "Pending" for r in query(
        db_dsn, "SELECT status FROM jobs WHERE id = ANY(%s)", ids))


def test_decide_is_pure() -> None:
    job = Unvalidated(id=uuid.uuid4(), type="point", payload='{"x": 3}',
                      validation=["queue", "timeout_seconds"])
    [v] = decide([job], registry(), max_depth=64)
    assert (None, "points", None, 300) == (v.error, v.queue, v.max_attempts, v.timeout_seconds)
    deep = Unvalidated(id=uuid.uuid4(), type="point", payload='{"x": ' + "[" * 70
                       + "1" + "]" * 70 + "}", validation=[])
    [d] = decide([deep], registry(), max_depth=64)
    assert d.error is not None and "payload.x" in d.error and "nested" in d.error
    broken = Unvalidated(id=uuid.uuid4(), type="point", payload='{"x": 1, "y": 2}',
                         validation=[])
    [b] = decide([broken], registry(), max_depth=64)
    assert b.error is not None and "payload.y" in b.error
