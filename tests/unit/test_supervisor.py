"""Supervisor behaviour, on trio's MockClock (the ``autojump_clock`` fixture).

Every test that takes ``autojump_clock`` runs in virtual time: ``trio.sleep`` in a test
moves the fake clock, so "nothing happens for 10 s" costs nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

import pytest
import structlog
import trio
import trio.testing
from prometheus_client import REGISTRY

from scheduler_core.runtime.errors import RuntimeCoreError
from scheduler_core.runtime.supervisor import (
    ChildSpec,
    ChildStatistics,
    Supervisor,
    SupervisorGaveUp,
    SupervisorStatistics,
    restart_allowed,
)

DEADLINE = 600.0  # virtual seconds: a test that deadlocks fails instead of hanging

Action = Literal["run", "crash", "return", "crash_before_started", "return_before_started"]


class Boom(Exception):
    """The failure the test actors raise."""


@dataclass(frozen=True)
class Step:
    """What one run of an Actor does.

    ``startup`` seconds pass before ``started()``; ``after`` seconds after it, the
    action (``run`` runs until cancelled); ``cleanup`` seconds of shielded work happen
    on the way out.
    """

    action: Action = "run"
    after: float = 0.0
    startup: float = 0.0
    cleanup: float = 0.0


Journal = list[tuple[str, str, float]]


class Actor:
    """A scripted child: run n follows steps[n] (the last step repeats)."""

    def __init__(self, name: str, journal: Journal, *steps: Step) -> None:
        self.name = name
        self.journal = journal
        self.steps = steps or (Step(),)
        self.runs = 0
        self.starts = 0
        self._changed = trio.Event()

    def spec(self, **kwargs: Any) -> ChildSpec:
        return ChildSpec(self.name, self, **kwargs)

    def _record(self, event: str) -> None:
        self.journal.append((event, self.name, trio.current_time()))

    async def wait_starts(self, count: int) -> None:
        while self.starts < count:
            await self._changed.wait()

    async def __call__(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        step = self.steps[min(self.runs, len(self.steps) - 1)]
        self.runs += 1
        self._record("entered")
        try:
            await trio.sleep(step.startup)
            if step.action == "crash_before_started":
                raise Boom(f"{self.name} run {self.runs}")
            if step.action == "return_before_started":
                return
            task_status.started()
            self.starts += 1
            self._record("started")
            self._changed.set()
            self._changed = trio.Event()
            if step.action == "run":
                await trio.sleep_forever()
            await trio.sleep(step.after)
            if step.action == "crash":
                raise Boom(f"{self.name} run {self.runs}")
        finally:
            with trio.CancelScope(shield=True):
                await trio.sleep(step.cleanup)
            self._record("finally")


def times(journal: Journal, event: str, name: str) -> list[float]:
    return [t for e, n, t in journal if e == event and n == name]


def order(journal: Journal, event: str) -> list[str]:
    return [n for e, n, _ in journal if e == event]


def trio_time(
    _logger: object, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: stamp each captured event with trio's (virtual) time."""
    event_dict["t"] = trio.current_time()
    return event_dict


@asynccontextmanager
async def supervised(supervisor: Supervisor) -> AsyncIterator[None]:
    """Run the supervisor in a nursery; cancel it when the block ends."""
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            await nursery.start(supervisor.run)
            yield
            nursery.cancel_scope.cancel()


# Pure decisions


@pytest.mark.parametrize(
    ("history", "now", "intensity", "period", "expected"),
    [
        ([], 0.0, 5, 10.0, True),
        ([], 0.0, 0, 10.0, False),
        ([1.0, 2.0, 3.0, 4.0], 5.0, 5, 10.0, True),
        ([1.0, 2.0, 3.0, 4.0, 5.0], 5.0, 5, 10.0, False),
        ([0.0, 1.0, 2.0, 3.0, 4.0], 10.0, 5, 10.0, True),  # t=0 is exactly one period old
        ([0.5, 1.0, 2.0, 3.0, 4.0], 10.0, 5, 10.0, False),
        ([0.0, 100.0], 100.5, 1, 1.0, False),
        ([0.0, 99.0], 100.5, 1, 1.0, True),
    ],
)
def test_restart_allowed(
    history: list[float], now: float, intensity: int, period: float, expected: bool
) -> None:
    assert expected == restart_allowed(history, now, intensity, period)


# Construction


def test_duplicate_child_names_are_rejected() -> None:
    journal: Journal = []
    with pytest.raises(ValueError, match=r"unique in supervisor 'sup', got \['a'\]"):
        Supervisor("sup", [Actor("a", journal).spec(), Actor("a", journal).spec()])


def test_unknown_restart_kind_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"ChildSpec\.restart must be one of"):
        ChildSpec("a", Actor("a", []), restart="sometimes")  # type: ignore[arg-type]


def test_supervisor_gave_up_is_a_runtime_core_error() -> None:
    assert issubclass(SupervisorGaveUp, RuntimeCoreError)


# Restart kinds and backoff


async def test_crashing_permanent_child_restarts_after_doubling_capped_delays(
    autojump_clock: trio.testing.MockClock,
) -> None:
    journal: Journal = []
    a = Actor("a", journal, Step("crash"))
    sup = Supervisor("sup", [a.spec()], intensity=100, backoff_base=0.125, backoff_cap=0.5)
    async with supervised(sup):
        await a.wait_starts(5)
    assert [0.0, 0.125, 0.375, 0.875, 1.375] == times(journal, "started", "a")


async def test_backoff_resets_after_child_ran_longer_than_period(
    autojump_clock: trio.testing.MockClock,
) -> None:
    journal: Journal = []
    a = Actor("a", journal, Step("crash"), Step("crash", after=20.0), Step())
    sup = Supervisor("sup", [a.spec()], period=10.0, backoff_base=0.125)
    async with supervised(sup):
        await a.wait_starts(3)
    # second run lived 20 s > period, so the third start waits base again, not 2 * base
    assert [0.0, 0.125, 20.25] == times(journal, "started", "a")


async def test_permanent_child_that_returns_is_restarted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    journal: Journal = []
    a = Actor("a", journal, Step("return"), Step())
    async with supervised(Supervisor("sup", [a.spec()])):
        await a.wait_starts(2)
    assert 2 == a.starts


async def test_transient_child_that_returns_is_not_restarted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    journal: Journal = []
    a = Actor("a", journal, Step("return"), Step())
    sup = Supervisor("sup", [a.spec(restart="transient")])
    async with supervised(sup):
        await trio.sleep(60)  # virtual: far past any backoff
        assert "exited" == sup.statistics().children[0].state
    assert 1 == a.runs


async def test_transient_child_that_crashes_is_restarted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    journal: Journal = []
    a = Actor("a", journal, Step("crash"), Step())
    async with supervised(Supervisor("sup", [a.spec(restart="transient")])):
        await a.wait_starts(2)
    assert 2 == a.starts


async def test_temporary_child_that_crashes_is_not_restarted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    journal: Journal = []
    a = Actor("a", journal, Step("crash"), Step())
    sup = Supervisor("sup", [a.spec(restart="temporary")])
    async with supervised(sup):
        await trio.sleep(60)  # virtual: far past any backoff
        assert "crashed" == sup.statistics().children[0].state
    assert 1 == a.runs


# Intensity


async def test_intensity_exceeded_raises_gave_up_after_stopping_siblings(
    autojump_clock: trio.testing.MockClock,
) -> None:
    journal: Journal = []
    steady = Actor("steady", journal)
    bad = Actor("bad", journal, Step("crash"))
    sup = Supervisor("sup", [steady.spec(), bad.spec()], intensity=2, backoff_base=0.125)
    with pytest.raises(SupervisorGaveUp):
        await sup.run()
    assert 3 == bad.runs
    assert [0.375] == times(journal, "finally", "steady")


async def test_gave_up_names_supervisor_actor_and_count_and_chains_child_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    bad = Actor("bad", [], Step("crash"))
    sup = Supervisor("sup", [bad.spec()], intensity=2, period=10.0)
    with pytest.raises(SupervisorGaveUp) as raised:
        await sup.run()
    assert (
        "supervisor 'sup' gave up: restarting actor 'bad' would be restart 3 within 10 s, "
        "but intensity allows at most 2"
    ) == str(raised.value)
    assert "bad run 3" == str(raised.value.__cause__)


async def test_restarts_older_than_period_do_not_count_toward_intensity(
    autojump_clock: trio.testing.MockClock,
) -> None:
    journal: Journal = []
    a = Actor("a", journal, Step("crash", after=6.0))
    sup = Supervisor("sup", [a.spec()], intensity=1, period=5.0, backoff_base=0.0)
    async with supervised(sup):
        await a.wait_starts(4)
    assert [0.0, 6.0, 12.0, 18.0] == times(journal, "started", "a")


# Strategies


async def test_one_for_all_restarts_every_sibling(
    autojump_clock: trio.testing.MockClock,
) -> None:
    journal: Journal = []
    a, c = Actor("a", journal), Actor("c", journal)
    b = Actor("b", journal, Step("crash", after=1.0), Step())
    sup = Supervisor("sup", [a.spec(), b.spec(), c.spec()], strategy="one_for_all")
    async with supervised(sup):
        await c.wait_starts(2)
    assert (2, 2, 2) == (a.starts, b.starts, c.starts)


async def test_one_for_all_stops_siblings_in_reverse_then_starts_all_in_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    journal: Journal = []
    a, c = Actor("a", journal), Actor("c", journal)
    b = Actor("b", journal, Step("crash", after=1.0), Step())
    sup = Supervisor("sup", [a.spec(), b.spec(), c.spec()], strategy="one_for_all")
    async with supervised(sup):
        await c.wait_starts(2)
    lifecycle = [(e, n) for e, n, _ in journal if e in ("started", "finally")]
    assert [
        ("started", "a"), ("started", "b"), ("started", "c"),
        ("finally", "b"), ("finally", "c"), ("finally", "a"),
        ("started", "a"), ("started", "b"), ("started", "c"),
    ] == lifecycle[:9]


async def test_one_for_all_stops_but_does_not_restart_temporary_sibling(
    autojump_clock: trio.testing.MockClock,
) -> None:
    journal: Journal = []
    a = Actor("a", journal, Step("crash", after=1.0), Step())
    t = Actor("t", journal)
    sup = Supervisor("sup", [a.spec(), t.spec(restart="temporary")], strategy="one_for_all")
    async with supervised(sup):
        await a.wait_starts(2)
        await trio.sleep(60)  # virtual: far past any backoff
        assert "stopped" == sup.statistics().children[1].state
    assert (1, [1.0]) == (t.runs, times(journal, "finally", "t"))


async def test_rest_for_one_restarts_failed_child_and_later_siblings_only(
    autojump_clock: trio.testing.MockClock,
) -> None:
    journal: Journal = []
    a, c = Actor("a", journal), Actor("c", journal)
    b = Actor("b", journal, Step("crash", after=1.0), Step())
    sup = Supervisor("sup", [a.spec(), b.spec(), c.spec()], strategy="rest_for_one")
    async with supervised(sup):
        await c.wait_starts(2)
    assert (1, 2, 2) == (a.starts, b.starts, c.starts)


async def test_one_for_one_restarts_only_the_failed_child(
    autojump_clock: trio.testing.MockClock,
) -> None:
    journal: Journal = []
    a, c = Actor("a", journal), Actor("c", journal)
    b = Actor("b", journal, Step("crash", after=1.0), Step())
    async with supervised(Supervisor("sup", [a.spec(), b.spec(), c.spec()])):
        await b.wait_starts(2)
    assert (1, 2, 1) == (a.starts, b.starts, c.starts)


# Start and stop order


async def test_each_child_starts_only_after_previous_called_started(
    autojump_clock: trio.testing.MockClock,
) -> None:
    journal: Journal = []
    a = Actor("a", journal, Step(startup=1.0))
    b = Actor("b", journal, Step(startup=2.0))
    async with supervised(Supervisor("sup", [a.spec(), b.spec()])):
        pass
    assert [("entered", "a", 0.0), ("started", "a", 1.0), ("entered", "b", 1.0),
            ("started", "b", 3.0)] == journal[:4]


async def test_supervisor_reports_started_after_all_children(
    autojump_clock: trio.testing.MockClock,
) -> None:
    journal: Journal = []
    a = Actor("a", journal, Step(startup=1.0))
    b = Actor("b", journal, Step(startup=2.0))
    async with supervised(Supervisor("sup", [a.spec(), b.spec()])):
        assert 3.0 == trio.current_time()


async def test_cancellation_stops_children_in_reverse_start_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    journal: Journal = []
    children = [Actor(name, journal) for name in "abc"]
    async with supervised(Supervisor("sup", [c.spec() for c in children])):
        pass
    assert ["c", "b", "a"] == order(journal, "finally")


async def test_previous_child_is_cancelled_only_after_next_one_finished(
    autojump_clock: trio.testing.MockClock,
) -> None:
    journal: Journal = []
    a = Actor("a", journal)
    b = Actor("b", journal, Step(cleanup=2.0))
    async with supervised(Supervisor("sup", [a.spec(), b.spec()])):
        pass
    assert ([2.0], [2.0]) == (times(journal, "finally", "b"), times(journal, "finally", "a"))


async def test_cancellation_runs_every_child_finally_and_leaves_no_task(
    autojump_clock: trio.testing.MockClock,
) -> None:
    journal: Journal = []
    inner_children = [Actor(name, journal) for name in ("x", "y")]
    inner = Supervisor("inner", [c.spec() for c in inner_children])
    a = Actor("a", journal)
    outer = Supervisor("outer", [a.spec(), ChildSpec("inner", inner.run)])
    test_task = trio.lowlevel.current_task()
    nurseries_before = list(test_task.child_nurseries)
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            await nursery.start(outer.run)
            nursery.cancel_scope.cancel()
    assert (nurseries_before, frozenset()) == (test_task.child_nurseries, nursery.child_tasks)
    assert ["y", "x", "a"] == order(journal, "finally")
    assert {"stopped"} == {c.state for c in outer.statistics().children}


async def test_slow_stop_is_logged_after_shutdown_timeout_and_still_awaited(
    autojump_clock: trio.testing.MockClock,
) -> None:
    journal: Journal = []
    a = Actor("a", journal)
    b = Actor("b", journal, Step(cleanup=3.0))
    sup = Supervisor("sup", [a.spec(), b.spec(shutdown_timeout=1.0)])
    with structlog.testing.capture_logs(processors=[trio_time]) as logs:
        async with supervised(sup):
            pass
    timed_out = [(e["actor"], e["t"]) for e in logs if e["event"] == "actor_stop_timed_out"]
    assert [("b", 1.0)] == timed_out
    assert [3.0] == times(journal, "finally", "a")


async def test_cancelling_a_starting_supervisor_cancels_the_child_being_started(
    autojump_clock: trio.testing.MockClock,
) -> None:
    journal: Journal = []
    a = Actor("a", journal, Step(startup=10.0))
    b = Actor("b", journal)
    with trio.move_on_after(1.0):
        await Supervisor("sup", [a.spec(), b.spec()]).run()
    assert [("entered", "a", 0.0), ("finally", "a", 1.0)] == journal


async def test_child_ready_while_supervisor_is_being_cancelled_is_still_cancelled(
    autojump_clock: trio.testing.MockClock,
) -> None:
    journal: Journal = []

    async def shielded_startup(*, task_status: trio.TaskStatus[None]) -> None:
        try:
            with trio.CancelScope(shield=True):
                await trio.sleep(1.0)
                task_status.started()
            await trio.sleep(100.0)  # were it shielded, it would end here at t=101
        finally:
            journal.append(("finally", "a", trio.current_time()))

    with trio.fail_after(DEADLINE), trio.move_on_after(0.5):
        await Supervisor("sup", [ChildSpec("a", shielded_startup)]).run()
    assert [("finally", "a", 1.0)] == journal


# Failing before started()


async def test_crash_before_started_is_restarted_and_startup_proceeds(
    autojump_clock: trio.testing.MockClock,
) -> None:
    journal: Journal = []
    a = Actor("a", journal, Step("crash_before_started"), Step())
    b = Actor("b", journal)
    async with supervised(Supervisor("sup", [a.spec(), b.spec()], backoff_base=0.125)):
        assert 0.125 == trio.current_time()
    assert [0.0, 0.125] == times(journal, "entered", "a")
    assert [0.125] == times(journal, "entered", "b")


async def test_temporary_child_failing_before_started_is_skipped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    journal: Journal = []
    a = Actor("a", journal, Step("return_before_started"))
    b = Actor("b", journal)
    async with supervised(Supervisor("sup", [a.spec(restart="temporary"), b.spec()])):
        pass
    assert (1, 1) == (a.runs, b.starts)


async def test_crash_before_started_past_intensity_raises_from_start(
    autojump_clock: trio.testing.MockClock,
) -> None:
    journal: Journal = []
    a = Actor("a", journal)
    b = Actor("b", journal, Step("crash_before_started"))
    sup = Supervisor("sup", [a.spec(), b.spec()], intensity=1)
    async with trio.open_nursery() as nursery:
        with pytest.raises(SupervisorGaveUp):
            await nursery.start(sup.run)
    assert (2, ["a"]) == (b.runs, order(journal, "finally")[-1:])


# Nesting


async def test_inner_supervisor_giving_up_escalates_to_outer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    bad = Actor("bad", [], Step("crash", after=1.0))
    inner = Supervisor("inner", [bad.spec()], intensity=1)
    outer = Supervisor("outer", [ChildSpec("inner", inner.run)], intensity=0)
    with pytest.raises(SupervisorGaveUp) as raised:
        await outer.run()
    cause = raised.value.__cause__
    assert ("outer", "inner") == (raised.value.supervisor, raised.value.actor)
    assert isinstance(cause, SupervisorGaveUp)
    assert ("inner", "bad") == (cause.supervisor, cause.actor)
    assert isinstance(cause.__cause__, Boom)


async def test_outer_supervisor_restarts_inner_supervisor_that_gave_up(
    autojump_clock: trio.testing.MockClock,
) -> None:
    bad = Actor("bad", [], Step("crash"), Step("crash"), Step())
    inner = Supervisor("inner", [bad.spec()], intensity=1)
    outer = Supervisor("outer", [ChildSpec("inner", inner.run)])
    async with supervised(outer):
        await bad.wait_starts(3)
        assert 1 == outer.statistics().total_restarts


# Observability


async def test_restart_increments_prometheus_counter(
    autojump_clock: trio.testing.MockClock,
) -> None:
    labels = {"supervisor": "counter-sup", "actor": "a"}
    before = REGISTRY.get_sample_value("scheduler_actor_restarts_total", labels) or 0.0
    a = Actor("a", [], Step("crash"), Step("crash"), Step())
    async with supervised(Supervisor("counter-sup", [a.spec()])):
        await a.wait_starts(3)
    assert before + 2 == REGISTRY.get_sample_value("scheduler_actor_restarts_total", labels)


async def test_start_crash_restart_and_stop_are_logged(
    autojump_clock: trio.testing.MockClock,
) -> None:
    a = Actor("a", [], Step("crash"), Step())
    with structlog.testing.capture_logs() as logs:
        async with supervised(Supervisor("sup", [a.spec()])):
            await a.wait_starts(2)
    assert [
        ("actor_started", "sup", "a"),
        ("actor_crashed", "sup", "a"),
        ("actor_restarted", "sup", "a"),
        ("actor_started", "sup", "a"),
        ("actor_stopped", "sup", "a"),
    ] == [(e["event"], e["supervisor"], e["actor"]) for e in logs]
    crashed = next(e for e in logs if e["event"] == "actor_crashed")
    assert (Boom, "error") == (type(crashed["exc_info"]), crashed["log_level"])


async def test_normal_return_is_logged_as_exited(
    autojump_clock: trio.testing.MockClock,
) -> None:
    a = Actor("a", [], Step("return"))
    with structlog.testing.capture_logs() as logs:
        async with supervised(Supervisor("sup", [a.spec(restart="temporary")])):
            await trio.sleep(1)  # virtual
    assert ["actor_started", "actor_exited"] == [e["event"] for e in logs]


async def test_giving_up_is_logged(autojump_clock: trio.testing.MockClock) -> None:
    a = Actor("a", [], Step("crash"))
    with structlog.testing.capture_logs() as logs:
        with pytest.raises(SupervisorGaveUp):
            await Supervisor("sup", [a.spec()], intensity=0).run()
    gave_up = [e for e in logs if e["event"] == "supervisor_gave_up"]
    assert [("sup", "a", 1, 0)] == [
        (e["supervisor"], e["actor"], e["restarts"], e["intensity"]) for e in gave_up
    ]


async def test_statistics_is_a_snapshot_of_states_and_restarts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    a = Actor("a", [], Step("crash"), Step())
    b = Actor("b", [])
    sup = Supervisor("sup", [a.spec(), b.spec()])
    async with supervised(sup):
        await a.wait_starts(2)
        assert SupervisorStatistics(
            name="sup",
            strategy="one_for_one",
            children=(ChildStatistics("a", "running", 1), ChildStatistics("b", "running", 0)),
            total_restarts=1,
        ) == sup.statistics()


async def test_running_the_same_supervisor_twice_at_once_is_rejected(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sup = Supervisor("sup", [Actor("a", []).spec()])
    async with supervised(sup):
        with pytest.raises(RuntimeError, match="supervisor 'sup' is already running"):
            await sup.run()

