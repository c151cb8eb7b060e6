"""The heartbeat: registers the worker, then beats every interval.

Each beat renews the leases of every run the worker still owns, carries what each
running job reported since the last beat (its newest progress and meta, stored with
the renewal), and brings back the runs the coordinator wants cancelled (their executors kill the child) and the runs
this worker lost (reaped after a long silence: their executors drop them). When the
coordinator is unreachable it keeps trying with capped backoff; running jobs go on.
"""

from __future__ import annotations

import os
import socket

import structlog
import trio

from scheduler_core.actors.worker.coordinator_link import Link, LinkError, SecretRefused, backoff
from scheduler_core.actors.worker.worker_state import WorkerState
from scheduler_core.schema import wire

log = structlog.get_logger("actors.heartbeat")


async def register(link: Link, state: WorkerState) -> wire.RegisteredWorker:
    attempt = 0
    while True:
        try:
            reply = await link.register(wire.RegisterWorker(
                worker_id=state.worker_id, hostname=socket.gethostname(), pid=os.getpid(),
                capacity=state.slots))
        except LinkError as exc:
            attempt += 1
            delay = backoff(attempt)
            log.warning("register_failed", actor="heartbeat", worker_id=state.worker_id,
                        error=str(exc), retry_in_s=delay)
            await trio.sleep(delay)
            continue
        log.info("worker_registered", actor="heartbeat", worker_id=state.worker_id,
                 slots=state.slots, lease_s=reply.lease_seconds)
        state.registered.set()
        return reply


def apply_reply(state: WorkerState, reply: wire.HeartbeatReply) -> None:
    """Act on a heartbeat answer: stop cancelled runs, drop lost ones."""
    for run_id in reply.cancel:
        run = state.runs.get(run_id)
        if run is not None:
            log.info("cancel_received", actor="heartbeat", worker_id=state.worker_id,
                     run_id=str(run_id), job_id=str(run.job.job_id))
            run.stop("Cancelled")
    for run_id in reply.lost:
        run = state.runs.get(run_id)
        if run is None:
            continue
        if run.running:
            log.warning("lease_lost", actor="heartbeat", worker_id=state.worker_id,
                        run_id=str(run_id), job_id=str(run.job.job_id))
            run.stop("Lost")
        else:
            # Its completion was queued or in flight: either it landed between the
            # beat's listing and its renewal (the usual case under load), or it can
            # never be accepted now. Nothing left to do either way.
            log.debug("lease_lost", actor="heartbeat", worker_id=state.worker_id,
                      run_id=str(run_id), job_id=str(run.job.job_id), body_ended=True)
            state.forget(run_id)


async def beat(link: Link, state: WorkerState) -> wire.HeartbeatReply:
    refs = state.refs()
    reply = await link.heartbeat(wire.Heartbeat(
        worker_id=state.worker_id, runs=refs, draining=state.draining,
        stats=state.stats()))
    for ref in refs:  # stored (or the run is lost: nothing to store any more)
        if ref.report is not None and (run := state.runs.get(ref.run_id)) is not None:
            run.sent(ref.report)
    apply_reply(state, reply)
    return reply


async def run(link: Link, state: WorkerState, *, interval: float,
              task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    await register(link, state)
    task_status.started()
    failures = 0
    while True:
        await trio.sleep(interval if failures == 0 else min(interval, backoff(failures)))
        try:
            reply = await beat(link, state)
        except SecretRefused:
            # The coordinator does not know this worker's secret (its database was
            # reset, or the id was registered anew): register again, new secret.
            failures = 0
            if not state.draining:
                log.warning("registration_lost", actor="heartbeat",
                            worker_id=state.worker_id, reason="secret refused")
                await register(link, state)
            continue
        except LinkError as exc:
            failures += 1
            log.warning("heartbeat_failed", actor="heartbeat", worker_id=state.worker_id,
                        error=str(exc), failures=failures)
            continue
        if failures:
            log.info("heartbeat_recovered", actor="heartbeat", worker_id=state.worker_id,
                     after_failures=failures)
        failures = 0
        if not reply.known and not state.draining:
            log.warning("registration_lost", actor="heartbeat", worker_id=state.worker_id)
            await register(link, state)
