"""The group commit of single submits (actors/coordinator/submit_batcher.py) in
process, against a real PostgreSQL: who is written in which group, keys, a job the
database refuses, a request that goes away.

The first submit of each test waits inside PostgreSQL on an uncommitted row with its
idempotency key (``held_key``), so the test decides exactly which submits arrive while
a write is in flight; ``wait_all_tasks_blocked`` says when they have all queued.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import psycopg
import trio
import trio.testing

from scheduler_core.actors.coordinator.submit_batcher import SubmitBatcher
from scheduler_core.runtime import db
from scheduler_core.runtime.errors import DatabaseUnavailable
from scheduler_core.schema import wire
from scheduler_core.schema.store import NewJob, Store
from tests.support import scalar

Outcome = tuple[wire.JobOut, bool] | BaseException


@asynccontextmanager
async def open_batcher(dsn: str) -> AsyncIterator[SubmitBatcher]:
    async with db.open_pool(dsn, max_size=8) as pool:
        yield SubmitBatcher(Store(pool))


@asynccontextmanager
async def held_key(dsn: str, key: str) -> AsyncIterator[None]:
    """A job row with ``key`` inserted in a transaction left open for the block, then
    rolled back: an INSERT with that key waits for it, then writes its own job."""
    conn = await db.connect(dsn, autocommit=False)
    try:
        await conn.execute(
            "INSERT INTO jobs (id, type, status, run_at, max_attempts, timeout_seconds,"
            " idempotency_key) VALUES (gen_random_uuid(), 'noop', 'Pending', now(), 3,"
            " 300, %s)", (key,))
        yield
        await conn.rollback()
    finally:
        await conn.close()



def ok(outcome: Outcome) -> tuple[wire.JobOut, bool]:
    """A submit's answer, which must not be an error."""
    assert isinstance(outcome, tuple), outcome
    return outcome


def created(outcomes: dict[int, Outcome], *which: int) -> bool:
    return all(ok(outcomes[i])[1] for i in which)


def noop(**kw: Any) -> NewJob:
    return NewJob(type="noop", payload={}, **kw)


async def submit_into(batcher: SubmitBatcher, job: NewJob, outcomes: dict[int, Outcome],
                      i: int) -> None:
    try:
        outcomes[i] = await batcher.submit(job)
    except Exception as exc:
        outcomes[i] = exc


@asynccontextmanager
async def first_write_held(dsn: str, batcher: SubmitBatcher, outcomes: dict[int, Outcome]
                           ) -> AsyncIterator[Callable[[NewJob, int], None]]:
    """Submit job -1 and hold its INSERT in flight; the block's submits (started with
    the function yielded) queue behind it; on exit the write is let go and every
    submit has its outcome."""
    key = f"held-{uuid.uuid4()}"
    groups = batcher.statistics().groups
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery, held_key(dsn, key):
            nursery.start_soon(submit_into, batcher, noop(idempotency_key=key), outcomes, -1)
            await trio.testing.wait_all_tasks_blocked()

            def start(job: NewJob, i: int) -> None:
                nursery.start_soon(submit_into, batcher, job, outcomes, i)

            yield start
            await trio.testing.wait_all_tasks_blocked()
            assert groups + 1 == batcher.statistics().groups  # the held write is in flight


async def test_an_idle_submit_is_written_alone_at_once(db_dsn: str) -> None:
    async with open_batcher(db_dsn) as batcher:
        for _ in range(3):
            _, new = await batcher.submit(noop())
            assert new
    stats = batcher.statistics()
    assert (3, 3, 1, 0) == (stats.groups, stats.jobs, stats.largest, stats.waiting)


async def test_submits_that_arrive_during_a_write_go_in_one_group(db_dsn: str) -> None:
    outcomes: dict[int, Outcome] = {}
    async with open_batcher(db_dsn) as batcher:
        async with first_write_held(db_dsn, batcher, outcomes) as start:
            for i in range(50):
                start(NewJob(type="noop", payload={"i": i}, priority=i % 7), i)
    stats = batcher.statistics()
    assert (2, 51, 50, 0) == (stats.groups, stats.jobs, stats.largest, stats.waiting)
    jobs = [ok(outcomes[i]) for i in range(50)]
    assert all(new for _, new in jobs)
    assert [{"i": i} for i in range(50)] == [job.payload for job, _ in jobs]
    assert 50 == len({job.id for job, _ in jobs})
    assert 51 == scalar(db_dsn, "SELECT count(*) FROM jobs")


async def test_a_group_is_at_most_max_group_jobs(db_dsn: str) -> None:
    outcomes: dict[int, Outcome] = {}
    async with db.open_pool(db_dsn, max_size=4) as pool:
        batcher = SubmitBatcher(Store(pool), max_group=4)
        async with first_write_held(db_dsn, batcher, outcomes) as start:
            for i in range(10):
                start(noop(), i)
    stats = batcher.statistics()
    assert (1 + 3, 11, 4) == (stats.groups, stats.jobs, stats.largest)  # 1, 4, 4, 2
    assert 11 == scalar(db_dsn, "SELECT count(*) FROM jobs")


async def test_one_new_key_in_one_group_makes_one_job_the_others_get_it(db_dsn: str) -> None:
    key = f"k-{uuid.uuid4()}"
    outcomes: dict[int, Outcome] = {}
    async with open_batcher(db_dsn) as batcher:
        async with first_write_held(db_dsn, batcher, outcomes) as start:
            for i in range(10):
                start(noop(idempotency_key=key), i)
    results = [ok(outcomes[i]) for i in range(10)]
    assert [False] * 9 + [True] == sorted(new for _, new in results)
    assert 1 == len({job.id for job, _ in results})
    assert 1 == scalar(db_dsn, "SELECT count(*) FROM jobs WHERE idempotency_key = %s", key)


async def test_a_key_that_exists_already_gets_the_existing_job(db_dsn: str) -> None:
    key = f"k-{uuid.uuid4()}"
    outcomes: dict[int, Outcome] = {}
    async with open_batcher(db_dsn) as batcher:
        existing, _ = await batcher.submit(noop(idempotency_key=key))
        async with first_write_held(db_dsn, batcher, outcomes) as start:
            start(noop(idempotency_key=key), 0)
            start(noop(), 1)
            start(noop(idempotency_key=key), 2)
    assert (existing.id, False) == (ok(outcomes[0])[0].id, ok(outcomes[0])[1])
    assert (existing.id, False) == (ok(outcomes[2])[0].id, ok(outcomes[2])[1])
    assert created(outcomes, 1)


async def test_a_job_the_database_refuses_fails_alone(db_dsn: str) -> None:
    outcomes: dict[int, Outcome] = {}
    async with open_batcher(db_dsn) as batcher:
        async with first_write_held(db_dsn, batcher, outcomes) as start:
            for i in range(5):
                start(noop(max_attempts=0 if i == 2 else 3), i)  # 0: the CHECK refuses it
    assert isinstance(outcomes[2], psycopg.errors.CheckViolation)
    assert created(outcomes, 0, 1, 3, 4)
    assert 1 == batcher.statistics().split
    assert 1 + 4 == scalar(db_dsn, "SELECT count(*) FROM jobs")


async def backend_waiting_on_a_lock(dsn: str) -> int:
    """The pid of this database's backend waiting for a row lock (polled)."""
    async with await db.connect(dsn) as admin:
        while True:
            cur = await admin.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock'")
            row = await cur.fetchone()
            if row is not None:
                return int(row["pid"])
            await trio.sleep(0.01)


async def test_a_database_error_fails_its_group_and_only_its_group(db_dsn: str) -> None:
    k1, k2 = f"k1-{uuid.uuid4()}", f"k2-{uuid.uuid4()}"
    outcomes: dict[int, Outcome] = {}
    async with open_batcher(db_dsn) as batcher:
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery, held_key(db_dsn, k2):
                first_done = trio.Event()

                async def first() -> None:
                    await submit_into(batcher, noop(idempotency_key=k1), outcomes, -1)
                    first_done.set()

                async with held_key(db_dsn, k1):
                    nursery.start_soon(first)
                    await trio.testing.wait_all_tasks_blocked()
                    for i, key in enumerate([None, k2, None]):
                        nursery.start_soon(submit_into, batcher,
                                           noop(idempotency_key=key), outcomes, i)
                    await trio.testing.wait_all_tasks_blocked()
                await first_done.wait()
                # Group 1 is written; group 2 (0, 1, 2) waits on k2: its backend dies.
                pid = await backend_waiting_on_a_lock(db_dsn)
                async with await db.connect(db_dsn) as admin:
                    await admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
                await trio.testing.wait_all_tasks_blocked()
            _, new = await batcher.submit(noop())
    assert created(outcomes, -1)
    assert all(isinstance(outcomes[i], DatabaseUnavailable) for i in range(3))
    assert new
    assert (3, 5) == (batcher.statistics().groups, batcher.statistics().jobs)
    assert 2 == scalar(db_dsn, "SELECT count(*) FROM jobs")


async def test_a_submit_cancelled_while_queued_is_not_written(db_dsn: str) -> None:
    gone = f"gone-{uuid.uuid4()}"
    outcomes: dict[int, Outcome] = {}
    scope = trio.CancelScope()

    async def cancellable() -> None:
        with scope:
            await batcher.submit(noop(idempotency_key=gone))

    async with open_batcher(db_dsn) as batcher:
        async with first_write_held(db_dsn, batcher, outcomes) as start:
            start(noop(), 0)
            async with trio.open_nursery() as inner:
                inner.start_soon(cancellable)
                start(noop(), 1)
                await trio.testing.wait_all_tasks_blocked()
                assert 3 == batcher.statistics().waiting
                scope.cancel()
    assert scope.cancelled_caught
    assert created(outcomes, -1, 0, 1)
    assert 0 == scalar(db_dsn, "SELECT count(*) FROM jobs WHERE idempotency_key = %s", gone)
    assert 3 == scalar(db_dsn, "SELECT count(*) FROM jobs")
    assert (2, 3, 0) == (batcher.statistics().groups, batcher.statistics().jobs,
                         batcher.statistics().waiting)


async def test_a_submit_cancelled_while_its_group_is_written_loses_none_of_the_others(
        db_dsn: str) -> None:
    key = f"held-{uuid.uuid4()}"
    outcomes: dict[int, Outcome] = {}
    async with open_batcher(db_dsn) as batcher:
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery, held_key(db_dsn, key):
                leader = trio.CancelScope()

                async def leading() -> None:
                    with leader:
                        await batcher.submit(noop(idempotency_key=key))

                nursery.start_soon(leading)
                await trio.testing.wait_all_tasks_blocked()
                for i in range(5):
                    nursery.start_soon(submit_into, batcher, noop(), outcomes, i)
                await trio.testing.wait_all_tasks_blocked()
                leader.cancel()  # the leader's client hangs up mid-write
                await trio.testing.wait_all_tasks_blocked()
                assert 1 == batcher.statistics().groups  # its write still in flight
    assert created(outcomes, *range(5))
    assert 1 + 5 == scalar(db_dsn, "SELECT count(*) FROM jobs")  # its own job too
    assert (2, 6, 0) == (batcher.statistics().groups, batcher.statistics().jobs,
                         batcher.statistics().waiting)


async def test_inserts_sharing_keys_in_opposite_orders_do_not_deadlock(db_dsn: str) -> None:
    """Two batches (or a batch and a group) with the same new keys, given in opposite
    orders, write their rows in one key order (Store's insert_jobs_params): written in
    the order given, each would hold a key the other waits for, and PostgreSQL would
    abort one of them (DeadlockDetected)."""
    async with db.open_pool(db_dsn, max_size=4) as pool:
        store = Store(pool)
        for round_ in range(10):
            keys = [f"k{round_}-{i:03}" for i in range(100)]
            answers: list[list[wire.SubmittedJob]] = []

            async def batch(order: list[str], answers: list[list[wire.SubmittedJob]]) -> None:
                answers.append(await store.submit_many(
                    [noop(idempotency_key=k) for k in order]))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(batch, keys, answers)
                nursery.start_soon(batch, keys[::-1], answers)
            assert [100, 100] == [len(a) for a in answers]
            assert 100 == sum(j.created for a in answers for j in a)
    assert 1000 == scalar(db_dsn, "SELECT count(*) FROM jobs")
