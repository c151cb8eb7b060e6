"""The schedule store: recurring job definitions and the cron expander's statements.

The API creates, reads, pauses, resumes and (softly) deletes schedules through
:class:`ScheduleStore`; the cron expander locks the due ones with :meth:`lock_due` and,
inside that one transaction, enqueues their fires (a job each, or for a workflow
schedule a workflow each: :meth:`DueBatch.enqueue_workflows`) and advances them. Like
:class:`schema.store.Store` it runs only named queries and raises
:class:`schema.store.NotFound` / :class:`schema.store.Conflict`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import msgspec
from psycopg.types.json import Jsonb

from scheduler_core.runtime.db import Pool, TrioConnection
from scheduler_core.schema import wire, workflow_template
from scheduler_core.schema.queries import q
from scheduler_core.schema.store import (
    Conflict,
    NewJob,
    NewSchedule,
    NotFound,
    Parent,
    create_workflow_on,
    schedule_out,
    uuid7,
)
from scheduler_core.schema.workflow_template import HELD_UNTIL, WorkflowTemplate

RECENT_FIRES = 20


class ScheduleFire(msgspec.Struct, rename="camel", kw_only=True):
    """One job made from a schedule, as ``GET /api/schedules/{id}`` lists it; for a
    workflow schedule one workflow (its id; status Running, Succeeded or Failed)."""

    id: uuid.UUID
    fire_time: dt.datetime | None
    status: str
    created_at: dt.datetime


class ScheduleDetail(wire.ScheduleOut, kw_only=True):
    """A schedule with its newest fires (``recentFires``, newest first)."""

    recent_fires: list[ScheduleFire] = []


class DueSchedule(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    cron: str
    timezone: str
    misfire_policy: str
    overlap_policy: str
    next_fire_at: dt.datetime
    workflow: WorkflowTemplate | None = None  # a workflow schedule's steps


class EnqueuedFire(msgspec.Struct, frozen=True, kw_only=True):
    job_id: uuid.UUID  # the workflow's id, for a workflow schedule
    fire_time: dt.datetime
    status: str
    created_at: dt.datetime


class DueBatch:
    """The due schedules locked by one expander pass, and what it may do with them.

    Valid only inside :meth:`ScheduleStore.lock_due`: every call runs in its
    transaction, which commits when the block ends (and rolls back on an error).
    """

    def __init__(self, conn: TrioConnection, rows: Sequence[dict[str, Any]]) -> None:
        self._conn = conn
        self.schedules = [
            DueSchedule(**{f: r[f] for f in DueSchedule.__struct_fields__ if f != "workflow"},
                        workflow=workflow_template.decode(r["workflow"]))
            for r in rows]
        self.now: dt.datetime | None = rows[0]["db_now"] if rows else None

    async def latest_fire_unfinished(self, schedule_id: uuid.UUID, *,
                                     workflow: bool = False) -> bool:
        """Whether the schedule's newest job (``workflow``: its newest workflow, any
        of its steps) is not finished."""
        cur = await self._conn.execute(
            q("latest_workflow_unfinished" if workflow else "latest_fire_unfinished"),
            {"id": schedule_id})
        row = await cur.fetchone()
        return bool(row and row["unfinished"])

    async def enqueue_workflows(self, schedule_id: uuid.UUID, template: WorkflowTemplate,
                                fires: Sequence[tuple[dt.datetime, bool]]
                                ) -> list[EnqueuedFire]:
        """Create one workflow per ``(fire_time, held)``, its row and every step, with
        the store's workflow machinery on this transaction; fires that already have
        their workflow (made by any coordinator) are skipped and not returned. A held
        workflow's root steps wait Scheduled at HELD_UNTIL (migration 0015 releases
        them); its ``status`` here is Scheduled, else Pending."""
        out = []
        for fire_time, held in fires:
            workflow_id = uuid7()
            made = await create_workflow_on(
                self._conn, workflow_id, template.name, steps_of(template, workflow_id, held),
                schedule_id=schedule_id, fire_time=fire_time)
            if made is None:
                continue
            row, _ = made
            out.append(EnqueuedFire(
                job_id=row["id"], fire_time=row["fire_time"], created_at=row["created_at"],
                status=wire.JobStatus.SCHEDULED if held else wire.JobStatus.PENDING))
        return out

    async def enqueue(self, schedule_id: uuid.UUID,
                      fires: Sequence[tuple[dt.datetime, bool]]) -> list[EnqueuedFire]:
        """Insert one job per ``(fire_time, held)``; fires already enqueued (by any
        coordinator) are skipped and not returned."""
        if not fires:
            return []
        cur = await self._conn.execute(q("insert_fires"), {
            "schedule_id": schedule_id, "ids": [uuid7() for _ in fires],
            "fire_times": [f for f, _ in fires], "held": [h for _, h in fires]})
        rows = await cur.fetchall()
        return [EnqueuedFire(job_id=r["id"], fire_time=r["fire_time"], status=r["status"],
                             created_at=r["created_at"]) for r in rows]

    async def advance(self, schedule_id: uuid.UUID, *, expected: dt.datetime,
                      next_fire_at: dt.datetime | None,
                      last_fired_at: dt.datetime | None) -> bool:
        """Set ``next_fire_at`` if it is still ``expected``; False if it was not."""
        cur = await self._conn.execute(q("advance_schedule"), {
            "id": schedule_id, "expected": expected, "next_fire_at": next_fire_at,
            "last_fired_at": last_fired_at})
        return await cur.fetchone() is not None


def steps_of(template: WorkflowTemplate, workflow_id: uuid.UUID,
             held: bool) -> list[NewJob]:
    """The jobs of one fire of ``template``: the steps in its order (parents first),
    each a step of ``workflow_id``; ``held``: the root steps wait at HELD_UNTIL."""
    return [NewJob(
        type=s.type, payload=s.payload, queue=s.queue, priority=s.priority,
        max_attempts=s.max_attempts, timeout_seconds=s.timeout_seconds,
        concurrency_key=s.concurrency_key, workflow_id=workflow_id, step=s.step,
        run_at=HELD_UNTIL if held and not s.parents else None,
        parents=[Parent(item=i, on_failure=policy) for i, policy in s.parents] or None)
        for s in template.steps]


class ScheduleStore:
    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    async def _one(self, name: str, params: dict[str, Any]) -> dict[str, Any] | None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(q(name), params)
            return await cur.fetchone()

    async def _all(self, name: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(q(name), params)
            return await cur.fetchall()

    # --- the API -------------------------------------------------------------------

    async def create_schedule(self, s: NewSchedule) -> tuple[wire.ScheduleOut, bool]:
        """Insert a schedule; a known key with the same definition returns it (False),
        a known key with a different definition raises :class:`Conflict`."""
        params = {
            "id": uuid7(), "idempotency_key": s.idempotency_key, "cron": s.cron,
            "timezone": s.timezone, "job_type": s.type, "payload": Jsonb(s.payload),
            "queue": s.queue, "priority": s.priority, "max_attempts": s.max_attempts,
            "timeout_seconds": s.timeout_seconds, "misfire_policy": s.misfire_policy,
            "overlap_policy": s.overlap_policy, "next_fire_at": s.next_fire_at,
            "workflow": None if s.workflow is None else Jsonb(
                workflow_template.encode(s.workflow)),
        }
        row = await self._one("insert_schedule", params)
        if row is not None:
            return schedule_out(row), True
        existing = await self._one("get_schedule_by_key", {"key": s.idempotency_key})
        if existing is None:
            raise Conflict("the schedule conflicts with one being deleted; try again")
        same = all(existing[k] == v for k, v in (
            ("cron", s.cron), ("timezone", s.timezone), ("job_type", s.type),
            ("payload", s.payload), ("queue", s.queue), ("priority", s.priority),
            ("max_attempts", s.max_attempts), ("timeout_seconds", s.timeout_seconds),
            ("misfire_policy", s.misfire_policy), ("overlap_policy", s.overlap_policy),
            ("workflow", None if s.workflow is None else workflow_template.encode(s.workflow))))
        if not same:
            raise Conflict(f"idempotencyKey {s.idempotency_key!r} is already used by a "
                           "schedule with a different definition", schedule_out(existing),
                           field="idempotencyKey")
        return schedule_out(existing), False

    async def get_schedule(self, schedule_id: uuid.UUID, *,
                           recent: int = RECENT_FIRES) -> ScheduleDetail:
        """The schedule with its ``recent`` newest fires; :class:`NotFound` if there is
        no such schedule or it was deleted."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(q("get_schedule"), {"id": schedule_id})
            row = await cur.fetchone()
            if row is None:
                raise NotFound(f"no schedule with id {schedule_id}")
            if row["workflow"] is None:
                cur = await conn.execute(q("schedule_recent_fires"),
                                         {"id": schedule_id, "limit": recent})
                fires = [ScheduleFire(**f) for f in await cur.fetchall()]
            else:
                fires = await _recent_workflows(conn, schedule_id, recent)
        base = schedule_out(row)
        return ScheduleDetail(
            **{f: getattr(base, f) for f in wire.ScheduleOut.__struct_fields__},
            recent_fires=fires)

    async def list_schedules(self, take: int = 100) -> list[wire.ScheduleOut]:
        return [schedule_out(r) for r in await self._all("list_schedules", {"limit": take})]

    async def _change(self, name: str, schedule_id: uuid.UUID) -> wire.ScheduleOut:
        row = await self._one(name, {"id": schedule_id})
        if row is None:
            raise NotFound(f"no schedule with id {schedule_id}")
        return schedule_out(row)

    async def pause(self, schedule_id: uuid.UUID) -> wire.ScheduleOut:
        """Stop new fires (idempotent); :class:`NotFound` for an unknown schedule."""
        return await self._change("pause_schedule", schedule_id)

    async def resume(self, schedule_id: uuid.UUID) -> wire.ScheduleOut:
        """Fire again; what was missed while paused follows the misfire policy."""
        return await self._change("resume_schedule", schedule_id)

    async def delete(self, schedule_id: uuid.UUID) -> wire.ScheduleOut:
        """Soft delete: no more fires, the jobs it made are kept."""
        return await self._change("delete_schedule", schedule_id)

    # --- the cron expander ---------------------------------------------------------

    @asynccontextmanager
    async def lock_due(self, limit: int) -> AsyncIterator[DueBatch]:
        """Lock up to ``limit`` due schedules (SKIP LOCKED) for one transaction.

        Cancellation: a cancelled block rolls back (the pool rolls back a connection
        returned inside a transaction), so nothing is half-enqueued.
        """
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(q("lock_due_schedules"), {"limit": limit})
            rows: list[dict[str, Any]] = await cur.fetchall()
            yield DueBatch(conn, rows)

    async def seconds_to_next_fire(self) -> float | None:
        """Seconds until the earliest fire of any enabled schedule, by the database
        clock (negative when one is overdue); None when nothing is scheduled."""
        row = await self._one("next_fire_in", {})
        return None if row is None else row["seconds"]


async def _recent_workflows(conn: TrioConnection, schedule_id: uuid.UUID,
                            recent: int) -> list[ScheduleFire]:
    """A workflow schedule's newest workflows, newest fire first, each with the status
    list_workflows reads from its steps."""
    cur = await conn.execute(q("schedule_recent_workflows"),
                             {"id": schedule_id, "limit": recent})
    ids = [r["id"] for r in await cur.fetchall()]
    if not ids:
        return []
    cur = await conn.execute(q("list_workflows"), {
        "before": None, "ids": ids, "status": None, "limit": len(ids)})
    rows = await cur.fetchall()
    fires = [ScheduleFire(id=r["id"], fire_time=r["fire_time"], status=r["status"],
                          created_at=r["created_at"]) for r in rows]
    fires.sort(key=lambda f: f.fire_time or dt.datetime.min.replace(tzinfo=dt.UTC),
               reverse=True)
    return fires
