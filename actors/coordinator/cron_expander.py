"""The cron expander: turns schedules into due jobs, one job per fire, on time.

The loop sleeps until the earliest ``next_fire_at`` over all enabled schedules (one
index probe, by the database clock), or until the schedules doorbell rings (the
listener rings it when a schedule is created, paused, resumed or deleted). Awake, it
locks the due schedules (``FOR UPDATE SKIP LOCKED``), and for each one, in a single
transaction, inserts a job per fire keyed by ``(schedule_id, fire_time)`` (``ON
CONFLICT DO NOTHING`` under the unique index ``jobs_schedule_fire``) and moves
``next_fire_at`` on with a guarded UPDATE. However many coordinators run, each fire
becomes exactly one job.

A workflow schedule (``POST /api/jobs`` with ``cron`` and ``workflow``) makes a whole
workflow per fire instead, in the same transaction: the workflow row keyed by
``(schedule_id, fire_time)`` (``workflows_schedule_fire``) and, only if this pass
inserted it, every step and edge, through the store's workflow machinery. The policies
below apply to the workflow as a unit: it is unfinished while any of its steps is.

The decisions are pure functions of explicit inputs, tested without I/O:

- :func:`plan_fires`, the **misfire policy**. A fire is *on time* while it is less
  than ``grace`` (1 s) old when the expander sees it; on-time fires are always
  enqueued. Older fires were *missed* (coordinators down, schedule paused):

  ``skip``
      drop them; the schedule resumes with its next on-time fire.
  ``once`` (the default)
      one catch-up run now, for the latest missed fire; none when an on-time fire is
      enqueued anyway (it is that run).
  ``all``
      enqueue every missed fire, but at most ``max_catchup`` (the latest ones;
      ``SCHEDULER_MISFIRE_MAX_CATCHUP``, default 100).

- :func:`overlap_actions`, the **overlap policy**, when the schedule's newest job (or
  workflow) has not finished yet:

  ``allow`` (the default)
      enqueue anyway.
  ``skip``
      do not enqueue; the fire is dropped, logged as ``fire_skipped`` and counted.
  ``queue``
      enqueue it *held*: status ``Scheduled`` with ``runAt`` 9999-01-01, so no claim
      or promotion picks it up. When the running job finishes (any terminal state), a
      trigger in the same transaction releases the oldest held job (``Pending``, runAt
      now). Held jobs therefore run one at a time, in fire order; cancelling a held
      job simply removes it from the line. A held workflow's root steps are held so;
      the trigger of migration 0015 releases the oldest held workflow when the last
      step of the one that ran ends.

Fire times, time zones and daylight saving are :mod:`runtime.cron`'s business.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import psycopg
import structlog
import trio
from prometheus_client import Counter, Histogram

from scheduler_core.runtime import backoff, cron
from scheduler_core.runtime.doorbell import Doorbell
from scheduler_core.runtime.errors import DatabaseUnavailable
from scheduler_core.schema.schedule_store import DueBatch, DueSchedule, ScheduleStore
from scheduler_core.schema.wire import JobStatus

__all__ = [
    "MISFIRE_GRACE_SECONDS",
    "FirePlan",
    "FireSource",
    "OverlapAction",
    "StoreFireSource",
    "overlap_actions",
    "plan_fires",
    "run",
]

log = structlog.get_logger("actors.cron_expander")

MISFIRE_GRACE_SECONDS = 1.0
"""A fire found more than this late was missed (and its misfire policy applies)."""

MisfirePolicy = Literal["skip", "once", "all"]
OverlapPolicy = Literal["allow", "skip", "queue"]
OverlapAction = Literal["enqueue", "hold", "skip"]

FIRES = Counter("scheduler_schedule_fires_total",
                "Schedule fires handled: enqueued, held (overlap queue) or skipped "
                "(overlap skip).", ["outcome"])
MISFIRES = Counter("scheduler_schedule_misfires_total",
                   "Passes that found a schedule's fires missed, by misfire policy.",
                   ["policy"])
FIRE_LAG = Histogram("scheduler_schedule_fire_lag_seconds",
                     "From a fire's time to its job's creation.",
                     buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60))


@dataclass(frozen=True)
class FirePlan:
    """What one pass does with one due schedule.

    ``fires``: the fire times to enqueue, oldest first. ``next_fire_at``: the first
    fire after ``now``. ``missed_first``/``missed_last``: the span of missed fires
    (None when none was missed), whether or not the policy enqueued them.
    """

    fires: tuple[dt.datetime, ...]
    next_fire_at: dt.datetime
    missed_first: dt.datetime | None = None
    missed_last: dt.datetime | None = None


def plan_fires(expr: str, timezone: str, next_fire_at: dt.datetime, now: dt.datetime,
               policy: str, *, max_catchup: int,
               grace: float = MISFIRE_GRACE_SECONDS) -> FirePlan:
    """The fires to enqueue at ``now`` for a schedule whose first unhandled fire is
    ``next_fire_at``, under misfire ``policy`` (see the module docstring).

    Cost: proportional to the fires enqueued, not to the fires missed: a schedule
    paused for a week costs no more than one paused for a minute.

    Error handling: :class:`runtime.cron.CronError` or ``ValueError`` for an
    expression that cannot be evaluated; ``ValueError`` for an unknown policy.
    """
    if policy not in ("skip", "once", "all"):
        raise ValueError(f"misfire policy must be skip, once or all, found {policy!r}")
    if max_catchup < 1:
        raise ValueError(f"max_catchup must be >= 1, found {max_catchup}")
    if next_fire_at > now:
        return FirePlan((), next_fire_at)
    cutoff = now - dt.timedelta(seconds=grace)
    on_time: list[dt.datetime] = []
    fire = next_fire_at if next_fire_at > cutoff else cron.next_fire(expr, timezone, cutoff)
    while fire <= now:
        on_time.append(fire)
        fire = cron.next_fire(expr, timezone, fire)
    following = fire
    if next_fire_at > cutoff:
        return FirePlan(tuple(on_time), following)
    latest_missed = cron.last_fire(expr, timezone, cutoff)
    missed: list[dt.datetime] = []
    if policy == "once" and not on_time:
        missed = [latest_missed]
    elif policy == "all":
        missed = [latest_missed]
        while len(missed) < max_catchup and missed[-1] > next_fire_at:
            missed.append(cron.prev_fire(expr, timezone, missed[-1]))
        missed.reverse()
    return FirePlan(tuple(missed + on_time), following, next_fire_at, latest_missed)


def overlap_actions(policy: str, fires: Sequence[dt.datetime],
                    previous_unfinished: bool) -> list[tuple[dt.datetime, OverlapAction]]:
    """What to do with each of ``fires`` (oldest first) under overlap ``policy``,
    given whether the schedule's newest existing job is unfinished. A fire that is
    enqueued or held makes the fires after it overlap too."""
    if policy not in ("allow", "skip", "queue"):
        raise ValueError(f"overlap policy must be allow, skip or queue, found {policy!r}")
    busy = previous_unfinished
    out: list[tuple[dt.datetime, OverlapAction]] = []
    for fire in fires:
        action: OverlapAction
        if not busy or policy == "allow":
            action = "enqueue"
        elif policy == "skip":
            action = "skip"
        else:
            action = "hold"
        out.append((fire, action))
        busy = busy or action != "skip"
    return out


class FireSource(Protocol):
    """What the loop needs: handle what is due now, say when the next fire is."""

    async def fire_due(self, limit: int) -> int:
        """Handle up to ``limit`` due schedules; return how many were handled."""
        ...

    async def seconds_to_next_fire(self) -> float | None:
        """Seconds until the next fire of any schedule (<= 0: overdue; None: none)."""
        ...


class StoreFireSource:
    """The real :class:`FireSource`: the schedules in PostgreSQL."""

    def __init__(self, store: ScheduleStore, *, max_catchup: int,
                 grace: float = MISFIRE_GRACE_SECONDS) -> None:
        self.store = store
        self.max_catchup = max_catchup
        self.grace = grace

    async def seconds_to_next_fire(self) -> float | None:
        return await self.store.seconds_to_next_fire()

    async def fire_due(self, limit: int) -> int:
        async with self.store.lock_due(limit) as batch:
            now = batch.now
            if now is not None:  # None: nothing due
                for schedule in batch.schedules:
                    await self._fire(batch, schedule, now)
            return len(batch.schedules)

    async def _fire(self, batch: DueBatch, s: DueSchedule, now: dt.datetime) -> None:
        sid = str(s.id)
        try:
            plan = plan_fires(s.cron, s.timezone, s.next_fire_at, now, s.misfire_policy,
                              max_catchup=self.max_catchup, grace=self.grace)
        except (cron.CronError, ValueError) as exc:
            # Cannot happen for a schedule the API accepted; never retry it in a loop.
            log.error("schedule_broken", actor="cron_expander", schedule_id=sid,
                      cron=s.cron, timezone=s.timezone, error=str(exc))
            await batch.advance(s.id, expected=s.next_fire_at, next_fire_at=None,
                                last_fired_at=None)
            return
        if plan.missed_first is not None and plan.missed_last is not None:
            last_missed = plan.missed_last
            MISFIRES.labels(s.misfire_policy).inc()
            log.warning("fires_missed", actor="cron_expander", schedule_id=sid,
                        policy=s.misfire_policy, first=plan.missed_first.isoformat(),
                        last=last_missed.isoformat(),
                        enqueued=sum(1 for f in plan.fires if f <= last_missed))
        busy = False
        if plan.fires and s.overlap_policy != "allow":
            busy = await batch.latest_fire_unfinished(s.id, workflow=s.workflow is not None)
        actions = overlap_actions(s.overlap_policy, plan.fires, busy)
        for fire, action in actions:
            if action == "skip":
                FIRES.labels("skipped").inc()
                log.info("fire_skipped", actor="cron_expander", schedule_id=sid,
                         fire_time=fire.isoformat(),
                         reason="previous job unfinished" if s.workflow is None
                         else "previous workflow unfinished")
        wanted = [(fire, action == "hold") for fire, action in actions if action != "skip"]
        if s.workflow is None:
            made = await batch.enqueue(s.id, wanted)
        else:
            made = await batch.enqueue_workflows(s.id, s.workflow, wanted)
        key = "job_id" if s.workflow is None else "workflow_id"
        for job in made:
            lag = (job.created_at - job.fire_time).total_seconds()
            held = job.status == JobStatus.SCHEDULED
            FIRES.labels("held" if held else "enqueued").inc()
            FIRE_LAG.observe(max(lag, 0.0))
            log.info("schedule_fired", actor="cron_expander", schedule_id=sid,
                     fire_time=job.fire_time.isoformat(), lag_s=round(lag, 4), held=held,
                     **{key: str(job.job_id)})
        last = wanted[-1][0] if wanted else None
        if not await batch.advance(s.id, expected=s.next_fire_at,
                                   next_fire_at=plan.next_fire_at, last_fired_at=last):
            log.warning("schedule_advance_refused", actor="cron_expander", schedule_id=sid)


async def run(source: FireSource, doorbell: Doorbell, *, batch_size: int = 100,
              contention_delay: float = 0.01, retry_cap: float = 5.0,
              task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Expand schedules until cancelled. Ready at once.

    Each pass handles what is due, then sleeps until the next fire or a ring of
    ``doorbell``, whichever comes first. A due schedule that another coordinator holds
    locked is retried after ``contention_delay``. Database errors are logged and the
    pass retried with capped exponential backoff: an outage must not kill the
    coordinator.

    Cancellation: safe at any point; a cancelled pass rolls back and enqueues nothing.
    """
    task_status.started()
    failures = 0
    while True:
        generation = doorbell.generation
        try:
            handled = await source.fire_due(batch_size)
            if handled >= batch_size:
                await trio.lowlevel.checkpoint()
                continue  # more may be due right now
            seconds = await source.seconds_to_next_fire()
        except (psycopg.Error, DatabaseUnavailable) as exc:
            delay = backoff.delay(failures, base=0.1, cap=retry_cap)
            failures += 1
            log.warning("expand_failed", actor="cron_expander", error=str(exc),
                        retry_in_s=delay)
        else:
            failures = 0
            if seconds is None:
                delay = math.inf
            elif seconds > 0:
                delay = seconds
            else:  # still due: locked by another coordinator, or due just now
                delay = contention_delay if handled == 0 else 0.0
        with trio.move_on_after(delay):
            await doorbell.wait_since(generation)
