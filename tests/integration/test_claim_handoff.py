"""The claim hand-off (actors/coordinator/claim_gate.py ``take``/``hand_over``, the
submit side in submit_batcher.py), in process against a real PostgreSQL: a lone submit
claims for a parked long poll of its queue right after its INSERT, and the poll answers
with those runs; nothing is lost when the poll's request goes away or the claim fails.
(The same path under real HTTP, coordinators and workers: every integration test that
submits one job to an idle worker.)"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import trio

from scheduler_core.actors.coordinator.claim_gate import ClaimGate
from scheduler_core.actors.coordinator.submit_batcher import SubmitBatcher
from scheduler_core.runtime import db
from scheduler_core.runtime.doorbell import Doorbell
from scheduler_core.schema import wire
from scheduler_core.schema.store import NewJob, Store
from tests.support import scalar

WORKER = "handoff-worker"


class Parked:
    """The ``waiting`` context of a long poll: an event set each time it parks."""

    def __init__(self) -> None:
        self.count = 0
        self.event = trio.Event()

    @contextmanager
    def __call__(self) -> Iterator[None]:
        self.count += 1
        self.event.set()
        yield

    async def again(self, count: int) -> None:
        """Wait until the poll has parked ``count`` times in all."""
        while self.count < count:
            self.event = trio.Event()
            await self.event.wait()


@asynccontextmanager
async def coordinator_parts(dsn: str, **store_args: Any
                            ) -> AsyncIterator[tuple[Store, ClaimGate, SubmitBatcher]]:
    async with db.open_pool(dsn, max_size=4) as pool:
        store = Store(pool, **store_args)
        await store.register_worker(wire.RegisterWorker(
            worker_id=WORKER, hostname="test", pid=1, capacity=4),
            secret_hash=b"x", presented=None)
        doorbell = Doorbell()
        store.wake = doorbell.ring
        gate = ClaimGate(store, doorbell, max_wait=30.0)
        yield store, gate, SubmitBatcher(store, handoff=gate)


def claim(queues: list[str]) -> wire.Claim:
    return wire.Claim(worker_id=WORKER, max=4, wait_seconds=30, queues=queues)


async def test_a_lone_submit_claims_for_the_parked_poll_of_its_queue(db_dsn: str) -> None:
    async with coordinator_parts(db_dsn) as (_, gate, batcher):
        got: list[wire.ClaimedJob] = []
        parked = Parked()

        async def poll() -> None:
            got.extend(await gate.claim(claim(["default"]), waiting=parked))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(poll)
            await parked.again(1)
            job, created = await batcher.submit(NewJob(type="noop", payload={}))
        assert created
        assert [j.job_id for j in got] == [job.id]
        assert gate.handoffs == 1
        assert scalar(db_dsn, "SELECT status || ' ' || worker_id FROM jobs WHERE id = %s",
                      job.id) == f"Running {WORKER}"


async def test_a_poll_for_every_queue_takes_a_job_of_any_queue(db_dsn: str) -> None:
    async with coordinator_parts(db_dsn) as (_, gate, batcher):
        got: list[wire.ClaimedJob] = []
        parked = Parked()

        async def poll() -> None:
            got.extend(await gate.claim(claim(["*"]), waiting=parked))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(poll)
            await parked.again(1)
            job, _ = await batcher.submit(NewJob(type="noop", payload={}, queue="emails"))
        assert ([j.job_id for j in got], gate.handoffs) == ([job.id], 1)


async def test_a_poll_of_other_queues_is_not_taken(db_dsn: str) -> None:
    async with coordinator_parts(db_dsn) as (_, gate, batcher):
        parked = Parked()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: gate.claim(claim(["other"]), waiting=parked))
            await parked.again(1)
            job, _ = await batcher.submit(NewJob(type="noop", payload={}))
            # Woken by the submit's ring, it looks (finding nothing of its queue) and
            # parks again: it was never handed the job.
            await parked.again(2)
            nursery.cancel_scope.cancel()
        assert gate.handoffs == 0
        assert scalar(db_dsn, "SELECT status FROM jobs WHERE id = %s", job.id) == "Pending"


async def test_runs_claimed_for_a_poll_that_went_away_are_handed_back(db_dsn: str) -> None:
    async with coordinator_parts(db_dsn) as (store, gate, _):
        parked = Parked()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: gate.claim(claim(["default"]), waiting=parked))
            await parked.again(1)
            taken = gate.take("default")
            assert taken is not None
            nursery.cancel_scope.cancel()  # the worker hung up while a submit claimed
        (job, _), claimed = await store.submit_claiming(
            NewJob(type="noop", payload={}), taken.worker_id, taken.limit, taken.queues)
        assert isinstance(claimed, list) and [j.job_id for j in claimed] == [job.id]
        await gate.hand_over(taken, claimed)
        assert gate.handoffs == 0
        assert scalar(db_dsn, "SELECT status || ' ' || attempts FROM jobs WHERE id = %s",
                      job.id) == "Pending 0"
        assert scalar(db_dsn, "SELECT outcome FROM run_history WHERE job_id = %s",
                      job.id) == "Released"


async def test_a_failed_hand_off_claim_keeps_the_job_and_the_poll_waiting(
        db_dsn: str) -> None:
    # A lease this long is past the end of time: the claim statement fails (timestamp
    # out of range) after the INSERT committed.
    async with coordinator_parts(db_dsn, lease_seconds=1e300) as (_, gate, batcher):
        parked = Parked()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: gate.claim(claim(["*"]), waiting=parked))
            await parked.again(1)
            job, created = await batcher.submit(NewJob(type="noop", payload={}))
            await parked.again(2)  # handed nothing, it waits on
            nursery.cancel_scope.cancel()
        assert created and gate.handoffs == 0
        assert scalar(db_dsn, "SELECT status FROM jobs WHERE id = %s", job.id) == "Pending"
