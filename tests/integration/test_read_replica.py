"""The read replica (SCHEDULER_READ_DATABASE_URL) on a real primary and streaming
standby (tests/pg_cluster.py), a real coordinator process over HTTP.

Which server ran what is read from each server's own statement log
(``log_statement = 'all'``): a named query (schema/queries/) is found in a log as the
server wrote it (placeholders as ``$n``, continuation lines tab-indented). Each test
marks both logs before its request and reads only what was written after.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from scheduler_core.command import compose
from scheduler_core.schema.queries import q
from tests.pg_cluster import PgNode, replicated_pair, wait_replayed
from tests.support import Coordinator, HandWorker, submit, wait_until

DB = "sched"
LOG_CONF = ["log_statement = 'all'", "log_line_prefix = '%m [%p] app=%a '"]


class Log:
    """A server's log file, read from a mark on."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def mark(self) -> int:
        return self.path.stat().st_size

    def since(self, mark: int) -> str:
        with open(self.path, "rb") as f:
            f.seek(mark)
            return f.read().decode(errors="replace")

    def all(self) -> str:
        return self.since(0)


def ran(name: str, text: str) -> bool:
    """Whether the named query appears in a statement log's ``text``."""
    lines = []
    for line in q(name).splitlines():
        parts = re.split(r"%\(\w+\)s", line)
        lines.append(r"\$\d+".join(re.escape(p.replace("%%", "%")) for p in parts))
    return re.search(r"\n\t?".join(lines), text) is not None


class Pair:
    def __init__(self, primary: PgNode, standby: PgNode, coordinator: Coordinator) -> None:
        self.primary, self.standby, self.c = primary, standby, coordinator
        self.primary_log, self.standby_log = Log(primary.log_path), Log(standby.log_path)
        self.http = httpx.Client(base_url=coordinator.url, timeout=20)

    def marks(self) -> tuple[int, int]:
        return self.primary_log.mark(), self.standby_log.mark()

    def since(self, marks: tuple[int, int]) -> tuple[str, str]:
        return self.primary_log.since(marks[0]), self.standby_log.since(marks[1])

    def replayed(self) -> None:
        wait_replayed(self.primary, self.standby)


def start_coordinator(primary: PgNode, standby: PgNode) -> Coordinator:
    c = Coordinator(primary.dsn(DB), env={
        "SCHEDULER_READ_DATABASE_URL": standby.dsn(DB),
        "SCHEDULER_CLAIM_WAIT_SECONDS": "1"})
    try:
        c.wait_healthy(timeout=30)
    except BaseException:
        c.stop()
        raise
    return c


@pytest.fixture(scope="module")
def nodes() -> Iterator[tuple[PgNode, PgNode]]:
    with replicated_pair(synchronous=False, extra_conf=LOG_CONF) as (primary, standby):
        primary.scalar(f"CREATE DATABASE {DB}")
        trio.run(compose.migrate, primary.dsn(DB))
        wait_replayed(primary, standby)
        yield primary, standby


@pytest.fixture(scope="module")
def pair(nodes: tuple[PgNode, PgNode]) -> Iterator[Pair]:
    primary, standby = nodes
    c = start_coordinator(primary, standby)
    p = Pair(primary, standby, c)
    try:
        yield p
    finally:
        p.http.close()
        c.stop()


@pytest.fixture
def paused_replay(pair: Pair) -> Iterator[None]:
    pair.standby.scalar("SELECT pg_wal_replay_pause()", DB)
    wait_until(lambda: pair.standby.scalar("SELECT pg_get_wal_replay_pause_state()", DB)
               == "paused", what="replay paused")
    try:
        yield
    finally:
        pair.standby.scalar("SELECT pg_wal_replay_resume()", DB)


def metric(text: str, name: str) -> float | None:
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    return None if found is None else float(found.group(1))


def read_on_standby(pair: Pair, path: str, queries: tuple[str, ...],
                    expected_status: int = 200) -> tuple[str, str]:
    """GET ``path`` (again, while a cache answers without SQL) until every named query
    of ``queries`` is in the standby's log since the first call; the new text of both
    logs."""
    marks = pair.marks()

    def done() -> bool:
        resp = pair.http.get(path)
        assert expected_status == resp.status_code, resp.text
        _, standby = pair.since(marks)
        return all(ran(name, standby) for name in queries)

    wait_until(done, timeout=10, interval=0.2, what=f"{queries} on the standby for {path}")
    return pair.since(marks)


def test_each_dashboard_read_runs_on_the_standby_and_not_on_the_primary(pair: Pair) -> None:
    marker = uuid.uuid4().hex
    url = f"http://127.0.0.1:9/{marker}"
    job = submit(pair.c.url, "http_get", {"url": url}, queue="never-claimed")
    pair.replayed()
    reads: list[tuple[str, tuple[str, ...]]] = [
        ("/api/jobs", ("list_jobs",)),
        (f"/api/jobs/{job['id']}", ("get_job", "list_runs")),
        ("/api/dashboard/overview", ("stats_active_counts", "stats_queue_lag",
                                     "stats_workers")),
        ("/metrics", ("stats_active_counts", "stats_workers")),
        ("/api/queues", ("queue_names", "queue_details")),
        ("/api/schedules", ("list_schedules",)),
        ("/api/workflows", ("list_workflows",)),
    ]
    for path, queries in reads:
        primary, standby = read_on_standby(pair, path, queries)
        for name in queries:
            assert not ran(name, primary), (path, name)
    # The search: the filter's value went to the standby as a bound parameter.
    where = f'payload.url="{url}"'
    primary, standby = read_on_standby(pair, f"/api/jobs?{httpx.QueryParams(where=where)}",
                                       ("list_jobs",))
    assert marker in standby
    assert not ran("list_jobs", primary)
    assert marker not in primary.replace(job["id"], "")
    found = pair.http.get("/api/jobs", params={"where": where})
    assert [job["id"]] == [j["id"] for j in found.json()["items"]]


def test_each_decision_runs_on_the_primary_and_never_on_the_standby(pair: Pair) -> None:
    marks = pair.marks()
    job = submit(pair.c.url, "noop", {}, queue="decisions")
    hand = HandWorker(pair.c.url).register()
    try:
        claimed = hand.claim_some(1, wait=5, queues=["decisions"])
        assert [job["id"]] == [j["jobId"] for j in claimed]
        assert 200 == hand.finish(claimed[0]).status_code
    finally:
        hand.close()
    schedule = pair.http.post("/api/jobs", json={
        "type": "noop", "payload": {}, "cron": "* * * * * *", "queue": "cron-decisions"})
    assert 201 == schedule.status_code, schedule.text
    try:
        wait_until(lambda: ran("insert_fires", pair.since(marks)[0]), timeout=10,
                   what="a cron fire on the primary")
    finally:
        pair.http.delete(f"/api/schedules/{schedule.json()['id']}")
    primary, _ = pair.since(marks)
    # A single submit is insert_job alone, insert_jobs in a group commit.
    assert ran("insert_job", primary) or ran("insert_jobs", primary)
    for name in ("register_worker", "claim_jobs", "complete_runs", "insert_schedule",
                 "lock_due_schedules", "insert_fires"):
        assert ran(name, primary), name
    everything_on_standby = pair.standby_log.all()
    for name in ("insert_job", "insert_jobs", "get_jobs_by_keys", "register_worker",
                 "claim_jobs", "complete_runs", "beat_worker", "insert_schedule",
                 "lock_due_schedules", "insert_fires", "advance_schedule", "reap_expired"):
        assert not ran(name, everything_on_standby), name


def test_a_strong_read_runs_on_the_primary(pair: Pair) -> None:
    marks = pair.marks()
    assert 200 == pair.http.get("/api/jobs", params={"consistency": "strong"}).status_code
    primary, standby = pair.since(marks)
    assert ran("list_jobs", primary)
    assert not ran("list_jobs", standby)


def test_while_replay_is_paused_a_new_job_shows_only_with_consistency_strong(
        pair: Pair, paused_replay: None) -> None:
    job = submit(pair.c.url, "noop", {})

    def listed(**params: str) -> list[str]:
        resp = pair.http.get("/api/jobs", params={"take": "20", **params})
        assert 200 == resp.status_code, resp.text
        return [j["id"] for j in resp.json()["items"]]

    assert job["id"] not in listed()
    assert job["id"] not in listed(consistency="eventual")
    assert job["id"] in listed(consistency="strong")
    assert 404 == pair.http.get(f"/api/jobs/{job['id']}").status_code
    strong = pair.http.get(f"/api/jobs/{job['id']}", params={"consistency": "strong"})
    assert 200 == strong.status_code
    assert job["id"] == strong.json()["id"]


@pytest.mark.parametrize("path", ["/api/jobs", "/api/jobs/{id}", "/api/jobs/by-key?key=k",
                                  "/api/dashboard/overview", "/api/queues",
                                  "/api/queues/default", "/api/schedules",
                                  "/api/workflows", "/api/audit"])
def test_a_consistency_other_than_strong_or_eventual_is_a_400_naming_it(
        pair: Pair, path: str) -> None:
    path = path.replace("{id}", str(uuid.uuid4()))
    sep = "&" if "?" in path else "?"
    resp = pair.http.get(f"{path}{sep}consistency=bogus")
    assert 400 == resp.status_code, resp.text
    assert "consistency" == resp.json()["field"]
    twice = pair.http.get(f"{path}{sep}consistency=strong&consistency=strong")
    assert 400 == twice.status_code, twice.text
    assert "consistency" == twice.json()["field"]


def test_the_lag_is_reported_while_replay_is_paused_and_is_zero_once_replayed(
        pair: Pair) -> None:
    def replica() -> dict[str, Any]:
        resp = pair.http.get("/api/dashboard/overview")
        assert 200 == resp.status_code, resp.text
        return dict(resp.json()["replica"])

    def scraped() -> str:
        return pair.http.get("/metrics").text

    pair.standby.scalar("SELECT pg_wal_replay_pause()", DB)
    try:
        submit(pair.c.url, "noop", {})

        def behind() -> tuple[str, dict[str, Any]] | None:
            text, seen = scraped(), replica()
            bytes_, seconds = (metric(text, "scheduler_read_replica_lag_bytes"),
                               metric(text, "scheduler_read_replica_lag_seconds"))
            if bytes_ and seconds and seen["lagBytes"] and seen["lagSeconds"]:
                return text, seen
            return None

        text, seen = wait_until(behind, timeout=10, interval=0.2, what="a lag while paused")
        assert 1 == metric(text, "scheduler_read_replica_replay_paused")
        assert 1 == metric(text, "scheduler_read_replica_up")
        assert {"readsFrom": "replica", "reachable": True, "standby": True,
                "caughtUp": False, "replayPaused": True} == {
                    k: seen[k] for k in ("readsFrom", "reachable", "standby", "caughtUp",
                                         "replayPaused")}
    finally:
        pair.standby.scalar("SELECT pg_wal_replay_resume()", DB)

    def caught_up() -> tuple[str, dict[str, Any]] | None:
        text, seen = scraped(), replica()
        if (metric(text, "scheduler_read_replica_lag_bytes") == 0
                and seen["caughtUp"] and seen["lagBytes"] == 0):
            return text, seen
        return None

    text, seen = wait_until(caught_up, timeout=20, interval=0.2, what="caught up")
    assert 0 == metric(text, "scheduler_read_replica_lag_seconds")
    assert 0 == metric(text, "scheduler_read_replica_replay_paused")
    assert 0.0 == seen["lagSeconds"]


def test_with_the_standby_stopped_reads_are_answered_from_the_primary(
        nodes: tuple[PgNode, PgNode]) -> None:
    primary, standby = nodes
    c = start_coordinator(primary, standby)
    http = httpx.Client(base_url=c.url, timeout=20)
    try:
        assert 200 == http.get("/api/jobs").status_code  # a replica connection pooled
        standby.stop("fast")
        job = submit(c.url, "noop", {})
        for _ in range(5):
            resp = http.get("/api/jobs", params={"take": "5"})
            assert 200 == resp.status_code, resp.text
            assert job["id"] in [j["id"] for j in resp.json()["items"]]
        assert 200 == http.get(f"/api/jobs/{job['id']}").status_code
        overview = http.get("/api/dashboard/overview")
        assert 200 == overview.status_code, overview.text
        assert {"readsFrom": "primary", "reachable": False} == {
            k: overview.json()["replica"][k] for k in ("readsFrom", "reachable")}
        text = http.get("/metrics").text
        assert 0 == metric(text, "scheduler_read_replica_up")
        assert (metric(text, "scheduler_read_replica_fallback_reads_total") or 0) >= 7
        assert 1 == metric(text, "scheduler_read_replica_outages_total")
        # One line for the outage, not one per request.
        assert 1 == c.output().count('"read_replica_lost"')
        assert standby.dsn(DB) not in c.output()

        standby.start()

        def back() -> bool:
            resp = http.get("/api/dashboard/overview")
            return resp.status_code == 200 and resp.json()["replica"]["readsFrom"] == "replica"

        wait_until(back, timeout=30, interval=0.2, what="reads on the replica again")
        assert 1 == c.output().count('"read_replica_recovered"')
    finally:
        http.close()
        c.stop()
        if standby.pid() is None:
            standby.start()


def test_a_read_the_standby_cancels_for_a_conflict_with_recovery_is_answered_by_the_primary(
        pair: Pair) -> None:
    """The standby cancels a read that holds a lock its replay needs (with
    max_standby_streaming_delay = 0, at once): SQLSTATE 40001, "conflict with
    recovery". The primary takes ACCESS EXCLUSIVE locks on ``jobs`` in a loop, each
    replayed on the standby, while the list is read through the API: every answer is
    a 200 (the cancelled reads were run again on the primary), and the standby's
    conflicts and the coordinator's retry counter both show that some were."""
    standby, primary = pair.standby, pair.primary
    submit(pair.c.url, queue=f"conflict-{uuid.uuid4().hex[:8]}")
    pair.replayed()

    def delay() -> object:
        return standby.scalar("SHOW max_standby_streaming_delay", DB)

    def conflicts() -> int:
        return int(standby.scalar(  # type: ignore[call-overload]
            f"SELECT confl_lock FROM pg_stat_database_conflicts WHERE datname = '{DB}'", DB))

    standby.append_conf(["max_standby_streaming_delay = 0"])
    standby.run("pg_ctl", "reload", "--pgdata", str(standby.data_dir))
    stop = threading.Event()

    def lock_in_a_loop() -> None:
        import psycopg

        with psycopg.connect(primary.dsn(DB), autocommit=True) as conn:
            while not stop.is_set():
                with conn.transaction():
                    conn.execute("LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE")

    locker = threading.Thread(target=lock_in_a_loop)
    try:
        wait_until(lambda: delay() == "0", what="the standby's new delay")
        before = conflicts()
        locker.start()
        statuses: list[int] = []

        def retried() -> bool:
            resp = pair.http.get("/api/jobs", params={"take": "50"})
            statuses.append(resp.status_code)
            if resp.status_code != 200:  # ends the wait: the assertion below says it
                return True
            text = pair.http.get("/metrics").text
            return (metric(text, "scheduler_read_replica_retried_reads_total") or 0) >= 1

        wait_until(retried, timeout=60, interval=0, what="a read cancelled and retried")
    finally:
        stop.set()
        if locker.is_alive():
            locker.join()
        standby.append_conf(["max_standby_streaming_delay = 30s"])
        standby.run("pg_ctl", "reload", "--pgdata", str(standby.data_dir))
    assert set(statuses) == {200}
    # A backend reports its conflicts to the statistics when it next goes idle (PostgreSQL
    # flushes them within its idle interval, 10 s at most).
    wait_until(lambda: conflicts() > before, timeout=30, interval=0.2,
               what="the standby's lock conflicts counted")
    assert '"replica_read_retried"' in pair.c.output()
