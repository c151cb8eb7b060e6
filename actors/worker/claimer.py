"""The claimer: the one owner of the worker's claims. It asks the coordinator for as
many jobs as the worker wants (its free slots plus a bounded prefetch, see
actors/worker/worker_state.py), counts what is asked for and not yet answered, and
queues what comes back for the executors' slots.

Jobs are asked for two ways, both counted here. The claimer's own long poll (the
coordinator answers as soon as work arrives, or empty after a few seconds) runs only
while no completion is pending; meanwhile the completer asks for jobs with each batch
of completions (one request, not two) through :meth:`Claimer.reserve`,
:meth:`Claimer.release` and :meth:`Claimer.take`. Claiming stops the moment the worker
starts draining (a long poll in flight is cancelled), and jobs claimed in that instant
are handed back at once. An unreachable coordinator is retried with capped backoff.
"""

from __future__ import annotations

import structlog
import trio

from scheduler_core.actors.worker.coordinator_link import Link, LinkError, backoff
from scheduler_core.actors.worker.worker_state import OwnedRun, WorkerState
from scheduler_core.schema import wire

log = structlog.get_logger("actors.claimer")


class Claimer:
    """``runs``: where claimed runs are queued for the executors' slots."""

    def __init__(self, link: Link, state: WorkerState,
                 runs: trio.MemorySendChannel[OwnedRun], *, queues: list[str],
                 wait_seconds: float = 5.0) -> None:
        self.link = link
        self.state = state
        self.queues = queues
        self.wait_seconds = wait_seconds
        self.asked = 0  # jobs asked for by requests still in flight (claims, completions)
        self._runs = runs
        self._claiming = False  # registered and running: completions may carry claims

    def wanted(self) -> int:
        """How many more jobs to ask for now (0 while draining)."""
        return max(self.state.room() - self.asked, 0)

    def reserve(self) -> int:
        """How many jobs a request about to be sent (a completion) asks for; counted
        as asked until :meth:`release`. Zero until the claimer runs, and while
        draining."""
        want = self.wanted() if self._claiming else 0
        self.asked += want
        return want

    def release(self, reserved: int) -> None:
        """The request that asked for ``reserved`` jobs was answered, or failed."""
        self.asked -= reserved

    def take(self, jobs: list[wire.ClaimedJob]) -> None:
        """Own newly claimed jobs and queue them for the slots (handed back at once if
        the worker started draining meanwhile)."""
        state = self.state
        for job in jobs:
            owned = state.add(job)
            self._runs.send_nowait(owned)
            if state.draining:
                owned.stop("Released")  # claimed in the instant of the signal: hand back
        state.changed.ring()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        state = self.state
        await state.registered.wait()
        self._claiming = True
        task_status.started()
        try:
            with trio.CancelScope() as claiming:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._stop_on_drain, claiming)
                    await self._claim_until_draining()
                    nursery.cancel_scope.cancel()
        finally:
            self._claiming = False
        log.info("claiming_stopped", actor="claimer", worker_id=state.worker_id)
        await trio.sleep_forever()

    async def _stop_on_drain(self, claiming: trio.CancelScope) -> None:
        await self.state.drain_started.wait()
        claiming.cancel()  # a long poll in flight too: no job may arrive after this

    async def _claim_until_draining(self) -> None:
        state = self.state
        failures = 0
        while not state.draining:
            await state.wait_until(
                lambda: state.draining or (self.wanted() > 0 and state.completing == 0))
            if state.draining:
                return
            want = self.reserve()
            try:
                reply = await self.link.claim(wire.Claim(
                    worker_id=state.worker_id, max=want, wait_seconds=self.wait_seconds,
                    queues=self.queues))
            except LinkError as exc:
                failures += 1
                delay = backoff(failures)
                log.warning("claim_failed", actor="claimer", worker_id=state.worker_id,
                            error=str(exc), retry_in_s=delay)
                await trio.sleep(delay)
                continue
            finally:
                self.release(want)
            failures = 0
            self.take(reply.jobs)
