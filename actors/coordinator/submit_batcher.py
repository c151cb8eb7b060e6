"""Group commit of single submits: the ``POST /api/jobs`` requests that arrive while
one INSERT is in flight wait, and the next INSERT writes them all at once.

It lives with the coordinator's actors, not in the route: when to write and how many
together is scheduling, and the web layer only validates the body and awaits
:meth:`SubmitBatcher.submit`. One :class:`SubmitBatcher` per coordinator process, held
in the web layer's context (web/context.py) beside the claim gate. Why and what it
measured: docs/decisions/0016-group-commit.md.
"""

from __future__ import annotations

from collections import deque

import msgspec
import structlog
import trio

from scheduler_core.runtime.errors import DatabaseUnavailable
from scheduler_core.schema import wire
from scheduler_core.schema.store import NewJob, Store

log = structlog.get_logger("coordinator.submits")

MAX_GROUP = 500  # jobs in one INSERT (the rest wait for the next)
GROUP_WRITE_TIMEOUT = 30.0  # bounds the shielded write of a group (a stuck database)

# A slot's life: queued (waiting for a group) -> leading (told to write the next group;
# only one slot leads at a time) -> writing (in the group being written) -> done.
_QUEUED, _LEADING, _WRITING, _DONE = range(4)


class SubmitStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """What :meth:`SubmitBatcher.statistics` reports: ``groups`` INSERTs written (or
    tried) of ``jobs`` jobs in all, the ``largest`` group, ``split`` groups that a
    failing job made write their jobs one at a time, and ``waiting`` submits queued."""

    groups: int
    jobs: int
    largest: int
    split: int
    waiting: int


class _Slot:
    __slots__ = ("error", "job", "result", "state", "woken")

    def __init__(self, job: NewJob) -> None:
        self.job = job
        self.state = _QUEUED
        self.woken = trio.Event()
        self.result: tuple[wire.JobOut, bool] | None = None
        self.error: BaseException | None = None

    def outcome(self) -> tuple[wire.JobOut, bool]:
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


class SubmitBatcher:
    """Single submits, written together when they arrive together.

    Idle, a submit is written at once, alone: no added delay. While a group's INSERT
    is in flight the submits that arrive queue up; when it ends, the first of them
    writes the next group (up to ``max_group`` jobs, the rest wait again), so no
    request waits for more than the write in flight and its own, and no task but the
    requests' own is needed.

    Each request gets what :meth:`Store.submit` would have given it alone, racing
    the others (:meth:`Store.submit_group`). A database error fails only the group it
    hit. Should the INSERT of a group of several fail for another reason (a job the
    validation let through but PostgreSQL refuses), nothing was written and the group
    is written again one job at a time, so that one job fails alone.
    """

    def __init__(self, store: Store, *, max_group: int = MAX_GROUP) -> None:
        self.store = store
        self.max_group = max_group
        self._queue: deque[_Slot] = deque()
        self._busy = False  # a slot leads or a group is being written
        self._groups = self._jobs = self._largest = self._split = 0

    def statistics(self) -> SubmitStatistics:
        return SubmitStatistics(groups=self._groups, jobs=self._jobs,
                                largest=self._largest, split=self._split,
                                waiting=len(self._queue))

    async def submit(self, job: NewJob) -> tuple[wire.JobOut, bool]:
        """Write ``job`` (validated) in the next group; ``(job, created)`` as
        :meth:`Store.submit` returns it, or its error raised.

        Cancellation: cancelled while queued, nothing of this job is written. Once its
        group is being written the write runs to its end (shielded, bounded by
        GROUP_WRITE_TIMEOUT) whoever goes away, so the other jobs of the group are
        neither lost nor written twice; this job may then be written, as when a
        client hangs up after a lone INSERT.

        Error handling: a validation error never gets here (the route answers it
        first); a database error is raised in every request of the group it hit
        (``DatabaseUnavailable``: 503 each); a job PostgreSQL refuses raises its own
        error, in its own request only.
        """
        if job.schedule_id is not None:  # schedule fires: their own conflict rule
            return await self.store.submit(job)
        slot = _Slot(job)
        if self._busy:
            self._queue.append(slot)
            try:
                await slot.woken.wait()
            except BaseException:
                self._abandon(slot)
                raise
            if slot.state == _DONE:
                return slot.outcome()
        else:
            self._busy = True
        slot.state = _LEADING
        try:
            group = [slot]
            while self._queue and len(group) < self.max_group:
                group.append(self._queue.popleft())
            for s in group:
                s.state = _WRITING
            await self._write(group)
        finally:
            self._hand_on()
        return slot.outcome()

    def _abandon(self, slot: _Slot) -> None:
        """A queued or leading slot's request went away."""
        if slot.state == _QUEUED:
            self._queue.remove(slot)
        elif slot.state == _LEADING:  # told to lead, gone before it could
            slot.state = _DONE
            self._hand_on()

    def _hand_on(self) -> None:
        """The group is written: the first queued slot leads the next one."""
        if self._queue:
            nxt = self._queue.popleft()
            nxt.state = _LEADING
            nxt.woken.set()
        else:
            self._busy = False

    async def _write(self, group: list[_Slot]) -> None:
        """Give every slot of ``group`` its outcome and wake it; never raises."""
        self._groups += 1
        self._jobs += len(group)
        self._largest = max(self._largest, len(group))
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + GROUP_WRITE_TIMEOUT
            try:
                await self._insert(group)
            finally:
                for s in group:
                    if s.result is None and s.error is None:
                        s.error = DatabaseUnavailable(
                            "the database did not finish the INSERT within "
                            f"{GROUP_WRITE_TIMEOUT:g} s")
                    s.state = _DONE
                    s.woken.set()

    async def _insert(self, group: list[_Slot]) -> None:
        if len(group) == 1:  # alone (idle): the one-row INSERT, cheaper than the arrays'
            await self._insert_one(group[0])
            return
        try:
            outcomes = await self.store.submit_group([s.job for s in group])
        except DatabaseUnavailable as exc:
            for s in group:
                s.error = exc
            return
        except Exception as exc:
            self._split += 1
            log.warning("submit_group_failed", jobs=len(group), retry="one at a time",
                        error=f"{type(exc).__name__}: {exc}")
            for s in group:  # nothing was written: each job alone, as before
                await self._insert_one(s)
            return
        for s, outcome in zip(group, outcomes, strict=True):
            if isinstance(outcome, Exception):
                s.error = outcome
            else:
                s.result = outcome

    async def _insert_one(self, slot: _Slot) -> None:
        try:
            slot.result = await self.store.submit(slot.job)
        except Exception as exc:
            slot.error = exc
