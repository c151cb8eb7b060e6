"""web/throttle.py: the lockout schedule on a fake clock, resets, and the bound on the
number of addresses kept."""

from __future__ import annotations

import pytest

from scheduler_core.web.throttle import AuthThrottle, lockout_seconds, retry_after_header


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def throttle(clock: FakeClock, **kw: float) -> AuthThrottle:
    return AuthThrottle(free=5, base=1.0, cap=8.0, clock=clock, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(("failures", "expected"), [
    (0, 0.0), (1, 0.0), (4, 0.0), (5, 1.0), (6, 2.0), (7, 4.0), (8, 8.0), (9, 8.0),
    (10_000, 8.0)])
def test_the_lockout_doubles_from_the_fifth_failure_up_to_the_cap(
        failures: int, expected: float) -> None:
    assert expected == lockout_seconds(failures, free=5, base=1.0, cap=8.0)


def test_four_failures_lock_nothing_the_fifth_locks_for_the_base() -> None:
    clock = FakeClock()
    t = throttle(clock)
    for _ in range(4):
        assert None is t.failed("10.0.0.1")
        assert 0.0 == t.retry_after("10.0.0.1")
    assert 5 == t.failed("10.0.0.1")  # the burst begins: the one moment to log it
    assert 1.0 == t.retry_after("10.0.0.1")
    clock.now += 0.25
    assert 0.75 == t.retry_after("10.0.0.1")
    clock.now += 0.75
    assert 0.0 == t.retry_after("10.0.0.1")


def test_each_failure_after_a_lockout_doubles_it_and_reports_no_new_burst() -> None:
    clock = FakeClock()
    t = throttle(clock)
    for _ in range(5):
        t.failed("a")
    waits = []
    for _ in range(5):
        clock.now += t.retry_after("a")
        assert None is t.failed("a")
        waits.append(t.retry_after("a"))
    assert [2.0, 4.0, 8.0, 8.0, 8.0] == waits


def test_a_success_forgets_the_address() -> None:
    clock = FakeClock()
    t = throttle(clock)
    for _ in range(5):
        t.failed("a")
    t.succeeded("a")
    assert 0.0 == t.retry_after("a")
    assert 0 == len(t)
    for _ in range(4):
        assert None is t.failed("a")
    assert 5 == t.failed("a")  # a new burst, logged again


def test_addresses_are_counted_apart() -> None:
    clock = FakeClock()
    t = throttle(clock)
    for _ in range(5):
        t.failed("a")
    assert 0.0 == t.retry_after("b")
    assert None is t.failed("b")


def test_an_address_quiet_for_forget_after_starts_afresh() -> None:
    clock = FakeClock()
    t = throttle(clock, forget_after=60.0)
    for _ in range(4):
        t.failed("a")
    clock.now += 60.0
    assert None is t.failed("a")  # the first of a new count, not the fifth
    assert 0.0 == t.retry_after("a")


def test_the_number_of_addresses_kept_is_bounded_oldest_dropped_first() -> None:
    clock = FakeClock()
    t = throttle(clock, max_addresses=100)
    for _ in range(5):
        t.failed("victim-of-eviction")
    for i in range(1000):
        t.failed(f"flood-{i}")
    assert 100 == len(t)
    assert 0.0 == t.retry_after("victim-of-eviction")
    for _ in range(3):  # the newest is kept: its count goes on
        t.failed("flood-999")
    assert 5 == t.failed("flood-999")


def test_zero_free_failures_never_throttles() -> None:
    clock = FakeClock()
    t = AuthThrottle(free=0, clock=clock)
    for _ in range(100):
        assert None is t.failed("a")
    assert 0.0 == t.retry_after("a")
    assert 0 == len(t)


@pytest.mark.parametrize(("seconds", "header"), [(0.01, "1"), (1.0, "1"), (1.2, "2"),
                                                 (299.5, "300")])
def test_retry_after_is_whole_seconds_rounded_up(seconds: float, header: str) -> None:
    assert header == retry_after_header(seconds)
