"""Run spans: one span per run, from its claim to its outcome
(docs/decisions/0025-tracing.md).

``scheduler.run <type>`` (kind CONSUMER) carries ``job.id``, ``job.type``,
``job.queue``, ``job.attempt``, ``job.max_attempts``, ``run.id``, ``worker.id`` and, at
its end, ``outcome`` (status ERROR unless it Succeeded). Its parent is the span of the
request that submitted the job (the claim's ``traceparent``), for every run, so one
trace holds the request and all its job's runs; a run of a job that ran before also
carries a link (``scheduler.link``: ``previous_run``) to the previous run's span: runs
are siblings, never nested in one another. A job with no traceparent (tracing was off
at its submission, or it was enqueued through SQL or fired by a schedule) gets a root
span, with no link.

A run span's id is derived from its run's id (:func:`span_id_of`), so the next run can
link to it knowing only the previous run's id, which the claim reads from the run
history; nothing about spans is stored.

The executor calls :func:`start` only when ``tracing.ENABLED``; off, a run costs that
one check.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import trio

from scheduler_core.runtime import clock, tracing
from scheduler_core.schema import wire

__all__ = ["current", "end", "span_id_of", "start", "traceparent"]

_TRACER = "scheduler_core.worker"


def span_id_of(run_id: uuid.UUID) -> int:
    """The span id of a run's span: the low 64 bits of its id (random in a UUIDv7,
    and never zero: they hold the variant bits)."""
    return int.from_bytes(run_id.bytes[8:], "big")


def start(job: wire.ClaimedJob, *, worker_id: str, claimed_at: float) -> Any:
    """Start the span of ``job``'s run, dated from its claim (``claimed_at``, trio's
    clock). Only with tracing on."""
    from opentelemetry import trace
    from opentelemetry.trace import Link, SpanContext, SpanKind

    parent = tracing.context_of(job.traceparent)
    links: list[Link] = []
    remote = trace.get_current_span(parent).get_span_context()
    if remote.is_valid and job.previous_run_id is not None:
        links.append(Link(SpanContext(trace_id=remote.trace_id,
                                      span_id=span_id_of(job.previous_run_id),
                                      is_remote=True, trace_flags=remote.trace_flags),
                          {"scheduler.link": "previous_run",
                           "run.id": str(job.previous_run_id)}))
    waited = max(0.0, trio.current_time() - claimed_at)
    started_ns = int(clock.utcnow().timestamp() * 1e9) - int(waited * 1e9)
    with tracing.next_span_id(span_id_of(job.run_id)):
        return trace.get_tracer(_TRACER).start_span(
            f"scheduler.run {job.type}", context=parent, kind=SpanKind.CONSUMER,
            links=links, start_time=started_ns, attributes={
                "job.id": str(job.job_id), "job.type": job.type, "job.queue": job.queue,
                "job.attempt": job.attempt, "job.max_attempts": job.max_attempts,
                "run.id": str(job.run_id), "worker.id": worker_id})


def end(span: Any, outcome: str, error: str | None) -> None:
    """End a run's span with its outcome."""
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute("outcome", outcome)
    if outcome != "Succeeded":
        span.set_status(Status(StatusCode.ERROR, error))
    span.end()


@contextlib.contextmanager
def current(span: Any) -> Iterator[None]:
    """Make ``span`` (a run's, or None: nothing) the current span while the block runs,
    so an inline handler's spans nest under its run."""
    if span is None:
        yield
        return
    from opentelemetry import trace

    with trace.use_span(span, end_on_exit=False):
        yield


def traceparent(span: Any) -> str | None:
    """The traceparent a job process is given: its run's span's (None: no span)."""
    return None if span is None else tracing.traceparent_of(span)
