"""runtime/backoff.py: the one capped exponential backoff, and the policies built on it."""

from __future__ import annotations

import pytest

from scheduler_core.actors.worker.coordinator_link import backoff as reconnect_delay
from scheduler_core.runtime import backoff


@pytest.mark.parametrize(
    ("failures_before", "base", "cap", "expected"),
    [
        (0, 0.05, 5.0, 0.05),
        (1, 0.05, 5.0, 0.1),
        (3, 0.05, 5.0, 0.4),
        (6, 0.05, 5.0, 3.2),
        (7, 0.05, 5.0, 5.0),
        (10_000, 0.05, 5.0, 5.0),
        (4, 0.0, 5.0, 0.0),
        (4, 1.0, 0.0, 0.0),
        (2, 0.1, 300.0, 0.4),
    ],
)
def test_delay_doubles_from_base_up_to_cap(failures_before: int, base: float, cap: float,
                                           expected: float) -> None:
    assert expected == pytest.approx(backoff.delay(failures_before, base=base, cap=cap))


def test_delay_rejects_a_negative_count() -> None:
    with pytest.raises(ValueError, match="failures_before must be >= 0, found -1"):
        backoff.delay(-1, base=0.05, cap=5.0)


@pytest.mark.parametrize(("base", "cap"), [(-0.1, 5.0), (0.1, -5.0)])
def test_delay_rejects_a_negative_base_or_cap(base: float, cap: float) -> None:
    with pytest.raises(ValueError, match="base and cap must be >= 0"):
        backoff.delay(1, base=base, cap=cap)


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [(0, 0.1), (1, 0.1), (2, 0.2), (3, 0.4), (6, 3.2), (7, 5.0), (5000, 5.0)],
)
def test_a_worker_reconnects_after_0_1_s_doubling_to_5_s(attempt: int,
                                                          expected: float) -> None:
    assert expected == pytest.approx(reconnect_delay(attempt))
