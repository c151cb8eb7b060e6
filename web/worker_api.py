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

import secrets
import uuid
from collections.abc import Iterable

import structlog
from quart import Blueprint, Response, current_app, request

from scheduler_core.runtime.job_protocol import meta_refusal
from scheduler_core.schema import wire
from scheduler_core.schema.store import CompletedRun
from scheduler_core.web.context import context, json_response
from scheduler_core.web.errors import ApiError
from scheduler_core.web.inputs import read_body
from scheduler_core.web.metrics import (
    CLAIMS_WAITING,
    STALE_COMPLETIONS,
    observe_claims,
    observe_completions,
)
from scheduler_core.web.worker_secrets import SECRET_HEADER, secret_digest

blueprint = Blueprint("worker_api", __name__)
log = structlog.get_logger("web.workers")

REFUSED_RUN_IDS_LOGGED = 5  # examples on the one completion_refused line of a request

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
    ctx.worker_secrets.remember(body.worker_id, digest)
    log.info("worker_registered", worker_id=body.worker_id, hostname=body.hostname,
             pid=body.pid, capacity=body.capacity)
    return json_response(wire.RegisteredWorker(
        worker_id=body.worker_id, lease_seconds=ctx.config.lease_seconds,
        heartbeat_seconds=ctx.config.heartbeat_interval, worker_secret=secret), 201)


def check_reports(reports: Iterable[tuple[str, wire.RunReport | None]]) -> None:
    """400 naming the field (``runs[2].report.meta``) for a meta that may not be
    stored (larger than 16 KiB as JSON, nested too deep); a worker checks them before
    it sends them, so only a broken or hostile one sees this."""
    for where, report in reports:
        if report is not None and report.meta is not None:
            refusal = meta_refusal(report.meta)
            if refusal is not None:
                raise ApiError(400, "validation_error",
                               refusal.removeprefix("meta: "), f"{where}.report.meta")


async def heartbeat() -> Response:
    """Renew the leases of the worker's runs and store what they reported (progress,
    meta: the newest since its last beat), fenced like the renewal."""
    body: wire.Heartbeat = await read_body(wire.Heartbeat)
    check_reports((f"runs[{i}]", r.report) for i, r in enumerate(body.runs))
    ctx = context(current_app)
    await ctx.worker_secrets.check(ctx.store, body.worker_id)
    reply = await ctx.store.heartbeat(body)
    return json_response(reply)


async def deregister() -> Response:
    body: wire.Heartbeat = await read_body(wire.Heartbeat)
    ctx = context(current_app)
    await ctx.worker_secrets.check(ctx.store, body.worker_id)
    await ctx.store.stop_worker(body.worker_id)
    log.info("worker_deregistered", worker_id=body.worker_id)
    return json_response({"workerId": body.worker_id, "state": "Stopped"})


async def claim() -> Response:
    """Up to ``max`` due jobs; with none due, wait up to ``waitSeconds`` for some.

    The wait ends early when the listener hears of new jobs (LISTEN/NOTIFY) or when
    the earliest waiting job falls due; there is no busy polling.
    """
    body: wire.Claim = await read_body(wire.Claim)
    ctx = context(current_app)
    await ctx.worker_secrets.check(ctx.store, body.worker_id)
    jobs = await ctx.claims.claim(body, waiting=CLAIMS_WAITING.track_inprogress)
    observe_claims(jobs, ctx.store.lease_seconds)
    return json_response(wire.ClaimReply(jobs=jobs))


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
    check_reports((f"completions[{i}]", c.report) for i, c in enumerate(body.completions))
    ctx = context(current_app)
    await ctx.worker_secrets.check(ctx.store, body.worker_id)
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
