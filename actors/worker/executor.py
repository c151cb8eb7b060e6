"""Executors: one runner per slot, each taking the claimed runs from the worker's
queue one after the other. A job body runs in a warm child process with a hard
timeout; at the deadline the child's process group is killed (terminate, short
grace, kill) and replaced, so even a CPU-bound busy loop dies on time.

Job types declared ``inline`` (async handlers, ``Registry.handler(..., inline=True)``)
run in the worker process itself, in the runner's task: no child, no isolation, and
no hard kill. Their timeout (and a stop) is a trio cancellation, which takes effect
at the handler's next ``await``; a handler that blocks without awaiting cannot be
interrupted and holds its slot (and the worker's event loop) until it returns.

The runners take the runs that the claimer queues (a channel, given at
construction). A run that is stopped (cancelled by the API, handed back by a drain,
or lost to the lease reaper) has its child killed the same way, or, still queued,
never starts: it comes on ``WorkerState.stopped_while_queued`` and is finished at
once, without waiting for a slot. Its outcome goes to the completer and its slot is
freed; one canonical ``run_finished`` line is logged per run with its outcome and
duration.

A handler that raised ``RateLimited`` (or called ``ctx.backoff``), inline or in its
job process, ends its run ``RateLimited`` with its ``retry_after`` (clamped again here:
the worker does not trust what a job's process sends): the coordinator puts the job
back to waiting without spending its attempt and holds its bucket that long. One that
returned or raised ``Snooze`` ends its run ``Snoozed`` with its seconds (clamped
again): the job runs again that much later, its attempt not spent.

A handler's progress and meta (``ctx.progress``, ``ctx.set_meta``) are kept on its
run (``OwnedRun.note``): inline, straight from the handler; from a job process, from
the note frames it sends before its reply (checked again: clamped, cut, a meta that
may not be stored dropped). The heartbeat or the completion carries them.
"""

from __future__ import annotations

from collections.abc import Awaitable
from contextlib import nullcontext
from typing import Any, cast

import msgspec
import structlog
import trio

from scheduler_core.actors.worker import tracing as run_tracing
from scheduler_core.actors.worker.completer import Completer
from scheduler_core.actors.worker.worker_state import OwnedRun, StopReason, WorkerState
from scheduler_core.handlers import (
    HandlerError,
    HandlerSpec,
    RateLimited,
    Registry,
    RunContext,
    Snooze,
)
from scheduler_core.handlers.registry import (
    MAX_PROGRESS_MESSAGE,
    clamp_retry_after,
    clamp_snooze,
    seconds_text,
)
from scheduler_core.runtime import tracing
from scheduler_core.runtime.job_protocol import (
    Request,
    check_result,
    decode_note,
    decode_reply,
    encode_request,
    meta_refusal,
    normalise_meta,
    normalise_result,
)
from scheduler_core.runtime.procpool import CallTimeout, ChildDied, ProcPoolError, WarmPool
from scheduler_core.schema import wire

log = structlog.get_logger("actors.executor")

_STOPPED_ERRORS: dict[StopReason, str] = {
    "Cancelled": "cancelled on request",
    "Released": "handed back: the worker stopped before the job finished",
    "Lost": "lease lost",
}

# What a run's body came to: (outcome, result, error, permanent, retry_after,
# snooze_seconds).
_Ended = tuple[wire.RunOutcome, object, str | None, bool, float | None, float | None]


def _rate_limited(retry_after: float, message: str | None) -> _Ended:
    """The outcome of a run whose handler was rate limited (``retry_after`` clamped)."""
    seconds = clamp_retry_after(retry_after)
    error = f"rate limited: retry after {seconds_text(seconds)}s"
    return ("RateLimited", None, error + (f": {message}" if message else ""), False, seconds,
            None)


def _snoozed(seconds: float) -> _Ended:
    """The outcome of a run whose handler snoozed (``seconds`` clamped)."""
    seconds = clamp_snooze(seconds)
    return "Snoozed", None, f"snoozed for {seconds_text(seconds)}s", False, None, seconds


class _InlineReporter:
    """An inline handler's ``ctx.progress`` and ``ctx.set_meta``: kept on its run."""

    def __init__(self, run: OwnedRun) -> None:
        self._run = run

    def progress(self, fraction: float, message: str | None) -> None:
        self._run.note(progress=fraction, message=message)

    def meta(self, meta: dict[str, Any]) -> None:
        self._run.note(meta=normalise_meta(meta))


def _take_note(run: OwnedRun, frame: bytes) -> None:
    """Keep a job process's note on its run, checked again: the worker does not trust
    what a job's process sends (a progress clamped, a message cut, a meta that may not
    be stored dropped)."""
    try:
        note = decode_note(frame)
    except msgspec.DecodeError as exc:
        log.warning("note_dropped", actor="executor", job_id=str(run.job.job_id),
                    run_id=str(run.job.run_id), error=str(exc))
        return
    progress = note.progress
    if progress is not None:
        progress = min(max(progress, 0.0), 1.0) if progress == progress else None
    meta = note.meta
    if meta is not None and (refusal := meta_refusal(meta)) is not None:
        log.warning("note_dropped", actor="executor", job_id=str(run.job.job_id),
                    run_id=str(run.job.run_id), error=refusal)
        meta = None
    message = (None if note.message is None
               else note.message.replace("\x00", "")[:MAX_PROGRESS_MESSAGE])
    run.note(progress=progress, message=message, meta=meta)


class Executors:
    """Owns the nursery the runners run in, so a claimer restart leaves running
    jobs alone. Stopping it (cancellation) stops every run: each runner kills its
    child, and every owned run (queued ones too) is handed back.

    ``runs``: the claimed runs, queued by the claimer for the next free slot."""

    def __init__(self, pool: WarmPool, state: WorkerState, completer: Completer,
                 runs: trio.MemoryReceiveChannel[OwnedRun], *,
                 registry: Registry | None = None, data_dir: str = "") -> None:
        self.pool = pool
        self.state = state
        self.completer = completer
        self.data_dir = data_dir
        self.registry = registry
        self._inline: dict[str, HandlerSpec] = {}
        if registry is not None:
            for name in registry.names():
                spec = registry.get(name)
                if spec.inline:
                    self._inline[name] = spec
        self._runs = runs

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(self.state.slots):
                nursery.start_soon(self._runner)
            nursery.start_soon(self._finisher)
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                for run in list(self.state.runs.values()):
                    run.stop("Released")
                self._finish_stopped_nowait()  # the finisher is being cancelled too

    async def _finisher(self) -> None:
        """Finish the runs stopped while queued, at once (not when a slot frees)."""
        async for run in self.state.stopped_while_queued:
            self._stopped_while_queued(run)

    def _finish_stopped_nowait(self) -> None:
        while True:
            try:
                run = self.state.stopped_while_queued.receive_nowait()
            except trio.WouldBlock:
                return
            self._stopped_while_queued(run)

    async def _runner(self) -> None:
        async for run in self._runs:
            if not run.running:
                continue  # stopped while queued: already handed back or dropped
            if run.stop_reason is not None:
                self._stopped_while_queued(run)  # stopped, not yet finished
                continue
            self.state.begin(run)
            try:
                await self.execute(run)
            except trio.Cancelled:
                # Shutting down mid-run: hand the run back at once rather than letting
                # the lease run out (best effort: the completer may be stopping too).
                if run.running:
                    run.stop_reason = run.stop_reason or "Released"
                    self.state.body_ended(run)
                    self.completer.submit(wire.Completion(
                        run_id=run.job.run_id, lease_token=run.job.lease_token,
                        outcome="Released", error="handed back: the worker stopped"))
                raise

    def _stopped_while_queued(self, run: OwnedRun) -> None:
        """A queued run was stopped: nothing to kill, finish it now (once: a runner
        or the finisher, whichever sees it first)."""
        reason = run.stop_reason
        assert reason is not None
        if not run.running:
            return
        self.state.body_ended(run)
        job = run.job
        log.info("run_finished", actor="executor", worker_id=self.state.worker_id,
                 job_id=str(job.job_id), run_id=str(job.run_id), attempt=job.attempt,
                 type=job.type, queue=job.queue,
                 outcome="LeaseLost" if reason == "Lost" else
                 ("Cancelled" if reason == "Cancelled" else "Released"),
                 duration_s=0.0, error=_STOPPED_ERRORS[reason])
        if reason == "Lost":
            self.state.forget(job.run_id)
            return
        self.completer.submit(wire.Completion(
            run_id=job.run_id, lease_token=job.lease_token,
            outcome="Cancelled" if reason == "Cancelled" else "Released",
            error=_STOPPED_ERRORS[reason], duration_seconds=0.0))

    async def execute(self, run: OwnedRun) -> None:
        """Run one claimed job to an outcome and hand it to the completer."""
        job = run.job
        state = self.state
        outcome: wire.RunOutcome = "Failed"
        error: str | None = None
        result: object = None
        permanent = False
        retry_after: float | None = None
        snooze: float | None = None
        spec = self._inline.get(job.type)
        started = trio.current_time()
        span = run_tracing.start(job, worker_id=state.worker_id,
                                 claimed_at=run.claimed_at) if tracing.ENABLED else None
        with run.scope, (nullcontext() if span is None else run_tracing.current(span)):
            if spec is not None:
                outcome, result, error, permanent, retry_after, snooze = (
                    await self._run_inline(spec, run))
            else:
                request = encode_request(Request(type=job.type, payload=job.payload,
                                                 job_id=str(job.job_id), attempt=job.attempt,
                                                 parent_results=job.parent_results,
                                                 parent_ids=job.parent_ids,
                                                 parent_counts=job.parent_counts,
                                                 traceparent=run_tracing.traceparent(span)))
                try:
                    raw = await self.pool.call(request, timeout=job.timeout_seconds,
                                               on_note=lambda f: _take_note(run, f))
                    reply = decode_reply(raw)
                    if reply.ok:
                        # The child normalised it already; checked again, as the worker
                        # does not trust what a job's process sends.
                        error = check_result(reply.result)
                        result = reply.result if error is None else None
                        outcome, permanent = ("Succeeded", False) if error is None else (
                            "Failed", True)
                    elif reply.retry_after is not None:
                        outcome, result, error, permanent, retry_after, snooze = (
                            _rate_limited(reply.retry_after, reply.error))
                    elif reply.snooze is not None:
                        outcome, result, error, permanent, retry_after, snooze = _snoozed(
                            reply.snooze)
                    else:
                        error, permanent = reply.error, reply.permanent
                except CallTimeout:
                    outcome, error = "TimedOut", f"timed out after {job.timeout_seconds}s"
                except ChildDied as exc:
                    error = f"the job's process died (exit status {exc.returncode})"
                except ProcPoolError as exc:
                    error = f"executor failure: {exc}"
        ended = trio.current_time()
        duration = ended - started
        if run.stop_reason is not None:
            outcome = "Cancelled" if run.stop_reason == "Cancelled" else "Released"
            error = _STOPPED_ERRORS[run.stop_reason]
            retry_after = snooze = None
        if span is not None:
            run_tracing.end(span, "LeaseLost" if run.stop_reason == "Lost" else outcome, error)
        extra = {} if retry_after is None else {"retry_after_s": retry_after}
        if snooze is not None:
            extra["snooze_s"] = snooze
        log.info("run_finished", actor="executor", worker_id=state.worker_id,
                 job_id=str(job.job_id), run_id=str(job.run_id), attempt=job.attempt,
                 type=job.type, queue=job.queue,
                 outcome="LeaseLost" if run.stop_reason == "Lost" else outcome,
                 duration_s=round(duration, 6), error=error, **extra)
        # Overhead: from the claim to the body's end, less the body (and its queueing).
        state.record_run(run_seconds=duration, child_restarts=self.pool.killed,
                         overhead_seconds=max(0.0, ended - run.claimed_at - duration))
        state.body_ended(run)
        if run.stop_reason == "Lost":
            state.forget(job.run_id)  # not ours any more: nothing to report
            return
        self.completer.submit(wire.Completion(
            run_id=job.run_id, lease_token=job.lease_token, outcome=outcome, error=error,
            result=result, permanent=permanent, duration_seconds=round(duration, 6),
            retry_after=retry_after, snooze_seconds=snooze, report=run.report))

    async def _run_inline(self, spec: HandlerSpec, run: OwnedRun) -> _Ended:
        """Run an inline handler in this task: its timeout is a cancellation."""
        assert self.registry is not None
        job = run.job
        with trio.move_on_after(job.timeout_seconds) as timer:
            try:
                value = self.registry.validate(job.type, job.payload)
                ctx = RunContext(job_id=str(job.job_id), attempt=job.attempt,
                                 data_dir=self.data_dir,
                                 parent_results=job.parent_results or {},
                                 parent_ids=job.parent_ids or (),
                                 parent_counts=job.parent_counts or {},
                                 reporter=_InlineReporter(run))
                returned = await cast(Awaitable[object], spec.fn(value, ctx))
            except RateLimited as exc:  # not a failure: the job waits again
                return _rate_limited(exc.retry_after, exc.reason)
            except Snooze as exc:  # not a failure: the job runs again later
                return _snoozed(exc.seconds)
            except HandlerError as exc:
                return ("Failed", None, f"{type(exc).__name__}: {exc}", exc.permanent, None,
                        None)
            except Exception as exc:  # a bug in the handler: retryable, like in a child
                return "Failed", None, f"{type(exc).__name__}: {exc}", False, None, None
        if timer.cancelled_caught:
            return ("TimedOut", None, f"timed out after {job.timeout_seconds}s", False, None,
                    None)
        if isinstance(returned, Snooze):
            return _snoozed(returned.seconds)
        # Normalised as a child does: stored exactly as it will be read.
        result, refusal = normalise_result(returned)
        if refusal is not None:
            return "Failed", None, refusal, True, None, None
        return "Succeeded", result, None, False, None, None
