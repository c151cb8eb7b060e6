"""The claimer (actors/worker/claimer.py), the one owner of a worker's claims: what it
asks for by its long poll and with completions, when it long-polls, and that a drain
stops it at once. The coordinator is a loopback HTTP/1.1 listener that holds each
claim until the test answers it."""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import msgspec
import structlog
import trio
import trio.testing

from scheduler_core.actors.worker.claimer import Claimer
from scheduler_core.actors.worker.coordinator_link import Link
from scheduler_core.actors.worker.worker_state import OwnedRun, WorkerState
from scheduler_core.schema import wire
from tests.unit.fake_http import read_request_body


def job() -> wire.ClaimedJob:
    now = dt.datetime.now(dt.UTC)
    return wire.ClaimedJob(job_id=uuid.uuid4(), run_id=uuid.uuid4(), lease_token=uuid.uuid4(),
                           lease_expires_at=now, type="noop", payload={}, queue="default",
                           attempt=1, max_attempts=3, timeout_seconds=60)


class FakeCoordinator:
    """Reads claims into ``claims`` and answers each with the jobs the test sends."""

    def __init__(self) -> None:
        self.url = ""
        self.claims: list[wire.Claim] = []
        self.arrived = trio.Event()
        self._answers, self._answer_receive = trio.open_memory_channel[list[wire.ClaimedJob]](
            math.inf)

    async def serve(self, *, task_status: trio.TaskStatus[None]) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.url = f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}"
        task_status.started()
        await trio.serve_listeners(self._handle, listeners)

    async def next_claim(self) -> wire.Claim:
        with trio.fail_after(10):
            await self.arrived.wait()
        self.arrived = trio.Event()
        return self.claims[-1]

    def answer(self, jobs: list[wire.ClaimedJob]) -> None:
        self._answers.send_nowait(jobs)

    async def _handle(self, stream: trio.SocketStream) -> None:
        async with stream:
            buffer = b""
            while True:
                got = await read_request_body(stream, buffer)
                if got is None:
                    return
                body, buffer = got
                self.claims.append(msgspec.json.decode(body, type=wire.Claim))
                self.arrived.set()
                reply = msgspec.json.encode(wire.ClaimReply(
                    jobs=await self._answer_receive.receive()))
                await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s"
                                      % (len(reply), reply))


class Worker:
    def __init__(self, link: Link, slots: int) -> None:
        self.state = WorkerState("w", slots)
        self.claimed, self.to_run = trio.open_memory_channel[OwnedRun](math.inf)
        self.claimer = Claimer(link, self.state, self.claimed, queues=["default"],
                               wait_seconds=5.0)

    async def next_run(self) -> OwnedRun:
        with trio.fail_after(10):
            return await self.to_run.receive()


@asynccontextmanager
async def worker(slots: int = 2) -> AsyncIterator[tuple[FakeCoordinator, Worker]]:
    fake = FakeCoordinator()
    async with trio.open_nursery() as nursery:
        await nursery.start(fake.serve)
        link = Link(fake.url, timeout=5.0)
        try:
            yield fake, Worker(link, slots)
        finally:
            await link.aclose()
            nursery.cancel_scope.cancel()


async def test_a_completion_asks_for_nothing_before_the_claimer_runs() -> None:
    async with worker() as (_, w):
        assert (0, 0) == (w.claimer.reserve(), w.claimer.asked)


async def test_a_completion_asks_for_the_room_left_and_counts_it_as_asked() -> None:
    async with worker(slots=2) as (_, w), trio.open_nursery() as nursery:
        w.state.completing = 1  # a completion pending: no long poll
        w.state.registered.set()
        await nursery.start(w.claimer.run)
        assert 2 == w.claimer.reserve()
        assert (2, 0, 0) == (w.claimer.asked, w.claimer.wanted(), w.claimer.reserve())
        w.claimer.release(2)
        assert (0, 2) == (w.claimer.asked, w.claimer.wanted())
        nursery.cancel_scope.cancel()


async def test_no_long_poll_while_a_completion_is_pending() -> None:
    async with worker(slots=2) as (fake, w), trio.open_nursery() as nursery:
        w.state.completing = 1
        w.state.registered.set()
        await nursery.start(w.claimer.run)
        await trio.testing.wait_all_tasks_blocked()
        assert (0, []) == (w.claimer.asked, fake.claims)
        w.state.completing = 0
        w.state.changed.ring()
        assert 2 == (await fake.next_claim()).max
        nursery.cancel_scope.cancel()


async def test_the_long_poll_asks_for_the_room_left_and_queues_what_it_gets() -> None:
    async with worker(slots=2) as (fake, w), trio.open_nursery() as nursery:
        w.state.registered.set()
        await nursery.start(w.claimer.run)
        assert 2 == (await fake.next_claim()).max
        assert (2, 0) == (w.claimer.asked, w.claimer.reserve())  # nothing asked twice
        claimed = job()
        fake.answer([claimed])
        assert claimed == (await w.next_run()).job
        assert 1 == (await fake.next_claim()).max  # one slot left
        assert (1, 1) == (w.state.queued, w.claimer.asked)
        nursery.cancel_scope.cancel()


async def test_a_drain_cancels_the_long_poll_in_flight_at_once() -> None:
    async with worker(slots=2) as (fake, w), trio.open_nursery() as nursery:
        w.state.registered.set()
        await nursery.start(w.claimer.run)
        await fake.next_claim()
        with structlog.testing.capture_logs() as logs:
            w.state.start_draining()
            await trio.testing.wait_all_tasks_blocked()
        assert 0 == w.claimer.asked
        assert ["claiming_stopped"] == [e["event"] for e in logs]
        nursery.cancel_scope.cancel()


async def test_jobs_taken_while_draining_are_handed_back_at_once() -> None:
    async with worker() as (_, w):
        w.state.start_draining()
        w.claimer.take([job()])
        run = await w.next_run()
        assert "Released" == run.stop_reason
        assert run is w.state.stopped_while_queued.receive_nowait()  # to be finished now
