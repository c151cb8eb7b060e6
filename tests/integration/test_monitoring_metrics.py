"""Every metric the ready-made monitoring of deploy/ reads exists in a real coordinator's
``/metrics``: the Grafana dashboard's queries and variables, the alerting rules, and the
series the alerts' unit tests feed in.

A real coordinator runs a real worker's jobs first (one that succeeds, one that is
dead-lettered), so the labelled series exist, and the worker's own figures are in the
scrape: workers have no port of their own, their figures reach Prometheus through the
coordinator (``scheduler_worker_*``). A name counts as exposed when a metric family of
the scrape renders it: a counter ``x`` as ``x_total`` (and ``x_created``), a histogram
as ``_bucket``, ``_sum``, ``_count``; so ``rate()`` of a gauge's ``_total`` or a
quantile of a summary's ``_bucket`` is caught, not only a misspelt name.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from tests.monitoring import Query, alert_queries, dashboard, dashboard_queries, metric_names
from tests.support import Coordinator, Worker, submit, wait_until

FAST = {
    "SCHEDULER_HEARTBEAT_SECONDS": "0.2",
    "SCHEDULER_CLAIM_WAIT_SECONDS": "2",
}

# Series Prometheus makes itself, for each scrape: not in any /metrics.
MADE_BY_PROMETHEUS = {"up"}

# The series names each family type renders (prometheus_client's exposition).
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "unknown": ("",),
}


def families(url: str) -> list[Metric]:
    resp = httpx.get(url + "/metrics", timeout=10)
    assert 200 == resp.status_code
    return list(text_string_to_metric_families(resp.text))


def exposed_names(scraped: list[Metric]) -> set[str]:
    names: set[str] = set()
    for family in scraped:
        names.update(family.name + suffix for suffix in SUFFIXES[family.type])
        names.update(sample.name for sample in family.samples)
    return names


def missing(queries: list[Query], exposed: set[str]) -> dict[str, set[str]]:
    """Per query, the names it reads that the scrape does not expose."""
    out = {}
    for query in queries:
        absent = metric_names(query.expr) - exposed - MADE_BY_PROMETHEUS
        if absent:
            out[query.where] = absent
    return out


def scrape_after_runs(start_coordinator: Callable[..., Coordinator],
                      start_worker: Callable[..., Worker]) -> list[Metric]:
    c = start_coordinator(env=FAST)
    start_worker(c.url, slots=2, env=FAST, extra=["--worker-id", "monitoring-w1"])
    submit(c.url, "noop")
    submit(c.url, "fail", {"message": "boom"}, maxAttempts=1)

    def settled() -> list[Metric] | None:
        scraped = families(c.url)
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for f in scraped for s in f.samples}
        ran = (samples.get(("scheduler_jobs_dead_lettered_total", (("type", "fail"),)))
               == 1
               and samples.get(("scheduler_worker_runs_finished_total",
                                (("worker_id", "monitoring-w1"),))) == 2)
        return scraped if ran else None

    return wait_until(settled, timeout=30,
                      what="the noop and the dead-lettered job in the coordinator's scrape")


def test_every_metric_the_dashboard_and_the_alerts_read_is_exposed(
        start_coordinator: Callable[..., Coordinator],
        start_worker: Callable[..., Worker]) -> None:
    exposed = exposed_names(scrape_after_runs(start_coordinator, start_worker))
    queries = dashboard_queries(dashboard()) + alert_queries()
    assert {} == missing(queries, exposed)
    read = set().union(*(metric_names(q.expr) for q in queries))
    assert 30 < len(read)  # the scanner found the names: an empty set would pass above


def test_a_misspelt_or_mistyped_metric_is_reported_missing(
        start_coordinator: Callable[..., Coordinator]) -> None:
    """The check above can fail: a name no family renders is reported, including a
    real metric read under the wrong type's suffix."""
    exposed = exposed_names(families(start_coordinator().url))
    queries = [Query("typo", "rate(scheduler_jobs_finishd_total[5m])"),
               Query("gauge as counter", "rate(scheduler_queue_lag_seconds_total[5m])"),
               Query("counter as histogram", "scheduler_jobs_claimed_bucket"),
               Query("fine", 'up == 0 or scheduler_jobs{status="Pending"} > 0')]
    assert {"typo": {"scheduler_jobs_finishd_total"},
            "gauge as counter": {"scheduler_queue_lag_seconds_total"},
            "counter as histogram": {"scheduler_jobs_claimed_bucket"}} == missing(queries,
                                                                                 exposed)
