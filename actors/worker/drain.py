"""Graceful drain, started by the worker's first SIGTERM/SIGINT.

Stop claiming at once (and tell the coordinator, which then refuses this worker's
claims), let running jobs finish within the drain timeout, then stop what is left and
hand those runs back to the queue immediately (not after lease expiry), wait for the
completions to be acknowledged, deregister (Stopped). Each wait is bounded.
"""

from __future__ import annotations

import structlog
import trio

from scheduler_core.actors.worker import heartbeat
from scheduler_core.actors.worker.completer import Completer
from scheduler_core.actors.worker.coordinator_link import Link, LinkError
from scheduler_core.actors.worker.worker_state import WorkerState

log = structlog.get_logger("actors.drain")

ACK_TIMEOUT = 10.0


async def run(link: Link, state: WorkerState, completer: Completer, *, drain_timeout: float) -> None:
    started = trio.current_time()
    log.info("drain_started", actor="drain", worker_id=state.worker_id, running=state.busy,
             timeout_s=drain_timeout)
    state.start_draining()
    released = 0
    for queued in list(state.runs.values()):
        if queued.running and not queued.started:
            queued.stop("Released")  # prefetched, not started: back to the queue at once
            released += 1
    with trio.move_on_after(5.0):
        try:
            await heartbeat.beat(link, state)
        except LinkError as exc:
            log.warning("drain_notice_failed", actor="drain", worker_id=state.worker_id,
                        error=str(exc))
    with trio.move_on_after(drain_timeout):
        await state.wait_until(lambda: state.busy == 0)
    handed_back = 0
    if state.busy:
        for run in list(state.runs.values()):
            if run.running:
                run.stop("Released")
                handed_back += 1
        with trio.move_on_after(5.0):
            await state.wait_until(lambda: state.busy == 0)
    with trio.move_on_after(ACK_TIMEOUT):
        await completer.wait_idle()
    with trio.move_on_after(5.0):
        try:
            await link.deregister(state.worker_id)
        except LinkError as exc:
            log.warning("deregister_failed", actor="drain", worker_id=state.worker_id,
                        error=str(exc))
    log.info("drain_finished", actor="drain", worker_id=state.worker_id,
             handed_back=handed_back, released_queued=released,
             duration_s=round(trio.current_time() - started, 3))
