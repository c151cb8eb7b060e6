"""Observability end to end: /metrics after real runs, /health/ready, the JSON log lines
of real processes, the dashboard's JSON endpoints and its event stream; and the stats
store's figures against a real PostgreSQL.

Every wait polls with a deadline (the snapshot behind the gauges is at most a second
old, worker figures arrive with the next heartbeat).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import signal
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from scheduler_core.runtime import db
from scheduler_core.schema.migrate import available
from scheduler_core.schema.stats_store import StatsStore
from tests.support import Coordinator, Worker, free_port, running_coordinator, submit, wait_until

FAST = {
    "SCHEDULER_HEARTBEAT_SECONDS": "0.2",
    "SCHEDULER_REAP_INTERVAL_SECONDS": "0.2",
    "SCHEDULER_CLAIM_WAIT_SECONDS": "2",
    "SCHEDULER_RETRY_BASE_SECONDS": "0.05",
}

StartCoordinator = Callable[..., Coordinator]
StartWorker = Callable[..., Worker]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def shared(module_dsn: str) -> Iterator[Coordinator]:
    """One coordinator for the tests that only read what they wrote themselves."""
    with running_coordinator(module_dsn) as c:
        yield c


def job(url: str, job_id: str) -> dict[str, Any]:
    return httpx.get(f"{url}/api/jobs/{job_id}", timeout=10).json()  # type: ignore[no-any-return]


def scrape(url: str) -> Samples:
    resp = httpx.get(url + "/metrics", timeout=10)
    assert 200 == resp.status_code
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(resp.text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def json_lines(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass  # a line cut short by a concurrent write
    return out


# --- /metrics ----------------------------------------------------------------------

def test_metrics_after_real_runs_count_outcomes_retries_and_timings(
        start_coordinator: StartCoordinator, start_worker: StartWorker) -> None:
    c = start_coordinator(env=FAST)
    start_worker(c.url, slots=2, env=FAST, extra=["--worker-id", "obs-w1"])
    noops = [submit(c.url, "noop")["id"] for _ in range(3)]
    failing = submit(c.url, "fail", {"message": "boom"}, maxAttempts=2)["id"]
    wait_until(lambda: all(job(c.url, j)["status"] == "Succeeded" for j in noops)
               and job(c.url, failing)["status"] == "DeadLetter", timeout=30,
               what="3 noops Succeeded and the failing job DeadLetter")

    def settled() -> Samples | None:
        s = scrape(c.url)
        done = (value(s, "scheduler_jobs", status="Succeeded") == 3
                and value(s, "scheduler_worker_runs_finished_total", worker_id="obs-w1") == 5)
        return s if done else None

    s = wait_until(settled, timeout=15, what="gauges showing the finished runs")
    expected = {
        ("scheduler_jobs_submitted_total", (("type", "noop"),)): 3,
        ("scheduler_jobs_submitted_total", (("type", "fail"),)): 1,
        ("scheduler_jobs_finished_total", (("outcome", "Succeeded"), ("type", "noop"))): 3,
        ("scheduler_jobs_finished_total", (("outcome", "Failed"), ("type", "fail"))): 2,
        ("scheduler_job_retries_total", (("type", "fail"),)): 1,
        ("scheduler_jobs_dead_lettered_total", (("type", "fail"),)): 1,
        ("scheduler_jobs_claimed_total", (("type", "fail"),)): 2,
        ("scheduler_job_run_duration_seconds_count", (("outcome", "Succeeded"), ("type", "noop"))): 3,
        ("scheduler_job_run_duration_seconds_bucket",
         (("le", "+Inf"), ("outcome", "Succeeded"), ("type", "noop"))): 3,
        ("scheduler_job_queue_wait_seconds_count", (("queue", "default"), ("type", "noop"))): 3,
        ("scheduler_job_queue_wait_seconds_count", (("queue", "default"), ("type", "fail"))): 2,
        ("scheduler_http_request_duration_seconds_count",
         (("method", "POST"), ("route", "/api/jobs"), ("status", "201"))): 4,
        ("scheduler_jobs", (("status", "DeadLetter"),)): 1,
        ("scheduler_jobs", (("status", "Pending"),)): 0,
        ("scheduler_jobs_estimated", (("status", "Succeeded"),)): 0,
        ("scheduler_workers", (("state", "Active"),)): 1,
        ("scheduler_slots", ()): 2,
        ("scheduler_worker_slots", (("worker_id", "obs-w1"),)): 2,
        ("scheduler_worker_executor_overhead_seconds_count", (("worker_id", "obs-w1"),)): 5,
    }
    found = {key: value(s, key[0], **dict(key[1])) for key in expected}
    assert expected == found
    assert 0 < (value(s, "scheduler_job_run_duration_seconds_sum", type="noop",
                      outcome="Succeeded") or 0)
    assert 0 <= (value(s, "scheduler_worker_heartbeat_age_seconds", worker_id="obs-w1") or -1)


def test_request_durations_are_labelled_by_url_rule_not_path(
        coordinator: Coordinator) -> None:
    job_id = submit(coordinator.url, "noop", runAt="2999-01-01T00:00:00Z")["id"]
    httpx.get(f"{coordinator.url}/api/jobs/{job_id}")
    httpx.get(f"{coordinator.url}/no/such/page")
    s = scrape(coordinator.url)
    assert 1 == value(s, "scheduler_http_request_duration_seconds_count", method="GET",
                      route="/api/jobs/<job_id>", status="200")
    assert 1 == value(s, "scheduler_http_request_duration_seconds_count", method="GET",
                      route="(unmatched)", status="404")
    assert not any(job_id in str(labels) for _, labels in s)


def test_a_run_whose_worker_died_is_counted_as_reaped_and_retried(
        start_coordinator: StartCoordinator, start_worker: StartWorker) -> None:
    c = start_coordinator(env={**FAST, "SCHEDULER_LEASE_SECONDS": "1"})
    w = start_worker(c.url, slots=1, env=FAST)
    job_id = submit(c.url, "sleep", {"seconds": 60})["id"]
    wait_until(lambda: job(c.url, job_id)["status"] == "Running", timeout=15,
               what="the sleep job Running")
    os.kill(w.pid, signal.SIGKILL)
    wait_until(lambda: value(scrape(c.url), "scheduler_leases_reaped_total", type="sleep") == 1,
               timeout=15, what="the expired lease reaped")
    s = scrape(c.url)
    assert 1 == value(s, "scheduler_job_retries_total", type="sleep")
    assert "Pending" == job(c.url, job_id)["status"]


# --- /health/ready -------------------------------------------------------------------

def test_ready_with_database_migrations_and_actors_all_ok(coordinator: Coordinator) -> None:
    resp = httpx.get(coordinator.url + "/health/ready")
    body = resp.json()
    assert (200, "ready") == (resp.status_code, body["status"])
    assert [m.version for m in available()] == body["checks"]["migrations"]["applied"]
    assert {"listener", "lease_reaper", "web"} <= set(body["checks"]["actors"]["states"])
    assert {"running"} == set(body["checks"]["actors"]["states"].values())


def test_not_ready_when_migrations_are_missing(processes: list[Coordinator | Worker],
                                              empty_database: str) -> None:
    c = Coordinator(empty_database, extra=["--no-migrate"])
    processes.append(c)
    c.wait_healthy()  # alive: the database answers
    resp = httpx.get(c.url + "/health/ready")
    body = resp.json()
    assert (503, "not_ready") == (resp.status_code, body["status"])
    assert [m.version for m in available()] == body["checks"]["migrations"]["missing"]
    assert body["checks"]["database"]["ok"]


def test_not_ready_with_a_json_reason_when_the_database_is_unreachable(
        processes: list[Coordinator | Worker]) -> None:
    closed = f"postgresql://nobody@127.0.0.1:{free_port()}/nothing?connect_timeout=1"
    c = Coordinator(closed, extra=["--no-migrate"])
    processes.append(c)
    resp = wait_until(lambda: httpx.get(c.url + "/health/ready", timeout=5), timeout=20,
                      what="a /health/ready answer")
    body = resp.json()
    assert (503, False) == (resp.status_code, body["checks"]["database"]["ok"])
    assert body["checks"]["database"]["reason"]


def test_metrics_answer_without_the_gauges_when_the_database_is_unreachable(
        processes: list[Coordinator | Worker]) -> None:
    closed = f"postgresql://nobody@127.0.0.1:{free_port()}/nothing?connect_timeout=1"
    c = Coordinator(closed, extra=["--no-migrate"])
    processes.append(c)
    s = wait_until(lambda: scrape(c.url), timeout=20, what="a /metrics answer")
    assert ("scheduler_stats_refresh_duration_seconds", frozenset()) in s
    assert value(s, "scheduler_jobs", status="Pending") is None


# --- logs of real processes ----------------------------------------------------------

def test_a_worker_logs_one_canonical_json_line_per_run(
        start_coordinator: StartCoordinator, start_worker: StartWorker) -> None:
    c = start_coordinator(env=FAST)
    w = start_worker(c.url, env=FAST, extra=["--worker-id", "log-w1"])
    job_id = submit(c.url, "noop", queue="default")["id"]
    wait_until(lambda: job(c.url, job_id)["status"] == "Succeeded", timeout=20,
               what="the job Succeeded")
    line = wait_until(lambda: next((e for e in json_lines(w.output())
                                    if e.get("event") == "run_finished"), None),
                      timeout=10, what="a run_finished line")
    run = job(c.url, job_id)["runs"][0]
    assert {"job_id": job_id, "run_id": run["id"], "worker_id": "log-w1", "attempt": 1,
            "type": "noop", "queue": "default", "actor": "executor", "outcome": "Succeeded",
            "level": "info", "logger": "actors.executor", "process": "worker"} == {
        k: line[k] for k in ("job_id", "run_id", "worker_id", "attempt", "type", "queue",
                             "actor", "outcome", "level", "logger", "process")}
    assert 0 <= line["duration_s"]
    stamp = dt.datetime.fromisoformat(line["timestamp"])
    assert dt.timedelta(0) == stamp.utcoffset()


def test_every_line_a_coordinator_logs_is_json_with_the_fixed_keys(
        start_coordinator: StartCoordinator, start_worker: StartWorker) -> None:
    c = start_coordinator(env=FAST)
    start_worker(c.url, env=FAST, extra=["--worker-id", "log-w2"])
    wait_until(lambda: any(e.get("event") == "worker_registered"
                           for e in json_lines(c.output())), timeout=15,
               what="worker_registered in the coordinator's log")
    lines = json_lines(c.output())
    assert lines
    for line in lines:
        assert {"timestamp", "level", "event", "logger"} <= set(line), line
        assert line["timestamp"].endswith("Z")
    started = {e["actor"] for e in lines if e["event"] == "actor_started"}
    assert {"listener", "lease_reaper", "web"} <= started
    assert all(e["supervisor"] == "coordinator" and e["logger"] == "supervisor"
               for e in lines if e["event"] == "actor_started")
    registered = next(e for e in lines if e["event"] == "worker_registered")
    assert ("log-w2", "web.workers") == (registered["worker_id"], registered["logger"])


# --- the dashboard's JSON ------------------------------------------------------------

def test_a_job_is_found_by_its_idempotency_key(shared: Coordinator) -> None:
    job_id = submit(shared.url, "noop", idempotencyKey="order/42 & more",
                    runAt="2999-01-01T00:00:00Z")["id"]
    resp = httpx.get(shared.url + "/api/jobs/by-key", params={"key": "order/42 & more"})
    assert (200, job_id) == (resp.status_code, resp.json()["id"])


def test_an_unknown_idempotency_key_is_404_naming_it(shared: Coordinator) -> None:
    resp = httpx.get(shared.url + "/api/jobs/by-key", params={"key": "nope"})
    assert (404, "not_found") == (resp.status_code, resp.json()["error"])


def test_a_lookup_without_a_key_is_400_naming_the_field(shared: Coordinator) -> None:
    resp = httpx.get(shared.url + "/api/jobs/by-key")
    assert (400, "key") == (resp.status_code, resp.json()["field"])


def test_the_overview_counts_jobs_and_lists_workers(
        start_coordinator: StartCoordinator, start_worker: StartWorker) -> None:
    c = start_coordinator(env=FAST)
    start_worker(c.url, slots=3, env=FAST, extra=["--worker-id", "ov-w1"])
    submit(c.url, "noop", runAt="2999-01-01T00:00:00Z")

    def overview() -> dict[str, Any] | None:
        o = httpx.get(c.url + "/api/dashboard/overview").json()
        return o if o["workers"] and o["counts"]["Scheduled"] == 1 else None

    o = wait_until(overview, timeout=15, what="the worker and the job in the overview")
    assert (["ov-w1"], "Active", 3, 1, 3) == (
        [w["id"] for w in o["workers"]], o["workers"][0]["state"], o["workers"][0]["capacity"],
        o["liveWorkers"], o["slots"])
    assert 60 == len(o["throughput"])
    assert [] == o["estimated"]


def test_the_event_stream_pushes_a_new_job_within_a_few_pushes(coordinator: Coordinator) -> None:
    with httpx.stream("GET", coordinator.url + "/api/dashboard/events", timeout=10) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        events = overview_events(resp)
        first = next(events)
        assert 0 == first["counts"]["Pending"]
        submit(coordinator.url, "noop")
        # Counted in pushes, not seconds (a loaded machine slows both alike): a push or
        # two may carry a snapshot taken before the job landed; the one the submission's
        # doorbell rings for has it.
        pending: list[int] = []
        for o in itertools.islice(events, 5):
            pending.append(o["counts"]["Pending"])
            if 1 == pending[-1]:
                break
    assert 1 == pending[-1], pending


def overview_events(resp: httpx.Response) -> Any:
    event = None
    for line in resp.iter_lines():
        if line.startswith("event: "):
            event = line[len("event: "):]
        elif line.startswith("data: ") and event == "overview":
            yield json.loads(line[len("data: "):])


def test_the_dashboard_page_is_served_with_a_same_origin_policy(shared: Coordinator) -> None:
    resp = httpx.get(shared.url + "/")
    assert (200, "text/html; charset=utf-8") == (resp.status_code, resp.headers["content-type"])
    assert "default-src 'self'" in resp.headers["content-security-policy"]
    for asset in ("app.js", "app.css", "favicon.svg"):
        assert f"/dashboard/static/{asset}" in resp.text
        assert 200 == httpx.get(f"{shared.url}/dashboard/static/{asset}").status_code


def test_the_dashboard_loads_nothing_from_another_origin() -> None:
    from tests.support import ROOT

    for path in (ROOT / "web" / "static").iterdir():
        text = path.read_text()
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")
        assert "https://" not in text
        assert "//cdn" not in text


# --- the stats store against PostgreSQL ----------------------------------------------

SEED = """
INSERT INTO jobs (id, type, status, queue, priority, run_at, max_attempts, timeout_seconds,
                  finished_at)
SELECT gen_random_uuid(), 'noop',
       (ARRAY['Pending', 'Scheduled', 'Succeeded', 'Failed', 'DeadLetter', 'Succeeded'])[1 + i %% 6],
       (ARRAY['a', 'b', 'c'])[1 + i %% 3], i %% 4,
       now() + make_interval(secs => 100 - i),
       3, 30,
       CASE WHEN i %% 6 IN (2, 4, 5) THEN now() - make_interval(secs => i) END
FROM generate_series(1, %(n)s) AS i
"""


def sql(dsn: str, statement: str, params: dict[str, Any] | None = None) -> list[Any]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(statement.encode(), params)
        return cur.fetchall() if cur.description else []


def exact(dsn: str) -> dict[str, int]:
    return dict(sql(dsn, "SELECT status, count(*) FROM jobs GROUP BY status"))


async def refresh(dsn: str, **kw: Any) -> Any:
    async with db.open_pool(dsn, max_size=2) as pool:
        return await StatsStore(pool, **kw).refresh()


async def test_small_tables_get_exact_counts(db_dsn: str) -> None:
    sql(db_dsn, SEED, {"n": 600})
    o = await refresh(db_dsn)
    assert ({s: exact(db_dsn).get(s, 0) for s in o.counts}, []) == (o.counts, o.estimated)


async def test_large_tables_get_terminal_counts_estimated_from_statistics(db_dsn: str) -> None:
    sql(db_dsn, SEED, {"n": 600})
    sql(db_dsn, "ANALYZE jobs")  # a table this small is sampled whole: exact frequencies
    o = await refresh(db_dsn, exact_below=100)
    truth = exact(db_dsn)
    assert ["Succeeded", "DeadLetter", "Cancelled"] == o.estimated
    assert {s: truth.get(s, 0) for s in o.counts} == o.counts


async def test_an_unanalyzed_table_is_counted_exactly(db_dsn: str) -> None:
    sql(db_dsn, "ALTER TABLE jobs SET (autovacuum_enabled = false)")  # no ANALYZE meanwhile
    sql(db_dsn, SEED, {"n": 600})
    o = await refresh(db_dsn, exact_below=100)
    assert [] == o.estimated


async def test_queue_lag_is_the_age_of_each_queues_oldest_due_waiting_job(db_dsn: str) -> None:
    sql(db_dsn, SEED, {"n": 600})
    truth = dict(sql(db_dsn, """
        SELECT queue, EXTRACT(EPOCH FROM now() - min(run_at))::float8 FROM jobs
        WHERE status IN ('Pending', 'Scheduled', 'Failed') AND run_at <= now()
        GROUP BY queue"""))
    o = await refresh(db_dsn)
    assert sorted(truth) == [q.queue for q in o.queues]
    for q in o.queues:
        assert truth[q.queue] == pytest.approx(q.lag_seconds, abs=1.0)
    assert max(truth.values()) == pytest.approx(o.queue_lag_seconds, abs=1.0)


async def test_throughput_counts_the_last_hours_finished_jobs_per_minute(db_dsn: str) -> None:
    sql(db_dsn, SEED, {"n": 600})
    truth = dict(sql(db_dsn, """
        SELECT status, count(*) FROM jobs
        WHERE finished_at >= date_trunc('minute', now()) - interval '59 minutes'
        GROUP BY status"""))
    o = await refresh(db_dsn)
    assert 60 == len(o.throughput)
    assert (truth.get("Succeeded", 0), truth.get("DeadLetter", 0)) == (
        sum(b.succeeded for b in o.throughput), sum(b.dead_letter for b in o.throughput))


async def test_concurrent_readers_share_one_refresh(db_dsn: str) -> None:
    async with db.open_pool(db_dsn, max_size=4) as pool:
        stats = StatsStore(pool)
        async with trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(stats.overview)
        assert 1 == stats.statistics().refreshes
        again = await stats.overview(max_age=60)
        assert 1 == stats.statistics().refreshes
        assert again is await stats.overview(max_age=60)


async def test_a_snapshot_asked_newer_than_a_change_shows_it(db_dsn: str) -> None:
    async with db.open_pool(db_dsn, max_size=2) as pool:
        stats = StatsStore(pool, min_age=60)
        before = await stats.overview()
        sql(db_dsn, SEED, {"n": 6})
        cached = await stats.overview()
        fresh = await stats.overview(newer_than=trio.current_time())
    assert (0, cached) == (before.counts["Pending"], before)
    assert 1 == fresh.counts["Pending"]


async def test_past_its_time_budget_the_store_serves_the_cached_snapshot(db_dsn: str) -> None:
    async with db.open_pool(db_dsn, max_size=2) as pool:
        stats = StatsStore(pool, cost_factor=1e9)  # a budget any refresh exceeds
        first = await stats.overview()
        again = await stats.overview(max_age=0)
    assert again is first
    assert (1, 1) == (stats.statistics().refreshes, stats.statistics().skipped)
