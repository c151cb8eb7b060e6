"""The worker protocol: register, heartbeat, claim (long poll), complete, deregister.

Workers never hold database credentials: every job transition they cause goes through
these endpoints. Renewals and completions carry the run's lease token (a fencing
token); a token that is not the job's live run is refused with 409 and changes nothing.
"""

from __future__ import annotations

import bisect
import math
import uuid
from typing import Any

import structlog
import trio
from quart import Blueprint, Response, current_app

from schema import wire
from web.api import read_body
from web.app import AppContext, context, json_response
from web.metrics import (
    CLAIMS_WAITING,
    JOB_RETRIES,
    JOBS_CLAIMED,
    JOBS_DEAD_LETTERED,
    JOBS_FINISHED,
    QUEUE_WAIT,
    RUN_DURATION,
    STALE_COMPLETIONS,
)

blueprint = Blueprint("worker_api", __name__)
log = structlog.get_logger("web.workers")

CLAIM_QUERY_TIMEOUT = 30.0  # bounds the shielded claim query (a stuck database)
REFUSED_RUN_IDS_LOGGED = 5  # examples on the one completion_refused line of a request


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


def observe_many(histogram: Any, values: list[float]) -> None:
    """``histogram.observe(v)`` for each value, with one increment per bucket: the
    same counts, a fraction of the cost (prometheus_client takes a lock and walks the
    buckets on every observation). Leans on the Histogram child's ``_upper_bounds``,
    ``_buckets`` and ``_sum``; without them it observes one by one."""
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
        for value in values:
            histogram.observe(value)
        return
    counts: dict[int, int] = {}
    for value in values:
        i = bisect.bisect_left(bounds, value)  # the first bound >= value (+Inf is last)
        counts[i] = counts.get(i, 0) + 1
    for i, n in counts.items():
        buckets[i].inc(n)
    total.inc(sum(values))


def observe_claims(jobs: list[wire.ClaimedJob], lease_seconds: float) -> None:
    """web.metrics.observe_claim for a batch: the same figures, one label lookup per
    label set instead of per job (the lookups were a tenth of the coordinator's CPU).
    A run's claim time is the database's: lease expiry minus the lease length."""
    claimed: dict[str, int] = {}
    waits: dict[tuple[str, str], list[float]] = {}
    for job in jobs:
        claimed[job.type] = claimed.get(job.type, 0) + 1
        if job.run_at is not None:
            at = job.lease_expires_at.timestamp() - lease_seconds
            waits.setdefault((job.type, job.queue), []).append(
                max(0.0, at - job.run_at.timestamp()))
    for job_type, n in claimed.items():
        JOBS_CLAIMED.labels(job_type).inc(n)
    for (job_type, queue), values in waits.items():
        observe_many(QUEUE_WAIT.labels(job_type, queue), values)


def observe_completions(accepted: list[tuple[dict[str, Any], wire.Completion]]) -> None:
    """web.metrics.observe_completion for a batch of accepted completions (the store's
    row: the job's type and next status), with one label lookup per label set.
    Duplicates (resends of a completion already applied) must not be passed: they
    were counted when first applied."""
    finished: dict[tuple[str, str], list[float]] = {}
    counted: dict[tuple[str, str], int] = {}
    retries: dict[str, int] = {}
    dead: dict[str, int] = {}
    for row, item in accepted:
        job_type = row["type"]
        key = (job_type, item.outcome)
        counted[key] = counted.get(key, 0) + 1
        if item.duration_seconds is not None:
            finished.setdefault(key, []).append(item.duration_seconds)
        if row["status"] == "Failed":
            retries[job_type] = retries.get(job_type, 0) + 1
        elif row["status"] == "DeadLetter":
            dead[job_type] = dead.get(job_type, 0) + 1
    for (job_type, outcome), n in counted.items():
        JOBS_FINISHED.labels(job_type, outcome).inc(n)
    for (job_type, outcome), durations in finished.items():
        observe_many(RUN_DURATION.labels(job_type, outcome), durations)
    for job_type, n in retries.items():
        JOB_RETRIES.labels(job_type).inc(n)
    for job_type, n in dead.items():
        JOBS_DEAD_LETTERED.labels(job_type).inc(n)


class ClaimGate:
    """Keeps a burst of waiting claims from all querying for the same new job.

    A notification wakes every long-polling claim at once; without the gate each of
    them would run the claim query, and all but one would find nothing (with N idle
    workers, every submission cost N claim queries). Woken claims go through the gate
    one at a time, and once one of them finds the queue drained (fewer jobs than it
    asked for) the others woken by the same ring go back to waiting without a query.
    Drained is judged per set of queues. (A claim by a worker that may not claim, e.g.
    a draining one, also finds nothing: at worst another waiter then waits for the
    next ring or its deadline, never longer.)
    """

    def __init__(self) -> None:
        self.lock = trio.Lock()
        self._drained: dict[frozenset[str], int] = {}

    def drained(self, queues: list[str], generation: int) -> bool:
        return self._drained.get(frozenset(queues)) == generation

    def saw(self, queues: list[str], generation: int, *, asked: int, got: int) -> None:
        if got < asked:
            self._drained[frozenset(queues)] = generation


def _gate() -> ClaimGate:
    gate: ClaimGate | None = current_app.extensions.get("claim_gate")
    if gate is None:
        gate = current_app.extensions["claim_gate"] = ClaimGate()
    return gate


async def _claim_once(ctx: AppContext, body: wire.Claim) -> list[wire.ClaimedJob]:
    """Run the claim query to its end even if the requester goes away meanwhile.

    Cancelled halfway (the worker hung up: hypercorn cancels the handler), a claim
    could commit its runs and lose the answer, leaving the jobs stuck until their
    leases expire. So the query is shielded (and bounded), and runs claimed for a
    requester that is gone are handed straight back (``Released``).
    """
    with trio.CancelScope(shield=True), trio.fail_after(CLAIM_QUERY_TIMEOUT):
        jobs = await ctx.store.claim(body.worker_id, body.max, body.queues)
    try:
        await trio.lowlevel.checkpoint_if_cancelled()
    except trio.Cancelled:
        if jobs:
            with trio.CancelScope(shield=True), trio.move_on_after(CLAIM_QUERY_TIMEOUT):
                await ctx.store.complete([wire.Completion(
                    run_id=j.run_id, lease_token=j.lease_token, outcome="Released",
                    error="handed back: the worker hung up before its claim was answered")
                    for j in jobs])
                log.warning("claim_abandoned", worker_id=body.worker_id, runs=len(jobs))
        raise
    return jobs


@blueprint.post("/api/workers/claim")
async def claim() -> Response:
    """Up to ``max`` due jobs; with none due, wait up to ``waitSeconds`` for some.

    The wait ends early when the listener hears of new jobs (LISTEN/NOTIFY) or when
    the earliest waiting job falls due; there is no busy polling.
    """
    body: wire.Claim = await read_body(wire.Claim)
    ctx = context(current_app)
    gate = _gate()
    wait = min(body.wait_seconds, ctx.config.claim_wait_seconds)
    deadline = trio.current_time() + wait
    generation = ctx.doorbell.generation
    jobs = await _claim_once(ctx, body)
    gate.saw(body.queues, generation, asked=body.max, got=len(jobs))
    queried = True
    wake_at = deadline
    while not jobs and trio.current_time() < deadline:
        if queried:  # what fell due or was added since may change when to look again
            next_due = await ctx.store.next_due_in()
            wake_at = deadline
            if next_due is not None and not math.isnan(next_due):
                wake_at = min(deadline, trio.current_time() + max(next_due, 0.001))
        with trio.move_on_at(wake_at) as timer, CLAIMS_WAITING.track_inprogress():
            await ctx.doorbell.wait_since(generation)
        async with gate.lock:
            generation = ctx.doorbell.generation
            queried = timer.cancelled_caught or not gate.drained(body.queues, generation)
            if not queried:
                continue  # woken by a ring whose jobs another claim already took
            jobs = await _claim_once(ctx, body)
            gate.saw(body.queues, generation, asked=body.max, got=len(jobs))
    observe_claims(jobs, ctx.store.lease_seconds)
    return json_response(wire.ClaimReply(jobs=jobs))


@blueprint.post("/api/workers/complete")
async def complete() -> Response:
    """A batch of outcomes. 200 when every item was accepted; 409 when any was fenced
    off (the body still lists each item's fate; accepted items are applied).

    An item that repeats how its run already ended (same token, same outcome: the
    worker resent it because the first answer was lost) is accepted with
    ``duplicate`` true and the job's status; it changes nothing and is not counted in
    the metrics again. Any other item for a run that is no longer live is refused.

    With ``claim`` > 0 the answer also carries up to that many newly claimed jobs
    (no waiting: none if none is due). The claim runs after the completions are
    written, shielded like any claim; it is skipped without a query when the last
    claim since the latest doorbell ring found the queues drained.
    """
    body: wire.Complete = await read_body(wire.Complete)
    ctx = context(current_app)
    rows = await ctx.store.complete(body.completions)
    results = []
    refused: list[uuid.UUID] = []
    accepted_rows = []
    for item, row in zip(body.completions, rows, strict=True):
        accepted = row["job_id"] is not None
        duplicate = accepted and bool(row["duplicate"])
        results.append(wire.CompletionResult(run_id=item.run_id, accepted=accepted,
                                             status=row["status"], duplicate=duplicate))
        if duplicate:
            # A resend of what was already applied (its first answer was lost):
            # acknowledged, but counted once only, when it was applied.
            log.info("completion_repeated", worker_id=body.worker_id,
                     run_id=str(item.run_id), job_id=str(row["job_id"]),
                     outcome=item.outcome, status=row["status"])
        elif accepted:
            accepted_rows.append((row, item))
        else:
            refused.append(item.run_id)
    if refused:
        # One line per request, however many items a worker (or an attacker with the
        # worker token) sends: the count, and the first few run ids as examples.
        STALE_COMPLETIONS.inc(len(refused))
        log.warning("completion_refused", worker_id=body.worker_id, refused=len(refused),
                    of=len(body.completions),
                    run_ids=[str(r) for r in refused[:REFUSED_RUN_IDS_LOGGED]],
                    reason="stale lease token")
    observe_completions(accepted_rows)
    jobs: list[wire.ClaimedJob] = []
    if body.claim:
        gate = _gate()
        generation = ctx.doorbell.generation
        if not gate.drained(body.queues, generation):
            jobs = await _claim_once(ctx, wire.Claim(
                worker_id=body.worker_id, max=body.claim, queues=body.queues))
            gate.saw(body.queues, generation, asked=body.claim, got=len(jobs))
            observe_claims(jobs, ctx.store.lease_seconds)
    return json_response(wire.CompleteReply(results=results, jobs=jobs),
                         409 if refused else 200)
