"""The claim loop: asks the coordinator for as many jobs as the worker wants (its
free slots plus a bounded prefetch, see actors/worker/worker_state.py).

Each claim long-polls (the coordinator answers as soon as work arrives, or empty after
a few seconds); claimed jobs are queued for the executors' slots. While completions
are pending, the completer asks for jobs with them instead (one request, not two),
so the loop waits. It stops claiming the moment the worker starts draining. An
unreachable coordinator is retried with capped backoff.
"""

from __future__ import annotations

import structlog
import trio

from scheduler_core.actors.worker.completer import Completer
from scheduler_core.actors.worker.coordinator_link import Link, LinkError, backoff
from scheduler_core.actors.worker.executor import Executors
from scheduler_core.actors.worker.worker_state import WorkerState
from scheduler_core.schema import wire

log = structlog.get_logger("actors.claim_loop")


def take(state: WorkerState, executors: Executors, jobs: list[wire.ClaimedJob]) -> None:
    """Own newly claimed jobs and queue them for the slots (handed back at once if
    the worker started draining meanwhile)."""
    for job in jobs:
        owned = state.add(job)
        executors.start(owned)
        if state.draining:
            owned.stop("Released")  # claimed in the instant of the signal: hand back
    state.changed.ring()


async def run(link: Link, state: WorkerState, executors: Executors, completer: Completer, *,
              queues: list[str], wait_seconds: float = 5.0,
              task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    await state.registered.wait()
    completer.on_claimed = lambda jobs: take(state, executors, jobs)
    task_status.started()
    failures = 0
    try:
        while not state.draining:
            await state.wait_until(
                lambda: state.draining or (state.wanted() > 0 and completer.pending == 0))
            if state.draining:
                break
            want = state.wanted()
            reply: wire.ClaimReply | None = None
            with trio.CancelScope() as scope:
                state.claim_scope = scope
                state.asked += want
                try:
                    reply = await link.claim(wire.Claim(
                        worker_id=state.worker_id, max=want, wait_seconds=wait_seconds,
                        queues=queues))
                    failures = 0
                except LinkError as exc:
                    failures += 1
                    delay = backoff(failures)
                    log.warning("claim_failed", actor="claim_loop", worker_id=state.worker_id,
                                error=str(exc), retry_in_s=delay)
                    await trio.sleep(delay)
                finally:
                    state.asked -= want
            state.claim_scope = None
            if reply is not None:
                take(state, executors, reply.jobs)
    finally:
        completer.on_claimed = None
    log.info("claiming_stopped", actor="claim_loop", worker_id=state.worker_id)
    await trio.sleep_forever()
