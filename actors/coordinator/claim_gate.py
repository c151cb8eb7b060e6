"""The coordinator's side of a claim: the long poll, and the gate that keeps a burst of
woken claims from all querying for the same new job.

It lives with the coordinator's actors, not in the route that answers
``POST /api/workers/claim``: it is scheduling (when to query, when to wait, what to do
with runs claimed for a worker that hung up), and the web layer only reads the body,
checks the worker and encodes the answer. One :class:`ClaimGate` per coordinator
process, built with the web layer's context (web/context.py) and held there.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext

import structlog
import trio

from scheduler_core.runtime.doorbell import Doorbell
from scheduler_core.schema import wire
from scheduler_core.schema.store import Store

log = structlog.get_logger("web.workers")

CLAIM_QUERY_TIMEOUT = 30.0  # bounds the shielded claim query (a stuck database)

# Entered around each parked wait of a long poll (the web layer passes its
# claims-waiting gauge); the default records nothing.
Waiting = Callable[[], AbstractContextManager[object]]


class ClaimGate:
    """Claims for workers: now (:meth:`claim_unless_drained`) or with a long poll
    (:meth:`claim`), never two woken claims querying for the same new job.

    A notification wakes every long-polling claim at once; without the gate each of
    them would run the claim query, and all but one would find nothing (with N idle
    workers, every submission cost N claim queries). Woken claims go through the gate
    one at a time, and once one of them finds the queue drained (fewer jobs than it
    asked for) the others woken by the same ring go back to waiting without a query.
    Drained is judged per set of queues. (A claim by a worker that may not claim, e.g.
    a draining one, also finds nothing: at worst another waiter then waits for the
    next ring or its deadline, never longer.)

    ``max_wait`` caps any long poll's ``waitSeconds`` (the coordinator's
    claim_wait_seconds setting).

    :meth:`stop_waiting` (the coordinator's drain, web/drain.py) answers every parked
    long poll at once with what it has (nothing), and from then on a claim queries once
    and does not wait: the worker comes back, through the balancer, to a coordinator
    that is not stopping.
    """

    def __init__(self, store: Store, doorbell: Doorbell, *, max_wait: float) -> None:
        self.store = store
        self.doorbell = doorbell
        self.max_wait = max_wait
        self.lock = trio.Lock()
        self._drained: dict[frozenset[str], int] = {}
        self._parked: set[trio.CancelScope] = set()  # the long polls' waits
        self.stopping = False

    def stop_waiting(self) -> None:
        """End every parked long poll now (each answers what it has claimed: nothing),
        and park no claim from now on. Idempotent."""
        self.stopping = True
        for scope in self._parked:
            scope.cancel()

    def drained(self, queues: Sequence[str], generation: int) -> bool:
        """Whether a claim since doorbell ring ``generation`` found ``queues`` drained."""
        return self._drained.get(frozenset(queues)) == generation

    def saw(self, queues: Sequence[str], generation: int, *, asked: int, got: int) -> None:
        """Record a claim's result: fewer jobs than asked means drained until the next
        ring."""
        if got < asked:
            self._drained[frozenset(queues)] = generation

    async def claim(self, request: wire.Claim, *,
                    waiting: Waiting = nullcontext) -> list[wire.ClaimedJob]:
        """Up to ``request.max`` due jobs; with none due, wait up to
        ``request.wait_seconds`` (at most ``max_wait``) for some.

        The wait ends early when the doorbell rings (the listener heard of new jobs, or
        this process made some due) or when the earliest waiting job falls due; there
        is no busy polling; it ends at once when the gate stops waiting
        (:meth:`stop_waiting`).

        Cancellation: a claim query once started runs to its end (see
        :meth:`claim_once`); cancelled while parked, nothing was claimed.
        """
        wait = min(request.wait_seconds, self.max_wait)
        deadline = trio.current_time() + wait
        generation = self.doorbell.generation
        jobs = await self.claim_once(request.worker_id, request.max, request.queues)
        self.saw(request.queues, generation, asked=request.max, got=len(jobs))
        queried = True
        wake_at = deadline
        while not jobs and not self.stopping and trio.current_time() < deadline:
            if queried:  # what fell due or was added since may change when to look again
                next_due = await self.store.next_due_in()
                wake_at = deadline
                if next_due is not None and not math.isnan(next_due):
                    wake_at = min(deadline, trio.current_time() + max(next_due, 0.001))
            with trio.CancelScope(deadline=wake_at) as timer, waiting():
                self._parked.add(timer)
                try:
                    await self.doorbell.wait_since(generation)
                finally:
                    self._parked.discard(timer)
            if self.stopping:
                break
            async with self.lock:
                generation = self.doorbell.generation
                queried = timer.cancelled_caught or not self.drained(request.queues,
                                                                     generation)
                if not queried:
                    continue  # woken by a ring whose jobs another claim already took
                jobs = await self.claim_once(request.worker_id, request.max,
                                             request.queues)
                self.saw(request.queues, generation, asked=request.max, got=len(jobs))
        return jobs

    async def claim_unless_drained(self, worker_id: str, limit: int,
                                   queues: Sequence[str]) -> list[wire.ClaimedJob]:
        """Up to ``limit`` due jobs, no waiting; no query at all when the last claim
        since the latest doorbell ring found ``queues`` drained."""
        generation = self.doorbell.generation
        if self.drained(queues, generation):
            return []
        jobs = await self.claim_once(worker_id, limit, queues)
        self.saw(queues, generation, asked=limit, got=len(jobs))
        return jobs

    async def claim_once(self, worker_id: str, limit: int,
                         queues: Sequence[str]) -> list[wire.ClaimedJob]:
        """Run the claim query to its end even if the requester goes away meanwhile.

        Cancellation: cancelled halfway (the worker hung up: hypercorn cancels the
        handler), a claim could commit its runs and lose the answer, leaving the jobs
        stuck until their leases expire. So the query is shielded (and bounded by
        CLAIM_QUERY_TIMEOUT), and runs claimed for a requester that is gone are handed
        straight back (``Released``) before the cancellation goes on.
        """
        with trio.CancelScope(shield=True), trio.fail_after(CLAIM_QUERY_TIMEOUT):
            jobs = await self.store.claim(worker_id, limit, queues)
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
        except trio.Cancelled:
            if jobs:
                with trio.CancelScope(shield=True), trio.move_on_after(CLAIM_QUERY_TIMEOUT):
                    await self.store.complete([wire.Completion(
                        run_id=j.run_id, lease_token=j.lease_token, outcome="Released",
                        error="handed back: the worker hung up before its claim was "
                              "answered")
                        for j in jobs], worker_id=worker_id)
                    log.warning("claim_abandoned", worker_id=worker_id, runs=len(jobs))
            raise
        return jobs
