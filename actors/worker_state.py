"""What a worker's actors share: its runs, its slots, and whether it is draining.

A run is *owned* from the claim until its completion is acknowledged by the
coordinator (the heartbeat keeps renewing its lease all that time), but its slot is
freed as soon as the job body ends: completions are pipelined.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Literal

import trio

from runtime.doorbell import Doorbell
from schema import wire

StopReason = Literal["Cancelled", "Released", "Lost"]


@dataclass(eq=False)
class OwnedRun:
    job: wire.ClaimedJob
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    running: bool = True  # False once the body ended and the completion is queued
    stop_reason: StopReason | None = None
    claimed_at: float = field(default_factory=trio.current_time)  # trio clock

    @property
    def ref(self) -> wire.RunRef:
        return wire.RunRef(run_id=self.job.run_id, lease_token=self.job.lease_token)

    def stop(self, reason: StopReason) -> None:
        """Ask the executor to stop the body (kill its child) for ``reason``."""
        if self.running and self.stop_reason is None:
            self.stop_reason = reason
            self.scope.cancel()


class WorkerState:
    def __init__(self, worker_id: str, slots: int) -> None:
        self.worker_id = worker_id
        self.slots = slots
        self.runs: dict[uuid.UUID, OwnedRun] = {}
        self.draining = False
        self.changed = Doorbell()  # rung when a slot frees or a run is forgotten
        self.claim_scope: trio.CancelScope | None = None
        self.registered = trio.Event()
        # Figures reported with each heartbeat (wire.WorkerStats), since start.
        self.runs_finished = 0
        self.child_restarts = 0
        self.run_seconds_sum = 0.0
        self.overhead_seconds_sum = 0.0
        self.overhead_count = 0

    @property
    def busy(self) -> int:
        return sum(1 for r in self.runs.values() if r.running)

    @property
    def free(self) -> int:
        return max(self.slots - self.busy, 0)

    def add(self, job: wire.ClaimedJob) -> OwnedRun:
        run = OwnedRun(job)
        self.runs[job.run_id] = run
        return run

    def body_ended(self, run: OwnedRun) -> None:
        run.running = False
        self.changed.ring()

    def forget(self, run_id: uuid.UUID) -> None:
        if self.runs.pop(run_id, None) is not None:
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

    def stats(self) -> wire.WorkerStats:
        return wire.WorkerStats(
            busy=self.busy, slots=self.slots, runs_finished=self.runs_finished,
            child_restarts=self.child_restarts, run_seconds_sum=self.run_seconds_sum,
            executor_overhead_seconds_sum=self.overhead_seconds_sum,
            executor_overhead_seconds_count=self.overhead_count)

    def start_draining(self) -> None:
        self.draining = True
        if self.claim_scope is not None:
            self.claim_scope.cancel()
        self.changed.ring()

    async def wait_until(self, predicate: object) -> None:
        """Wait until ``predicate()`` is true, re-checking whenever state changes."""
        assert callable(predicate)
        while True:
            gen = self.changed.generation
            if predicate():
                return
            await self.changed.wait_since(gen)
