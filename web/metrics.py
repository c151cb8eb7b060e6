"""The coordinator's Prometheus metrics: definitions, and what the handlers call to
record them. ``GET /metrics`` (web/observability.py) renders them with :func:`render`.

Names follow the Prometheus conventions: a ``scheduler_`` prefix, base units in the
name (``_seconds``), ``_total`` on counters, labels for the dimensions.

Counted in this process as it happens::

    scheduler_jobs_submitted_total{type}                 web/api.py
    scheduler_jobs_claimed_total{type}                   claims
    scheduler_jobs_finished_total{type,outcome}          completions accepted
    scheduler_job_retries_total{type}                    failed runs whose job runs again
    scheduler_jobs_dead_lettered_total{type}             jobs out of attempts
    scheduler_leases_reaped_total{type}                  runs whose lease expired
    scheduler_stale_completions_total                    completions refused (fencing)
    scheduler_claims_waiting                             long polls parked now (a gauge)
    scheduler_actor_restarts_total{supervisor,actor}     runtime/supervisor.py
    scheduler_job_run_duration_seconds{type,outcome}     histogram, as timed by workers
    scheduler_job_queue_wait_seconds{type,queue}         histogram, due (run_at) to claimed
    scheduler_http_request_duration_seconds{method,route,status}   histogram

Read from the cached snapshot (schema/stats_store.py) at each scrape, so one scrape of
any coordinator shows the whole cluster::

    scheduler_jobs{status}, scheduler_jobs_estimated{status}
    scheduler_queue_lag_seconds{queue}
    scheduler_queue_paused{queue}, scheduler_queue_concurrency_limit{queue}
    scheduler_workers{state}, scheduler_slots, scheduler_slots_busy
    scheduler_worker_slots{worker_id}, scheduler_worker_busy_slots{worker_id},
    scheduler_worker_heartbeat_age_seconds{worker_id},
    scheduler_worker_runs_finished_total{worker_id},
    scheduler_worker_child_restarts_total{worker_id},
    scheduler_worker_run_seconds_total{worker_id},
    scheduler_worker_executor_overhead_seconds{worker_id} (summary: _sum, _count)
    scheduler_stats_refresh_duration_seconds, scheduler_stats_snapshot_age_seconds,
    scheduler_stats_refreshes_total, scheduler_stats_refreshes_skipped_total

Counters count what this coordinator saw: behind a load balancer, sum them over the
coordinators. Snapshot gauges are the same on every coordinator: take one (``max``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import prometheus_client
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector, CollectorRegistry

from scheduler_core.schema import wire
from scheduler_core.schema.stats_store import LIVE_WORKER_STATES, Overview, StatsStatistics

# Seconds: from a noop's milliseconds to an hour-long job.
_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                     60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
_HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                 10.0, 30.0)

JOBS_CLAIMED = prometheus_client.Counter(
    "scheduler_jobs_claimed_total", "Runs created by claims", ["type"])
JOBS_FINISHED = prometheus_client.Counter(
    "scheduler_jobs_finished_total", "Run outcomes reported by workers", ["type", "outcome"])
STALE_COMPLETIONS = prometheus_client.Counter(
    "scheduler_stale_completions_total", "Completions refused by fencing")
JOB_RETRIES = prometheus_client.Counter(
    "scheduler_job_retries_total",
    "Runs that failed (or lost their lease) whose job will run again", ["type"])
JOBS_DEAD_LETTERED = prometheus_client.Counter(
    "scheduler_jobs_dead_lettered_total", "Jobs moved to DeadLetter", ["type"])
LEASES_REAPED = prometheus_client.Counter(
    "scheduler_leases_reaped_total", "Runs whose lease expired, ended by the lease reaper",
    ["type"])
CLAIMS_WAITING = prometheus_client.Gauge(
    "scheduler_claims_waiting",
    "Long-polling claims parked in this coordinator, waiting for a due job or a free slot")
RUN_DURATION = prometheus_client.Histogram(
    "scheduler_job_run_duration_seconds",
    "How long job bodies ran, as timed by the worker that ran them", ["type", "outcome"],
    buckets=_DURATION_BUCKETS)
QUEUE_WAIT = prometheus_client.Histogram(
    "scheduler_job_queue_wait_seconds",
    "From a job falling due (run_at) to its claim, by the database clock",
    ["type", "queue"], buckets=_DURATION_BUCKETS)
HTTP_DURATION = prometheus_client.Histogram(
    "scheduler_http_request_duration_seconds",
    "HTTP requests by route (the URL rule, not the path), method and status; to the "
    "response head for streamed responses", ["method", "route", "status"],
    buckets=_HTTP_BUCKETS)


def observe_claim(job: wire.ClaimedJob, lease_seconds: float) -> None:
    """A run was created. Its claim time is the database's: lease expiry minus the
    lease length, so the wait is measured on one clock."""
    JOBS_CLAIMED.labels(job.type).inc()
    if job.run_at is not None:
        claimed_at = job.lease_expires_at.timestamp() - lease_seconds
        QUEUE_WAIT.labels(job.type, job.queue).observe(
            max(0.0, claimed_at - job.run_at.timestamp()))


def observe_completion(row: Mapping[str, Any], item: wire.Completion) -> None:
    """An accepted completion; ``row`` is the store's answer (type, next status)."""
    JOBS_FINISHED.labels(row["type"], item.outcome).inc()
    if item.duration_seconds is not None:
        RUN_DURATION.labels(row["type"], item.outcome).observe(item.duration_seconds)
    if row["status"] == wire.JobStatus.FAILED:
        JOB_RETRIES.labels(row["type"]).inc()
    elif row["status"] == wire.JobStatus.DEAD_LETTER:
        JOBS_DEAD_LETTERED.labels(row["type"]).inc()


def observe_reaped(rows: Iterable[Mapping[str, Any]]) -> None:
    """Runs ended by the lease reaper; each row: the job's type and new status."""
    for row in rows:
        job_type = row.get("type") or "unknown"
        LEASES_REAPED.labels(job_type).inc()
        if row["status"] == wire.JobStatus.PENDING:
            JOB_RETRIES.labels(job_type).inc()
        elif row["status"] == wire.JobStatus.DEAD_LETTER:
            JOBS_DEAD_LETTERED.labels(job_type).inc()


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    HTTP_DURATION.labels(method, route, str(status)).observe(seconds)


class SnapshotCollector(Collector):
    """Gauges (and the workers' own counters) of one :class:`Overview`."""

    def __init__(self, overview: Overview | None, stats: StatsStatistics | None) -> None:
        self.overview = overview
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        if self.stats is not None:
            yield GaugeMetricFamily(
                "scheduler_stats_refresh_duration_seconds",
                "What the last read of the stats snapshot cost",
                value=self.stats.last_refresh_seconds)
            yield CounterMetricFamily(
                "scheduler_stats_refreshes", "Reads of the stats snapshot",
                value=self.stats.refreshes)
            yield CounterMetricFamily(
                "scheduler_stats_refreshes_skipped",
                "Times an older snapshot was served because reading a new one would "
                "have exceeded the time budget", value=self.stats.skipped)
            if self.stats.snapshot_age_seconds is not None:
                yield GaugeMetricFamily(
                    "scheduler_stats_snapshot_age_seconds",
                    "Age of the stats snapshot the gauges come from",
                    value=self.stats.snapshot_age_seconds)
        o = self.overview
        if o is None:
            return
        jobs = GaugeMetricFamily(
            "scheduler_jobs", "Jobs by status (see scheduler_jobs_estimated)", labels=["status"])
        estimated = GaugeMetricFamily(
            "scheduler_jobs_estimated",
            "1 where scheduler_jobs is estimated from planner statistics, 0 where exact",
            labels=["status"])
        for status, n in o.counts.items():
            jobs.add_metric([status], n)
            estimated.add_metric([status], 1 if status in o.estimated else 0)
        yield jobs
        yield estimated
        lag = GaugeMetricFamily(
            "scheduler_queue_lag_seconds",
            "Age of the oldest due job not yet claimed, by queue (0: none due)",
            labels=["queue"])
        for q in o.queues:
            lag.add_metric([q.queue], q.lag_seconds)
        yield lag
        paused = GaugeMetricFamily(
            "scheduler_queue_paused", "1 for a paused queue (listed: paused or limited ones)",
            labels=["queue"])
        limit = GaugeMetricFamily(
            "scheduler_queue_concurrency_limit",
            "Most of the queue's jobs Running at once, cluster-wide (limited queues only)",
            labels=["queue"])
        for setting in o.queue_settings:
            paused.add_metric([setting.name], 1 if setting.paused else 0)
            if setting.concurrency_limit is not None:
                limit.add_metric([setting.name], setting.concurrency_limit)
        yield paused
        yield limit
        states = GaugeMetricFamily("scheduler_workers", "Workers by state", labels=["state"])
        for state in ("Active", "Draining", "Lost"):
            states.add_metric([state], sum(1 for w in o.workers if w.state == state))
        yield states
        yield GaugeMetricFamily("scheduler_slots", "Job slots of the live workers",
                                value=o.slots)
        yield GaugeMetricFamily("scheduler_slots_busy", "Job slots in use on the live workers",
                                value=o.busy_slots)
        yield from self._per_worker(o)

    @staticmethod
    def _per_worker(o: Overview) -> Iterator[Metric]:
        label = ["worker_id"]
        slots = GaugeMetricFamily("scheduler_worker_slots", "Job slots of a live worker",
                                  labels=label)
        busy = GaugeMetricFamily("scheduler_worker_busy_slots",
                                 "Job slots in use on a live worker", labels=label)
        age = GaugeMetricFamily("scheduler_worker_heartbeat_age_seconds",
                                "Seconds since a live worker's last heartbeat", labels=label)
        runs = CounterMetricFamily("scheduler_worker_runs_finished",
                                   "Runs a worker finished since it started", labels=label)
        restarts = CounterMetricFamily(
            "scheduler_worker_child_restarts",
            "Job processes a worker killed and replaced since it started", labels=label)
        run_seconds = CounterMetricFamily(
            "scheduler_worker_run_seconds",
            "Seconds a worker's job bodies ran since it started", labels=label)
        overhead = SummaryMetricFamily(
            "scheduler_worker_executor_overhead_seconds",
            "A worker's own time per run outside the job's process (hand-off from the "
            "claim, encoding, waiting for a free process, reporting)", labels=label)
        for w in o.workers:
            if w.state not in LIVE_WORKER_STATES:
                continue
            slots.add_metric([w.id], w.capacity)
            busy.add_metric([w.id], w.running)
            age.add_metric([w.id], w.heartbeat_age_seconds)
            if w.stats is not None:
                runs.add_metric([w.id], w.stats.runs_finished)
                restarts.add_metric([w.id], w.stats.child_restarts)
                run_seconds.add_metric([w.id], w.stats.run_seconds_sum)
                overhead.add_metric([w.id], count_value=w.stats.executor_overhead_seconds_count,
                                    sum_value=w.stats.executor_overhead_seconds_sum)
        yield from (slots, busy, age, runs, restarts, run_seconds, overhead)


def render(overview: Overview | None, stats: StatsStatistics | None) -> bytes:
    """The exposition text: this process's metrics, then the snapshot's."""
    snapshot = CollectorRegistry(auto_describe=False)
    snapshot.register(SnapshotCollector(overview, stats))
    return (prometheus_client.generate_latest(prometheus_client.REGISTRY)
            + prometheus_client.generate_latest(snapshot))


CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST
