"""What observability costs on a big jobs table: one /metrics scrape, the dashboard's
overview and its job list, with a million jobs in the table.

    .venv/bin/python bench/observability_cost.py [--dsn ADMIN_DSN] [--jobs N]
        [--last-hour M] [--requests R] [--keep]

Creates a scratch database on the server of ``--dsn`` (default ``DATABASE_URL``, else
``postgresql://postgres@127.0.0.1:5432/postgres``), migrates it, bulk-inserts N jobs
with one ``INSERT ... SELECT generate_series`` (mostly finished over 30 days, M of them
finished in the last hour, a few thousand waiting in four queues), runs ``VACUUM
ANALYZE`` as autovacuum eventually would, and starts a real coordinator on it
(retention off, so nothing is pruned meanwhile). Then it times, over HTTP:

- ``GET /metrics`` and ``GET /api/dashboard/overview`` served from the cached snapshot,
  and with a snapshot refresh on every request (spaced past the cache's age);
- ``GET /api/jobs?take=50`` unfiltered, by status, by type, by queue, and a page deep
  in the table (keyset cursor);

and, in-process, each named query behind the snapshot (the exact terminal counts too,
to show what the estimate saves). The scratch database is dropped unless ``--keep``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg
import trio
from psycopg.conninfo import make_conninfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scheduler_core.command.compose import migrate  # noqa: E402
from scheduler_core.runtime import db  # noqa: E402
from scheduler_core.schema.queries import q  # noqa: E402
from scheduler_core.schema.stats_store import StatsStore  # noqa: E402

# N jobs: id i = 1..N created (N - i) * span / N before now, so higher i is newer.
# The last --last-hour of them finished within the last hour; a few are waiting.
BULK = """
WITH params AS (
    SELECT %(n)s::int AS n, %(recent)s::int AS recent, interval '30 days' AS span
), rows AS (
    SELECT i,
           CASE WHEN i > p.n - p.recent
                THEN now() - make_interval(secs => 3600.0 * (p.n - i) / p.recent)
                ELSE now() - interval '1 hour' - p.span * (p.n - p.recent - i) / (p.n - p.recent)
           END AS created,
           md5(i::text) AS h
    FROM params p, generate_series(1, (SELECT n FROM params)) AS i
), shaped AS (
    SELECT i, created, h,
           CASE
               WHEN i %% 1000 < 940 THEN 'Succeeded'
               WHEN i %% 1000 < 970 THEN 'DeadLetter'
               WHEN i %% 1000 < 990 THEN 'Cancelled'
               WHEN i %% 1000 < 995 THEN 'Pending'
               WHEN i %% 1000 < 998 THEN 'Scheduled'
               WHEN i %% 1000 < 999 THEN 'Failed'
               ELSE 'Running'
           END AS status,
           lpad(to_hex((extract(epoch FROM created) * 1000)::int8), 12, '0') AS ms
    FROM rows
)
INSERT INTO jobs (id, type, payload, status, queue, priority, run_at, attempts,
                  max_attempts, timeout_seconds, idempotency_key, created_at, updated_at,
                  started_at, finished_at, last_error, result)
SELECT (substr(ms, 1, 8) || '-' || substr(ms, 9, 4) || '-7' || substr(h, 1, 3) || '-8'
        || substr(h, 4, 3) || '-' || substr(h, 7, 12))::uuid,
       (ARRAY['noop', 'http_get', 'cpu', 'file_write', 'sleep'])[1 + i %% 5],
       jsonb_build_object('n', i),
       status,
       (ARRAY['default', 'emails', 'reports', 'video'])[1 + (i / 7) %% 4],
       CASE WHEN i %% 10 = 0 THEN 10 ELSE 0 END,
       CASE status WHEN 'Scheduled' THEN now() + interval '1 day'
                   WHEN 'Failed' THEN now() + interval '1 minute'  -- waiting to retry
                   WHEN 'Pending' THEN now() - make_interval(secs => i %% 600)
                   ELSE created END,
       CASE WHEN status IN ('Pending', 'Scheduled') THEN 0 ELSE 1 END,
       3, 60,
       CASE WHEN i %% 4 = 0 THEN 'key-' || i END,
       created, created + interval '1 second',
       CASE WHEN status IN ('Pending', 'Scheduled') THEN NULL ELSE created END,
       CASE WHEN status IN ('Succeeded', 'DeadLetter', 'Cancelled')
            THEN created + interval '1 second' END,
       CASE WHEN status = 'DeadLetter' THEN 'boom' END,
       CASE WHEN status = 'Succeeded' THEN '{"ok": true}'::jsonb END
FROM shaped
"""


def ms(seconds: list[float]) -> str:
    values = sorted(seconds)
    p50 = statistics.median(values) * 1000
    p95 = values[min(len(values) - 1, round(0.95 * (len(values) - 1)))] * 1000
    return f"p50 {p50:7.2f} ms   p95 {p95:7.2f} ms   (n={len(values)})"


def timed(call: Callable[[], Any], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        call()
        out.append(time.perf_counter() - t)
    return out


def get(client: httpx.Client, path: str, **params: Any) -> Callable[[], Any]:
    def call() -> httpx.Response:
        resp = client.get(path, params=params)
        resp.raise_for_status()
        return resp
    return call


async def query_costs(dsn: str, repeat: int) -> list[tuple[str, list[float]]]:
    results = []
    async with db.open_pool(dsn, max_size=1) as pool:
        async with pool.connection() as conn:
            for name, params in [("stats_active_counts", {}), ("stats_table_estimate", {}),
                                 ("stats_queue_lag", {"limit": 100}),
                                 ("stats_throughput", {"minutes": 60}),
                                 ("stats_workers", {"limit": 100}),
                                 ("stats_finished_counts", {})]:
                times = []
                for _ in range(repeat):
                    t = trio.current_time()
                    cur = await conn.execute(q(name), params)
                    await cur.fetchall()
                    times.append(trio.current_time() - t)
                results.append((name, times))
        stats = StatsStore(pool)
        refresh = []
        for _ in range(repeat):
            t = trio.current_time()
            snapshot = await stats.refresh()
            refresh.append(trio.current_time() - t)
        results.append(("StatsStore.refresh (the whole snapshot)", refresh))
        print(f"  snapshot counts: {snapshot.counts}  estimated: {snapshot.estimated}")
        print(f"  queue lag: {[(x.queue, round(x.lag_seconds)) for x in snapshot.queues]}")
        print(f"  finished in the last hour: "
              f"{sum(b.succeeded + b.dead_letter + b.cancelled for b in snapshot.throughput)}")
    return results


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the coordinator exited with {proc.returncode}")
        try:
            if httpx.get(url + "/health/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit("the coordinator did not become ready")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dsn", default=os.environ.get("DATABASE_URL")
                        or "postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--last-hour", type=int, default=20_000,
                        help="how many of the jobs finished in the last hour")
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args()

    name = f"sc_bench_obs_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.dsn, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}".encode())
        print(admin.execute(b"SELECT version()").fetchone()[0])  # type: ignore[index]
    dsn = make_conninfo(args.dsn, dbname=name)
    proc = None
    try:
        trio.run(migrate, dsn)
        with psycopg.connect(dsn, autocommit=True) as conn:
            t = time.perf_counter()
            conn.execute(BULK.encode(), {"n": args.jobs, "recent": args.last_hour})
            inserted = time.perf_counter() - t
            t = time.perf_counter()
            conn.execute(b"VACUUM ANALYZE jobs")
            analyzed = time.perf_counter() - t
            size = conn.execute(b"SELECT pg_size_pretty(pg_total_relation_size('jobs'))").fetchone()
        print(f"inserted {args.jobs:,} jobs in {inserted:.1f} s, VACUUM ANALYZE {analyzed:.1f} s, "
              f"jobs with indexes: {size[0]}")  # type: ignore[index]

        print("\nnamed queries behind the snapshot (in-process, one connection):")
        for label, times in trio.run(query_costs, dsn, 10):
            print(f"  {label:42} {ms(times)}")

        port = 5600 + os.getpid() % 300
        url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "DATABASE_URL": dsn, "SCHEDULER_LOG_FORMAT": "json",
               "SCHEDULER_LOG_LEVEL": "warning", "SCHEDULER_RETENTION_SUCCEEDED_DAYS": "0",
               "SCHEDULER_RETENTION_DEADLETTER_DAYS": "0"}
        proc = subprocess.Popen([sys.executable, "-m", "scheduler_core.command.cli", "coordinator", "--port",
                                 str(port)], env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
        wait_healthy(url, proc)
        with httpx.Client(base_url=url, timeout=30) as client:
            n = args.requests
            middle = client.get("/api/jobs", params={"take": 1}).json()["items"][0]["id"]
            deep = str(uuid.UUID(int=uuid.UUID(middle).int - (30 * 86400 * 1000 // 2 << 80)))
            print(f"\nover HTTP ({n} sequential requests each, keep-alive):")
            rows = [
                ("GET /metrics (cached snapshot)", get(client, "/metrics")),
                ("GET /api/dashboard/overview (cached)", get(client, "/api/dashboard/overview")),
                ("GET /api/jobs?take=50", get(client, "/api/jobs", take=50)),
                ("GET /api/jobs?take=50&status=Succeeded",
                 get(client, "/api/jobs", take=50, status="Succeeded")),
                ("GET /api/jobs?take=50&status=Pending",
                 get(client, "/api/jobs", take=50, status="Pending")),
                ("GET /api/jobs?take=50&type=cpu", get(client, "/api/jobs", take=50, type="cpu")),
                ("GET /api/jobs?take=50&queue=video",
                 get(client, "/api/jobs", take=50, queue="video")),
                ("GET /api/jobs?take=50&cursor=<15 days back>",
                 get(client, "/api/jobs", take=50, cursor=deep)),
                ("GET /api/jobs/by-key?key=key-4000", get(client, "/api/jobs/by-key",
                                                           key="key-4000")),
            ]
            for label, call in rows:
                call()  # warm up (connection, plan cache)
                print(f"  {label:44} {ms(timed(call, n))}")
            cost = float(next(line.split()[1] for line in client.get("/metrics").text.splitlines()
                              if line.startswith("scheduler_stats_refresh_duration_seconds ")))
            gap = max(1.0, 20 * cost) + 0.05
            print(f"\n  with a snapshot refresh on each request (spaced {gap:.2f} s apart, "
                  f"past the cache's age):")
            for label, path in (("GET /metrics (refresh)", "/metrics"),
                                ("GET /api/dashboard/overview (refresh)",
                                 "/api/dashboard/overview")):
                times = []
                for _ in range(10):
                    time.sleep(gap)
                    times.extend(timed(get(client, path), 1))
                print(f"  {label:44} {ms(times)}")
            size = len(client.get("/metrics").content)
            print(f"\n  /metrics body: {size:,} bytes")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=15)
        if not args.keep:
            with psycopg.connect(args.dsn, autocommit=True) as admin:
                admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode())
        else:
            print(f"kept {dsn}")


if __name__ == "__main__":
    main()
