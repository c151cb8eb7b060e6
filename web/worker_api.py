"""The worker protocol: register, heartbeat, claim (long poll), complete, deregister.

Workers never hold database credentials: every job transition they cause goes through
these endpoints. Renewals and completions carry the run's lease token (a fencing
token); a token that is not the job's live run is refused with 409 and changes nothing.
"""

from __future__ import annotations

import math

import prometheus_client
import structlog
import trio
from quart import Blueprint, Response, current_app

from schema import wire
from web.api import read_body
from web.app import context, json_response

blueprint = Blueprint("worker_api", __name__)
log = structlog.get_logger("web.workers")

JOBS_CLAIMED = prometheus_client.Counter(
    "scheduler_jobs_claimed_total", "Runs created by claims", ["type"])
JOBS_FINISHED = prometheus_client.Counter(
    "scheduler_jobs_finished_total", "Run outcomes reported by workers", ["type", "outcome"])
STALE_COMPLETIONS = prometheus_client.Counter(
    "scheduler_stale_completions_total", "Completions refused by fencing")


@blueprint.post("/api/workers/register")
async def register() -> Response:
    body: wire.RegisterWorker = await read_body(wire.RegisterWorker)
    ctx = context(current_app)
    await ctx.store.register_worker(body)
    log.info("worker_registered", worker_id=body.worker_id, hostname=body.hostname,
             pid=body.pid, capacity=body.capacity)
    return json_response(wire.RegisteredWorker(
        worker_id=body.worker_id, lease_seconds=ctx.config.lease_seconds,
        heartbeat_seconds=ctx.config.heartbeat_interval), 201)


@blueprint.post("/api/workers/heartbeat")
async def heartbeat() -> Response:
    body: wire.Heartbeat = await read_body(wire.Heartbeat)
    reply = await context(current_app).store.heartbeat(body)
    return json_response(reply)


@blueprint.post("/api/workers/deregister")
async def deregister() -> Response:
    body: wire.Heartbeat = await read_body(wire.Heartbeat)
    await context(current_app).store.stop_worker(body.worker_id)
    log.info("worker_deregistered", worker_id=body.worker_id)
    return json_response({"workerId": body.worker_id, "state": "Stopped"})


@blueprint.post("/api/workers/claim")
async def claim() -> Response:
    """Up to ``max`` due jobs; with none due, wait up to ``waitSeconds`` for some.

    The wait ends early when the listener hears of new jobs (LISTEN/NOTIFY) or when
    the earliest waiting job falls due; there is no busy polling.
    """
    body: wire.Claim = await read_body(wire.Claim)
    ctx = context(current_app)
    wait = min(body.wait_seconds, ctx.config.claim_wait_seconds)
    deadline = trio.current_time() + wait
    while True:
        generation = ctx.doorbell.generation
        jobs = await ctx.store.claim(body.worker_id, body.max, body.queues)
        now = trio.current_time()
        if jobs or now >= deadline:
            break
        next_due = await ctx.store.next_due_in()
        sleep_for = deadline - now
        if next_due is not None and not math.isnan(next_due):
            sleep_for = min(sleep_for, max(next_due, 0.001))
        with trio.move_on_after(sleep_for):
            await ctx.doorbell.wait_since(generation)
    for job in jobs:
        JOBS_CLAIMED.labels(job.type).inc()
    return json_response(wire.ClaimReply(jobs=jobs))


@blueprint.post("/api/workers/complete")
async def complete() -> Response:
    """A batch of outcomes. 200 when every item was accepted; 409 when any was fenced
    off (the body still lists each item's fate; accepted items are applied)."""
    body: wire.Complete = await read_body(wire.Complete)
    rows = await context(current_app).store.complete(body.completions)
    results = []
    for item, row in zip(body.completions, rows, strict=True):
        accepted = row["job_id"] is not None
        results.append(wire.CompletionResult(run_id=item.run_id, accepted=accepted,
                                             status=row["status"]))
        if accepted:
            JOBS_FINISHED.labels(row["type"], item.outcome).inc()
        else:
            STALE_COMPLETIONS.inc()
            log.warning("completion_refused", worker_id=body.worker_id,
                        run_id=str(item.run_id), reason="stale lease token")
    status = 200 if all(r.accepted for r in results) else 409
    return json_response(wire.CompleteReply(results=results), status)
