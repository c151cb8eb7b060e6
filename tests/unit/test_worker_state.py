"""The worker's shared state: how many jobs it has room for (free slots plus a
prefetch bounded by the recent run times), and what happens to a run stopped while
queued."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
import trio

from scheduler_core.actors.worker.worker_state import (
    PREFETCH_HORIZON_SECONDS,
    OwnedRun,
    WorkerState,
)
from scheduler_core.schema import wire


def job() -> wire.ClaimedJob:
    now = dt.datetime.now(dt.UTC)
    return wire.ClaimedJob(job_id=uuid.uuid4(), run_id=uuid.uuid4(), lease_token=uuid.uuid4(),
                           lease_expires_at=now, type="noop", payload={}, queue="default",
                           attempt=1, max_attempts=3, timeout_seconds=60)


@pytest.mark.parametrize(("slots", "limit", "mean", "expected"), [
    (4, 64, None, 0),  # no run yet: claim only for the slots
    (4, 0, 0.001, 0),  # prefetch off
    (4, 64, 0.001, 64),  # short jobs: capped
    (4, 64, 0.01, int(4 * PREFETCH_HORIZON_SECONDS / 0.01)),  # 20: about 50 ms of work
    (4, 64, 1.0, 0),  # long jobs: nothing waits behind them
    (16, 1000, 0.0, 1000),  # instant jobs: only the cap bounds it
])
def test_the_prefetch_is_about_horizon_worth_of_work_capped(
        slots: int, limit: int, mean: float | None, expected: int) -> None:
    state = WorkerState("w", slots, prefetch=limit)
    state.mean_run_seconds = mean
    assert expected == state.prefetch()


async def test_the_room_counts_queued_and_executing_runs_and_is_zero_when_draining() -> None:
    state = WorkerState("w", 2, prefetch=8)
    state.mean_run_seconds = 0.001
    assert 10 == state.room()
    runs = [state.add(job()) for _ in range(3)]
    state.begin(runs[0])
    assert (1, 2) == (state.executing, state.queued)
    assert 10 - 3 == state.room()
    state.start_draining()
    assert (0, True) == (state.room(), state.drain_started.is_set())


def stopped_while_queued(state: WorkerState) -> list[OwnedRun]:
    runs = []
    while True:
        try:
            runs.append(state.stopped_while_queued.receive_nowait())
        except trio.WouldBlock:
            return runs


async def test_a_queued_run_stopped_goes_to_be_finished_at_once_without_a_body() -> None:
    state = WorkerState("w", 1)
    run = state.add(job())

    run.stop("Released")

    assert [run] == stopped_while_queued(state)
    assert "Released" == run.stop_reason
    assert not run.scope.cancel_called  # nothing was running to cancel
    run.stop("Cancelled")  # a second stop changes nothing
    assert [] == stopped_while_queued(state)


async def test_a_started_run_stopped_has_its_body_cancelled() -> None:
    state = WorkerState("w", 1)
    run = state.add(job())
    state.begin(run)

    run.stop("Cancelled")

    assert (True, []) == (run.scope.cancel_called, stopped_while_queued(state))


async def test_ending_a_body_frees_its_place_once() -> None:
    state = WorkerState("w", 2)
    queued, running = state.add(job()), state.add(job())
    state.begin(running)
    state.body_ended(running)
    state.body_ended(running)
    state.body_ended(queued)
    assert (0, 0, 0) == (state.executing, state.queued, state.busy)
    state.forget(queued.job.run_id)
    assert [running.job.run_id] == list(state.runs)


async def test_the_mean_run_time_follows_recent_runs() -> None:
    state = WorkerState("w", 1)
    state.record_run(run_seconds=1.0, overhead_seconds=0.0, child_restarts=0)
    assert 1.0 == state.mean_run_seconds
    for _ in range(50):
        state.record_run(run_seconds=0.001, overhead_seconds=0.0, child_restarts=0)
    assert state.mean_run_seconds is not None and state.mean_run_seconds < 0.002
