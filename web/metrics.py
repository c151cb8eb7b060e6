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
    scheduler_queue_key_concurrency_limit{queue}
    scheduler_queue_rate_bucket_fill{queue,window}   share of a rate window in use, 0..1
    scheduler_queue_jobs_held{queue,reason}          due jobs a limit holds back now
    scheduler_queue_jobs_delayed_total{queue,reason} due jobs a limit held back (counted
                                                     once per due time, at a snapshot)
    scheduler_workers{state}, scheduler_slots, scheduler_slots_busy
    scheduler_worker_slots{worker_id}, scheduler_worker_busy_slots{worker_id},
    scheduler_worker_heartbeat_age_seconds{worker_id},
    scheduler_worker_runs_finished_total{worker_id},
    scheduler_worker_child_restarts_total{worker_id},
    scheduler_worker_run_seconds_total{worker_id},
    scheduler_worker_executor_overhead_seconds{worker_id} (summary: _sum, _count)
    scheduler_stats_refresh_duration_seconds, scheduler_stats_snapshot_age_seconds,
    scheduler_stats_refreshes_total, scheduler_stats_refreshes_skipped_total

With a read replica (SCHEDULER_READ_DATABASE_URL; docs/decisions/0030-read-replica.md)::

    scheduler_read_replica_up                  1: reads go to it; 0: to the primary
    scheduler_read_replica_lag_bytes           WAL not replayed (LSNs compared)
    scheduler_read_replica_lag_seconds         0 when caught up; else an upper bound
    scheduler_read_replica_replay_paused       pg_wal_replay_pause() in effect
    scheduler_read_replica_fallback_reads_total, scheduler_read_replica_outages_total,
    scheduler_read_replica_retried_reads_total

Counters count what this coordinator saw: behind a load balancer, sum them over the
coordinators. Snapshot gauges are the same on every coordinator: take one (``max``).
So is scheduler_queue_jobs_delayed_total, a counter of the snapshots: every
coordinator counts the cluster's delayed jobs (take ``max``, not ``sum``).
"""

from __future__ import annotations

import bisect
import itertools
import math
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import prometheus_client
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.samples import Sample

from scheduler_core.runtime import clock
from scheduler_core.runtime.read_pool import ReadPoolStatistics
from scheduler_core.schema import wire
from scheduler_core.schema.replica_store import ReplicaLag
from scheduler_core.schema.stats_store import LIVE_WORKER_STATES, Overview, StatsStatistics
from scheduler_core.schema.store import CompletedRun, ReapedRun

# Seconds: from a noop's milliseconds to an hour-long job.
_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                     60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
_HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                 10.0, 30.0)

class BatchHistogram(Collector):
    """A labelled histogram observed a batch at a time, on prometheus_client's public
    Collector interface: it renders as a ``prometheus_client.Histogram`` of the same
    name, buckets and labels would (``_bucket``, ``_count``, ``_sum``, ``_created``).

    ``prometheus_client.Histogram`` takes a lock and walks its buckets on every
    observation; a completion or claim batch of hundreds of runs pays that once per
    label set here. Registered on ``registry`` (the process's default) when built.
    """

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], *,
                 buckets: Sequence[float],
                 registry: CollectorRegistry | None = prometheus_client.REGISTRY) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._bounds = [float(b) for b in buckets]
        if self._bounds[-1] != math.inf:
            self._bounds.append(math.inf)
        self._le = [_le_label(b) for b in self._bounds]
        # label values -> [per-bucket counts (not cumulative)..., sum, created]
        self._series: dict[tuple[str, ...], _Series] = {}
        self._lock = threading.Lock()  # a scrape may run in another thread
        if registry is not None:
            registry.register(self)

    def observe_many(self, labels: tuple[str, ...], values: Iterable[float]) -> None:
        """Observe each of ``values`` in the series of ``labels`` (one value per label
        name, in order)."""
        if len(labels) != len(self.labelnames):
            raise ValueError(f"{self.name} takes {len(self.labelnames)} label values "
                             f"{self.labelnames}, got {labels!r}")
        bounds = self._bounds
        counts = [0] * len(bounds)
        total = 0.0
        for value in values:
            counts[bisect.bisect_left(bounds, value)] += 1  # the first bound >= value
            total += value
        with self._lock:
            series = self._series.get(labels)
            if series is None:
                series = self._series[labels] = _Series(
                    [0] * len(bounds), 0.0, clock.utcnow().timestamp())
            for i, n in enumerate(counts):
                if n:
                    series.buckets[i] += n
            series.sum += total

    def describe(self) -> Iterable[Metric]:
        return [HistogramMetricFamily(self.name, self.documentation,
                                      labels=list(self.labelnames))]

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation,
                                       labels=list(self.labelnames))
        with self._lock:
            snapshot = [(labels, list(s.buckets), s.sum, s.created)
                        for labels, s in self._series.items()]
        for labels, counts, total, created in snapshot:
            cumulative = list(itertools.accumulate(counts))
            family.add_metric(list(labels), list(zip(self._le, cumulative, strict=True)),
                              sum_value=total)
            family.samples.append(Sample(f"{self.name}_created",
                                         dict(zip(self.labelnames, labels, strict=True)),
                                         created))
        yield family


def _le_label(bound: float) -> str:
    """A bucket's ``le`` as prometheus_client writes it (``0.005``, ``1.0``, ``+Inf``)."""
    if bound == math.inf:
        return "+Inf"
    return repr(bound)


@dataclass
class _Series:
    buckets: list[int]
    sum: float
    created: float


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
RUN_DURATION = BatchHistogram(
    "scheduler_job_run_duration_seconds",
    "How long job bodies ran, as timed by the worker that ran them", ("type", "outcome"),
    buckets=_DURATION_BUCKETS)
QUEUE_WAIT = BatchHistogram(
    "scheduler_job_queue_wait_seconds",
    "From a job falling due (run_at) to its claim, by the database clock",
    ("type", "queue"), buckets=_DURATION_BUCKETS)
HTTP_DURATION = prometheus_client.Histogram(
    "scheduler_http_request_duration_seconds",
    "HTTP requests by route (the URL rule, not the path), method and status; to the "
    "response head for streamed responses", ["method", "route", "status"],
    buckets=_HTTP_BUCKETS)


def observe_claims(jobs: Sequence[wire.ClaimedJob], lease_seconds: float) -> None:
    """Runs were created (a claim's answer). A run's claim time is the database's:
    lease expiry minus the lease length, so its queue wait is measured on one clock.
    One label lookup per label set, not per job (the lookups were a tenth of the
    coordinator's CPU)."""
    claimed: dict[str, int] = {}
    waits: dict[tuple[str, str], list[float]] = {}
    for job in jobs:
        claimed[job.type] = claimed.get(job.type, 0) + 1
        if job.run_at is not None:
            at = job.lease_expires_at.timestamp() - lease_seconds
            waits.setdefault((job.type, job.queue), []).append(
                max(0.0, at - job.run_at.timestamp()))
    for job_type, n in claimed.items():
        JOBS_CLAIMED.labels(job_type).inc(n)
    for labels, values in waits.items():
        QUEUE_WAIT.observe_many(labels, values)


def observe_completions(accepted: Iterable[tuple[CompletedRun, wire.Completion]]) -> None:
    """Accepted completions, each with the store's answer for it (the job's type and
    next status). Duplicates (resends of a completion already applied) must not be
    passed: they were counted when first applied."""
    counted: dict[tuple[str, str], int] = {}
    finished: dict[tuple[str, str], list[float]] = {}
    retries: dict[str, int] = {}
    dead: dict[str, int] = {}
    for row, item in accepted:
        job_type = row.type or "unknown"
        key = (job_type, item.outcome)
        counted[key] = counted.get(key, 0) + 1
        if item.duration_seconds is not None:
            finished.setdefault(key, []).append(item.duration_seconds)
        if row.status == wire.JobStatus.FAILED:
            retries[job_type] = retries.get(job_type, 0) + 1
        elif row.status == wire.JobStatus.DEAD_LETTER:
            dead[job_type] = dead.get(job_type, 0) + 1
    for (job_type, outcome), n in counted.items():
        JOBS_FINISHED.labels(job_type, outcome).inc(n)
    for labels, durations in finished.items():
        RUN_DURATION.observe_many(labels, durations)
    for job_type, n in retries.items():
        JOB_RETRIES.labels(job_type).inc(n)
    for job_type, n in dead.items():
        JOBS_DEAD_LETTERED.labels(job_type).inc(n)


def observe_reaped(rows: Iterable[ReapedRun]) -> None:
    """Runs ended by the lease reaper, counted by their job's type and new status."""
    for row in rows:
        job_type = row.type or "unknown"
        LEASES_REAPED.labels(job_type).inc()
        if row.status == wire.JobStatus.PENDING:
            JOB_RETRIES.labels(job_type).inc()
        elif row.status == wire.JobStatus.DEAD_LETTER:
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
            delayed = CounterMetricFamily(
                "scheduler_queue_jobs_delayed",
                "Due jobs a limit held back, by the limit: each counted once per due time, "
                "by the first stats snapshot that found it held (cluster-wide: take max)",
                labels=["queue", "reason"])
            for (queue, reason), n in sorted(self.stats.delayed.items()):
                delayed.add_metric([queue, reason], n)
            yield delayed
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
        key_limit = GaugeMetricFamily(
            "scheduler_queue_key_concurrency_limit",
            "Most jobs of one concurrency key Running at once (key-limited queues only)",
            labels=["queue"])
        fill = GaugeMetricFamily(
            "scheduler_queue_rate_bucket_fill",
            "Share of a rate window's limit its bucket holds now (1: no start allowed)",
            labels=["queue", "window"])
        held = GaugeMetricFamily(
            "scheduler_queue_jobs_held",
            "Due waiting jobs a limit holds back now, by the limit (limited queues only)",
            labels=["queue", "reason"])
        for setting in o.queue_settings:
            paused.add_metric([setting.name], 1 if setting.paused else 0)
            if setting.concurrency_limit is not None:
                limit.add_metric([setting.name], setting.concurrency_limit)
            if setting.key_concurrency_limit is not None:
                key_limit.add_metric([setting.name], setting.key_concurrency_limit)
            for window, share in setting.rate_fill.items():
                fill.add_metric([setting.name, window], share)
            for reason, n in setting.held.items():
                held.add_metric([setting.name, reason], n)
        yield paused
        yield limit
        yield key_limit
        yield fill
        yield held
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


class ReplicaCollector(Collector):
    """The read replica's gauges: whether reads go to it, how far behind it is (from
    the snapshot's ``replica``: schema/replica_store.py) and the read pool's counters
    (runtime/read_pool.py). Rendered only when a replica is configured."""

    def __init__(self, lag: ReplicaLag | None, reads: ReadPoolStatistics) -> None:
        self.lag = lag
        self.reads = reads

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "scheduler_read_replica_up",
            "1 while the dashboard's reads go to the read replica, 0 while they fall back "
            "to the primary (the replica unreachable)", value=1 if self.reads.up else 0)
        yield CounterMetricFamily(
            "scheduler_read_replica_fallback_reads",
            "Reads sent to the primary because the read replica was unreachable",
            value=self.reads.fallback_reads)
        yield CounterMetricFamily(
            "scheduler_read_replica_outages", "Times the read replica became unreachable",
            value=self.reads.outages)
        yield CounterMetricFamily(
            "scheduler_read_replica_retried_reads",
            "Reads the read replica failed mid-way (cancelled for a conflict with "
            "recovery, or its connection lost) and the primary answered",
            value=self.reads.retried_reads)
        lag = self.lag
        if lag is None or lag.lag_bytes is None:
            return
        yield GaugeMetricFamily(
            "scheduler_read_replica_lag_bytes",
            "WAL the read replica has not replayed yet: the primary's pg_current_wal_lsn() "
            "minus the replica's pg_last_wal_replay_lsn() (0: caught up)",
            value=lag.lag_bytes)
        if lag.lag_seconds is not None:
            yield GaugeMetricFamily(
                "scheduler_read_replica_lag_seconds",
                "Upper bound of the age of the oldest change the read replica has not "
                "replayed (0 when caught up by WAL position, whatever the replay "
                "timestamp says)", value=lag.lag_seconds)
        yield GaugeMetricFamily(
            "scheduler_read_replica_replay_paused",
            "1 while replay is paused on the read replica (pg_wal_replay_pause())",
            value=1 if lag.replay_paused else 0)


def render(overview: Overview | None, stats: StatsStatistics | None,
           reads: ReadPoolStatistics | None = None) -> bytes:
    """The exposition text: this process's metrics, then the snapshot's (and with a
    read replica, ``reads``: its pool's counters)."""
    snapshot = CollectorRegistry(auto_describe=False)
    snapshot.register(SnapshotCollector(overview, stats))
    if reads is not None:
        snapshot.register(ReplicaCollector(overview.replica if overview else None, reads))
    return (prometheus_client.generate_latest(prometheus_client.REGISTRY)
            + prometheus_client.generate_latest(snapshot))


CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST
