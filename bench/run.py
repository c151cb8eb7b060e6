"""The benchmark suite of scheduler-core (``just bench``; ``just bench --quick`` in CI).

    .venv/bin/python bench/run.py [--quick] [--dsn URL] [--workers 2] [--slots 8] ...

Measures, each on a fresh database and with real ``scheduler coordinator`` and
``scheduler worker`` processes (``python -m scheduler_core.command.cli``) on 127.0.0.1:

  e2e      N queued noop jobs worked off by W workers x S slots (and 1 x S): jobs/s from
           the first claim (min job_runs.started_at) to the last Succeeded (max
           jobs.finished_at), both stamped by the database; RSS sampled meanwhile. Also
           with inline handlers (noop_inline, W x 16 and W x 50), and CPU per job by
           process (PostgreSQL backends, coordinator, workers, job processes) as
           bench/fastpath.py measures it, for noop_inline W x 50 and noop W x S
  flow     issue 15's flow control, as e2e's inline W x 50 cell (N queued first, then the
           workers, serving the queue ``flow`` alone): a queue with no limits and jobs
           without a key; a rate-limited queue (rateLimits and keyRateLimits that allow
           the throughput) with jobs over 10,000 concurrency keys; the same keys in a
           queue with keyConcurrencyLimit 2. Ratios to the unlimited cell
  submit   POST /api/jobs one job per request (C concurrent keep-alive clients, and one
           client sequentially), and POST /api/jobs/batch (1000 jobs per request) when
           the coordinator has it; ``hey -c 32`` against a bare-hypercorn app
           (bench/bare_asgi.py, the floor) and against POST /api/jobs, with the
           coordinator's CPU per request
  latency  one idle worker; submit -> claim (jobs.started_at) and -> job body start
           (a UDP probe from the job), p50/p95/p99; idle RSS of worker and coordinator
  scale    claim latency (POST /api/workers/claim, max=1, 100 due jobs) and list latency
           (GET /api/jobs?take=50, ...&status=Succeeded) with 10k and 5M rows in jobs;
           claim p99 while ``scheduler prune`` deletes 1M (quick 100k) finished jobs
  search   GET /api/jobs?where=payload.customerId=42&take=50 over 1M (quick 100k) jobs
           with varied payloads, p50 over 100 requests
  bulk     a bulk retry by filter (POST /api/jobs/bulk) of 100k (quick 20k) DeadLetter
           jobs while a fake worker claims: claim p99 during vs without, and the dry
           run's count against what the retry changed
  peers    procrastinate and pgqueuer through the shared peer harness, on the same server
  pgbench  the PostgreSQL ceiling (the harness's pgbench_limit.py)
  http     the harness's HTTP adapter against a coordinator of ours (quick sizes)

Prints one table (figure, target, PASS/FAIL, peers, ratios, fraction of the ceiling), then
issue 14's and 15's goals as PASS/FAIL with their ratios to figures of the same run, and
writes everything to bench/results/<timestamp>.json. Targets are reported, not asserted:
the exit status is 0 unless one of our own measurements could not be made at all.
Every process it starts is stopped (SIGTERM, then SIGKILL) on the way out, also on
Ctrl-C or an error. See bench/README.md.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib as bl
import fastpath as fp
import httpx
import psycopg
import trio
from benchlib import log

ROOT = bl.ROOT
RESULTS = ROOT / "bench" / "results"
PY = sys.executable
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"
PHASES = ("e2e", "flow", "fanout", "submit", "sql", "latency", "scale", "search", "bulk", "peers",
          "pgbench", "http")
PEERS = ("procrastinate", "pgqueuer")
NOOP = {"type": "noop", "payload": {}}
INLINE_SLOTS = (16, 50)  # the e2e cells with inline handlers (noop_inline), W x these
FLOW_QUEUE = "flow"  # the flow phase's queue (its workers serve it alone: --queues flow)
FLOW_SLOTS = 50  # the flow cells' shape: W workers x 50 slots, noop_inline
# The flow phase's cells (issue 15): name -> (the queue's PATCH /api/queues body, whether
# the jobs carry concurrency keys). Limits that allow the throughput: the cells measure
# what the claim costs, not the limit. The queue's window needs its burst: with the
# default (1, evenly spaced) a window lets one job start at any instant, so every claim
# takes one job, whatever its limit (~65 jobs/s here on 2026-12-04).
FLOW_CELLS: dict[str, tuple[dict[str, Any], bool]] = {
    "unlimited": ({}, False),
    "rate-limited": ({"rateLimits": [{"limit": 1_000_000, "per": "1s", "burst": 1000}],
                      "keyRateLimits": [{"limit": 100, "per": "1s", "burst": 100}]}, True),
    "key-concurrency": ({"keyConcurrencyLimit": 2}, True),
    # Per-key windows only: no queue-wide window, so no queue row lock (decision 0020).
    "key-rate-limited": ({"keyRateLimits": [{"limit": 100, "per": "1s", "burst": 100}]},
                         True),
}

# Log events at warning level that every run has (not worth a note).
EXPECTED_WARNINGS = {"auth_disabled"}

TARGETS = {
    "e2e_jobs_per_s": 8000.0,
    "e2e_vs_pgqueuer": 1.0,
    "e2e_vs_procrastinate": 10.0,
    "submit_single_per_s": 1500.0,
    "submit_batch_per_s": 50000.0,
    "pickup_p50_ms": 3.0,
    "pickup_p99_ms": 10.0,
    "scale_ratio": 2.0,
    "worker_idle_rss_mb": 60.0,
    "flow_rate_limited_per_s": 5000.0,
    "fanout_completion_p99_ms": 50.0,
    "search_p50_ms": 50.0,
    "bulk_claim_p99_ratio": 2.0,
}
FANOUT_CHILDREN = 10_000  # issue 16: one parent, 10,000 children


def _on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


# ======================================================================= our processes


class Cluster:
    """A coordinator (and workers) of ours on one fresh database."""

    def __init__(self, run: Run, purpose: str, *, env: dict[str, str] | None = None,
                 handlers: str | None = None) -> None:
        self.run = run
        self.purpose = purpose
        self.dsn = run.server.fresh_database(purpose)
        self.dbname = self.dsn.rsplit("/", 1)[1].split("?", 1)[0]
        self.env = env or {}
        self.handlers = handlers
        self.port = bl.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.coordinator: bl.Proc | None = None
        self.workers: list[bl.Proc] = []

    def base_env(self) -> dict[str, str]:
        return {"SCHEDULER_LOG_FORMAT": "json", "SCHEDULER_HOST": "127.0.0.1",
                "SCHEDULER_DATA_DIR": str(self.run.tmp / "data"),
                "SCHEDULER_WORKER_DATA_DIR": str(self.run.tmp / "worker-data"),
                "PYTHONPATH": str(ROOT), **self.env}

    def start_coordinator(self) -> bl.Proc:
        argv = [PY, "-m", "scheduler_core.command.cli", "coordinator", "--port", str(self.port)]
        if self.handlers:
            argv += ["--handlers", self.handlers]
        env = {**self.base_env(), "DATABASE_URL": self.dsn, "COORDINATOR_URL": self.url}
        self.coordinator = self.run.procs.start(f"{self.purpose}-coordinator", argv, env=env)
        coordinator = self.coordinator

        def ready() -> bool:
            coordinator.check()
            return httpx.get(self.url + "/health/ready", timeout=2).status_code == 200
        bl.wait_for(ready, timeout=60, what=f"coordinator {self.url}/health/ready")
        return coordinator

    def start_worker(self, slots: int, index: int = 0, queues: str | None = None) -> bl.Proc:
        argv = [PY, "-m", "scheduler_core.command.cli", "worker", "--slots", str(slots),
                "--coordinator-url", self.url, "--worker-id", f"bench-{self.purpose}-{index}"]
        if queues:
            argv += ["--queues", queues]
        if self.handlers:
            argv += ["--handlers", self.handlers]
        env = {**self.base_env(), "DATABASE_URL": "", "COORDINATOR_URL": self.url}
        proc = self.run.procs.start(f"{self.purpose}-worker{index}", argv, env=env)
        self.workers.append(proc)
        return proc

    def wait_workers_active(self, n: int, timeout: float = 60) -> None:
        def active() -> bool:
            for w in self.workers:
                w.check()
            return self.scalar("SELECT count(*) FROM workers WHERE state = 'Active'") >= n
        bl.wait_for(active, timeout=timeout, interval=0.05, what=f"{n} active worker(s)")

    def connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.dsn, autocommit=True, connect_timeout=10)

    def scalar(self, sql: str, params: Any = None) -> Any:
        with self.connect() as conn:
            row = conn.execute(sql.encode(), params).fetchone()
        return row[0] if row else None

    def stop(self) -> None:
        for w in self.workers:
            self.run.procs.stop(w, grace=20)
        self.workers = []
        if self.coordinator is not None:
            self.run.procs.stop(self.coordinator, grace=15)
            self.coordinator = None
        if not self.run.args.keep_dbs:
            try:
                self.run.server.drop(self.dbname)
            except psycopg.Error as exc:
                log(f"could not drop {self.dbname}: {exc}")


def probe_batch(url: str) -> bool:
    """Does the coordinator have POST /api/jobs/batch? An empty batch is enough to tell:
    a missing route answers 404 or 405, a real one 201 or a 400 naming the field."""
    r = httpx.post(url + "/api/jobs/batch", json={"jobs": []}, timeout=10)
    return r.status_code not in (404, 405)


def insert_noop_jobs(cluster: Cluster, n: int, job_type: str = "noop", queue: str = "default",
                     keys: int = 0) -> None:
    """N due noop jobs in one INSERT ... SELECT generate_series (time-ordered ids) into
    ``queue``; with ``keys``, job g carries the concurrency key 'k' || (g % keys)."""
    with cluster.connect() as conn:
        conn.execute(("INSERT INTO jobs (id, type, payload, status, queue, priority, run_at, "
                      "max_attempts, timeout_seconds, concurrency_key) "
                      f"SELECT {bl.sql_uuid7('clock_timestamp()')}, %s, '{{}}'::jsonb, "
                      "'Pending', %s, 0, now(), 3, 300, "
                      "CASE WHEN %s::int > 0 THEN 'k' || (g %% %s::int) END "
                      "FROM generate_series(1, %s::int) AS g").encode(),
                     (job_type, queue, keys, max(keys, 1), n))


def submit_batches(url: str, n: int, size: int = 1000, job_type: str = "noop") -> None:
    job = {"type": job_type, "payload": {}}
    with httpx.Client(base_url=url, timeout=60) as client:
        for start in range(0, n, size):
            k = min(size, n - start)
            r = client.post("/api/jobs/batch", json={"jobs": [job] * k})
            if r.status_code != 201:
                raise RuntimeError(f"POST /api/jobs/batch -> {r.status_code}: {r.text[:300]}")


def parse_hey(text: str) -> dict[str, Any]:
    """Requests/sec, latency percentiles (ms), status codes and errors of hey's summary."""
    out: dict[str, Any] = {"statuses": {}, "errors": []}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.endswith(":") and not raw.startswith(" "):
            section = line[:-1]
            continue
        if line.startswith("Requests/sec:"):
            out["per_s"] = round(float(line.split()[1]), 1)
        elif line.startswith("Total:") and section == "Summary":
            out["seconds"] = float(line.split()[1])
        elif section == "Latency distribution" and "% in " in line:
            pct, _, rest = line.partition("% in ")
            out[f"p{pct.strip()}_ms"] = round(float(rest.split()[0]) * 1000, 3)
        elif section == "Status code distribution" and line.startswith("["):
            code, _, rest = line[1:].partition("]")
            out["statuses"][code] = int(rest.split()[0])
        elif section == "Error distribution":
            out["errors"].append(line[:200])
    return out


def hey_post(hey: str, url: str, body: str, n: int, concurrency: int,
             server_pid: int) -> dict[str, Any]:
    """``hey -n n -c concurrency`` POSTs of ``body`` (after an untimed warm-up of 10 per
    connection); the server process's CPU (utime + stime) per request meanwhile. hey
    sends n // concurrency requests on each connection: n is rounded down to that."""
    n = max(1, n // concurrency) * concurrency
    argv = [hey, "-m", "POST", "-T", "application/json", "-d", body, "-c", str(concurrency)]
    warm = subprocess.run([*argv, "-n", str(concurrency * 10), url], capture_output=True,
                          text=True, timeout=120)
    if warm.returncode != 0:
        raise RuntimeError(f"hey exited {warm.returncode}: {warm.stderr.strip()[:200]}")
    before = fp.cpu_seconds(server_pid)
    r = subprocess.run([*argv, "-n", str(n), url], capture_output=True, text=True, timeout=600)
    after = fp.cpu_seconds(server_pid)
    if r.returncode != 0:
        raise RuntimeError(f"hey exited {r.returncode}: {r.stderr.strip()[:200]}")
    out = parse_hey(r.stdout)
    out["requests"] = n
    if before is not None and after is not None:
        out["server_cpu_ms_per_request"] = round((after - before) * 1000 / n, 3)
    ok = out["statuses"].get("201", 0)
    if ok != n or "per_s" not in out:
        raise RuntimeError(f"hey: {ok} of {n} answered 201 ({out['statuses']}; "
                           f"{out['errors'][:2]})")
    return out


# ======================================================================= phases


class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.stamp = time.strftime("%Y%m%d-%H%M%S")
        self.tmp = Path(tempfile.mkdtemp(prefix=f"scbench-{self.stamp}-"))
        self.procs = bl.Procs(self.tmp / "logs")
        self.server: bl.Server = None  # type: ignore[assignment]
        self.results: dict[str, Any] = {"errors": {}}
        self.batch_endpoint: bool | None = None

    def shut_down(self, *, keep_dbs: bool) -> None:
        """Stop every process started and close the database server (its databases
        kept with ``keep_dbs``); a failure to close is logged, not raised."""
        self.procs.stop_all()
        if self.server is not None:
            if keep_dbs:
                self.server.databases.clear()
            try:
                self.server.close()
            except Exception as exc:
                log(f"closing the database server failed: {exc!r}")

    # -- e2e ---------------------------------------------------------------------------

    def e2e(self, workers: int, slots: int, jobs: int, job_type: str = "noop", *,
            flow: str | None = None, keys: int = 0) -> dict[str, Any]:
        """N jobs queued, then W workers x S slots work them off; jobs/s from the first
        claim to the last Succeeded, both stamped by the database. With ``flow`` (a
        FLOW_CELLS name) the jobs go to FLOW_QUEUE, set first with that cell's limits,
        in one INSERT ... SELECT generate_series (spread over ``keys`` concurrency keys
        when the cell is keyed), and the workers serve that queue alone."""
        label = f"{workers}x{slots}"
        what = f"flow {flow}" if flow else "e2e"
        log(f"{what} {label}: {jobs} {job_type} jobs queued, then {workers} worker(s) x "
            f"{slots} slots")
        purpose = (f"flow{flow.split('-')[0]}" if flow
                   else f"e2e{'i' if job_type != 'noop' else ''}{label}")
        c = Cluster(self, purpose)
        extra: dict[str, Any] = {}
        try:
            coord = c.start_coordinator()
            if flow is not None:
                settings, keyed = FLOW_CELLS[flow]
                keys = keys if keyed else 0
                if settings:
                    r = httpx.patch(f"{c.url}/api/queues/{FLOW_QUEUE}", json=settings, timeout=10)
                    if r.status_code != 200:
                        raise RuntimeError(f"PATCH /api/queues/{FLOW_QUEUE} -> {r.status_code}: "
                                           f"{r.text[:300]}")
                insert_noop_jobs(c, jobs, job_type=job_type, queue=FLOW_QUEUE, keys=keys)
                how = "one SQL INSERT ... SELECT generate_series"
                row = c.scalar("SELECT json_build_array(count(*), coalesce(sum(waiting), 0)) "
                               "FROM job_keys WHERE queue = %s", (FLOW_QUEUE,))
                if keys and row != [min(keys, jobs), jobs]:
                    raise RuntimeError(f"expected {min(keys, jobs)} keys with {jobs} waiting "
                                       f"jobs in job_keys, found [keys, waiting] = {row}")
                extra = {"queue": FLOW_QUEUE, "settings": settings,
                         "keys": min(keys, jobs) if keys else 0}
            else:
                self.batch_endpoint = probe_batch(c.url)
                if self.batch_endpoint:
                    submit_batches(c.url, jobs, job_type=job_type)
                    how = "POST /api/jobs/batch, 1000 per request"
                else:
                    insert_noop_jobs(c, jobs, job_type=job_type)
                    how = "one SQL INSERT ... SELECT generate_series (no batch endpoint)"
            queued = c.scalar("SELECT count(*) FROM jobs WHERE status = 'Pending'")
            if queued != jobs:
                raise RuntimeError(f"expected {jobs} Pending jobs, found {queued}")
            with c.connect() as conn:
                conn.execute("ANALYZE jobs")
                if flow is not None:
                    conn.execute("ANALYZE job_keys")
            coord_idle = bl.memory_snapshot(coord.pid)
            t_spawn = time.time()
            for i in range(workers):
                c.start_worker(slots, i, queues=FLOW_QUEUE if flow is not None else None)
            samples: list[dict[str, Any]] = []
            deadline = time.monotonic() + 60 + jobs / 100
            done = failed = 0
            with c.connect() as conn:
                while True:
                    for p in [coord, *c.workers]:
                        p.check()
                    row = conn.execute(
                        "SELECT count(*) FILTER (WHERE status = 'Succeeded'), "
                        "count(*) FILTER (WHERE status IN ('DeadLetter', 'Cancelled')) "
                        "FROM jobs").fetchone()
                    assert row is not None
                    done, failed = row
                    samples.append({"t": round(time.time() - t_spawn, 2), "done": done,
                                    "coordinator": bl.memory_snapshot(coord.pid),
                                    "workers": [bl.memory_snapshot(w.pid) for w in c.workers]})
                    if done + failed >= jobs:
                        break
                    if time.monotonic() > deadline:
                        raise bl.Timeout(f"{jobs - done - failed} of {jobs} jobs not finished "
                                         f"after {60 + jobs / 100:.0f} s ({done} Succeeded)")
                    time.sleep(0.25)
                t_seen = time.time()
                row = conn.execute("""
                    SELECT extract(epoch FROM (SELECT min(started_at) FROM job_runs)),
                           extract(epoch FROM (SELECT max(finished_at) FROM jobs
                                               WHERE status = 'Succeeded')),
                           extract(epoch FROM (SELECT min(started_at) FROM workers)),
                           (SELECT count(*) FROM job_runs),
                           (SELECT count(*) FROM jobs WHERE attempts > 1)""").fetchone()
                assert row is not None
                if flow is not None:
                    # one claim = one (worker, started_at): the claim stamps its jobs alike
                    claims = conn.execute(
                        "SELECT count(*) FROM (SELECT DISTINCT worker_id, started_at "
                        "FROM job_runs) c").fetchone()
                    assert claims is not None
                    extra["claims"] = claims[0]
                    extra["jobs_per_claim"] = round(row[3] / claims[0], 1) if claims[0] else None
                    extra["job_keys_waiting_after"] = conn.execute(
                        "SELECT coalesce(sum(waiting), 0) FROM job_keys").fetchone()[0]  # type: ignore[index]
            first_claim, last_done, first_worker, runs, retried = (
                float(row[0]), float(row[1]), float(row[2]), row[3], row[4])
            span = last_done - first_claim
            loaded = samples[1:] or samples
            peak_coord = max((s["coordinator"]["rss_mb"] or 0) for s in loaded)
            peak_workers = [max((s["workers"][i]["rss_mb"] or 0) for s in loaded)
                            for i in range(workers)]
            peak_children = [max(s["workers"][i]["children_rss_total_mb"] for s in loaded)
                             for i in range(workers)]
            out = {
                "workers": workers, "slots": slots, "jobs": jobs, "job_type": job_type, **extra,
                "succeeded": done,
                "failed": failed, "runs": runs, "retried_jobs": retried, "queued_with": how,
                "first_claim_to_last_succeeded_s": round(span, 3),
                "jobs_per_s": bl.rate(done, span),
                "worker_registered_to_last_succeeded_s": round(last_done - first_worker, 3),
                "spawn_to_last_succeeded_s": round(last_done - t_spawn, 3),
                "spawn_to_seen_done_s": round(t_seen - t_spawn, 3),
                "memory": {"coordinator_idle": coord_idle,
                           "coordinator_peak_rss_mb": peak_coord,
                           "worker_peak_rss_mb": peak_workers,
                           "worker_children_peak_total_mb": peak_children,
                           "samples": len(samples),
                           "last_sample": samples[-1]},
            }
            per_claim = (f", {extra['claims']} claims, {extra['jobs_per_claim']} jobs per claim"
                         if "claims" in extra else "")
            log(f"{what} {label}: {done}/{jobs} Succeeded in {span:.2f} s = {out['jobs_per_s']} jobs/s "
                f"(runs {runs}, retried {retried}{per_claim}); peak RSS coordinator {peak_coord} MB, "
                f"workers {peak_workers} MB (+ children {peak_children} MB)")
            return out
        finally:
            c.stop()

    def e2e_cpu(self, workers: int, slots: int, jobs: int, job_type: str) -> dict[str, Any]:
        """CPU per job by process, as bench/fastpath.py measures it: W workers x S slots
        started and ready first (their job processes too), then N jobs in one
        ``INSERT ... SELECT generate_series``; the CPU seconds (utime + stime from
        /proc/<pid>/stat) each group of processes spent from the insert to the last
        finished job, divided by N. "pg backends" are the PostgreSQL processes of this
        database (the coordinator's connections, autovacuum), not the measuring one."""
        label = f"{workers}x{slots}"
        log(f"cpu {job_type} {label}: {workers} worker(s) ready, then {jobs} jobs inserted")
        c = Cluster(self, f"cpu{label}")
        try:
            coord = c.start_coordinator()
            for i in range(workers):
                c.start_worker(slots, i)
            c.wait_workers_active(workers)
            if job_type == "noop":  # job processes: one per slot, warm
                bl.wait_for(lambda: all(len(fp.descendants(w.pid)) >= slots for w in c.workers),
                            timeout=120, what=f"{slots} job processes per worker")
            time.sleep(0.5)  # as fastpath: let the workers' first long polls settle
            with c.connect() as conn, psycopg.connect(self.server.admin_dsn, autocommit=True,
                                                      connect_timeout=10) as shared:
                groups = fp.Groups()
                groups.add("coordinator", {coord.pid})
                groups.add("workers", {w.pid for w in c.workers})
                groups.add("job processes", {k for w in c.workers for k in fp.descendants(w.pid)})
                groups.add("pg backends", fp.pg_pids(conn, own_db=True))
                groups.add("pg shared", fp.pg_pids(shared, own_db=False))
                conn.execute(("INSERT INTO jobs (id, type, payload, status, queue, priority, "
                              "run_at, max_attempts, timeout_seconds) "
                              f"SELECT {bl.sql_uuid7('clock_timestamp()')}, %s, '{{}}'::jsonb, "
                              "'Pending', 'default', 0, now(), 3, 300 "
                              "FROM generate_series(1, %s::int)").encode(), (job_type, jobs))
                deadline = time.monotonic() + 60 + jobs / 100
                while True:
                    for p in [coord, *c.workers]:
                        p.check()
                    done = conn.execute("SELECT count(*) FROM jobs WHERE finished_at IS NOT NULL"
                                        ).fetchone()[0]  # type: ignore[index]
                    groups.late("pg backends", fp.pg_pids(conn, own_db=True))
                    if done >= jobs:
                        break
                    if time.monotonic() > deadline:
                        raise bl.Timeout(f"{jobs - done} of {jobs} jobs not finished")
                    time.sleep(0.05)
                spent = groups.spent()
                row = conn.execute(
                    "SELECT extract(epoch FROM max(finished_at) - min(started_at))::float8, "
                    "count(*) FROM job_runs").fetchone()
                assert row is not None
            span, runs = float(row[0]), row[1]
            per_job = {g: round(v * 1000 / jobs, 4) for g, v in spent.items()}
            per_job["total"] = round(sum(per_job.values()), 4)
            out = {"workers": workers, "slots": slots, "jobs": jobs, "job_type": job_type,
                   "runs": runs, "jobs_per_s": bl.rate(jobs, span),
                   "cpu_s": {g: round(v, 3) for g, v in spent.items()},
                   "cpu_ms_per_job": per_job}
            log(f"cpu {job_type} {label}: {out['jobs_per_s']} jobs/s; CPU ms per job {per_job}")
            return out
        finally:
            c.stop()

    # -- submit ------------------------------------------------------------------------

    def submit(self) -> dict[str, Any]:
        a = self.args
        out: dict[str, Any] = {}
        c = Cluster(self, "submit")
        try:
            c.start_coordinator()
            body = json.dumps(NOOP).encode()
            log(f"submit: {a.submit_jobs} x POST /api/jobs, {a.submit_clients} concurrent clients")
            r = trio.run(post_many, c.url, "/api/jobs", a.submit_jobs, a.submit_clients, body, 10)
            out["single"] = {**r, "clients": a.submit_clients}
            n_seq = max(200, a.submit_jobs // 5)
            log(f"submit: {n_seq} x POST /api/jobs, one client, one request at a time")
            r = trio.run(post_many, c.url, "/api/jobs", n_seq, 1, body, 10)
            out["sequential"] = {**r, "clients": 1}
            expected = a.submit_jobs + n_seq + 10 * (a.submit_clients + 1)
            stored = c.scalar("SELECT count(*) FROM jobs")
            out["stored"] = stored
            if stored != expected:
                raise RuntimeError(f"expected {expected} jobs stored, found {stored}")
            log(f"submit: {out['single']['jobs_per_s']}/s with {a.submit_clients} clients, "
                f"{out['sequential']['jobs_per_s']}/s sequential")
            out["hey"] = self.hey_cells(c)
        finally:
            c.stop()
        c = Cluster(self, "batch")
        try:
            c.start_coordinator()
            if not probe_batch(c.url):
                out["batch"] = {"error": "n/a (no batch endpoint)"}
                log("submit batch: n/a (no batch endpoint)")
                return out
            size = a.batch_size
            requests = max(1, a.batch_jobs // size)
            body = json.dumps({"jobs": [NOOP] * size}).encode()
            log(f"submit batch: {requests} x POST /api/jobs/batch with {size} jobs, "
                f"{a.batch_clients} clients")
            r = trio.run(post_many, c.url, "/api/jobs/batch", requests, a.batch_clients, body, 1)
            jobs = requests * size
            r["jobs"] = jobs
            r["jobs_per_s"] = bl.rate(jobs, r["seconds"])
            r["batch_size"] = size
            out["batch"] = {**r, "clients": a.batch_clients}
            stored = c.scalar("SELECT count(*) FROM jobs")
            if stored != jobs + size * a.batch_clients:
                raise RuntimeError(f"expected {jobs + size * a.batch_clients} jobs, found {stored}")
            log(f"submit batch: {r['jobs_per_s']} jobs/s")
        finally:
            c.stop()
        return out

    def hey_cells(self, c: Cluster) -> dict[str, Any]:
        """``hey -c 32`` POSTs against the bare-hypercorn floor (bench/bare_asgi.py) and
        against our POST /api/jobs (the coordinator of ``c``), with the coordinator's CPU
        per request. Never raises: a missing hey or a failed cell is its ``error``."""
        a = self.args
        hey = shutil.which("hey")
        if hey is None:
            why = "n/a: hey not installed (Debian: apt-get install -y hey)"
            log(f"submit hey: {why}")
            return {"error": why}
        body = json.dumps(NOOP)
        out: dict[str, Any] = {"requests": a.hey_requests, "concurrency": a.hey_concurrency}
        port = bl.free_port()
        bare = self.procs.start("bare-asgi", [PY, str(ROOT / "bench" / "bare_asgi.py"),
                                              "--port", str(port)])
        try:
            def up() -> bool:
                bare.check()
                return httpx.post(f"http://127.0.0.1:{port}/", content=b"{}",
                                  timeout=2).status_code == 201
            bl.wait_for(up, timeout=30, what="the bare ASGI app")
            out["floor"] = hey_post(hey, f"http://127.0.0.1:{port}/api/jobs", body,
                                    a.hey_requests, a.hey_concurrency, bare.pid)
        except Exception as exc:
            out["floor"] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        finally:
            self.procs.stop(bare, grace=5)
        try:
            assert c.coordinator is not None
            before = c.scalar("SELECT count(*) FROM jobs")
            r = hey_post(hey, c.url + "/api/jobs", body, a.hey_requests, a.hey_concurrency,
                         c.coordinator.pid)
            r["stored"] = c.scalar("SELECT count(*) FROM jobs") - before
            out["ours"] = r
        except Exception as exc:
            out["ours"] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        f, o = out.get("floor", {}), out.get("ours", {})
        log(f"submit hey -c {a.hey_concurrency}: floor {f.get('per_s')}/s, ours {o.get('per_s')}/s "
            f"(coordinator CPU {o.get('server_cpu_ms_per_request')} ms per request)")
        return out

    # -- latency -----------------------------------------------------------------------

    # -- fan-out (issue 16) -----------------------------------------------------------

    def fanout(self) -> dict[str, Any]:
        """The completion of a parent with 10,000 Waiting children (issue 16: under 50 ms
        p99; the children become Pending in the completion's own transaction). Each
        sample: a parent job in queue ``fanout`` and its children (``POST /api/jobs/batch``,
        1000 a request, ``dependsOn`` the parent's id) in queue ``fanout-children``, which
        no worker serves; a fake worker claims the parent and times ``POST
        /api/workers/complete`` (the HTTP round trip and the parent's transaction: since
        migration 0018 a parent with more than 1,000 children leaves their release to the
        coordinator's releaser, just after its commit), then the time from that answer
        until every child is Pending (polled every 2 ms). Before each sample, the same
        fake worker completes a job without children, timed alike: the row beside it."""
        a = self.args
        t = ScaleTarget(self, 0, queue="fanout", purpose="fanout")
        plain: list[float] = []
        fanned: list[float] = []
        pending: list[float] = []  # from the completion's answer to every child Pending
        try:
            c = t.cluster
            c.start_coordinator()
            t.conn = c.connect()
            t.client = httpx.Client(base_url=c.url, timeout=60)
            t.register()

            def claim() -> dict[str, Any]:
                r = t.client.post("/api/workers/claim", json={
                    "workerId": t.worker_id, "max": 1, "waitSeconds": 5, "queues": ["fanout"]})
                jobs = r.json().get("jobs") if r.status_code == 200 else None
                if not jobs:
                    raise RuntimeError(f"claim -> {r.status_code}: {r.text[:300]}")
                return jobs[0]

            def complete(job: dict[str, Any], into: list[float]) -> None:
                started = time.perf_counter()
                r = t.client.post("/api/workers/complete", json={
                    "workerId": t.worker_id, "completions": [{
                        "runId": job["runId"], "leaseToken": job["leaseToken"],
                        "outcome": "Succeeded"}]})
                into.append(time.perf_counter() - started)
                if r.status_code != 200:
                    raise RuntimeError(f"complete -> {r.status_code}: {r.text[:300]}")

            def submit(body: dict[str, Any]) -> str:
                r = t.client.post("/api/jobs", json=body)
                if r.status_code != 201:
                    raise RuntimeError(f"POST /api/jobs -> {r.status_code}: {r.text[:300]}")
                return str(r.json()["id"])

            log(f"fanout: {a.fanout_samples} parents with {FANOUT_CHILDREN:,} children each")
            for i in range(a.fanout_samples + 1):  # the first is a warm-up
                t.client.post("/api/workers/heartbeat", json={"workerId": t.worker_id})
                submit({**NOOP, "queue": "fanout"})
                complete(claim(), plain if i else [])
                parent = submit({**NOOP, "queue": "fanout"})
                for _ in range(FANOUT_CHILDREN // 1000):
                    r = t.client.post("/api/jobs/batch", json={"jobs": [
                        {**NOOP, "queue": "fanout-children", "dependsOn": [parent]}
                        for _ in range(1000)]})
                    if r.status_code != 201:
                        raise RuntimeError(f"batch -> {r.status_code}: {r.text[:300]}")
                job = claim()
                if job["jobId"] != parent:
                    raise RuntimeError(f"claimed {job['jobId']}, expected the parent {parent}")
                t.conn.execute("CHECKPOINT")  # each sample starts alike
                complete(job, fanned if i else [])
                answered = time.perf_counter()

                def all_pending(parent: str = parent) -> bool:
                    row = t.conn.execute(
                        "SELECT count(*) FILTER (WHERE j.status = 'Pending'), count(*) "
                        "FROM job_deps d JOIN jobs j ON j.id = d.child WHERE d.parent = %s",
                        (parent,)).fetchone()
                    if row is None or row[1] != FANOUT_CHILDREN:
                        raise RuntimeError(f"the parent has {row} children, expected "
                                           f"{FANOUT_CHILDREN}")
                    return bool(row[0] == FANOUT_CHILDREN)
                bl.wait_for(all_pending, timeout=60, interval=0.002,
                            what=f"{FANOUT_CHILDREN} children Pending")
                if i:
                    pending.append(time.perf_counter() - answered)
                # out of the way of the next sample (the children are never claimed)
                t.conn.execute("DELETE FROM jobs WHERE queue = 'fanout-children'")
        finally:
            t.close()
        out = {"children": FANOUT_CHILDREN, "completion": bl.summary_ms(fanned),
               "completion_no_children": bl.summary_ms(plain),
               "children_pending_after": bl.summary_ms(pending)}
        log(f"fanout: completion of a parent with {FANOUT_CHILDREN:,} children p50 "
            f"{out['completion'].get('p50_ms')} p99 {out['completion'].get('p99_ms')} ms; "
            f"without children p50 {out['completion_no_children'].get('p50_ms')} ms; all "
            f"children Pending {out['children_pending_after'].get('p50_ms')} ms (p50) after "
            "the completion's answer")
        return out

    # -- enqueue through SQL (issue 17) -----------------------------------------------

    def sql_enqueue(self) -> dict[str, Any]:
        """Jobs enqueued through the SQL API inside the caller's transactions, with a
        coordinator running (its validator checks them after each commit, as in
        production): ``scheduler.enqueue`` one job a transaction from
        ``--sql-connections`` psycopg connections (8), and ``scheduler.enqueue_many``
        with ``--batch-size`` (1,000) jobs a call from one connection, as pgqueuer's
        batch enqueue. Then every job must be validated (Pending): the figure counts
        the enqueues, the check that they were all validated comes after."""
        a = self.args
        out: dict[str, Any] = {}
        c = Cluster(self, "sql")
        try:
            c.start_coordinator()
            n, conns = a.sql_jobs, a.sql_connections
            per = [n // conns + (1 if i < n % conns else 0) for i in range(conns)]
            log(f"sql: {n} x scheduler.enqueue, one a transaction, {conns} connections")
            ready = threading.Barrier(conns + 1)
            failed: list[BaseException] = []

            def enqueue_one_by_one(count: int) -> None:
                try:
                    with c.connect() as conn:  # autocommit: each call its own transaction
                        conn.execute(b"SELECT 1")
                        ready.wait()
                        for _ in range(count):
                            conn.execute(b"SELECT scheduler.enqueue('noop', '{}'::jsonb)")
                except BaseException as exc:  # reported below, in the caller's thread
                    failed.append(exc)
                    ready.abort()

            threads = [threading.Thread(target=enqueue_one_by_one, args=(k,)) for k in per]
            for t in threads:
                t.start()
            ready.wait()
            started = time.perf_counter()
            for t in threads:
                t.join()
            took = time.perf_counter() - started
            if failed:
                raise failed[0]
            out["single"] = {"jobs": n, "connections": conns, "seconds": round(took, 3),
                             "jobs_per_s": bl.rate(n, took)}
            m, size = a.sql_batch_jobs, a.batch_size
            log(f"sql: {m} x scheduler.enqueue_many, {size} a call, one connection")
            batch = json.dumps([NOOP] * size)
            with c.connect() as conn:
                conn.execute(b"SELECT scheduler.enqueue_many(%s::jsonb)", (batch,))  # warm-up
                started = time.perf_counter()
                for _ in range(m // size):
                    conn.execute(b"SELECT scheduler.enqueue_many(%s::jsonb)", (batch,))
                took = time.perf_counter() - started
            out["many"] = {"jobs": m // size * size, "batch_size": size,
                           "seconds": round(took, 3),
                           "jobs_per_s": bl.rate(m // size * size, took)}
            expected = n + (m // size + 1) * size

            def validated() -> bool:
                if c.coordinator is not None:
                    c.coordinator.check()
                return c.scalar("SELECT count(*) FROM jobs WHERE validation IS NULL "
                                "AND status = 'Pending'") >= expected
            bl.wait_for(validated, timeout=120, interval=0.1,
                        what=f"{expected} SQL-enqueued jobs validated")
            log(f"sql: {out['single']['jobs_per_s']}/s one a transaction ({conns} "
                f"connections), {out['many']['jobs_per_s']}/s by enqueue_many({size}); "
                f"all {expected} validated")
        finally:
            c.stop()
        return out

    def latency(self) -> dict[str, Any]:
        a = self.args
        c = Cluster(self, "latency", handlers="bench.probe_handlers")
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        try:
            coord = c.start_coordinator()
            worker = c.start_worker(a.slots)
            c.wait_workers_active(1)
            time.sleep(2.0)  # settle: children started, first heartbeat sent
            idle = {"coordinator": bl.memory_snapshot(coord.pid),
                    "worker": bl.memory_snapshot(worker.pid)}
            log(f"idle RSS: coordinator {idle['coordinator']['rss_mb']} MB, worker "
                f"{idle['worker']['rss_mb']} MB + {idle['worker']['children']} job processes "
                f"{idle['worker']['children_rss_mb']} MB")
            samples: list[tuple[str, float, float, float]] = []
            lost = 0
            with httpx.Client(base_url=c.url, timeout=10) as client:
                def one(seq: int) -> tuple[str, float, float, float] | None:
                    body = {"type": "bench_probe", "payload": {"port": port, "seq": seq}}
                    t0 = time.time()
                    r = client.post("/api/jobs", json=body)
                    t1 = time.time()
                    if r.status_code != 201:
                        raise RuntimeError(f"POST /api/jobs -> {r.status_code}: {r.text[:300]}")
                    job_id = r.json()["id"]
                    deadline = time.monotonic() + 10
                    while time.monotonic() < deadline:
                        sock.settimeout(max(0.01, deadline - time.monotonic()))
                        try:
                            data = sock.recv(256).decode().split()
                        except TimeoutError:
                            break
                        if int(data[0]) == seq:
                            return job_id, t0, t1, float(data[1])
                    worker.check()
                    return None

                for seq in range(-10, 0):  # warm-up, not counted
                    one(seq)
                time.sleep(0.5)
                log(f"latency: {a.latency_samples} jobs, one at a time, one idle worker")
                for seq in range(a.latency_samples):
                    got = one(seq)
                    if got is None:
                        lost += 1
                    else:
                        samples.append(got)
                    time.sleep(a.latency_gap)
            ids = [s[0] for s in samples]
            bl.wait_for(lambda: c.scalar("SELECT count(*) FROM jobs WHERE id = ANY(%s::uuid[]) "
                                         "AND status = 'Succeeded'", (ids,)) == len(ids),
                        timeout=30, what="latency jobs Succeeded")
            with c.connect() as conn:
                rows = conn.execute("""
                    SELECT j.id::text, extract(epoch FROM j.created_at),
                           extract(epoch FROM j.started_at), extract(epoch FROM r.started_at),
                           extract(epoch FROM j.finished_at)
                    FROM jobs j JOIN job_runs r ON r.job_id = j.id AND r.attempt = 1
                    WHERE j.id = ANY(%s::uuid[])""", (ids,)).fetchall()
            db = {r[0]: [float(x) for x in r[1:]] for r in rows}
            client_started, db_side, body_start, post_call, to_done = [], [], [], [], []
            for job_id, t0, t1, t_body in samples:
                created, started, run_started, finished = db[job_id]
                client_started.append(started - t0)
                db_side.append(run_started - created)
                body_start.append(t_body - t0)
                post_call.append(t1 - t0)
                to_done.append(finished - t0)
            out = {
                "samples": len(samples), "lost": lost, "worker_slots": a.slots,
                "submit_to_started_at": bl.summary_ms(client_started),
                "db_created_at_to_run_started_at": bl.summary_ms(db_side),
                "submit_to_body_start": bl.summary_ms(body_start),
                "post_call": bl.summary_ms(post_call),
                "submit_to_finished_at": bl.summary_ms(to_done),
                "idle_memory": idle,
            }
            s = out["submit_to_started_at"]
            log(f"latency: submit -> startedAt p50 {s['p50_ms']} p95 {s['p95_ms']} p99 "
                f"{s['p99_ms']} ms; -> body p50 {out['submit_to_body_start']['p50_ms']} ms")
            return out
        finally:
            sock.close()
            c.stop()

    # -- scale -------------------------------------------------------------------------

    def scale(self) -> dict[str, Any]:
        """Claim and list latency with few and with many rows in jobs. Both databases are
        filled first and served by one coordinator each; then the samples alternate
        between the two, so a change of machine load hits both sizes alike."""
        a = self.args
        targets: list[ScaleTarget] = []
        try:
            for rows in a.scale_rows:
                targets.append(ScaleTarget(self, rows))
            for t in targets:
                t.prepare()
            for _ in range(20):  # warm-up, not counted
                for t in targets:
                    t.claim_once(None)
                    t.list_once({"take": 50}, None)
                    t.list_once({"status": "Succeeded", "take": 50}, None)
            log(f"scale: {a.scale_samples} claims, lists and Succeeded lists on each size, "
                "alternating")
            for i in range(a.scale_samples):
                for t in targets:
                    if i % 50 == 0:  # stay Active however slow the run is
                        t.client.post("/api/workers/heartbeat", json={"workerId": t.worker_id})
                    t.claim_once(t.claims)
            for _ in range(a.scale_samples):
                for t in targets:
                    t.list_once({"take": 50}, t.lists)
            for _ in range(a.scale_samples):
                for t in targets:
                    t.list_once({"status": "Succeeded", "take": 50}, t.lists_ok)
            out: dict[str, Any] = {"sizes": {str(t.rows): t.summary() for t in targets}}
        finally:
            for t in targets:
                t.close()
        small, big = out["sizes"][str(a.scale_rows[0])], out["sizes"][str(a.scale_rows[-1])]
        out["ratios"] = {k: round(big[k]["p50_ms"] / small[k]["p50_ms"], 2)
                         for k in ("claim", "list", "list_succeeded")}
        out["small"], out["big"] = a.scale_rows[0], a.scale_rows[-1]
        for t in out["sizes"].values():
            log(f"scale {t['rows']:,} rows: claim p50 {t['claim']['p50_ms']} ms, list p50 "
                f"{t['list']['p50_ms']} ms, list Succeeded p50 {t['list_succeeded']['p50_ms']} ms")
        log(f"scale: {a.scale_rows[-1]}/{a.scale_rows[0]} median ratios {out['ratios']}")
        return out

    def prune(self) -> dict[str, Any]:
        """Claim latency while a big prune runs (issue 14, goal 6): ``--prune-rows``
        finished jobs (spread over 6 days, as in scale) and 2 workers x S slots working off
        noop jobs (kept queued: topped up whenever fewer than 20,000 are Pending). A fake
        worker claims from its own queue (100 due jobs there, max=1, then completes the
        job and queues another, untimed): ``--prune-samples`` claims without pruning,
        then the same while ``scheduler prune`` deletes every history row (finished over
        an hour ago) and until it exits. Target: p99 while pruning <= 2x p99 without."""
        a = self.args
        t = ScaleTarget(self, a.prune_rows, queue="probe", purpose="prune")
        c = t.cluster
        feed = ("INSERT INTO jobs (id, type, payload, status, queue, priority, run_at, "
                f"max_attempts, timeout_seconds) SELECT {bl.sql_uuid7('clock_timestamp()')}, "
                "'noop', '{}'::jsonb, 'Pending', 'default', 0, now(), 3, 300 "
                "FROM generate_series(1, %s::int)").encode()
        try:
            t.prepare()
            t.conn.execute(feed, (50_000,))
            for i in range(a.workers):
                c.start_worker(a.slots, i)
            c.wait_workers_active(a.workers)
            bl.wait_for(lambda: c.scalar("SELECT count(*) FROM jobs WHERE status = 'Succeeded' "
                                         "AND queue = 'default'") > 0,
                        timeout=120, what="the workers' first Succeeded job")
            for _ in range(20):  # warm-up, not counted
                t.claim_once(None)

            def sample(into: list[float], until: Callable[[], bool]) -> int:
                n = 0
                while not until():
                    if n % 50 == 0:
                        for w in c.workers:
                            w.check()
                        t.client.post("/api/workers/heartbeat", json={"workerId": t.worker_id})
                        pending = c.scalar("SELECT count(*) FROM jobs WHERE status = 'Pending' "
                                           "AND queue = 'default'")
                        if pending < 20_000:
                            t.conn.execute(feed, (50_000,))
                    t.claim_once(into)
                    n += 1
                return n

            quiet: list[float] = []
            log(f"prune: {a.prune_samples} claims while {a.workers} workers run noop jobs")
            sample(quiet, lambda: len(quiet) >= a.prune_samples)
            done_before = c.scalar("SELECT count(*) FROM jobs WHERE queue = 'default' "
                                   "AND status = 'Succeeded'")
            log(f"prune: scheduler prune of {a.prune_rows:,} finished jobs, claims meanwhile")
            env = {**c.base_env(), "DATABASE_URL": c.dsn}
            began = time.monotonic()
            pruner = self.procs.start("prune", [PY, "-m", "scheduler_core.command.cli", "prune",
                                                "--succeeded-days", "0.04", "--deadletter-days",
                                                "0.04"], env=env)
            busy: list[float] = []
            deadline = began + 1800
            try:
                sample(busy, lambda: pruner.popen.poll() is not None or time.monotonic() > deadline)
            finally:
                self.procs.stop(pruner, grace=10)
            prune_s = time.monotonic() - began
            if pruner.popen.returncode != 0:
                raise RuntimeError(f"scheduler prune exited {pruner.popen.returncode}: "
                                   f"{pruner.tail(400)}")
            left = c.scalar("SELECT count(*) FROM jobs WHERE finished_at < now() - interval '1 hour'")
            worked = c.scalar("SELECT count(*) FROM jobs WHERE queue = 'default' "
                              "AND status = 'Succeeded'") - done_before
            q, b = bl.summary_ms(quiet), bl.summary_ms(busy)
            out = {"rows": a.prune_rows, "prune_s": round(prune_s, 1), "history_left": left,
                   "noop_jobs_done_while_pruning": worked, "workers": a.workers,
                   "slots": a.slots, "claim_without": q, "claim_while_pruning": b,
                   "p99_ratio": round(b["p99_ms"] / q["p99_ms"], 2) if b.get("n") else None}
            log(f"prune: {prune_s:.1f} s, {left} history rows left; claim p99 {q['p99_ms']} ms "
                f"without, {b.get('p99_ms')} ms while pruning ({b['n']} claims)")
            return out
        finally:
            t.close()

    # -- search and bulk actions (issue 18) -------------------------------------------

    def search(self) -> dict[str, Any]:
        """``--search-jobs`` finished jobs whose payloads vary (``customerId`` = g % 10,000,
        a region, an amount), inserted by one ``INSERT ... SELECT generate_series``, then
        ``GET /api/jobs?where=payload.customerId=42&take=50`` ``--search-samples`` times
        after 10 untimed: the payload equality the GIN index serves. Goal: p50 < 50 ms."""
        a = self.args
        c = Cluster(self, "search", env={"SCHEDULER_RETENTION_SUCCEEDED_DAYS": "0"})
        try:
            c.start_coordinator()
            t0 = time.monotonic()
            with c.connect() as conn:
                conn.execute("SET statement_timeout = '1800s'")
                conn.execute((
                    "INSERT INTO jobs (id, type, payload, status, queue, priority, run_at, "
                    "attempts, max_attempts, timeout_seconds, finished_at) "
                    f"SELECT {bl.sql_uuid7('clock_timestamp()')}, 'noop', "
                    "jsonb_build_object('customerId', g %% 10000, 'region', "
                    "(ARRAY['eu-1', 'eu-2', 'us-1', 'ap-1'])[1 + g %% 4], 'amount', g %% 997), "
                    "'Succeeded', 'default', 0, now(), 1, 3, 300, now() "
                    "FROM generate_series(1, %s::int) g").encode(), (a.search_jobs,))
                conn.execute("VACUUM ANALYZE jobs")
                size = conn.execute("SELECT pg_size_pretty(pg_total_relation_size('jobs'))"
                                    ).fetchone()
            fill_s = time.monotonic() - t0
            log(f"search: {a.search_jobs:,} jobs in {fill_s:.1f} s (jobs with indexes: "
                f"{size[0] if size else '?'}); {a.search_samples} searches")
            want = min(50, a.search_jobs // 10000)
            params = {"where": "payload.customerId=42", "take": 50}
            times: list[float] = []
            with httpx.Client(base_url=c.url, timeout=30) as client:
                for i in range(10 + a.search_samples):
                    t = time.perf_counter()
                    r = client.get("/api/jobs", params=params)
                    took = time.perf_counter() - t
                    items = r.json().get("items") if r.status_code == 200 else None
                    if items is None or len(items) != want or any(
                            j["payload"]["customerId"] != 42 for j in items):
                        raise RuntimeError(f"GET /api/jobs {params} -> {r.status_code}: "
                                           f"{r.text[:300]}")
                    if i >= 10:
                        times.append(took)
            out = {"jobs": a.search_jobs, "fill_s": round(fill_s, 1), "matches_per_page": want,
                   "jobs_table_size": size[0] if size else None,
                   "search": bl.summary_ms(times)}
            log(f"search: p50 {out['search']['p50_ms']} ms, p99 {out['search']['p99_ms']} ms")
            return out
        finally:
            c.stop()

    def bulk(self) -> dict[str, Any]:
        """A bulk retry by filter while claims go on: ``--bulk-jobs`` DeadLetter jobs (queue
        ``bulk``, one INSERT), a fake worker claiming from its own queue as in the prune
        cell (100 due jobs, max=1, complete and queue another, untimed); 300 claims
        without, then a dry run (``dryRun``), then ``POST /api/jobs/bulk`` retry
        ``{queue: bulk, status: DeadLetter}`` (following ``next``) in a thread while the
        claims go on until it answers. Goals: claim p99 during <= 2x without; the dry
        run's count == the jobs the retry changed (and those now Pending)."""
        a = self.args
        t = ScaleTarget(self, 0, queue="probe", purpose="bulk")
        c = t.cluster
        body: dict[str, Any] = {"action": "retry",
                                "filter": {"queue": "bulk", "status": "DeadLetter"}}
        try:
            t.prepare()
            t.conn.execute((
                "INSERT INTO jobs (id, type, payload, status, queue, priority, run_at, attempts, "
                "max_attempts, timeout_seconds, finished_at, last_error) "
                f"SELECT {bl.sql_uuid7('clock_timestamp()')}, 'noop', "
                "jsonb_build_object('customerId', g %% 10000), 'DeadLetter', 'bulk', 0, now(), "
                "3, 3, 300, now(), 'RuntimeError: bench' FROM generate_series(1, %s::int) g"
            ).encode(), (a.bulk_jobs,))
            t.conn.execute("VACUUM ANALYZE jobs")
            for _ in range(20):  # warm-up, not counted
                t.claim_once(None)
            quiet: list[float] = []
            log(f"bulk: {a.prune_samples} claims without, then a bulk retry of "
                f"{a.bulk_jobs:,} DeadLetter jobs, claims meanwhile")
            for i in range(a.prune_samples):
                if i % 50 == 0:
                    t.client.post("/api/workers/heartbeat", json={"workerId": t.worker_id})
                t.claim_once(quiet)
            with httpx.Client(base_url=c.url, timeout=1800) as http:
                dry = http.post("/api/jobs/bulk", json={**body, "dryRun": True})
                if dry.status_code != 200:
                    raise RuntimeError(f"dry run -> {dry.status_code}: {dry.text[:300]}")
                planned = dry.json()["count"]
                answers: list[dict[str, Any]] = []
                failure: list[str] = []

                def retry_all() -> None:
                    after = None
                    while True:
                        r = http.post("/api/jobs/bulk",
                                      json={**body, **({"after": after} if after else {})})
                        if r.status_code != 200:
                            failure.append(f"bulk retry -> {r.status_code}: {r.text[:300]}")
                            return
                        answers.append(r.json())
                        after = r.json()["next"]
                        if not after:
                            return

                began = time.monotonic()
                worker = threading.Thread(target=retry_all, name="bulk-retry", daemon=True)
                worker.start()
                busy: list[float] = []
                n = 0
                while worker.is_alive():
                    if n % 50 == 0:
                        t.client.post("/api/workers/heartbeat", json={"workerId": t.worker_id})
                    t.claim_once(busy)
                    n += 1
                worker.join()
                bulk_s = time.monotonic() - began
            if failure:
                raise RuntimeError(failure[0])
            changed = sum(r["count"] for r in answers)
            pending = c.scalar("SELECT count(*) FROM jobs WHERE queue = 'bulk' "
                               "AND status = 'Pending'")
            q, b = bl.summary_ms(quiet), bl.summary_ms(busy)
            out = {"jobs": a.bulk_jobs, "dry_run_count": planned, "changed": changed,
                   "pending_after": pending, "requests": len(answers),
                   "batches": sum(r["batches"] for r in answers), "bulk_s": round(bulk_s, 2),
                   "claim_without": q, "claim_during": b,
                   "p99_ratio": round(b["p99_ms"] / q["p99_ms"], 2) if b.get("n") else None}
            log(f"bulk: retried {changed:,} (dry run {planned:,}) in {bulk_s:.2f} s; claim "
                f"p99 {q['p99_ms']} ms without, {b.get('p99_ms')} ms during ({b['n']} claims)")
            return out
        finally:
            t.close()

    # -- the peer harness --------------------------------------------------------------

    def harness(self) -> Path:
        """/tmp/peer-bench: a writable copy of the shared harness (venvs kept)."""
        src, dst = Path(self.args.peer_bench_src), Path(self.args.peer_bench_dir)
        if not (src / "bench_common.py").is_file():
            raise RuntimeError(f"no peer harness in {src}")
        if getattr(self, "_harness_ready", False):
            return dst
        dst.mkdir(parents=True, exist_ok=True)
        for item in src.iterdir():
            if item.name.startswith(".venv") or item.name == "results":
                continue
            target = dst / item.name
            if item.is_dir():
                shutil.copytree(item, target, dirs_exist_ok=True)
            else:
                shutil.copyfile(item, target)
                shutil.copymode(item, target)
        (dst / "results").mkdir(exist_ok=True)
        subprocess.run(["chmod", "-R", "u+w", str(dst)], check=False, timeout=30)
        self._harness_ready = True
        return dst

    def setup_peers(self, systems: list[str]) -> dict[str, str | None]:
        """Build the peers' venvs (setup.sh skips those already built). -> system: why not"""
        hb = self.harness()
        missing = [s for s in systems if not (hb / f".venv-{s}" / "bin" / "python").exists()]
        why: dict[str, str | None] = {}
        if missing or self.args.peer_setup:
            log(f"peers: building venvs for {' '.join(systems)} (setup.sh; needs PyPI)")
            try:
                r = subprocess.run(["bash", str(hb / "setup.sh"), *systems], cwd=hb,
                                   capture_output=True, text=True, timeout=900)
                err = (r.stderr or r.stdout).strip().splitlines()[-3:] if r.returncode else []
            except subprocess.TimeoutExpired:
                err = ["setup.sh timed out after 900 s"]
            for s in systems:
                ok = (hb / f".venv-{s}" / "bin" / "python").exists()
                why[s] = None if ok else ("setup failed: " + " | ".join(err) if err
                                          else "setup failed (no venv)")
        else:
            why = {s: None for s in systems}
        return why

    def run_harness_script(self, name: str, argv: list[str], out: Path, timeout: float,
                           cwd: Path | None = None,
                           env: dict[str, str] | None = None) -> dict[str, Any]:
        """Run one harness script as a process of ours (its own session, so its workers are
        stopped with it), bounded by ``timeout``; return its result JSON."""
        out.unlink(missing_ok=True)
        proc = self.procs.start(name, argv, cwd=cwd or self.harness(), env=env)
        try:
            proc.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise bl.Timeout(f"{name} still running after {timeout:.0f} s; log {proc.log_path}"
                             ) from None
        finally:
            self.procs.stop(proc, grace=10)
        if proc.popen.returncode != 0 or not out.is_file():
            raise RuntimeError(f"{name} exited {proc.popen.returncode}: "
                               f"{proc.tail(600).strip()}")
        doc: dict[str, Any] = json.loads(out.read_text())
        return doc

    def peer_e2e_runs(self, system: str) -> tuple[list[list[int]], list[str]]:
        a = self.args
        runs = [[a.workers, a.slots], [a.workers, 50]] if a.quick else [
            [1, a.slots], [a.workers, a.slots], [1, 50], [a.workers, 50]]
        settings = self.results.get("server", {})
        budget = int(settings.get("max_connections", "100")) - int(
            settings.get("connections_in_use_at_start", "10")) - 15
        keep, skipped = [], []
        for p, c in runs:
            need = p * min(c + 2, 52) + 6 if system == "procrastinate" else p + 2
            if need > budget:
                skipped.append(f"{p}x{c}: needs ~{need} connections, server has ~{budget} free")
            elif [p, c] not in keep:
                keep.append([p, c])
        return keep, skipped

    def peers(self) -> dict[str, Any]:
        a = self.args
        out: dict[str, Any] = {}
        why = self.setup_peers([*a.peers, "http"] if "http" in a.only else list(a.peers))
        self.results["peer_setup"] = why
        hb = self.harness()
        for system in a.peers:
            if why.get(system):
                out[system] = {"error": why[system]}
                log(f"peer {system}: {why[system]}")
                continue
            runs, skipped = self.peer_e2e_runs(system)
            path = hb / "results" / f"scbench-{self.stamp}-{system}.json"
            argv = [str(hb / f".venv-{system}" / "bin" / "python"), f"peers/{system}_bench.py",
                    "--dsn", self.server.dsn, "--only", "enqueue,e2e,latency",
                    "--set", f"e2e_jobs={a.jobs}", "--set", f"e2e_runs={json.dumps(runs)}",
                    "--set", f"enqueue_batch_size={a.batch_size}", "--out", str(path)]
            if a.quick:  # --quick's 1,000 would be one batch: too few to time (goal 4)
                argv += ["--quick", "--set", "enqueue_jobs=5000"]
            log(f"peer {system}: {'--quick, ' if a.quick else ''}e2e {a.jobs} jobs, runs {runs}")
            try:
                doc = self.run_harness_script(f"peer-{system}", argv, path,
                                              timeout=600 if a.quick else 1800)
                doc["skipped_e2e_runs"] = skipped
                out[system] = doc
                log(f"peer {system}: e2e {[(e['processes'], e['concurrency'], e['jobs_per_s']) for e in doc.get('e2e', [])]}, "
                    f"latency p50 {doc.get('latency', {}).get('p50_ms')} ms, errors {doc.get('errors')}")
            except (RuntimeError, OSError, ValueError) as exc:
                out[system] = {"error": str(exc)[:800]}
                log(f"peer {system} failed: {exc}")
            finally:
                if not a.keep_dbs:
                    try:
                        self.server.drop(f"bench_{system}")
                    except psycopg.Error:
                        pass
        return out

    def pgbench(self) -> dict[str, Any]:
        a = self.args
        hb = self.harness()
        pg_bin = os.environ.get("BENCH_PG_BIN", "/usr/lib/postgresql/15/bin")
        if not (Path(pg_bin) / "pgbench").exists() or not (Path(pg_bin) / "psql").exists():
            found = shutil.which("pgbench")
            if found is None or not (Path(found).resolve().parent / "psql").exists():
                return {"error": f"no pgbench/psql in {pg_bin} (nor on PATH)"}
            pg_bin = str(Path(found).resolve().parent)
        dsn = self.server.fresh_database("pgbench")
        path = hb / "results" / f"scbench-{self.stamp}-pgbench_limit.json"
        argv = [PY, "pgbench_limit.py", "--dsn", dsn, "--duration", str(a.pgbench_duration),
                "--clients", a.pgbench_clients, "--scenarios", a.pgbench_scenarios,
                "--out", str(path)]
        log(f"pgbench ceiling: {a.pgbench_scenarios} x clients {a.pgbench_clients}, "
            f"{a.pgbench_duration} s per cell")
        try:
            doc = self.run_harness_script("pgbench", argv, path, timeout=1800,
                                          env={"BENCH_PG_BIN": pg_bin})
        finally:
            if not a.keep_dbs:
                self.server.drop(dsn.rsplit("/", 1)[1].split("?", 1)[0])
        best: dict[str, float] = {}
        for r in doc.get("runs", []):
            best[r["scenario"]] = max(best.get(r["scenario"], 0.0), r["jobs_per_s"])
        doc["best"] = best
        log(f"pgbench ceiling (best jobs/s): {best}")
        return doc

    def http_adapter(self) -> dict[str, Any]:
        a = self.args
        why = (self.results.get("peer_setup") or {}).get("http")
        if why is None and not (self.harness() / ".venv-http" / "bin" / "python").exists():
            why = self.setup_peers(["http"]).get("http")
        if why:
            return {"error": why}
        hb = self.harness()
        c = Cluster(self, "http")
        try:
            c.start_coordinator()
            path = hb / "results" / f"scbench-{self.stamp}-http.json"
            worker_cmd = f"{PY} -m scheduler_core.command.cli worker --slots {{concurrency}} --coordinator-url {c.url}"
            runs = [[a.workers, a.slots]] if a.quick else [[1, a.slots], [a.workers, a.slots]]
            # --list-take 500: GET /api/jobs takes at most 500 (the adapter's default 1000
            # is refused, and it would fall back to polling every job by id). --stale-polls
            # 20 (1 s): the default 5 (250 ms) sweeps all pending ids one by one while the
            # workers start; more than 20 leaves jobs hidden from the newest-first list
            # (over 500 finished between two polls) unseen for too long.
            argv = [str(hb / ".venv-http" / "bin" / "python"), str(hb / "peers" / "http_api_bench.py"),
                    c.url, "--quick", "--name", "scheduler-core", "--worker-cmd", worker_cmd,
                    "--only", "enqueue,e2e,latency", "--list-take", "500", "--stale-polls", "20",
                    "--set", f"e2e_runs={json.dumps(runs)}", "--out", str(path)]
            log(f"http adapter (--quick) against {c.url}, workers: {worker_cmd}")
            env = {**c.base_env(), "DATABASE_URL": "", "COORDINATOR_URL": c.url}
            began = time.time()
            try:
                doc = self.run_harness_script("http-adapter", argv, path, timeout=600, cwd=ROOT,
                                              env=env)
            finally:  # the adapter's workers log to /tmp/bench-http-<phase>-<i>.log
                for log_path in Path("/tmp").glob("bench-http-*.log"):
                    if log_path.stat().st_mtime >= began:
                        issues = bl.log_issues(log_path)
                        if issues:
                            self.procs.log_issues[f"http-adapter worker {log_path.stem}"] = issues
            log(f"http adapter: enqueue {doc.get('enqueue', {}).get('single', {}).get('jobs_per_s')}/s, "
                f"e2e {[(e['processes'], e['concurrency'], e['jobs_per_s']) for e in doc.get('e2e', [])]}, "
                f"errors {doc.get('errors')}")
            return doc
        finally:
            c.stop()


class ScaleTarget:
    """One database with ``rows`` finished jobs (and 100 due ones), its coordinator, a
    registered fake worker and the latencies measured against it."""

    def __init__(self, run: Run, rows: int, queue: str = "default",
                 purpose: str = "scale") -> None:
        self.rows = rows
        self.queue = queue
        self.cluster = Cluster(run, f"{purpose}{rows}", env={
            "SCHEDULER_RETENTION_SUCCEEDED_DAYS": "0", "SCHEDULER_RETENTION_DEADLETTER_DAYS": "0"})
        self.client: httpx.Client = None  # type: ignore[assignment]
        self.conn: psycopg.Connection[Any] = None  # type: ignore[assignment]
        self.worker_id = f"bench-fake-{uuid.uuid4().hex[:6]}"
        self.claims: list[float] = []
        self.lists: list[float] = []
        self.lists_ok: list[float] = []
        self.info: dict[str, Any] = {}
        self.insert_due = (
            "INSERT INTO jobs (id, type, payload, status, queue, priority, run_at, max_attempts, "
            f"timeout_seconds) SELECT {bl.sql_uuid7('clock_timestamp()')}, 'noop', '{{}}'::jsonb, "
            f"'Pending', '{queue}', 0, now(), 3, 300 FROM generate_series(1, %s::int)").encode()

    def prepare(self) -> None:
        c = self.cluster
        c.start_coordinator()
        t0 = time.time()
        bulk_history(c, self.rows)
        fill_s = time.time() - t0
        self.conn = c.connect()
        self.conn.execute(self.insert_due, (100,))
        self.conn.execute("VACUUM ANALYZE jobs")
        self.conn.execute("VACUUM ANALYZE run_history")
        total = self.conn.execute("SELECT count(*) FROM jobs").fetchone()
        size = self.conn.execute("SELECT pg_size_pretty(pg_total_relation_size('jobs'))").fetchone()
        self.info = {"rows": total[0] if total else None, "jobs_table_size": size[0] if size else None,
                     "fill_s": round(fill_s, 1)}
        log(f"scale {self.rows:,}: filled in {fill_s:.1f} s (jobs with indexes: {self.info['jobs_table_size']})")
        self.client = httpx.Client(base_url=c.url, timeout=10)

    def register(self) -> None:
        r = self.client.post("/api/workers/register", json={
            "workerId": self.worker_id, "hostname": "bench", "pid": os.getpid(), "capacity": 1})
        if r.status_code != 201:
            raise RuntimeError(f"register -> {r.status_code}: {r.text[:300]}")
        self.client.headers["X-Worker-Secret"] = r.json()["workerSecret"]
        self.registered = True

    def claim_once(self, into: list[float] | None) -> None:
        if not getattr(self, "registered", False):
            self.register()
        t = time.perf_counter()
        r = self.client.post("/api/workers/claim", json={"workerId": self.worker_id, "max": 1,
                                                          "waitSeconds": 0,
                                                          "queues": [self.queue]})
        dt = time.perf_counter() - t
        jobs = r.json().get("jobs") if r.status_code == 200 else None
        if not jobs:
            raise RuntimeError(f"claim -> {r.status_code}: {r.text[:300]}")
        if into is not None:
            into.append(dt)
        # not timed: finish the job and queue another, so that 100 stay due
        done = self.client.post("/api/workers/complete", json={
            "workerId": self.worker_id, "completions": [{
                "runId": jobs[0]["runId"], "leaseToken": jobs[0]["leaseToken"],
                "outcome": "Succeeded"}]})
        if done.status_code != 200:
            raise RuntimeError(f"complete -> {done.status_code}: {done.text[:300]}")
        self.conn.execute(self.insert_due, (1,))

    def list_once(self, params: dict[str, Any], into: list[float] | None) -> None:
        t = time.perf_counter()
        r = self.client.get("/api/jobs", params=params)
        dt = time.perf_counter() - t
        if r.status_code != 200 or len(r.json()["items"]) != params["take"]:
            raise RuntimeError(f"GET /api/jobs {params} -> {r.status_code}: {r.text[:200]}")
        if into is not None:
            into.append(dt)

    def summary(self) -> dict[str, Any]:
        return {**self.info, "claim": bl.summary_ms(self.claims), "list": bl.summary_ms(self.lists),
                "list_succeeded": bl.summary_ms(self.lists_ok)}

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.conn is not None:
            self.conn.close()
        self.cluster.stop()


def bulk_history(c: Cluster, rows: int, chunk: int = 200_000) -> None:
    """``rows`` finished jobs spread over the last 6 days (ids time-ordered like the real
    ones), about 1 % DeadLetter and 1 % Cancelled, each with its run, in a few large
    INSERT ... SELECT generate_series statements."""
    sql = f"""
        WITH j AS (
            INSERT INTO jobs (id, type, payload, status, queue, priority, run_at, attempts,
                              max_attempts, timeout_seconds, created_at, updated_at,
                              started_at, finished_at, last_error)
            SELECT {bl.sql_uuid7('ts')},
                   (ARRAY['noop', 'http_get', 'cpu', 'sleep'])[1 + i %% 4], '{{}}'::jsonb,
                   CASE WHEN i %% 97 = 0 THEN 'DeadLetter' WHEN i %% 89 = 0 THEN 'Cancelled'
                        ELSE 'Succeeded' END,
                   CASE WHEN i %% 10 = 0 THEN 'batch' ELSE 'default' END, 0, ts, 1, 3, 300,
                   ts, ts + interval '20 ms', ts + interval '2 ms', ts + interval '20 ms',
                   CASE WHEN i %% 97 = 0 THEN 'RuntimeError: bench history' END
            FROM (SELECT i, now() - interval '6 days'
                            + (i::float8 / %(rows)s::float8) * interval '6 days' - interval '1 hour' AS ts
                  FROM generate_series(%(lo)s::int, %(hi)s::int) AS i) s
            RETURNING id, status, started_at, finished_at, last_error)
        INSERT INTO run_history (id, job_id, attempt, worker_id, lease_token, lease_expires_at,
                              started_at, finished_at, outcome, error)
        SELECT gen_random_uuid(), id, 1, 'bench-history', gen_random_uuid(),
               started_at + interval '30 s', started_at, finished_at,
               CASE status WHEN 'Succeeded' THEN 'Succeeded' WHEN 'Cancelled' THEN 'Cancelled'
                           ELSE 'Failed' END, last_error
        FROM j"""
    with c.connect() as conn:
        conn.execute("SET statement_timeout = '900s'")
        for lo in range(1, rows + 1, chunk):
            conn.execute(sql.encode(), {"rows": rows, "lo": lo, "hi": min(rows, lo + chunk - 1)})


async def post_many(url: str, path: str, requests: int, clients: int, body: bytes,
                    warmup: int) -> dict[str, Any]:
    """``requests`` POSTs of ``body`` over ``clients`` keep-alive connections (one
    httpx.AsyncClient each, one request in flight each), after ``warmup`` untimed
    requests per client. Every answer must be 201."""
    latencies: list[float] = []
    errors: list[str] = []
    issued = 0
    headers = {"content-type": "application/json"}

    async def lane(client: httpx.AsyncClient, count: int | None) -> None:
        nonlocal issued
        sent = 0
        while (count is None and issued < requests) or (count is not None and sent < count):
            if count is None:
                issued += 1
            sent += 1
            t = time.perf_counter()
            r = await client.post(path, content=body, headers=headers)
            if count is None:
                latencies.append(time.perf_counter() - t)
            if r.status_code != 201:
                errors.append(f"{r.status_code}: {r.text[:200]}")
                if len(errors) > 10:
                    raise RuntimeError(f"POST {path}: too many errors, e.g. {errors[0]}")

    pool = [httpx.AsyncClient(base_url=url, timeout=60,
                              limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))
            for _ in range(clients)]
    try:
        with trio.fail_after(900):
            async with trio.open_nursery() as nursery:
                for client in pool:
                    nursery.start_soon(lane, client, warmup)
            started = time.perf_counter()
            async with trio.open_nursery() as nursery:
                for client in pool:
                    nursery.start_soon(lane, client, None)
            elapsed = time.perf_counter() - started
    finally:
        for client in pool:
            await client.aclose()
    if errors:
        raise RuntimeError(f"POST {path}: {len(errors)} errors, e.g. {errors[0]}")
    return {"jobs": requests, "seconds": round(elapsed, 3), "jobs_per_s": bl.rate(requests, elapsed),
            "request": bl.summary_ms(latencies)}


# ======================================================================= the table


def fmt(v: Any, nd: int = 0) -> str:
    if v is None:
        return "-"
    if isinstance(v, (int, float)):
        return f"{v:,.{nd}f}"
    return str(v)


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


def peer_e2e_best(doc: dict[str, Any] | None) -> tuple[float | None, str]:
    if not doc or not doc.get("e2e"):
        return None, ""
    best = max((e for e in doc["e2e"] if e.get("jobs_per_s")), key=lambda e: e["jobs_per_s"],
               default=None)
    if best is None:
        return None, ""
    return best["jobs_per_s"], f"{best['processes']}x{best['concurrency']}"


def peer_e2e_at(doc: dict[str, Any] | None, p: int, c: int) -> float | None:
    for e in (doc or {}).get("e2e", []):
        if e["processes"] == p and e["concurrency"] == c:
            return e.get("jobs_per_s")
    return None


def build_rows(res: dict[str, Any], args: argparse.Namespace) -> tuple[list[list[str]], list[str]]:
    """The table: [figure, ours, target, result, pgqueuer, procrastinate, ours/pgqueuer,
    ours/procrastinate, ceiling, of ceiling]; and notes."""
    W, S = args.workers, args.slots
    peers = res.get("peers") or {}
    pgq = peers.get("pgqueuer") if not (peers.get("pgqueuer") or {}).get("error") else None
    pro = peers.get("procrastinate") if not (peers.get("procrastinate") or {}).get("error") else None
    pgb = res.get("pgbench") or {}
    best = pgb.get("best") or {}
    rows: list[list[str]] = []
    notes: list[str] = []

    def ratio(ours: float | None, theirs: float | None) -> str:
        if not ours or not theirs:
            return "-"
        return f"{ours / theirs:.2f}x"

    def ceiling(ours: float | None, *scenarios: str) -> tuple[str, str]:
        vals = [(best[s], s) for s in scenarios if best.get(s)]
        if not vals:
            return "-", "-"
        v, s = max(vals)
        return f"{fmt(v)} ({s})", (f"{ours / v:.0%}" if ours else "-")

    def add(fig: str, ours: str, target: str = "", result: str = "", pq: str = "-",
            pr: str = "-", rq: str = "-", rr: str = "-", ceil: str = "-", frac: str = "-") -> None:
        rows.append([fig, ours, target, result, pq, pr, rq, rr, ceil, frac])

    def err_of(name: str) -> str | None:
        for key, e in (res.get("errors") or {}).items():
            if key.split()[0] == name:
                return f"error: {e.splitlines()[0][:60]}"
        return None

    # e2e
    e2e = res.get("e2e") or {}
    main = e2e.get(f"{W}x{S}")
    ours = main.get("jobs_per_s") if main else None
    pq_best, pq_cell = peer_e2e_best(pgq)
    pr_best, pr_cell = peer_e2e_best(pro)
    ce, cf = ceiling(ours, "cycle_batch", "drain_batch")
    add(f"e2e noop jobs/s, {W}x{S} ({args.jobs:,} queued)",
        fmt(ours) if main else (err_of("e2e") or "not run"),
        ">= 8,000", verdict(None if ours is None else ours >= TARGETS["e2e_jobs_per_s"]),
        f"{fmt(pq_best)} ({pq_cell})" if pq_best else peer_err(peers, "pgqueuer"),
        f"{fmt(pr_best)} ({pr_cell})" if pr_best else peer_err(peers, "procrastinate"),
        ratio(ours, pq_best), ratio(ours, pr_best), ce, cf)
    add("  e2e vs pgqueuer's best (same run)", fmt(ours), ">= 1x pgqueuer",
        verdict(None if not (ours and pq_best) else ours >= pq_best * TARGETS["e2e_vs_pgqueuer"]))
    add("  e2e vs procrastinate's best (same run)", fmt(ours), ">= 10x procrastinate",
        verdict(None if not (ours and pr_best)
                else ours >= pr_best * TARGETS["e2e_vs_procrastinate"]))
    one = e2e.get(f"1x{S}")
    if one or W != 1:
        o1 = one.get("jobs_per_s") if one else None
        pq1, pr1 = peer_e2e_at(pgq, 1, S), peer_e2e_at(pro, 1, S)
        ce, cf = ceiling(o1, "cycle_batch", "drain_batch")
        add(f"e2e noop jobs/s, 1x{S}", fmt(o1) if one else (err_of("e2e") or "not run"), "", "",
            fmt(pq1), fmt(pr1), ratio(o1, pq1), ratio(o1, pr1), ce, cf)
        pqm, prm = peer_e2e_at(pgq, W, S), peer_e2e_at(pro, W, S)
        if W != 1 and (pqm or prm) and main:
            add(f"  peers at the same shape, {W}x{S}", fmt(ours), "", "", fmt(pqm), fmt(prm),
                ratio(ours, pqm), ratio(ours, prm))

    for slots in INLINE_SLOTS:
        cell = e2e.get(f"inline {W}x{slots}")
        v = cell.get("jobs_per_s") if cell else None
        pq1, pr1 = peer_e2e_at(pgq, W, slots), peer_e2e_at(pro, W, slots)
        ce, cf = ceiling(v, "cycle_batch", "drain_batch")
        queued = f", {cell['jobs']:,} queued" if cell else ""
        add(f"e2e noop_inline jobs/s (inline handler), {W}x{slots}{queued}",
            fmt(v) if cell else (err_of("e2e") or "not run"), "", "", fmt(pq1), fmt(pr1),
            ratio(v, pq1), ratio(v, pr1), ce, cf)
    # flow control (issue 15)
    flow = res.get("flow") or {}
    if flow or "flow" in getattr(args, "only", []) or err_of("flow"):
        base = (flow.get("unlimited") or {}).get("jobs_per_s")
        for name, fig in flow_figures(args):
            cell = flow.get(name) or {}
            v = cell.get("jobs_per_s")
            ce, cf = ceiling(v, "cycle_batch", "drain_batch")
            if not cell:
                shown = err_of_flow(res, name) or "not run"
            elif name == "unlimited" or not base:
                shown = fmt(v)
            else:
                shown = f"{fmt(v)} ({ratio(v, base)} unlimited)"
            bound, passed = "", ""
            if name in ("rate-limited", "key-rate-limited"):
                bound = f">= {TARGETS['flow_rate_limited_per_s']:,.0f}"
                passed = verdict(None if v is None else v >= TARGETS["flow_rate_limited_per_s"])
            add(fig, shown, bound, passed, ceil=ce, frac=cf)
            if cell.get("claims"):
                add(f"  {name}: claims, jobs per claim", f"{cell['claims']:,}, "
                    f"{fmt(cell.get('jobs_per_claim'), 1)}")
        inline = (e2e.get(f"inline {W}x{FLOW_SLOTS}") or {}).get("jobs_per_s")
        if base and inline:
            add(f"  flow unlimited vs e2e noop_inline {W}x{FLOW_SLOTS} (same run)",
                f"{fmt(base)} vs {fmt(inline)} ({ratio(base, inline)})")
    for key, cell in (res.get("cpu") or {}).items():
        m = cell.get("cpu_ms_per_job") or {}
        add(f"CPU ms/job {key} ({fmt(cell.get('jobs_per_s'))}/s): PG / coord / workers / "
            "job procs / total",
            " / ".join(fmt(m.get(g), 3) for g in ("pg backends", "coordinator", "workers",
                                                    "job processes", "total")))

    # submit
    sub = res.get("submit") or {}
    single = sub.get("single")
    o = single.get("jobs_per_s") if single else None
    ce, cf = ceiling(o, "enqueue_single")
    add(f"submit jobs/s, 1 per request, {args.submit_clients} clients",
        fmt(o) if single else (err_of("submit") or "not run"), ">= 1,500",
        verdict(None if o is None else o >= TARGETS["submit_single_per_s"]),
        ceil=ce, frac=cf)
    seq = sub.get("sequential")
    o = seq.get("jobs_per_s") if seq else None
    pq_e = ((pgq or {}).get("enqueue") or {}).get("single", {}).get("jobs_per_s")
    pr_e = ((pro or {}).get("enqueue") or {}).get("single", {}).get("jobs_per_s")
    add("submit jobs/s, 1 per request, 1 client", fmt(o) if seq else "-", "", "",
        fmt(pq_e) if pq_e else peer_err(peers, "pgqueuer"),
        fmt(pr_e) if pr_e else peer_err(peers, "procrastinate"), ratio(o, pq_e), ratio(o, pr_e))
    batch = sub.get("batch") or {}
    o = batch.get("jobs_per_s")
    pq_b = ((pgq or {}).get("enqueue") or {}).get("batch", {}).get("jobs_per_s")
    pr_b = ((pro or {}).get("enqueue") or {}).get("batch", {}).get("jobs_per_s")
    ce, cf = ceiling(o, "enqueue_batch")
    add(f"submit jobs/s, batched ({args.batch_size}/request)",
        fmt(o) if o else (batch.get("error") or err_of("submit") or "not run"), ">= 50,000",
        verdict(None if o is None else o >= TARGETS["submit_batch_per_s"]),
        fmt(pq_b), fmt(pr_b), ratio(o, pq_b), ratio(o, pr_b), ce, cf)

    hey = sub.get("hey") or {}
    if hey.get("error"):
        add(f"submit, hey -c {args.hey_concurrency}", hey["error"])
    elif hey:
        fl, ou = hey.get("floor") or {}, hey.get("ours") or {}
        add(f"submit, hey -c {hey['concurrency']}: bare hypercorn floor, requests/s",
            fl.get("error", "")[:70] or fmt(fl.get("per_s")))
        add(f"submit, hey -c {hey['concurrency']}: POST /api/jobs jobs/s (p50 / p99 ms)",
            ou.get("error", "")[:70] or f"{fmt(ou.get('per_s'))} ({fmt(ou.get('p50_ms'), 2)} / "
                                         f"{fmt(ou.get('p99_ms'), 2)})")
        if ou.get("server_cpu_ms_per_request") is not None:
            add("  coordinator CPU ms per single submit (hey)", fmt(ou["server_cpu_ms_per_request"], 3))

    # latency
    lat = res.get("latency") or {}
    s = lat.get("submit_to_started_at") or {}
    for p, target in (("p50", "pickup_p50_ms"), ("p95", None), ("p99", "pickup_p99_ms")):
        v = s.get(f"{p}_ms")
        add(f"pickup {p} ms, submit -> startedAt (claim)",
            fmt(v, 2) if v is not None else (err_of("latency") or "not run"),
            f"<= {TARGETS[target]:g}" if target else "",
            "" if not target else verdict(None if v is None else v <= TARGETS[target]))
    d = lat.get("db_created_at_to_run_started_at") or {}
    if d:
        add("  same, database clock: createdAt -> run startedAt p50/p99",
            f"{fmt(d.get('p50_ms'), 2)} / {fmt(d.get('p99_ms'), 2)}")
    b = lat.get("submit_to_body_start") or {}
    if b:
        pql = (pgq or {}).get("latency") or {}
        prl = (pro or {}).get("latency") or {}
        for p in ("p50", "p99"):
            add(f"submit -> job body start {p} ms (peers' latency)", fmt(b.get(f"{p}_ms"), 2), "",
                "", fmt(pql.get(f"{p}_ms"), 2), fmt(prl.get(f"{p}_ms"), 2),
                ratio(b.get(f"{p}_ms"), pql.get(f"{p}_ms")),
                ratio(b.get(f"{p}_ms"), prl.get(f"{p}_ms")))

    # scale
    sc = res.get("scale") or {}
    if sc.get("sizes"):
        small, big = str(sc["small"]), str(sc["big"])
        for key, name in (("claim", "claim (max=1, 100 due)"), ("list", "list take=50"),
                          ("list_succeeded", "list status=Succeeded take=50")):
            a_, b_ = sc["sizes"][small][key]["p50_ms"], sc["sizes"][big][key]["p50_ms"]
            r = sc["ratios"][key]
            add(f"{name} median ms, {human(int(small))} -> {human(int(big))} rows",
                f"{a_:.2f} -> {b_:.2f} ({r:.2f}x)", "<= 2x",
                verdict(r <= TARGETS["scale_ratio"]))
    else:
        add("claim/list latency at scale", err_of("scale") or "not run", "<= 2x", "n/a")
    pr_ = res.get("prune") or {}
    if pr_.get("claim_without"):
        add(f"claim p99 ms, without -> while pruning {human(pr_['rows'])} finished jobs "
            f"({pr_['workers']} workers busy)",
            f"{pr_['claim_without']['p99_ms']:.2f} -> {fmt(pr_['claim_while_pruning'].get('p99_ms'), 2)}"
            f" ({fmt(pr_.get('p99_ratio'), 2)}x; prune {pr_['prune_s']} s)")

    # memory
    idle = lat.get("idle_memory") or {}
    main_mem = (main or {}).get("memory") or {}
    ci = (idle.get("coordinator") or {}).get("rss_mb")
    cp = main_mem.get("coordinator_peak_rss_mb")
    add("coordinator RSS MB, idle / under load (peak)", f"{fmt(ci, 1)} / {fmt(cp, 1)}")
    wi = idle.get("worker") or {}
    wp = main_mem.get("worker_peak_rss_mb") or []
    add("worker RSS MB (its own process), idle", fmt(wi.get("rss_mb"), 1), "<= 60",
        verdict(None if wi.get("rss_mb") is None
                else wi["rss_mb"] <= TARGETS["worker_idle_rss_mb"]))
    if wp:
        add("worker RSS MB under load (peak, per worker)", " / ".join(fmt(x, 1) for x in wp))
    if wi:
        kids = wi.get("children_rss_mb") or []
        add(f"  its {len(kids)} job processes, idle MB (each)",
            f"{fmt(wi.get('children_rss_total_mb'), 1)} ({fmt(min(kids), 1) if kids else '-'}"
            f"-{fmt(max(kids), 1) if kids else '-'})")
    kp = main_mem.get("worker_children_peak_total_mb") or []
    if kp:
        add("  job processes under load (peak total, per worker)", " / ".join(fmt(x, 1) for x in kp))

    # the HTTP adapter
    h = res.get("http") or {}
    if h and not h.get("error"):
        enq = (h.get("enqueue") or {}).get("single", {}).get("jobs_per_s")
        add("HTTP adapter (--quick): submit 1 client jobs/s", fmt(enq), "", "",
            fmt(pq_e), fmt(pr_e), ratio(enq, pq_e), ratio(enq, pr_e))
        for e in h.get("e2e", []):
            p, c = e["processes"], e["concurrency"]
            pq1, pr1 = peer_e2e_at(pgq, p, c), peer_e2e_at(pro, p, c)
            add(f"HTTP adapter (--quick): e2e {p}x{c} jobs/s ({e['jobs']:,}, incl. start-up)",
                fmt(e.get("jobs_per_s")), "", "", fmt(pq1), fmt(pr1), ratio(e.get("jobs_per_s"), pq1),
                ratio(e.get("jobs_per_s"), pr1))
        hl = (h.get("latency") or {}).get("server_started_at") or {}
        if hl:
            pql = (pgq or {}).get("latency") or {}
            prl = (pro or {}).get("latency") or {}
            add("HTTP adapter (--quick): submit -> startedAt p50 ms", fmt(hl.get("p50_ms"), 2),
                "", "", fmt(pql.get("p50_ms"), 2), fmt(prl.get("p50_ms"), 2),
                ratio(hl.get("p50_ms"), pql.get("p50_ms")), ratio(hl.get("p50_ms"), prl.get("p50_ms")))
        if h.get("errors"):
            notes.append(f"HTTP adapter errors: {h['errors']}")
    elif h.get("error"):
        add("HTTP adapter (--quick)", h["error"][:70])

    for system in PEERS:
        doc = peers.get(system)
        if doc and doc.get("error"):
            notes.append(f"{system}: {doc['error'][:300]}")
        elif doc:
            if doc.get("skipped_e2e_runs"):
                notes.append(f"{system}: skipped e2e runs: {'; '.join(doc['skipped_e2e_runs'])}")
            if doc.get("errors"):
                notes.append(f"{system} errors: {doc['errors']}")
    if pgb.get("error"):
        notes.append(f"pgbench ceiling: {pgb['error']}")
    found = []
    for proc, issues in (res.get("log_issues") or {}).items():
        counts = ", ".join(f"{k} x{v}" for k, v in issues["counts"].items()
                           if k not in EXPECTED_WARNINGS)
        if counts:
            found.append(f"{proc}: {counts}")
    if found:
        notes.append("warnings/errors in the logs (log_issues in the JSON): " + "; ".join(found))
    for name, e in (res.get("errors") or {}).items():
        notes.append(f"phase {name} failed: {e.splitlines()[0][:300]}")
    return rows, notes


def flow_figures(args: argparse.Namespace) -> list[tuple[str, str]]:
    """The flow cells and their rows' names, in the order they run."""
    W = args.workers
    jobs = getattr(args, "flow_jobs", None)
    keys = getattr(args, "flow_keys", None) or 10000
    keys_used = human(min(keys, jobs) if jobs else keys)
    queued = f", {jobs:,} queued" if jobs else ""
    shape = f"noop_inline {W}x{FLOW_SLOTS}{queued}"
    return [
        ("unlimited", f"flow: unlimited queue (no key), jobs/s, {shape}"),
        ("rate-limited", f"flow: rate-limited queue, {keys_used} keys (rateLimits 1M/1s burst "
                         f"1k, keyRateLimits 100/1s burst 100), jobs/s, {shape}"),
        ("key-concurrency", f"flow: key-concurrency-limited queue, {keys_used} keys "
                            f"(keyConcurrencyLimit 2), jobs/s, {shape}"),
        ("key-rate-limited", f"flow: per-key rate-limited queue, {keys_used} keys "
                             f"(keyRateLimits 100/1s burst 100, no queue window), jobs/s, "
                             f"{shape}"),
    ]


def err_of_flow(res: dict[str, Any], name: str) -> str | None:
    e = (res.get("errors") or {}).get(f"flow {name}")
    return f"error: {e.splitlines()[0][:60]}" if e else None


GOAL_HEADERS = ["goal", "measured", "compared with (same run)", "ratio", "target",
                "result"]


def build_goals(res: dict[str, Any], args: argparse.Namespace) -> list[list[str]]:
    """Issue 14's goals: [goal, measured, what it is compared with, ratio, target,
    PASS/FAIL/n/a]. Every ratio is to a figure of the same run, or to the goal's
    absolute bound when it has one."""
    W, S = args.workers, args.slots
    peers = res.get("peers") or {}
    pgq = peers.get("pgqueuer") if not (peers.get("pgqueuer") or {}).get("error") else None
    pro = peers.get("procrastinate") if not (peers.get("procrastinate") or {}).get("error") else None
    rows: list[list[str]] = []

    def goal(name: str, ours: float | None, basis: float | None, basis_text: str, op: str,
             bound: float, unit: str = "", nd: int = 0, why: str = "",
             target: str = "") -> None:
        """ours/basis compared with ``bound`` by ``op`` (<= >= <); ``target`` the bound
        as the goal states it (default: the ratio)."""
        target = target or f"{op} {bound:g}x"
        if ours is None or not basis:
            rows.append([name, fmt(ours, nd) + unit if ours is not None else (why or "not run"),
                         basis_text if basis else (why or "-"), "-", target, "n/a"])
            return
        r = ours / basis
        ok = r <= bound if op == "<=" else (r >= bound if op == ">=" else r < bound)
        rows.append([name, fmt(ours, nd) + unit, basis_text, f"{r:.2f}x", target, verdict(ok)])

    def absolute(name: str, ours: float | None, op: str, limit: float, unit: str,
                 nd: int = 0, why: str = "") -> None:
        """A goal with an absolute bound: the ratio is ours / the bound."""
        goal(name, ours, limit, "the bound", op, 1.0, unit, nd, why,
             target=f"{op} {limit:,g}{unit}")

    # 1. PostgreSQL CPU per job
    cpu = (res.get("cpu") or {}).get(f"noop_inline {W}x50") or {}
    pg = (cpu.get("cpu_ms_per_job") or {}).get("pg backends")
    absolute(f"1. PostgreSQL CPU per noop job (noop_inline {W}x50, fastpath method)", pg, "<=",
             0.06, " ms", 3)
    # 2. e2e
    e2e = res.get("e2e") or {}

    def best(keys: list[str]) -> tuple[float | None, str]:
        got = [((e2e.get(k) or {}).get("jobs_per_s"), k) for k in keys]
        got = [(v, k) for v, k in got if v]
        return max(got) if got else (None, "")
    inline, inline_cell = best([f"inline {W}x{x}" for x in INLINE_SLOTS])
    procs, procs_cell = best([f"{W}x{S}", f"1x{S}"])
    pq_best, pq_cell = peer_e2e_best(pgq)
    pr_best, pr_cell = peer_e2e_best(pro)
    why_pq = "n/a (pgqueuer not run)" if pq_best is None else ""
    why_pr = "n/a (procrastinate not run)" if pr_best is None else ""
    goal(f"2. e2e inline handlers, best cell ({inline_cell.removeprefix('inline ') or '-'}) "
         "vs pgqueuer's best", inline, pq_best, f"{fmt(pq_best)} ({pq_cell})", ">=", 1.2,
         why=why_pq)
    goal(f"2. e2e job processes, best cell ({procs_cell or '-'}) vs pgqueuer's best", procs,
         pq_best, f"{fmt(pq_best)} ({pq_cell})", ">=", 0.8, why=why_pq)
    goal("2. e2e inline handlers, best cell vs procrastinate's best", inline, pr_best,
         f"{fmt(pr_best)} ({pr_cell})", ">=", 10, why=why_pr)
    goal("2. e2e job processes, best cell vs procrastinate's best", procs, pr_best,
         f"{fmt(pr_best)} ({pr_cell})", ">=", 10, why=why_pr)
    # 3. single submits
    sub = res.get("submit") or {}
    hey = sub.get("hey") or {}
    fl, ou = hey.get("floor") or {}, hey.get("ours") or {}
    why = hey.get("error") or fl.get("error") or ou.get("error") or ""
    c = hey.get("concurrency", args.hey_concurrency)
    goal(f"3. single submits, hey -c {c}: POST /api/jobs vs bare hypercorn", ou.get("per_s"),
         fl.get("per_s"), f"{fmt(fl.get('per_s'))}/s (bench/bare_asgi.py)", ">=", 0.7, "/s",
         why=why[:60])
    absolute(f"3. coordinator CPU per single submit (hey -c {c})",
             ou.get("server_cpu_ms_per_request"), "<=", 0.5, " ms", 3,
             why=(hey.get("error") or ou.get("error") or "")[:60])
    seq = (sub.get("sequential") or {}).get("jobs_per_s")
    absolute("3. single submits, 1 client, 1 request at a time", seq, ">=", 1000.0, "/s")
    # 4. batched submits
    batch = (sub.get("batch") or {}).get("jobs_per_s")
    pq_b = ((pgq or {}).get("enqueue") or {}).get("batch", {}).get("jobs_per_s")
    goal(f"4. batched submits ({args.batch_size}/request) vs pgqueuer's batch enqueue", batch,
         pq_b, f"{fmt(pq_b)}/s", ">=", 1.2, "/s", why=why_pq)
    # 5. latency
    lat = res.get("latency") or {}
    st = lat.get("submit_to_started_at") or {}
    absolute("5. pickup p50, submit -> claim", st.get("p50_ms"), "<=", 2.5, " ms", 2)
    absolute("5. pickup p99, submit -> claim", st.get("p99_ms"), "<=", 10.0, " ms", 2)
    body = (lat.get("submit_to_body_start") or {}).get("p50_ms")
    pq_l = ((pgq or {}).get("latency") or {}).get("p50_ms")
    goal("5. submit -> job body start p50 vs pgqueuer's", body, pq_l, f"{fmt(pq_l, 2)} ms", "<",
         1.0, " ms", 2, why=why_pq)
    # 6. scale
    sc = res.get("scale") or {}
    if sc.get("sizes"):
        small, big = int(sc["small"]), int(sc["big"])
        sizes = f"{human(small)} -> {human(big)}"
        if (small, big) != (10_000, 5_000_000):
            sizes += ", goal at 10k -> 5M"
        for key, name in (("claim", "claim"), ("list", "list take=50"),
                          ("list_succeeded", "list status=Succeeded take=50")):
            a_ = sc["sizes"][str(small)][key]["p50_ms"]
            b_ = sc["sizes"][str(big)][key]["p50_ms"]
            goal(f"6. {name} median at {human(big)} rows vs {human(small)} ({sizes})", b_, a_,
                 f"{a_:.2f} ms at {human(small)}", "<=", 1.5, " ms", 2)
    else:
        goal("6. claim and list latency at 5M rows vs 10k", None, None, "", "<=", 1.5,
             why="error (see notes)" if "scale" in (res.get("errors") or {}) else "not run")
    pr_ = res.get("prune") or {}
    if pr_.get("claim_without"):
        at = "" if pr_["rows"] == 1_000_000 else ", goal at 1M"
        goal(f"6. claim p99 while pruning {human(pr_['rows'])} finished jobs ({pr_['workers']} "
             f"workers running noop jobs{at}) vs without", pr_["claim_while_pruning"].get("p99_ms"),
             pr_["claim_without"]["p99_ms"], f"{pr_['claim_without']['p99_ms']:.2f} ms without",
             "<=", 2.0, " ms", 2)
    else:
        goal("6. claim p99 while pruning 1M finished jobs vs without", None, None, "", "<=", 2.0,
             why=pr_.get("skipped") or ("error (see notes)" if "prune" in (res.get("errors") or {})
                                        else "not run"))
    # issue 17: enqueue through SQL
    sq = res.get("sql") or {}
    if sq or "sql" in getattr(args, "only", []) or "sql" in (res.get("errors") or {}):
        why = "error (see notes)" if "sql" in (res.get("errors") or {}) else ""
        pq_e = (pgq or {}).get("enqueue") or {}
        one = (sq.get("single") or {})
        pq_s = (pq_e.get("single") or {}).get("jobs_per_s")
        goal(f"SQL: scheduler.enqueue, one job a transaction, {one.get('connections', 8)} "
             "connections, vs pgqueuer's enqueue one by one", one.get("jobs_per_s"), pq_s,
             f"{fmt(pq_s)}/s" if pq_s else "", ">=", 1.0, "/s",
             why=why or ("" if pq_s else peer_err(peers, "pgqueuer")))
        many = (sq.get("many") or {})
        pq_b = (pq_e.get("batch") or {}).get("jobs_per_s")
        goal(f"SQL: scheduler.enqueue_many ({many.get('batch_size', args.batch_size)} a call) "
             "vs pgqueuer's batch enqueue", many.get("jobs_per_s"), pq_b,
             f"{fmt(pq_b)}/s" if pq_b else "", ">=", 1.0, "/s",
             why=why or ("" if pq_b else peer_err(peers, "pgqueuer")))
    # issue 16: fan-out
    fo = res.get("fanout") or {}
    if fo or "fanout" in getattr(args, "only", []) or "fanout" in (res.get("errors") or {}):
        done = fo.get("completion") or {}
        alone = (fo.get("completion_no_children") or {}).get("p50_ms")
        after = (fo.get("children_pending_after") or {}).get("p50_ms")
        absolute(f"fan-out: completion of a parent with {FANOUT_CHILDREN:,} children, p99 of "
                 f"{done.get('n', 0)} (without children p50 {fmt(alone, 2)} ms; every child "
                 f"Pending {fmt(after, 1)} ms p50 after it)",
                 done.get("p99_ms"), "<=", TARGETS["fanout_completion_p99_ms"], " ms", 1,
                 why="error (see notes)" if "fanout" in (res.get("errors") or {}) else "")
    # issue 18: search and bulk actions
    errors = res.get("errors") or {}
    se = res.get("search") or {}
    if se or "search" in getattr(args, "only", []) or "search" in errors:
        jobs = se.get("jobs") or getattr(args, "search_jobs", 1_000_000)
        at = "" if jobs == 1_000_000 else ", goal at 1M"
        absolute(f"search: GET /api/jobs?where=payload.customerId=42&take=50 over "
                 f"{human(jobs)} jobs{at}, p50 of {(se.get('search') or {}).get('n', 0)}",
                 (se.get("search") or {}).get("p50_ms"), "<", TARGETS["search_p50_ms"], " ms", 2,
                 why="error (see notes)" if "search" in errors else "")
    bu = res.get("bulk") or {}
    if bu or "bulk" in getattr(args, "only", []) or "bulk" in errors:
        why = "error (see notes)" if "bulk" in errors else ""
        jobs = bu.get("jobs") or getattr(args, "bulk_jobs", 100_000)
        at = "" if jobs == 100_000 else ", goal at 100k"
        during, without = bu.get("claim_during") or {}, bu.get("claim_without") or {}
        goal(f"bulk: claim p99 during a bulk retry of {human(jobs)} DeadLetter jobs "
             f"({fmt(bu.get('bulk_s'), 1)} s, {during.get('n', 0)} claims{at}) vs without",
             during.get("p99_ms"), without.get("p99_ms"),
             f"{fmt(without.get('p99_ms'), 2)} ms without", "<=",
             TARGETS["bulk_claim_p99_ratio"], " ms", 2, why=why)
        if bu:
            same = bu["dry_run_count"] == bu["changed"] == bu["pending_after"]
            rows.append(["bulk: the dry run's count == the jobs the retry changed "
                         "(== Pending after)", f"{bu['changed']:,} changed",
                         f"{bu['dry_run_count']:,} dry run, {bu['pending_after']:,} Pending",
                         "-", "equal", verdict(same)])
        else:
            rows.append(["bulk: the dry run's count == the jobs the retry changed",
                         why or "not run", "-", "-", "equal", "n/a"])
    # issue 15: flow control
    flow = res.get("flow") or {}
    if flow or "flow" in getattr(args, "only", []) or any(
            k.split()[0] == "flow" for k in res.get("errors") or {}):
        rl = flow.get("rate-limited") or {}
        keys = rl.get("keys") or getattr(args, "flow_keys", None) or 10000
        absolute(f"flow: rate-limited queue, {human(keys)} keys (limits that allow it), jobs/s",
                 rl.get("jobs_per_s"), ">=", TARGETS["flow_rate_limited_per_s"], "/s",
                 why=err_of_flow(res, "rate-limited") or "")
        krl = flow.get("key-rate-limited") or {}
        if krl or err_of_flow(res, "key-rate-limited"):
            absolute(f"flow: per-key rate-limited queue, {human(keys)} keys (no queue window), "
                     "jobs/s", krl.get("jobs_per_s"), ">=", TARGETS["flow_rate_limited_per_s"],
                     "/s", why=err_of_flow(res, "key-rate-limited") or "")
        un = (flow.get("unlimited") or {}).get("jobs_per_s")
        cell = (res.get("e2e") or {}).get(f"inline {W}x{FLOW_SLOTS}") or {}
        inline = cell.get("jobs_per_s")
        name = f"flow: unlimited queue vs the e2e noop_inline {W}x{FLOW_SLOTS} cell (same run)"
        if un and inline:
            rows.append([name, f"{fmt(un)}/s", f"{fmt(inline)}/s ({cell.get('jobs', 0):,} queued)",
                         f"{un / inline:.2f}x", "~1x (a reading)", "-"])
        else:
            rows.append([name, f"{fmt(un)}/s" if un else (err_of_flow(res, "unlimited")
                                                          or "not run"),
                         f"{fmt(inline)}/s" if inline else "e2e not run", "-", "~1x (a reading)",
                         "n/a"])
    return rows


def peer_err(peers: dict[str, Any], system: str) -> str:
    doc = peers.get(system)
    if doc is None:
        return "-"
    if doc.get("error"):
        return "n/a (see notes)"
    return "-"


def human(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}k"
    return f"{n:,}"


HEADERS = ["figure", "scheduler-core", "target", "result", "pgqueuer", "procrastinate",
           "ours/pgqueuer", "ours/procrastinate", "PG ceiling (pgbench)", "of ceiling"]


def render(rows: list[list[str]], markdown: bool, headers: list[str] = HEADERS) -> str:
    w = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    if markdown:
        out = ["| " + " | ".join(headers) + " |",
               "|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|"]
        for r in rows:
            cells = [c.replace("|", "/") for c in r]
            if cells[0].startswith("  "):  # a sub-row: Markdown would eat the indent
                cells[0] = "↳ " + cells[0].strip()
            out.append("| " + " | ".join(cells) + " |")
        return "\n".join(out)
    line = "  ".join
    out = [line(h.ljust(w[i]) if i == 0 else h.rjust(w[i]) for i, h in enumerate(headers)),
           line("-" * x for x in w)]
    out += [line(c.ljust(w[i]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(r))
            for r in rows]
    return "\n".join(out)


# ======================================================================= main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="See bench/README.md for what each figure means.")
    p.add_argument("--quick", action="store_true",
                   help="CI sizes (about 3 minutes): 2,000 e2e jobs, 10k/100k rows, peers --quick")
    p.add_argument("--dsn", default=None,
                   help=f"PostgreSQL URL to create the benchmark databases on (default: "
                        f"DATABASE_URL, else {DEFAULT_DSN} if it answers, else an embedded one)")
    p.add_argument("--embedded", action="store_true", help="use an embedded PostgreSQL")
    p.add_argument("--jobs", type=int, help="e2e jobs (default 20,000; quick 2,000)")
    p.add_argument("--workers", type=int, default=2, help="e2e worker processes (default 2)")
    p.add_argument("--slots", type=int, default=8, help="slots per worker (default 8)")
    p.add_argument("--submit-jobs", type=int, help="single submissions (5,000; quick 1,000)")
    p.add_argument("--submit-clients", type=int, default=8)
    p.add_argument("--batch-jobs", type=int, help="batched submissions (100,000; quick 10,000)")
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--batch-clients", type=int, default=2)
    p.add_argument("--latency-samples", type=int, help="(500; quick 100)")
    p.add_argument("--latency-gap", type=float, default=0.02, help="pause between samples, s")
    p.add_argument("--scale-rows", help="row counts, comma-separated (10000,5000000; quick "
                                        "10000,100000)")
    p.add_argument("--scale-samples", type=int, default=200)
    p.add_argument("--prune-rows", type=int,
                   help="finished jobs the prune cell deletes (1,000,000; quick 100,000)")
    p.add_argument("--prune-samples", type=int, default=300,
                   help="claims measured without pruning (as many as fit while pruning)")
    p.add_argument("--inline-jobs", type=int,
                   help="jobs of the noop_inline e2e cells (default --jobs, at least 10,000)")
    p.add_argument("--cpu-jobs", type=int, help="jobs of the CPU-per-job cells (20,000; quick 5,000)")
    p.add_argument("--flow-jobs", type=int,
                   help="jobs of each flow cell (20,000; quick 10,000: one per key)")
    p.add_argument("--flow-keys", type=int, default=10000,
                   help="concurrency keys of the keyed flow cells (default 10,000)")
    p.add_argument("--sql-jobs", type=int,
                   help="jobs through scheduler.enqueue, one a transaction (10,000; quick 2,000)")
    p.add_argument("--sql-connections", type=int, default=8)
    p.add_argument("--sql-batch-jobs", type=int,
                   help="jobs through scheduler.enqueue_many (100,000; quick 10,000)")
    p.add_argument("--fanout-samples", type=int,
                   help="parents with 10,000 children completed (20; quick 5)")
    p.add_argument("--hey-requests", type=int, help="requests per hey cell (10,000; quick 2,000)")
    p.add_argument("--search-jobs", type=int,
                   help="jobs the search cell searches (1,000,000; quick 100,000)")
    p.add_argument("--search-samples", type=int, default=100,
                   help="searches timed (after 10 untimed)")
    p.add_argument("--bulk-jobs", type=int,
                   help="DeadLetter jobs the bulk cell retries (100,000; quick 20,000)")
    p.add_argument("--hey-concurrency", type=int, default=32)
    p.add_argument("--only", default=",".join(PHASES), help=f"subset of {','.join(PHASES)}")
    p.add_argument("--skip", default="", help="phases to leave out")
    p.add_argument("--peers", default=",".join(PEERS), help="peer systems (default both)")
    p.add_argument("--peer-setup", action="store_true",
                   help="run the harness's setup.sh even when the venvs exist")
    p.add_argument("--peer-bench-src", default=os.environ.get("PEER_BENCH_SRC", "/work/shared/bench"))
    p.add_argument("--peer-bench-dir", default=os.environ.get("PEER_BENCH_DIR", "/tmp/peer-bench"))
    p.add_argument("--pgbench-duration", type=int, help="seconds per pgbench cell (10; quick 3)")
    p.add_argument("--pgbench-clients", help="(4,16; quick 16)")
    p.add_argument("--pgbench-scenarios", help="(all six; quick cycle_*, enqueue_*)")
    p.add_argument("--keep-dbs", action="store_true", help="do not drop the benchmark databases")
    p.add_argument("--out", help="result file (default bench/results/<timestamp>.json)")
    p.add_argument("--report", metavar="JSON", help="only print the table of an earlier result file")
    p.add_argument("--markdown", action="store_true", help="with --report: a Markdown table")
    a = p.parse_args(argv)
    q = a.quick
    a.jobs = a.jobs or (2000 if q else 20000)
    a.submit_jobs = a.submit_jobs or (1000 if q else 5000)
    a.batch_jobs = a.batch_jobs or (10000 if q else 100000)
    a.latency_samples = a.latency_samples or (100 if q else 500)
    a.scale_rows = [int(x) for x in (a.scale_rows or ("10000,100000" if q else "10000,5000000")
                                     ).split(",")]
    a.prune_rows = a.prune_rows or (100_000 if q else 1_000_000)
    a.cpu_jobs = a.cpu_jobs or (5000 if q else 20000)
    # inline handlers work 2,000 jobs off in well under a second: the second worker's
    # start-up would be most of the span
    a.inline_jobs = a.inline_jobs or max(a.jobs, 10000)
    # quick: one job per key of 10,000 (fewer jobs would leave keys without one), and
    # the inline cells' count, so the unlimited cell is their shape
    a.flow_jobs = a.flow_jobs or (10000 if q else 20000)
    a.fanout_samples = a.fanout_samples or (5 if q else 20)
    a.sql_jobs = a.sql_jobs or (2000 if q else 10000)
    a.sql_batch_jobs = a.sql_batch_jobs or (10000 if q else 100000)
    a.hey_requests = a.hey_requests or (2000 if q else 10000)
    a.search_jobs = a.search_jobs or (100_000 if q else 1_000_000)
    a.bulk_jobs = a.bulk_jobs or (20_000 if q else 100_000)
    a.pgbench_duration = a.pgbench_duration or (3 if q else 10)
    a.pgbench_clients = a.pgbench_clients or ("16" if q else "4,16")
    a.pgbench_scenarios = a.pgbench_scenarios or (
        "cycle_single,cycle_batch,enqueue_single,enqueue_batch" if q else
        "cycle_single,cycle_batch,enqueue_single,enqueue_batch,drain_single,drain_batch")
    skip = {s.strip() for s in a.skip.split(",") if s.strip()}
    a.only = [s.strip() for s in a.only.split(",") if s.strip() and s.strip() not in skip]
    bad = set(a.only) - set(PHASES)
    if bad:
        p.error(f"unknown phase(s) {sorted(bad)}; known: {', '.join(PHASES)}")
    a.peers = [s.strip() for s in a.peers.split(",") if s.strip()]
    if set(a.peers) - set(PEERS):
        p.error(f"unknown peer(s) {sorted(set(a.peers) - set(PEERS))}; known: {', '.join(PEERS)}")
    if len(a.scale_rows) < 2:
        p.error("--scale-rows needs two sizes at least")
    return a


def resolve_dsn(a: argparse.Namespace) -> str | None:
    if a.embedded:
        return None
    if a.dsn:
        return str(a.dsn)
    if os.environ.get("DATABASE_URL"):
        return os.environ["DATABASE_URL"]
    if bl.can_connect(bl.with_dbname(DEFAULT_DSN, "postgres")) is None:
        return DEFAULT_DSN
    return None


def report(path: str, markdown: bool) -> int:
    res = json.loads(Path(path).read_text())
    args = argparse.Namespace(**res["config"])
    for name, default in (("hey_concurrency", 32), ("cpu_jobs", None), ("prune_rows", None),
                          ("inline_jobs", None), ("flow_jobs", None), ("flow_keys", 10000)):
        if not hasattr(args, name):  # a result file of an older run.py
            setattr(args, name, default)
    rows, notes = build_rows(res, args)
    print(header(res))
    print(render(rows, markdown=markdown))
    for n in notes:
        print(f"note: {n}")
    print()
    print(render(build_goals(res, args), markdown=markdown, headers=GOAL_HEADERS))
    return 0


def header(res: dict[str, Any]) -> str:
    srv = res.get("server", {})
    m = res.get("machine", {})
    return (f"scheduler-core benchmark{' (--quick)' if res.get('quick') else ''}, "
            f"{res['started_at']}: {m.get('cpus')} cores, PostgreSQL "
            f"{srv.get('server_version', '?').split(' ')[0]} ({srv.get('kind', '?')}), everything "
            f"on 127.0.0.1; load average {m.get('loadavg_at_start', ['?'])[0]} at start, "
            f"{m.get('loadavg_at_end', ['?'])[0]} at end; {res.get('seconds', 0):.0f} s")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report:
        return report(args.report, args.markdown)
    signal.signal(signal.SIGTERM, _on_sigterm)
    # also when started in the background by a non-interactive shell (SIGINT ignored)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    run = Run(args)
    res = run.results
    res.update({"started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "quick": args.quick,
                "config": {k: v for k, v in vars(args).items()},
                "machine": {"host": platform.node(), "cpus": os.cpu_count(),
                            "python": platform.python_version(), "kernel": platform.release(),
                            "loadavg_at_start": bl.loadavg()},
                "git": git_head()})
    started = time.monotonic()
    interrupted = False
    try:
        run.server = bl.open_server(resolve_dsn(args), run.tmp)
        res["server"] = {"kind": run.server.kind, **run.server.settings()}
        log(f"PostgreSQL: {run.server.kind} {res['server'].get('server_version')} "
            f"(max_connections {res['server'].get('max_connections')}); logs in {run.procs.log_dir}")
        steps: list[tuple[str, str, Callable[[], Any]]] = []
        W, S = args.workers, args.slots
        if "e2e" in args.only:
            steps.append(("e2e", f"{W}x{S}", lambda: run.e2e(W, S, args.jobs)))
            if W != 1:
                steps.append(("e2e", f"1x{S}", lambda: run.e2e(1, S, args.jobs)))
            for slots in INLINE_SLOTS:
                steps.append(("e2e", f"inline {W}x{slots}",
                              lambda slots=slots: run.e2e(W, slots, args.inline_jobs,
                                                          "noop_inline")))
            steps.append(("cpu", f"noop_inline {W}x50",
                          lambda: run.e2e_cpu(W, 50, args.cpu_jobs, "noop_inline")))
            steps.append(("cpu", f"noop {W}x{S}", lambda: run.e2e_cpu(W, S, args.cpu_jobs, "noop")))
        if "flow" in args.only:
            for cell in FLOW_CELLS:
                steps.append(("flow", cell, functools.partial(
                    run.e2e, W, FLOW_SLOTS, args.flow_jobs, "noop_inline", flow=cell,
                    keys=args.flow_keys)))
        for name, fn in (("fanout", run.fanout), ("submit", run.submit),
                         ("sql", run.sql_enqueue),
                         ("latency", run.latency), ("scale", run.scale),
                         ("prune", run.prune), ("search", run.search), ("bulk", run.bulk),
                         ("peers", run.peers), ("pgbench", run.pgbench),
                         ("http", run.http_adapter)):
            if name == "prune" and "scale" in args.only:  # part of the scale phase
                steps.append((name, "", fn))
            elif name in args.only:
                steps.append((name, "", fn))
        for name, sub, fn in steps:
            t = time.monotonic()
            try:
                value = fn()
                if sub:
                    res.setdefault(name, {})[sub] = value
                else:
                    res[name] = value
            except Exception as exc:
                key = f"{name} {sub}".strip()
                res["errors"][key] = f"{type(exc).__name__}: {exc}"
                log(f"{key} FAILED: {type(exc).__name__}: {exc}")
                traceback.print_exc(file=sys.stderr)
            res.setdefault("phase_seconds", {})[f"{name} {sub}".strip()] = round(
                time.monotonic() - t, 1)
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted: stopping everything")
    except (Exception, SystemExit) as exc:  # no database server: nothing could run
        res["errors"]["setup"] = f"{type(exc).__name__}: {exc}"
        log(f"setup FAILED: {type(exc).__name__}: {exc}")
    finally:
        run.shut_down(keep_dbs=args.keep_dbs)
    res["log_issues"] = run.procs.log_issues
    res["seconds"] = round(time.monotonic() - started, 1)
    res["machine"]["loadavg_at_end"] = bl.loadavg()
    rows, notes = build_rows(res, args)
    goals = build_goals(res, args)
    res["table"] = {"headers": HEADERS, "rows": rows, "notes": notes,
                    "markdown": render(rows, markdown=True)}
    res["goals"] = {"headers": GOAL_HEADERS, "rows": goals,
                    "markdown": render(goals, markdown=True, headers=GOAL_HEADERS)}
    out = Path(args.out) if args.out else RESULTS / f"{run.stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2, default=str))
    print()
    print(header(res))
    print(render(rows, markdown=False))
    for n in notes:
        print(f"note: {n}")
    print("ratios are ours / theirs (for latencies lower is better); the ceiling is the best "
          "pgbench cell of the same run")
    print()
    print(render(goals, markdown=False, headers=GOAL_HEADERS))
    print(f"results: {out}")
    if res["errors"] or interrupted:
        print(f"logs of the processes: {run.procs.log_dir}")
    else:
        shutil.rmtree(run.tmp, ignore_errors=True)
    if interrupted:
        return 130
    ours = [k for k in res["errors"]
            if k.split()[0] in ("setup", "e2e", "cpu", "flow", "fanout", "submit", "sql", "latency",
                                "scale",
                                "prune", "search", "bulk")]
    return 1 if ours else 0


def git_head() -> str | None:
    try:
        r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                           text=True, timeout=5)
        return r.stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None


if __name__ == "__main__":
    sys.exit(main())
