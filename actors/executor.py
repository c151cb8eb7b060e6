"""Executors: one per running job. The job body runs in a warm child process with a
hard timeout; at the deadline the child's process group is killed (terminate, short
grace, kill) and replaced, so even a CPU-bound busy loop dies on time.

An executor whose run is stopped (cancelled by the API, handed back by a drain, or
lost to the lease reaper) kills the child the same way. It then hands the outcome to
the completer and frees its slot; one canonical ``run_finished`` line is logged per
run with its outcome and duration.
"""

from __future__ import annotations

import msgspec
import structlog
import trio

from actors.completer import Completer
from actors.worker_state import OwnedRun, WorkerState
from runtime.procpool import CallTimeout, ChildDied, ProcPoolError, WarmPool
from schema import wire

log = structlog.get_logger("actors.executor")

_request = msgspec.msgpack.Encoder()


class _Reply(msgspec.Struct):
    ok: bool
    result: object = None
    error: str | None = None
    permanent: bool = False


_reply = msgspec.msgpack.Decoder(_Reply)

MAX_RESULT_BYTES = 64 * 1024


async def execute(run: OwnedRun, pool: WarmPool, state: WorkerState,
                  completer: Completer) -> None:
    """Run one claimed job to an outcome and hand it to the completer."""
    job = run.job
    started = trio.current_time()
    outcome: wire.RunOutcome = "Failed"
    error: str | None = None
    result: object = None
    permanent = False
    request = _request.encode({"type": job.type, "payload": job.payload,
                               "jobId": str(job.job_id), "attempt": job.attempt})
    call_seconds = 0.0  # time inside pool.call: the rest is the executor's overhead
    with run.scope:
        try:
            call_started = trio.current_time()
            try:
                raw = await pool.call(request, timeout=job.timeout_seconds)
            finally:
                call_seconds = trio.current_time() - call_started
            reply = _reply.decode(raw)
            if reply.ok:
                outcome, result = "Succeeded", reply.result
                if len(msgspec.json.encode(result)) > MAX_RESULT_BYTES:
                    outcome, result = "Failed", None
                    error, permanent = f"result larger than {MAX_RESULT_BYTES} bytes", True
            else:
                error, permanent = reply.error, reply.permanent
        except CallTimeout:
            outcome, error = "TimedOut", f"timed out after {job.timeout_seconds}s"
        except ChildDied as exc:
            error = f"the job's process died (exit status {exc.returncode})"
        except ProcPoolError as exc:
            error = f"executor failure: {exc}"
    duration = trio.current_time() - started
    if run.stop_reason is not None:
        outcome = "Cancelled" if run.stop_reason == "Cancelled" else "Released"
        error = {"Cancelled": "cancelled on request",
                 "Released": "handed back: the worker stopped before the job finished",
                 "Lost": "lease lost"}[run.stop_reason]
    log.info("run_finished", actor="executor", worker_id=state.worker_id,
             job_id=str(job.job_id), run_id=str(job.run_id), attempt=job.attempt,
             type=job.type, queue=job.queue,
             outcome="LeaseLost" if run.stop_reason == "Lost" else outcome,
             duration_s=round(duration, 6), error=error)
    state.record_run(
        run_seconds=duration, child_restarts=pool.statistics().killed,
        overhead_seconds=max(0.0, trio.current_time() - run.claimed_at - call_seconds))
    state.body_ended(run)
    if run.stop_reason == "Lost":
        state.forget(job.run_id)  # not ours any more: nothing to report
        return
    completer.submit(wire.Completion(
        run_id=job.run_id, lease_token=job.lease_token, outcome=outcome, error=error,
        result=result, permanent=permanent, duration_seconds=round(duration, 6)))


class Executors:
    """Owns the nursery the executors run in, so a claim-loop restart leaves running
    jobs alone. Stopping it (cancellation) stops every executor: each kills its child
    and hands its run back."""

    def __init__(self, pool: WarmPool, state: WorkerState, completer: Completer) -> None:
        self.pool = pool
        self.state = state
        self.completer = completer
        self._send, self._receive = trio.open_memory_channel[OwnedRun](float("inf"))

    def start(self, run: OwnedRun) -> None:
        self._send.send_nowait(run)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            task_status.started()
            try:
                async for run in self._receive:
                    nursery.start_soon(self._one, run)
            finally:
                for run in list(self.state.runs.values()):
                    run.stop("Released")

    async def _one(self, run: OwnedRun) -> None:
        try:
            await execute(run, self.pool, self.state, self.completer)
        except trio.Cancelled:
            # Shutting down mid-run: hand the run back at once rather than letting the
            # lease run out (best effort: the completer may be stopping too).
            if run.running:
                run.stop_reason = run.stop_reason or "Released"
                self.state.body_ended(run)
                self.completer.submit(wire.Completion(
                    run_id=run.job.run_id, lease_token=run.job.lease_token,
                    outcome="Released", error="handed back: the worker stopped"))
            raise
