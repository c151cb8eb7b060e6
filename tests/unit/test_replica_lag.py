"""The read replica's lag as a pure function of the two WAL positions and the two
upper bounds of its age (schema/replica_store.py), and its gauges in /metrics."""

from __future__ import annotations

import pytest

from scheduler_core.runtime.read_pool import ReadPoolStatistics
from scheduler_core.schema.replica_store import ReplicaLag, lag_of, parse_lsn
from scheduler_core.web import metrics


@pytest.mark.parametrize(("text", "expected"), [
    ("0/0", 0), ("0/16B3748", 0x16B3748), ("16/B374D848", 0x16 << 32 | 0xB374D848),
])
def test_an_lsn_is_its_byte_position(text: str, expected: int) -> None:
    assert expected == parse_lsn(text)


@pytest.mark.parametrize(("primary", "replay", "commit_age", "since_caught_up", "expected"), [
    # Caught up by position: 0 s however old the last replayed commit (idle primary).
    (100, 100, 3600.0, None, (0, 0.0)),
    (100, 120, 5.0, 1.0, (0, 0.0)),  # read the primary first: the replica may be ahead
    # Behind: the smaller of the two upper bounds.
    (150, 100, 3600.0, 2.5, (50, 2.5)),
    (150, 100, 0.4, 2.5, (50, 0.4)),
    (150, 100, 0.4, None, (50, 0.4)),
    (150, 100, None, 2.5, (50, 2.5)),
    (150, 100, None, None, (50, None)),
    (150, 100, -0.2, None, (50, 0.0)),  # clocks of two hosts: never negative
])
def test_the_lag_is_zero_when_caught_up_by_position_else_the_tighter_bound(
        primary: int, replay: int, commit_age: float | None, since_caught_up: float | None,
        expected: tuple[int, float | None]) -> None:
    assert expected == lag_of(primary, replay, replayed_commit_age=commit_age,
                              since_caught_up=since_caught_up)


def test_without_a_replica_metrics_show_no_replica_gauges() -> None:
    assert b"scheduler_read_replica" not in metrics.render(None, None)


def test_with_a_replica_metrics_show_its_state_and_lag() -> None:
    reads = ReadPoolStatistics(up=True, replica_reads=7, fallback_reads=2, outages=1,
                               retried_reads=3)
    text = metrics.render(None, None, reads).decode()
    assert "scheduler_read_replica_up 1.0" in text
    assert "scheduler_read_replica_fallback_reads_total 2.0" in text
    assert "scheduler_read_replica_outages_total 1.0" in text
    assert "scheduler_read_replica_retried_reads_total 3.0" in text
    assert "scheduler_read_replica_lag_bytes" not in text  # no snapshot: lag unknown
    collector = metrics.ReplicaCollector(ReplicaLag(
        reads_from="replica", reachable=True, standby=True, caught_up=False, lag_bytes=4096,
        lag_seconds=1.5, replay_paused=True), reads)
    samples = {m.name: m.samples[0].value for m in collector.collect()}
    assert {"scheduler_read_replica_up": 1, "scheduler_read_replica_lag_bytes": 4096,
            "scheduler_read_replica_lag_seconds": 1.5,
            "scheduler_read_replica_replay_paused": 1} == {
                k: samples[k] for k in ("scheduler_read_replica_up",
                                        "scheduler_read_replica_lag_bytes",
                                        "scheduler_read_replica_lag_seconds",
                                        "scheduler_read_replica_replay_paused")}
