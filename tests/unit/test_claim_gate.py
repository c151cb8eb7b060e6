"""actors/coordinator/claim_gate.py without a database: when the gate judges a set of
queues drained, and that a claim of a drained set runs no query. (The long poll
itself, on a real database and real HTTP: tests/integration/test_fast_path.py,
test_worker_runtime.py, test_two_coordinators.py.)"""

from __future__ import annotations

import pytest

from scheduler_core.actors.coordinator.claim_gate import ClaimGate
from scheduler_core.runtime.doorbell import Doorbell
from scheduler_core.schema.store import Store


class _NoPool:
    """Stands in for the database pool: any query fails the test."""

    def connection(self) -> None:
        raise AssertionError("the claim gate ran a query")


def gate(doorbell: Doorbell | None = None) -> ClaimGate:
    return ClaimGate(Store(_NoPool()), doorbell or Doorbell(),  # type: ignore[arg-type]
                     max_wait=20.0)


def test_a_claim_that_got_fewer_jobs_than_asked_drains_its_queues_until_the_next_ring(
) -> None:
    g = gate()
    g.saw(["a", "b"], 3, asked=10, got=4)
    assert (True, False) == (g.drained(["b", "a"], 3), g.drained(["a", "b"], 4))


def test_a_claim_that_got_all_it_asked_for_drains_nothing() -> None:
    g = gate()
    g.saw(["a"], 3, asked=5, got=5)
    assert not g.drained(["a"], 3)


def test_drained_is_judged_per_set_of_queues() -> None:
    g = gate()
    g.saw(["a"], 1, asked=1, got=0)
    assert (True, False, False) == (g.drained(["a"], 1), g.drained(["a", "b"], 1),
                                    g.drained(["b"], 1))


@pytest.mark.parametrize(("rings", "drained"), [(0, True), (1, False)])
async def test_a_claim_without_waiting_skips_the_query_only_when_drained_since_the_last_ring(
        rings: int, drained: bool) -> None:
    doorbell = Doorbell()
    g = gate(doorbell)
    g.saw(["default"], doorbell.generation, asked=1, got=0)
    for _ in range(rings):
        doorbell.ring()
    if drained:
        assert [] == await g.claim_unless_drained("w", 5, ["default"])
    else:
        with pytest.raises(AssertionError, match="ran a query"):
            await g.claim_unless_drained("w", 5, ["default"])
