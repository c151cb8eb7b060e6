"""The completer: sends run outcomes to the coordinator in batches.

Executors hand an outcome over and free their slot at once; the run stays owned (its
lease renewed by the heartbeat) until the coordinator acknowledges the completion, so
pipelining never weakens at-least-once. Whatever is queued when a request is in
flight goes in the next one. Unreachable coordinator: retried with capped backoff.

Each request also asks for as many new jobs as the worker wants right then
(``Complete.claim``), and they come back with the acknowledgement: a busy worker
needs one request per batch, not two. How many is the claimer's decision, and the
jobs are the claimer's to take (plain calls on actors/worker/claimer.py, which
counts them as asked meanwhile); the claimer long-polls only while no completion is
pending (``WorkerState.completing``, kept here).
"""

from __future__ import annotations

import math

import structlog
import trio

from scheduler_core.actors.worker.claimer import Claimer
from scheduler_core.actors.worker.coordinator_link import Link, LinkError, backoff
from scheduler_core.actors.worker.worker_state import WorkerState
from scheduler_core.schema import wire

log = structlog.get_logger("actors.completer")

MAX_BATCH = 500
LINGER_SECONDS = 0.01
"""How long a small batch waits for more outcomes while other bodies are running:
every request costs about a millisecond on each side, so batching is most of the
fast path's throughput. The slots are free meanwhile; only the acknowledgement (and
the claim riding on it, which the prefetched queue covers) waits."""


class Completer:
    def __init__(self, link: Link, state: WorkerState, claimer: Claimer) -> None:
        self.link = link
        self.state = state
        self.claimer = claimer
        self._send, self._receive = trio.open_memory_channel[wire.Completion](math.inf)

    def submit(self, completion: wire.Completion) -> None:
        self.state.completing += 1
        self._send.send_nowait(completion)

    async def wait_idle(self) -> None:
        """Wait until every submitted completion was acknowledged (or refused)."""
        await self.state.wait_until(lambda: self.state.completing == 0)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        state = self.state
        while True:
            batch = [await self._receive.receive()]
            self._take_queued(batch)
            target = min(MAX_BATCH, max(1, (state.slots + state.prefetch()) // 2))
            if len(batch) < target and state.executing:
                with trio.move_on_after(LINGER_SECONDS):
                    while len(batch) < target and state.executing:
                        batch.append(await self._receive.receive())
                        self._take_queued(batch)
            await self._deliver(batch)
            state.completing -= len(batch)
            if state.completing == 0:
                state.changed.ring()  # the claimer may long-poll, a drain go on

    def _take_queued(self, batch: list[wire.Completion]) -> None:
        while len(batch) < MAX_BATCH:
            try:
                batch.append(self._receive.receive_nowait())
            except trio.WouldBlock:
                return

    async def _deliver(self, batch: list[wire.Completion]) -> None:
        failures = 0
        state = self.state
        claimer = self.claimer
        while True:
            claim = claimer.reserve()
            try:
                reply = await self.link.complete(wire.Complete(
                    worker_id=state.worker_id, completions=batch, claim=claim,
                    queues=claimer.queues))
            except LinkError as exc:
                failures += 1
                delay = backoff(failures)
                log.warning("completion_failed", actor="completer",
                            worker_id=state.worker_id, runs=len(batch), error=str(exc),
                            retry_in_s=delay)
                await trio.sleep(delay)
                continue
            finally:
                claimer.release(claim)
            break
        if reply.jobs:
            claimer.take(reply.jobs)
        for item in reply.results:
            if not item.accepted:
                log.warning("completion_refused", actor="completer",
                            worker_id=state.worker_id, run_id=str(item.run_id),
                            reason="the run is no longer this worker's (lease lost)")
            state.forget(item.run_id)
