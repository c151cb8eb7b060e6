"""The claim loop: asks the coordinator for as many jobs as there are free slots.

Each claim long-polls (the coordinator answers as soon as work arrives, or empty after
a few seconds); claimed jobs go straight to the executors. It stops claiming the
moment the worker starts draining. An unreachable coordinator is retried with capped
backoff.
"""

from __future__ import annotations

import structlog
import trio

from actors.coordinator_link import Link, LinkError, backoff
from actors.executor import Executors
from actors.worker_state import WorkerState
from schema import wire

log = structlog.get_logger("actors.claim_loop")


async def run(link: Link, state: WorkerState, executors: Executors, *, queues: list[str],
              wait_seconds: float = 5.0,
              task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    await state.registered.wait()
    task_status.started()
    failures = 0
    while not state.draining:
        await state.wait_until(lambda: state.free > 0 or state.draining)
        if state.draining:
            break
        reply: wire.ClaimReply | None = None
        with trio.CancelScope() as scope:
            state.claim_scope = scope
            try:
                reply = await link.claim(wire.Claim(
                    worker_id=state.worker_id, max=state.free, wait_seconds=wait_seconds,
                    queues=queues))
                failures = 0
            except LinkError as exc:
                failures += 1
                delay = backoff(failures)
                log.warning("claim_failed", actor="claim_loop", worker_id=state.worker_id,
                            error=str(exc), retry_in_s=delay)
                await trio.sleep(delay)
        state.claim_scope = None
        if reply is None:
            continue
        for job in reply.jobs:
            owned = state.add(job)
            if state.draining:
                owned.stop("Released")  # claimed in the instant of the signal: hand back
            log.debug("job_claimed", actor="claim_loop", worker_id=state.worker_id,
                      job_id=str(job.job_id), run_id=str(job.run_id), attempt=job.attempt,
                      type=job.type)
            executors.start(owned)
    log.info("claiming_stopped", actor="claim_loop", worker_id=state.worker_id)
    await trio.sleep_forever()
