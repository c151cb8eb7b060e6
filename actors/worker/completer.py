"""The completer: sends run outcomes to the coordinator in batches.

Executors hand an outcome over and free their slot at once; the run stays owned (its
lease renewed by the heartbeat) until the coordinator acknowledges the completion, so
pipelining never weakens at-least-once. Whatever is queued when a request is in
flight goes in the next one. Unreachable coordinator: retried with capped backoff.

Each request also asks for as many new jobs as the worker wants right then
(``Complete.claim``), and they come back with the acknowledgement: a busy worker
needs one request per batch, not two. The claim loop long-polls only while no
completion is pending.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import structlog
import trio

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
    def __init__(self, link: Link, state: WorkerState, *,
                 queues: list[str] | None = None) -> None:
        self.link = link
        self.state = state
        self.queues = queues or ["default"]
        # Set by the claim loop: takes the jobs that a completion's answer carries.
        self.on_claimed: Callable[[list[wire.ClaimedJob]], None] | None = None
        self._send, self._receive = trio.open_memory_channel[wire.Completion](math.inf)
        self.pending = 0
        self._idle = trio.Event()
        self._idle.set()

    def submit(self, completion: wire.Completion) -> None:
        self.pending += 1
        self._idle = trio.Event() if self._idle.is_set() else self._idle
        self._send.send_nowait(completion)

    async def wait_idle(self) -> None:
        """Wait until every submitted completion was acknowledged (or refused)."""
        await self._idle.wait()

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
            self.pending -= len(batch)
            if self.pending == 0:
                self._idle.set()
                self.state.changed.ring()  # the claim loop may claim again

    def _take_queued(self, batch: list[wire.Completion]) -> None:
        while len(batch) < MAX_BATCH:
            try:
                batch.append(self._receive.receive_nowait())
            except trio.WouldBlock:
                return

    async def _deliver(self, batch: list[wire.Completion]) -> None:
        failures = 0
        state = self.state
        while True:
            claim = state.wanted() if self.on_claimed is not None else 0
            state.asked += claim
            try:
                reply = await self.link.complete(wire.Complete(
                    worker_id=state.worker_id, completions=batch, claim=claim,
                    queues=self.queues))
            except LinkError as exc:
                failures += 1
                delay = backoff(failures)
                log.warning("completion_failed", actor="completer",
                            worker_id=state.worker_id, runs=len(batch), error=str(exc),
                            retry_in_s=delay)
                await trio.sleep(delay)
                continue
            finally:
                state.asked -= claim
            break
        if reply.jobs and self.on_claimed is not None:
            self.on_claimed(reply.jobs)
        for item in reply.results:
            if not item.accepted:
                log.warning("completion_refused", actor="completer",
                            worker_id=state.worker_id, run_id=str(item.run_id),
                            reason="the run is no longer this worker's (lease lost)")
            state.forget(item.run_id)
