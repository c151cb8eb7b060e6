"""The worker protocol: register, heartbeat, claim (long poll), complete, deregister.

Workers never hold database credentials: every job transition they cause goes through
these endpoints. Renewals and completions carry the run's lease token (a fencing
token); a token that is not the job's live run is refused with 409 and changes nothing.

Worker identity: the worker token is shared by all workers, so it does not say which
worker is calling. Registration answers a per-worker secret (``workerSecret``, kept
by the coordinator as its SHA-256 only); every later request of that worker id
carries it as ``X-Worker-Secret``, or is refused 403 naming that header. A live
worker's id cannot be registered again without its current secret (409), and a
worker renews and completes only runs it holds (the queries match ``worker_id``).
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
import math
import secrets
import uuid
from collections import OrderedDict
from typing import Any

import structlog
import trio
from quart import Blueprint, Response, current_app, request

from scheduler_core.schema import wire
from scheduler_core.web.context import AppContext, context, json_response
from scheduler_core.web.errors import ApiError
from scheduler_core.web.inputs import read_body
from scheduler_core.web.metrics import (
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

# -- worker identity: the per-worker secret ------------------------------------------

SECRET_HEADER = "X-Worker-Secret"


def secret_digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


class WorkerSecrets:
    """Checks a request's ``X-Worker-Secret`` against its worker's stored hash.

    A hash read from the database is trusted for ``ttl`` seconds (trio's clock), so
    a busy worker's claims and completions do not each pay a query; a secret that
    does not match what is cached is always looked up again (the worker may have
    registered anew through another coordinator). At most ``max_entries`` workers
    are cached, the least recently checked dropped first."""

    def __init__(self, *, ttl: float = 10.0, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._known: OrderedDict[str, tuple[bytes, float]] = OrderedDict()

    def remember(self, worker_id: str, digest: bytes) -> None:
        self._known[worker_id] = (digest, trio.current_time())
        self._known.move_to_end(worker_id)
        while len(self._known) > self.max_entries:
            self._known.popitem(last=False)

    def forget(self, worker_id: str) -> None:
        self._known.pop(worker_id, None)

    async def check(self, ctx: AppContext, worker_id: str) -> None:
        """Raise 403 naming X-Worker-Secret unless the request carries ``worker_id``'s
        current secret."""
        sent = request.headers.get(SECRET_HEADER)
        if sent:
            digest = secret_digest(sent)
            cached = self._known.get(worker_id)
            if (cached is not None and trio.current_time() - cached[1] < self.ttl
                    and hmac.compare_digest(digest, cached[0])):
                return
            stored = await ctx.store.worker_secret_hash(worker_id)
            if stored is not None and hmac.compare_digest(digest, stored):
                self.remember(worker_id, stored)
                return
        self.forget(worker_id)
        log.warning("worker_secret_refused", worker_id=worker_id, path=request.path,
                    sent=bool(sent))
        raise ApiError(403, "forbidden", f"this request of worker {worker_id!r} needs the "
                       f"secret its registration answered, as {SECRET_HEADER} (none was "
                       "sent, or it is not that worker's current one: register again)",
                       SECRET_HEADER)


def _secrets() -> WorkerSecrets:
    found: WorkerSecrets | None = current_app.extensions.get("worker_secrets")
    if found is None:
        found = current_app.extensions["worker_secrets"] = WorkerSecrets()
    return found


@blueprint.post("/api/workers/register")
async def register() -> Response:
    """Register (or register again) a worker id; the answer carries its new secret.
    A live worker's id needs its current secret in X-Worker-Secret (else 409)."""
    body: wire.RegisterWorker = await read_body(wire.RegisterWorker)
    ctx = context(current_app)
    sent = request.headers.get(SECRET_HEADER)
    secret = secrets.token_urlsafe(32)
    digest = secret_digest(secret)
    if not await ctx.store.register_worker(
            body, secret_hash=digest, presented=secret_digest(sent) if sent else None):
        log.warning("worker_registration_refused", worker_id=body.worker_id,
                    hostname=body.hostname, reason="the id is a live worker's")
        raise ApiError(409, "conflict", f"worker {body.worker_id!r} is registered and "
                       "live; registering it again needs its current secret as "
                       f"{SECRET_HEADER} (a new worker takes a new id)", "workerId")
    _secrets().remember(body.worker_id, digest)
    log.info("worker_registered", worker_id=body.worker_id, hostname=body.hostname,
             pid=body.pid, capacity=body.capacity)
    return json_response(wire.RegisteredWorker(
        worker_id=body.worker_id, lease_seconds=ctx.config.lease_seconds,
        heartbeat_seconds=ctx.config.heartbeat_interval, worker_secret=secret), 201)


@blueprint.post("/api/workers/heartbeat")
async def heartbeat() -> Response:
    body: wire.Heartbeat = await read_body(wire.Heartbeat)
    ctx = context(current_app)
    await _secrets().check(ctx, body.worker_id)
    reply = await ctx.store.heartbeat(body)
    return json_response(reply)


@blueprint.post("/api/workers/deregister")
async def deregister() -> Response:
    body: wire.Heartbeat = await read_body(wire.Heartbeat)
    ctx = context(current_app)
    await _secrets().check(ctx, body.worker_id)
    await ctx.store.stop_worker(body.worker_id)
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
        if row["status"] == wire.JobStatus.FAILED:
            retries[job_type] = retries.get(job_type, 0) + 1
        elif row["status"] == wire.JobStatus.DEAD_LETTER:
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
                    for j in jobs], worker_id=body.worker_id)
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
    await _secrets().check(ctx, body.worker_id)
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
    await _secrets().check(ctx, body.worker_id)
    rows = await ctx.store.complete(body.completions, worker_id=body.worker_id)
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
