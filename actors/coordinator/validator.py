"""The validator: checks the jobs enqueued through SQL once their transaction commits.

``scheduler.enqueue`` (migration 0016) runs inside the application's transaction and
cannot run the job types' payload Structs, so its jobs start Waiting with
``jobs.validation`` set, where no claim sees them. Their commit notifies
``scheduler_validate``; the listener rings this actor's doorbell, and it validates a
batch (:meth:`schema.validation_store.ValidationStore.validate`: coordinators share
the work by ``SKIP LOCKED``) with :func:`decide`, a pure function of the jobs and the
registry:

- an unknown type, a payload deeper than the API allows or that does not fit the
  type's Struct: DeadLetter, ``lastError`` naming the field as the API's 400 would
  (``payload.url: expected str, found int``); no handler ever sees it;
- else the settings the enqueuer left out take the type's defaults (its queue, its
  attempts, its timeout) exactly as ``POST /api/jobs`` gives them, and the job goes on:
  Pending (or Scheduled, or Waiting for its parents).

It works in passes (:mod:`actors.coordinator.passes`): woken by a ring, or every
``interval`` seconds.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import structlog
import trio
from prometheus_client import Counter

from scheduler_core.actors.coordinator.passes import run_passes
from scheduler_core.handlers import (
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_QUEUE,
    DEFAULT_TIMEOUT_SECONDS,
    HandlerError,
    PayloadError,
    Registry,
    UnknownHandler,
)
from scheduler_core.runtime import jsonlimits
from scheduler_core.runtime.doorbell import Doorbell
from scheduler_core.schema.validation_store import Unvalidated, ValidationStore, Verdict

__all__ = ["VALIDATED", "decide", "run"]

log = structlog.get_logger("actors.validator")

VALIDATED = Counter("scheduler_sql_enqueued_total",
                    "Jobs enqueued through SQL (scheduler.enqueue) and validated after their "
                    "commit: accepted, or refused (DeadLetter)", ["outcome"])

_decoder = msgspec.json.Decoder()


def _problem(job: Unvalidated, registry: Registry, max_depth: int) -> str | None:
    """Why ``job`` cannot run, as the API's 400 would say it; None when it can."""
    try:
        registry.get(job.type)
    except UnknownHandler:
        return (f"type: unknown job type {job.type[:100]!r}; known types: "
                + ", ".join(registry.names()))
    raw = job.payload.encode()
    where = jsonlimits.too_deep(raw, max_depth)
    if where is not None:
        return (f"payload{'.' + where if where else ''}: expected JSON nested at most "
                f"{max_depth} levels deep, found deeper")
    try:
        registry.validate(job.type, _decoder.decode(raw))
    except PayloadError as exc:
        return str(exc)
    except (HandlerError, msgspec.DecodeError) as exc:
        return f"payload: {exc}"
    return None


def decide(jobs: Sequence[Unvalidated], registry: Registry, *,
           max_depth: int) -> list[Verdict]:
    """The verdict on each of ``jobs``, in order (see the module docstring)."""
    out = []
    for job in jobs:
        problem = _problem(job, registry, max_depth)
        if problem is not None:
            out.append(Verdict(id=job.id, error=f"refused at validation: {problem}"))
            continue
        spec = registry.get(job.type)
        fill = set(job.validation)
        out.append(Verdict(
            id=job.id,
            queue=(spec.queue or DEFAULT_QUEUE) if "queue" in fill else None,
            max_attempts=(spec.max_attempts or DEFAULT_MAX_ATTEMPTS)
            if "max_attempts" in fill else None,
            timeout_seconds=(spec.timeout_seconds or DEFAULT_TIMEOUT_SECONDS)
            if "timeout_seconds" in fill else None))
    return out


async def run(store: ValidationStore, registry: Registry, doorbell: Doorbell, *,
              max_depth: int, batch: int = 500, interval: float = 30.0,
              gather: float = 0.005, retry_cap: float = 5.0,
              task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Validate until cancelled, in passes of up to ``batch`` jobs (see
    :func:`actors.coordinator.passes.run_passes`: a ring, or every ``interval`` s).
    Ready at once.

    Cancellation: safe at any point; a cancelled pass rolls back (its jobs stay
    unvalidated for the next pass or another coordinator)."""
    task_status.started()

    def verdicts(jobs: Sequence[Unvalidated]) -> list[Verdict]:
        return decide(jobs, registry, max_depth=max_depth)

    async def one_pass() -> bool:
        counts = await store.validate(batch, verdicts)
        refused = counts.get("DeadLetter", 0)
        handled = sum(counts.values())
        if handled:
            VALIDATED.labels("accepted").inc(handled - refused)
            if refused:
                VALIDATED.labels("refused").inc(refused)
                log.warning("sql_jobs_refused", actor="validator", refused=refused)
        return handled >= batch

    await run_passes(one_pass, doorbell, actor="validator", interval=interval,
                     gather=gather, retry_cap=retry_cap)
