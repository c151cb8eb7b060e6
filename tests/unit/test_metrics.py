"""web/metrics.py and the figures behind it, without a database: what each recording
function (the ones the claim and completion routes call) counts, how a snapshot becomes
gauges, the status estimate, and the worker's own figures carried by its heartbeat."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import msgspec
import prometheus_client
import pytest
import trio
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from scheduler_core.actors.worker.worker_state import WorkerState
from scheduler_core.schema import wire
from scheduler_core.schema.stats_store import (
    Overview,
    QueueLag,
    QueueSetting,
    StatsStatistics,
    WorkerRow,
    estimate_counts,
)
from scheduler_core.schema.store import CompletedRun, ReapedRun
from scheduler_core.web import metrics

T0 = dt.datetime(2025, 1, 1, 12, 0, tzinfo=dt.UTC)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def completion(outcome: wire.RunOutcome = "Succeeded",
               duration: float | None = 0.25) -> wire.Completion:
    return wire.Completion(run_id=uuid.uuid4(), lease_token=uuid.uuid4(), outcome=outcome,
                           duration_seconds=duration)


def row(job_type: str, status: str, outcome: str = "Succeeded") -> CompletedRun:
    """The store's answer for an accepted completion."""
    return CompletedRun(run_id=uuid.uuid4(), job_id=uuid.uuid4(), status=status,
                        type=job_type, queue="default", attempts=1, outcome=outcome,
                        duplicate=False, limited=False)


def claimed(job_type: str, queue: str, *, waited: float) -> wire.ClaimedJob:
    """A run claimed ``waited`` seconds (by the database clock) after its job fell due,
    on a 30-second lease."""
    return wire.ClaimedJob(
        job_id=uuid.uuid4(), run_id=uuid.uuid4(), lease_token=uuid.uuid4(),
        lease_expires_at=T0 + dt.timedelta(seconds=30 + waited), type=job_type, payload={},
        queue=queue, attempt=1, max_attempts=3, timeout_seconds=10, run_at=T0)


def test_an_accepted_completion_counts_its_outcome_and_duration() -> None:
    before = (sample("scheduler_jobs_finished_total", type="t_ok", outcome="Succeeded"),
              sample("scheduler_job_run_duration_seconds_sum", type="t_ok", outcome="Succeeded"))
    metrics.observe_completions([(row("t_ok", "Succeeded"), completion())])
    assert (before[0] + 1, before[1] + 0.25) == (
        sample("scheduler_jobs_finished_total", type="t_ok", outcome="Succeeded"),
        sample("scheduler_job_run_duration_seconds_sum", type="t_ok", outcome="Succeeded"))


def test_a_batch_of_completions_counts_each_by_its_type_and_outcome() -> None:
    metrics.observe_completions([
        (row("t_batch", "Succeeded"), completion(duration=0.004)),
        (row("t_batch", "Succeeded"), completion(duration=0.3)),
        (row("t_batch", "Failed", "Failed"), completion("Failed", duration=2.0)),
        (row("t_batch_other", "Succeeded"), completion(duration=None))])
    ok = {"type": "t_batch", "outcome": "Succeeded"}
    assert (2, 1, 1, 0.304) == (
        sample("scheduler_jobs_finished_total", **ok),
        sample("scheduler_jobs_finished_total", type="t_batch", outcome="Failed"),
        sample("scheduler_jobs_finished_total", type="t_batch_other", outcome="Succeeded"),
        sample("scheduler_job_run_duration_seconds_sum", **ok))
    assert (1, 1, 2) == (sample("scheduler_job_run_duration_seconds_bucket", **ok, le="0.005"),
                         sample("scheduler_job_run_duration_seconds_bucket", **ok, le="0.25"),
                         sample("scheduler_job_run_duration_seconds_bucket", **ok, le="0.5"))
    assert (2, 1) == (sample("scheduler_job_run_duration_seconds_bucket", **ok, le="+Inf"),
                      sample("scheduler_job_retries_total", type="t_batch"))


def test_a_failure_that_will_run_again_is_a_retry() -> None:
    before = sample("scheduler_job_retries_total", type="t_retry")
    metrics.observe_completions([(row("t_retry", "Failed", "Failed"), completion("Failed"))])
    assert before + 1 == sample("scheduler_job_retries_total", type="t_retry")
    assert 0 == sample("scheduler_jobs_dead_lettered_total", type="t_retry")


def test_a_failure_out_of_attempts_is_dead_lettered_not_retried() -> None:
    metrics.observe_completions([(row("t_dead", "DeadLetter", "Failed"),
                                  completion("Failed"))])
    assert (1, 0) == (sample("scheduler_jobs_dead_lettered_total", type="t_dead"),
                      sample("scheduler_job_retries_total", type="t_dead"))


def test_a_completion_without_a_duration_is_not_timed() -> None:
    metrics.observe_completions([(row("t_untimed", "Succeeded"), completion(duration=None))])
    assert 0 == sample("scheduler_job_run_duration_seconds_count", type="t_untimed",
                       outcome="Succeeded")


def test_queue_wait_is_claim_time_by_the_database_clock_minus_run_at() -> None:
    metrics.observe_claims([claimed("t_wait", "q_wait", waited=2.5)], lease_seconds=30)
    assert (1, 2.5) == (sample("scheduler_job_queue_wait_seconds_count", type="t_wait", queue="q_wait"),
                        sample("scheduler_job_queue_wait_seconds_sum", type="t_wait", queue="q_wait"))
    assert 1 == sample("scheduler_jobs_claimed_total", type="t_wait")


def test_a_batch_of_claims_counts_each_run_by_type_and_queue() -> None:
    metrics.observe_claims([claimed("t_claims", "q1", waited=1.0),
                            claimed("t_claims", "q1", waited=3.0),
                            claimed("t_claims", "q2", waited=0.5)], lease_seconds=30)
    assert (3, 2, 4.0, 1) == (
        sample("scheduler_jobs_claimed_total", type="t_claims"),
        sample("scheduler_job_queue_wait_seconds_count", type="t_claims", queue="q1"),
        sample("scheduler_job_queue_wait_seconds_sum", type="t_claims", queue="q1"),
        sample("scheduler_job_queue_wait_seconds_count", type="t_claims", queue="q2"))


def test_a_run_claimed_before_its_due_time_waited_zero() -> None:
    metrics.observe_claims([claimed("t_early", "q_early", waited=-1.0)], lease_seconds=30)
    assert (1, 0.0) == (
        sample("scheduler_job_queue_wait_seconds_bucket", type="t_early", queue="q_early",
               le="0.005"),
        sample("scheduler_job_queue_wait_seconds_sum", type="t_early", queue="q_early"))


def test_a_batch_histogram_renders_as_a_prometheus_histogram_would() -> None:
    """Same samples, bucket labels and counts as prometheus_client.Histogram for the
    same observations (its ``_created`` is the wall clock: only its presence counts)."""
    registry = CollectorRegistry()
    reference = prometheus_client.Histogram("h_seconds", "help", ["a"], buckets=(0.5, 1.0),
                                            registry=registry)
    batch = metrics.BatchHistogram("h_seconds", "help", ("a",), buckets=(0.5, 1.0),
                                   registry=None)
    values = [0.1, 0.5, 0.75, 1.0, 9.0]
    for value in values:
        reference.labels("x").observe(value)
    batch.observe_many(("x",), values)

    def samples(collector: Any) -> list[tuple[str, dict[str, str], float | None]]:
        return [(s.name, s.labels, None if s.name.endswith("_created") else s.value)
                for family in collector.collect() for s in family.samples]

    assert samples(reference) == samples(batch)


def test_a_batch_histogram_refuses_the_wrong_number_of_label_values() -> None:
    batch = metrics.BatchHistogram("h2_seconds", "help", ("a", "b"), buckets=(1.0,),
                                   registry=None)
    with pytest.raises(ValueError, match=r"takes 2 label values"):
        batch.observe_many(("x",), [1.0])


def reaped(job_type: str, status: str) -> ReapedRun:
    return ReapedRun(run_id=uuid.uuid4(), job_id=uuid.uuid4(), worker_id="w1",
                     status=status, type=job_type, queue="default", attempts=1)


def test_reaped_runs_count_as_reaped_and_by_their_jobs_fate() -> None:
    metrics.observe_reaped([reaped("t_reap", "Pending"), reaped("t_reap", "DeadLetter"),
                            reaped("t_reap", "Cancelled")])
    assert (3, 1, 1) == (sample("scheduler_leases_reaped_total", type="t_reap"),
                         sample("scheduler_job_retries_total", type="t_reap"),
                         sample("scheduler_jobs_dead_lettered_total", type="t_reap"))


def test_requests_are_timed_by_route_method_and_status() -> None:
    metrics.observe_request("GET", "/api/things/<thing_id>", 404, 0.003)
    assert 1 == sample("scheduler_http_request_duration_seconds_count", method="GET",
                       route="/api/things/<thing_id>", status="404")


# --- the snapshot's gauges -----------------------------------------------------------

def worker(worker_id: str, state: str, *, stats: wire.WorkerStats | None = None) -> WorkerRow:
    return WorkerRow(id=worker_id, hostname="h", pid=1, state=state, capacity=4, running=3,
                     started_at=T0, last_heartbeat_at=T0, stopped_at=None,
                     heartbeat_age_seconds=0.5, stats=stats)


OVERVIEW = Overview(
    generated_at=T0,
    counts={"Scheduled": 1, "Pending": 2, "Running": 3, "Succeeded": 1000, "Failed": 0,
            "DeadLetter": 7, "Cancelled": 0},
    estimated=["Succeeded", "DeadLetter", "Cancelled"],
    queues=[QueueLag(queue="default", oldest_due_at=T0, lag_seconds=4.5),
            QueueLag(queue="slow", oldest_due_at=None, lag_seconds=0.0)],
    queue_lag_seconds=4.5, throughput=[],
    queue_settings=[QueueSetting(name="slow", paused=True, concurrency_limit=None),
                    QueueSetting(name="api", paused=False, concurrency_limit=5)],
    workers=[worker("w1", "Active", stats=wire.WorkerStats(
                 busy=3, slots=4, runs_finished=10, child_restarts=2, run_seconds_sum=5.0,
                 executor_overhead_seconds_sum=0.02, executor_overhead_seconds_count=10)),
             worker("w2", "Draining"), worker("w3", "Lost"), worker("w4", "Stopped")],
    live_workers=2, slots=8, busy_slots=6, refresh_seconds=0.004)


def scrape(overview: Overview | None) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    stats = StatsStatistics(refreshes=1, skipped=0, last_refresh_seconds=0.004,
                            snapshot_age_seconds=0.1)
    text = metrics.render(overview, stats).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_the_snapshot_becomes_gauges_of_jobs_by_status_and_whether_estimated() -> None:
    got = scrape(OVERVIEW)
    assert (2, 1000, 1, 0) == (got[("scheduler_jobs", (("status", "Pending"),))],
                               got[("scheduler_jobs", (("status", "Succeeded"),))],
                               got[("scheduler_jobs_estimated", (("status", "Succeeded"),))],
                               got[("scheduler_jobs_estimated", (("status", "Pending"),))])


def test_queue_lag_is_one_gauge_per_queue() -> None:
    got = scrape(OVERVIEW)
    assert (4.5, 0.0) == (got[("scheduler_queue_lag_seconds", (("queue", "default"),))],
                          got[("scheduler_queue_lag_seconds", (("queue", "slow"),))])


def test_paused_and_limited_queues_are_gauges() -> None:
    got = scrape(OVERVIEW)
    assert (1, 0, 5) == (got[("scheduler_queue_paused", (("queue", "slow"),))],
                         got[("scheduler_queue_paused", (("queue", "api"),))],
                         got[("scheduler_queue_concurrency_limit", (("queue", "api"),))])
    assert ("scheduler_queue_concurrency_limit", (("queue", "slow"),)) not in got
    assert ("scheduler_queue_paused", (("queue", "default"),)) not in got


def test_workers_are_counted_by_state_and_their_slots_summed() -> None:
    got = scrape(OVERVIEW)
    assert (1, 1, 1, 8, 6) == (got[("scheduler_workers", (("state", "Active"),))],
                               got[("scheduler_workers", (("state", "Draining"),))],
                               got[("scheduler_workers", (("state", "Lost"),))],
                               got[("scheduler_slots", ())], got[("scheduler_slots_busy", ())])


def test_live_workers_own_figures_are_labelled_by_worker_id() -> None:
    got = scrape(OVERVIEW)
    w1 = (("worker_id", "w1"),)
    assert (4, 3, 10, 2, 5.0, 10, 0.02) == (
        got[("scheduler_worker_slots", w1)], got[("scheduler_worker_busy_slots", w1)],
        got[("scheduler_worker_runs_finished_total", w1)],
        got[("scheduler_worker_child_restarts_total", w1)],
        got[("scheduler_worker_run_seconds_total", w1)],
        got[("scheduler_worker_executor_overhead_seconds_count", w1)],
        got[("scheduler_worker_executor_overhead_seconds_sum", w1)])


def test_workers_that_are_not_live_have_no_per_worker_series() -> None:
    got = scrape(OVERVIEW)
    labelled = {dict(labels).get("worker_id") for _, labels in got}
    assert {"w1", "w2"} == labelled - {None}


def test_without_a_snapshot_the_process_metrics_are_still_rendered() -> None:
    got = scrape(None)
    assert ("scheduler_stats_refresh_duration_seconds", ()) in got
    assert not any(name == "scheduler_jobs" for name, _ in got)


@pytest.mark.parametrize(("reltuples", "vals", "freqs", "expected"), [
    (1_000_000.0, ["Succeeded", "DeadLetter", "Cancelled", "Pending"], [0.9, 0.05, 0.04, 0.01],
     {"Succeeded": 900_000, "DeadLetter": 50_000, "Cancelled": 40_000}),
    (1_000_000.0, ["Succeeded"], [1.0], {"Succeeded": 1_000_000, "DeadLetter": 0, "Cancelled": 0}),
    (-1.0, ["Succeeded"], [1.0], {"Succeeded": 0, "DeadLetter": 0, "Cancelled": 0}),
    (500.0, None, None, {"Succeeded": 0, "DeadLetter": 0, "Cancelled": 0}),
])
def test_estimate_counts(reltuples: float, vals: list[str] | None, freqs: list[float] | None,
                         expected: dict[str, int]) -> None:
    assert expected == estimate_counts(reltuples, vals, freqs)


# --- the worker's own figures --------------------------------------------------------

async def test_a_worker_reports_its_runs_timings_and_child_restarts() -> None:
    state = WorkerState("w", slots=3)
    state.record_run(run_seconds=0.5, overhead_seconds=0.01, child_restarts=1)
    state.record_run(run_seconds=1.5, overhead_seconds=0.03, child_restarts=2)
    assert wire.WorkerStats(busy=0, slots=3, runs_finished=2, child_restarts=2,
                            run_seconds_sum=2.0, executor_overhead_seconds_sum=0.04,
                            executor_overhead_seconds_count=2) == state.stats()
    await trio.lowlevel.checkpoint()


def test_a_heartbeat_without_stats_is_still_accepted() -> None:
    hb = msgspec.json.decode(b'{"workerId": "w"}', type=wire.Heartbeat)
    assert hb.stats is None


def test_stats_fields_this_coordinator_does_not_know_are_refused() -> None:
    """Issue 12, item 13: unknown figures are a 400 naming ``stats.<field>``, not
    silently ignored (tests/security/test_worker_input.py checks the HTTP side)."""
    with pytest.raises(msgspec.ValidationError, match=r"unknown field `somethingNew`"):
        msgspec.json.decode(
            b'{"workerId": "w", "stats": {"busy": 1, "slots": 2, "somethingNew": 3}}',
            type=wire.Heartbeat)
