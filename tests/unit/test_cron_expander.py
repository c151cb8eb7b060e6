"""The cron expander's decisions (pure functions) and its loop's timing (MockClock).

The loop runs against a fake :class:`FireSource` that holds fire times on trio's clock:
it stands in for "what is due, and when is the next one", not for the SQL, which the
integration tests (tests/integration/test_schedules.py) run for real.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import pytest
import trio

from scheduler_core.actors.coordinator.cron_expander import (
    FirePlan,
    overlap_actions,
    plan_fires,
    run,
)
from scheduler_core.runtime.doorbell import Doorbell
from scheduler_core.runtime.errors import DatabaseUnavailable


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def times(*texts: str) -> tuple[dt.datetime, ...]:
    return tuple(utc(t) for t in texts)


# -- misfire policy ----------------------------------------------------------------------

PLANS = [
    # (case, cron, zone, next_fire_at, now, policy, max_catchup, expected plan)
    ("not due yet: nothing, next fire unchanged",
     "* * * * *", "UTC", "2026-05-04 10:01:00", "2026-05-04 10:00:59.5", "once", 100,
     FirePlan((), utc("2026-05-04 10:01:00"))),
    ("due on time: the fire, next one after it",
     "* * * * *", "UTC", "2026-05-04 10:00:00", "2026-05-04 10:00:00.020", "skip", 100,
     FirePlan(times("2026-05-04 10:00:00"), utc("2026-05-04 10:01:00"))),
    ("a little late (under a second) is still on time, whatever the policy",
     "* * * * *", "UTC", "2026-05-04 10:00:00", "2026-05-04 10:00:00.900", "skip", 100,
     FirePlan(times("2026-05-04 10:00:00"), utc("2026-05-04 10:01:00"))),
    ("exactly the grace late is missed",
     "* * * * *", "UTC", "2026-05-04 10:00:00", "2026-05-04 10:00:01", "skip", 100,
     FirePlan((), utc("2026-05-04 10:01:00"), utc("2026-05-04 10:00:00"),
              utc("2026-05-04 10:00:00"))),
    ("skip: missed fires are dropped, resume with the next one",
     "* * * * *", "UTC", "2026-05-04 10:00:00", "2026-05-04 10:05:30", "skip", 100,
     FirePlan((), utc("2026-05-04 10:06:00"), utc("2026-05-04 10:00:00"),
              utc("2026-05-04 10:05:00"))),
    ("once: one catch-up run, for the latest missed fire",
     "* * * * *", "UTC", "2026-05-04 10:00:00", "2026-05-04 10:05:30", "once", 100,
     FirePlan(times("2026-05-04 10:05:00"), utc("2026-05-04 10:06:00"),
              utc("2026-05-04 10:00:00"), utc("2026-05-04 10:05:00"))),
    ("all: every missed fire, oldest first",
     "* * * * *", "UTC", "2026-05-04 10:00:00", "2026-05-04 10:05:30", "all", 100,
     FirePlan(times("2026-05-04 10:00:00", "2026-05-04 10:01:00", "2026-05-04 10:02:00",
                    "2026-05-04 10:03:00", "2026-05-04 10:04:00", "2026-05-04 10:05:00"),
              utc("2026-05-04 10:06:00"), utc("2026-05-04 10:00:00"),
              utc("2026-05-04 10:05:00"))),
    ("all: capped at max_catchup, keeping the latest",
     "* * * * *", "UTC", "2026-05-04 10:00:00", "2026-05-04 10:05:30", "all", 3,
     FirePlan(times("2026-05-04 10:03:00", "2026-05-04 10:04:00", "2026-05-04 10:05:00"),
              utc("2026-05-04 10:06:00"), utc("2026-05-04 10:00:00"),
              utc("2026-05-04 10:05:00"))),
    ("once: no extra run when an on-time fire runs anyway",
     "* * * * * *", "UTC", "2026-05-04 10:00:00", "2026-05-04 10:00:05.500", "once", 100,
     FirePlan(times("2026-05-04 10:00:05"), utc("2026-05-04 10:00:06"),
              utc("2026-05-04 10:00:00"), utc("2026-05-04 10:00:04"))),
    ("skip: the on-time fire still runs",
     "* * * * * *", "UTC", "2026-05-04 10:00:00", "2026-05-04 10:00:05.500", "skip", 100,
     FirePlan(times("2026-05-04 10:00:05"), utc("2026-05-04 10:00:06"),
              utc("2026-05-04 10:00:00"), utc("2026-05-04 10:00:04"))),
    ("all: missed and on-time fires together",
     "*/2 * * * * *", "UTC", "2026-05-04 10:00:00", "2026-05-04 10:00:06.500", "all", 100,
     FirePlan(times("2026-05-04 10:00:00", "2026-05-04 10:00:02", "2026-05-04 10:00:04",
                    "2026-05-04 10:00:06"), utc("2026-05-04 10:00:08"),
              utc("2026-05-04 10:00:00"), utc("2026-05-04 10:00:04"))),
    ("a week paused, every second, skip: cheap, and nothing enqueued",
     "* * * * * *", "UTC", "2026-05-04 10:00:00", "2026-05-11 10:00:00.500", "skip", 100,
     FirePlan(times("2026-05-11 10:00:00"), utc("2026-05-11 10:00:01"),
              utc("2026-05-04 10:00:00"), utc("2026-05-11 09:59:59"))),
    ("all across the Berlin autumn change: the 25th once",
     "30 2 * * *", "Europe/Berlin", "2026-10-24 00:30:00", "2026-10-26 12:00:00", "all", 100,
     FirePlan(times("2026-10-24 00:30:00", "2026-10-25 00:30:00", "2026-10-26 01:30:00"),
              utc("2026-10-27 01:30:00"), utc("2026-10-24 00:30:00"),
              utc("2026-10-26 01:30:00"))),
    ("all across the Berlin spring change: the 29th at 03:00 local",
     "30 2 * * *", "Europe/Berlin", "2026-03-28 01:30:00", "2026-03-29 12:00:00", "all", 100,
     FirePlan(times("2026-03-28 01:30:00", "2026-03-29 01:00:00"), utc("2026-03-30 00:30:00"),
              utc("2026-03-28 01:30:00"), utc("2026-03-29 01:00:00"))),
]


@pytest.mark.parametrize(("expr", "tz", "next_fire_at", "now", "policy", "cap", "expected"),
                         [c[1:] for c in PLANS], ids=[c[0] for c in PLANS])
def test_plan_fires(expr: str, tz: str, next_fire_at: str, now: str, policy: str, cap: int,
                    expected: FirePlan) -> None:
    assert expected == plan_fires(expr, tz, utc(next_fire_at), utc(now), policy,
                                  max_catchup=cap)


def test_plan_fires_refuses_an_unknown_policy() -> None:
    with pytest.raises(ValueError, match="misfire policy"):
        plan_fires("* * * * *", "UTC", utc("2026-05-04 10:00:00"), utc("2026-05-04 10:00:00"),
                   "later", max_catchup=1)


# -- overlap policy ----------------------------------------------------------------------

A, B, C = times("2026-05-04 10:00:00", "2026-05-04 10:01:00", "2026-05-04 10:02:00")

OVERLAPS = [
    # (case, policy, fires, previous job unfinished, expected actions)
    ("allow, previous done", "allow", [A], False, ["enqueue"]),
    ("allow, previous running", "allow", [A], True, ["enqueue"]),
    ("skip, previous done", "skip", [A], False, ["enqueue"]),
    ("skip, previous running", "skip", [A], True, ["skip"]),
    ("queue, previous done", "queue", [A], False, ["enqueue"]),
    ("queue, previous running", "queue", [A], True, ["hold"]),
    ("allow, catch-up of three", "allow", [A, B, C], False, ["enqueue"] * 3),
    ("skip, catch-up of three: the first runs, the others overlap it", "skip", [A, B, C],
     False, ["enqueue", "skip", "skip"]),
    ("queue, catch-up of three: the first runs, the others wait in line", "queue",
     [A, B, C], False, ["enqueue", "hold", "hold"]),
    ("queue, catch-up of three behind a running job", "queue", [A, B, C], True,
     ["hold"] * 3),
    ("nothing to fire", "skip", [], True, []),
]


@pytest.mark.parametrize(("policy", "fires", "busy", "expected"), [c[1:] for c in OVERLAPS],
                         ids=[c[0] for c in OVERLAPS])
def test_overlap_actions(policy: str, fires: Sequence[dt.datetime], busy: bool,
                         expected: list[str]) -> None:
    assert list(zip(fires, expected, strict=True)) == overlap_actions(policy, fires, busy)


def test_overlap_actions_refuses_an_unknown_policy() -> None:
    with pytest.raises(ValueError, match="overlap policy"):
        overlap_actions("sometimes", [A], True)


# -- the loop, on trio's MockClock ---------------------------------------------------------


class FakeSource:
    """Fire times on trio's clock; records the clock at every pass."""

    def __init__(self, fires: Sequence[float] = (), failures: int = 0) -> None:
        self.pending = sorted(fires)
        self.passes: list[float] = []
        self.fired: list[float] = []
        self.failures = failures

    def add(self, fire: float) -> None:
        self.pending = sorted([*self.pending, fire])

    async def fire_due(self, limit: int) -> int:
        await trio.lowlevel.checkpoint()
        now = trio.current_time()
        self.passes.append(now)
        if self.failures:
            self.failures -= 1
            raise DatabaseUnavailable("down")
        due = [f for f in self.pending if f <= now][:limit]
        self.pending = self.pending[len(due):]
        self.fired.extend(now for _ in due)
        return len(due)

    async def seconds_to_next_fire(self) -> float | None:
        await trio.lowlevel.checkpoint()
        return self.pending[0] - trio.current_time() if self.pending else None


async def run_for(seconds: float, source: FakeSource, bell: Doorbell, **kw: float) -> None:
    with trio.move_on_after(seconds):
        await run(source, bell, **kw)  # type: ignore[arg-type]


async def test_the_loop_sleeps_until_each_next_fire(autojump_clock: trio.abc.Clock) -> None:
    source = FakeSource([5.0, 12.5, 12.5, 40.0])
    await run_for(60, source, Doorbell())
    assert [0.0, 5.0, 12.5, 40.0] == pytest.approx(source.passes, abs=1e-9)


async def test_each_fire_is_handled_at_its_time(autojump_clock: trio.abc.Clock) -> None:
    source = FakeSource([5.0, 12.5, 40.0])
    await run_for(60, source, Doorbell())
    assert [5.0, 12.5, 40.0] == pytest.approx(source.fired, abs=1e-9)


async def test_with_nothing_scheduled_the_loop_sleeps_until_the_bell(
        autojump_clock: trio.abc.Clock) -> None:
    source, bell = FakeSource(), Doorbell()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_for, 100.0, source, bell)
        await trio.sleep(30)
        bell.ring()
    assert [0.0, 30.0] == pytest.approx(source.passes, abs=1e-9)


async def test_the_bell_wakes_the_loop_early_for_a_new_earlier_fire(
        autojump_clock: trio.abc.Clock) -> None:
    source, bell = FakeSource([50.0]), Doorbell()

    async def new_schedule() -> None:
        await trio.sleep(3)
        source.add(4.0)
        bell.ring()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_for, 60.0, source, bell)
        nursery.start_soon(new_schedule)
    assert [0.0, 3.0, 4.0, 50.0] == pytest.approx(source.passes, abs=1e-9)


async def test_a_ring_between_the_pass_and_the_sleep_is_not_lost(
        autojump_clock: trio.abc.Clock) -> None:
    bell = Doorbell()

    class RingDuringPass(FakeSource):
        async def seconds_to_next_fire(self) -> float | None:
            if len(self.passes) == 1:
                self.add(7.0)
                bell.ring()  # after the pass looked, before the loop sleeps
            return await super().seconds_to_next_fire()

    source = RingDuringPass()
    await run_for(20, source, bell)
    assert [0.0, 0.0, 7.0] == pytest.approx(source.passes, abs=1e-9)


async def test_a_full_batch_is_followed_at_once_by_another_pass(
        autojump_clock: trio.abc.Clock) -> None:
    source = FakeSource([1.0] * 5)
    await run_for(10, source, Doorbell(), batch_size=2)
    assert [0.0, 1.0, 1.0, 1.0] == pytest.approx(source.passes, abs=1e-9)


async def test_an_overdue_fire_held_elsewhere_is_retried_after_the_contention_delay(
        autojump_clock: trio.abc.Clock) -> None:

    class LockedElsewhere(FakeSource):
        async def fire_due(self, limit: int) -> int:
            await super().fire_due(limit)
            return 0  # another coordinator holds it

        async def seconds_to_next_fire(self) -> float | None:
            await trio.lowlevel.checkpoint()
            return -0.5 if len(self.passes) < 3 else None

    source = LockedElsewhere()
    await run_for(10, source, Doorbell(), contention_delay=0.25)
    assert [0.0, 0.25, 0.5] == pytest.approx(source.passes, abs=1e-9)


async def test_database_errors_are_retried_with_backoff(
        autojump_clock: trio.abc.Clock) -> None:
    source = FakeSource([100.0], failures=3)
    await run_for(10, source, Doorbell())
    assert [0.0, 0.1, 0.3, 0.7] == pytest.approx(source.passes, abs=1e-9)
