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

import hashlib
import hmac
import secrets
import uuid
from collections import OrderedDict

import structlog
import trio
from quart import Blueprint, Response, current_app, request

from scheduler_core.schema import wire
from scheduler_core.schema.store import CompletedRun
from scheduler_core.web.context import AppContext, context, json_response
from scheduler_core.web.errors import ApiError
from scheduler_core.web.inputs import read_body
from scheduler_core.web.metrics import (
    CLAIMS_WAITING,
    STALE_COMPLETIONS,
    observe_claims,
    observe_completions,
)

blueprint = Blueprint("worker_api", __name__)
log = structlog.get_logger("web.workers")

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


@blueprint.post("/api/workers/claim")
async def claim() -> Response:
    """Up to ``max`` due jobs; with none due, wait up to ``waitSeconds`` for some.

    The wait ends early when the listener hears of new jobs (LISTEN/NOTIFY) or when
    the earliest waiting job falls due; there is no busy polling.
    """
    body: wire.Claim = await read_body(wire.Claim)
    ctx = context(current_app)
    await _secrets().check(ctx, body.worker_id)
    jobs = await ctx.claims.claim(body, waiting=CLAIMS_WAITING.track_inprogress)
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
    accepted_rows: list[tuple[CompletedRun, wire.Completion]] = []
    for item, row in zip(body.completions, rows, strict=True):
        accepted = row.accepted
        duplicate = accepted and row.duplicate
        results.append(wire.CompletionResult(run_id=item.run_id, accepted=accepted,
                                             status=row.status, duplicate=duplicate))
        if duplicate:
            # A resend of what was already applied (its first answer was lost):
            # acknowledged, but counted once only, when it was applied.
            log.info("completion_repeated", worker_id=body.worker_id,
                     run_id=str(item.run_id), job_id=str(row.job_id),
                     outcome=item.outcome, status=row.status)
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
        jobs = await ctx.claims.claim_unless_drained(body.worker_id, body.claim,
                                                     body.queues)
        observe_claims(jobs, ctx.store.lease_seconds)
    return json_response(wire.CompleteReply(results=results, jobs=jobs),
                         409 if refused else 200)
