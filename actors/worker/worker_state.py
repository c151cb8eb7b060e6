"""What a worker's actors share: its runs, its slots, and whether it is draining.

A run is *owned* from the claim until its completion is acknowledged by the
coordinator (the heartbeat keeps renewing its lease all that time), but its slot is
freed as soon as the job body ends: completions are pipelined.

An owned run is first *queued* (claimed, waiting for a slot), then *executing* (its
body runs in a slot), then *ended* (its completion queued or in flight). A worker
claims up to ``slots`` jobs plus a bounded *prefetch*, so that its slots never wait
for a claim's round trip; the prefetch is sized so that a queued job waits about
:data:`PREFETCH_HORIZON_SECONDS` at most (judged from the recent run times), which
makes it zero for jobs that run long: no job sits in one worker's queue while
another worker is idle for long. Queued runs are owned like any other (their leases
are renewed) and are handed back at once (``Released``) on a drain: a queued run that
is stopped goes on ``WorkerState.stopped_while_queued``, where the executors finish it
without waiting for a slot.

A running job's progress and meta (``ctx.progress``, ``ctx.set_meta``) are kept on its
run, the newest only (:meth:`OwnedRun.note`), until the next heartbeat or its
completion carries them: however often a job reports, the coordinator stores one
update per run per heartbeat, and no request is made for it.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
import trio

from scheduler_core.runtime.doorbell import Doorbell
from scheduler_core.schema import wire

StopReason = Literal["Cancelled", "Released", "Lost"]

PREFETCH_HORIZON_SECONDS = 0.05
"""How long a prefetched job should wait for a slot, at most, judged from the recent
run times: the prefetch is ``slots * horizon / mean run time``, capped."""
RUN_TIME_WEIGHT = 0.2  # of the latest run in the moving average of run times


@dataclass(eq=False, slots=True)
class OwnedRun:
    job: wire.ClaimedJob
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    running: bool = True  # False once the body ended and the completion is queued
    started: bool = False  # its body was given a slot
    stop_reason: StopReason | None = None
    claimed_at: float = field(default_factory=trio.current_time)  # trio clock
    # Where it goes when stopped still queued (no body to kill): given by
    # WorkerState.add, read by the executors (WorkerState.stopped_while_queued).
    stopped_queued: trio.MemorySendChannel[OwnedRun] | None = None
    # Progress and meta reported since the coordinator last got them (None: nothing).
    report: wire.RunReport | None = None

    @property
    def ref(self) -> wire.RunRef:
        return wire.RunRef(run_id=self.job.run_id, lease_token=self.job.lease_token,
                           report=self.report)

    def note(self, *, progress: float | None = None, message: str | None = None,
             meta: dict[str, Any] | None = None) -> None:
        """Keep what the job reported: a ``progress`` (with its ``message``) and/or a
        ``meta``, over what it reported before and was not sent yet."""
        old = self.report or wire.RunReport()
        changes: dict[str, Any] = {}
        if progress is not None:
            changes.update(progress=progress, message=message)
        if meta is not None:
            changes["meta"] = meta
        if changes:
            self.report = msgspec.structs.replace(old, **changes)

    def sent(self, report: wire.RunReport | None) -> None:
        """The coordinator stored ``report``: forget it, unless a newer one came."""
        if report is not None and self.report is report:
            self.report = None

    def stop(self, reason: StopReason) -> None:
        """Ask the executor to stop the body (kill its child) for ``reason``; a run
        still queued is handed to the executors to finish at once instead."""
        if self.running and self.stop_reason is None:
            self.stop_reason = reason
            if self.started:
                self.scope.cancel()
            elif self.stopped_queued is not None:
                self.stopped_queued.send_nowait(self)


class WorkerState:
    def __init__(self, worker_id: str, slots: int, *, prefetch: int = 0) -> None:
        self.worker_id = worker_id
        self.slots = slots
        self.prefetch_limit = prefetch
        self.runs: dict[uuid.UUID, OwnedRun] = {}
        self.queued = 0  # owned runs waiting for a slot
        self.executing = 0  # owned runs whose body is running
        self.completing = 0  # completions submitted, not yet answered (the completer's)
        self.mean_run_seconds: float | None = None  # moving average; None: no run yet
        self.changed = Doorbell()  # rung when a slot frees or a run is forgotten
        self.drain_started = trio.Event()
        self.registered = trio.Event()
        # Runs stopped while still queued, for the executors to finish (OwnedRun.stop).
        self._stopped_send, self.stopped_while_queued = (
            trio.open_memory_channel[OwnedRun](math.inf))
        # Figures reported with each heartbeat (wire.WorkerStats), since start.
        self.runs_finished = 0
        self.child_restarts = 0
        self.run_seconds_sum = 0.0
        self.overhead_seconds_sum = 0.0
        self.overhead_count = 0

    @property
    def busy(self) -> int:
        """Runs whose body has not ended: executing or queued for a slot."""
        return self.executing + self.queued

    @property
    def free(self) -> int:
        return max(self.slots - self.busy, 0)

    def prefetch(self) -> int:
        """How many jobs beyond its slots the worker may hold queued right now."""
        mean = self.mean_run_seconds
        if self.draining or self.prefetch_limit <= 0 or mean is None:
            return 0
        return min(self.prefetch_limit,
                   int(self.slots * PREFETCH_HORIZON_SECONDS / max(mean, 1e-5)))

    def room(self) -> int:
        """How many more runs the worker may own unstarted or running right now: its
        slots and prefetch, less its busy runs (0 while draining). The claimer asks
        for this, less what it asked for already."""
        if self.draining:
            return 0
        return max(self.slots + self.prefetch() - self.busy, 0)

    def add(self, job: wire.ClaimedJob) -> OwnedRun:
        run = OwnedRun(job, stopped_queued=self._stopped_send)
        self.runs[job.run_id] = run
        self.queued += 1
        return run

    def begin(self, run: OwnedRun) -> None:
        """A queued run got a slot: its body starts."""
        run.started = True
        self.queued -= 1
        self.executing += 1

    def body_ended(self, run: OwnedRun) -> None:
        if not run.running:
            return
        run.running = False
        if run.started:
            self.executing -= 1
        else:
            self.queued -= 1
        self.changed.ring()

    def forget(self, run_id: uuid.UUID) -> None:
        run = self.runs.pop(run_id, None)
        if run is not None:
            if run.running:  # lost before its body ended: no slot or queue place to keep
                self.body_ended(run)
            self.changed.ring()

    def refs(self) -> list[wire.RunRef]:
        return [r.ref for r in self.runs.values()]

    def record_run(self, *, run_seconds: float, overhead_seconds: float,
                   child_restarts: int) -> None:
        """Count one finished run: its body's time, the executor's own time around
        it, and the job processes replaced so far."""
        self.runs_finished += 1
        self.run_seconds_sum += run_seconds
        self.overhead_seconds_sum += overhead_seconds
        self.overhead_count += 1
        self.child_restarts = child_restarts
        mean = self.mean_run_seconds
        self.mean_run_seconds = run_seconds if mean is None else (
            mean + RUN_TIME_WEIGHT * (run_seconds - mean))

    def stats(self) -> wire.WorkerStats:
        return wire.WorkerStats(
            busy=self.executing, slots=self.slots, runs_finished=self.runs_finished,
            child_restarts=self.child_restarts, run_seconds_sum=self.run_seconds_sum,
            executor_overhead_seconds_sum=self.overhead_seconds_sum,
            executor_overhead_seconds_count=self.overhead_count)

    @property
    def draining(self) -> bool:
        return self.drain_started.is_set()

    def start_draining(self) -> None:
        self.drain_started.set()  # the claimer stops claiming at once
        self.changed.ring()

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` is true, re-checking whenever state changes."""
        while True:
            gen = self.changed.generation
            if predicate():
                return
            await self.changed.wait_since(gen)
