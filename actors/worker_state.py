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
