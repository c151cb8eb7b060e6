"""How close to its fire time a cron fire becomes a job: lag = jobs.created_at - fire_time.

    .venv/bin/python bench/cron_precision.py [--fires 110] [--cron '* * * * * *']
                                             [--coordinators 1]

Starts real ``scheduler coordinator`` processes on a fresh database (a new database on
DATABASE_URL's server, or a throwaway embedded PostgreSQL without it), defines one
schedule through the API, waits for ``--fires`` fires, and prints the lag percentiles
(both times come from the database clock), plus whether every fire made exactly one
job with none missing.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import itertools
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import trio
from psycopg.conninfo import make_conninfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scheduler_core.command import pgserver  # noqa: E402
from scheduler_core.command.compose import migrate  # noqa: E402


@contextlib.contextmanager
def fresh_database() -> Iterator[str]:
    url = os.environ.get("DATABASE_URL")
    with contextlib.ExitStack() as stack:
        if not url:
            url = stack.enter_context(pgserver.temporary_server()).dsn
        name = f"sc_bench_cron_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}".encode())
        try:
            dsn = make_conninfo(url, dbname=name)
            trio.run(migrate, dsn)
            yield dsn
        finally:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def coordinators(dsn: str, count: int) -> Iterator[list[str]]:
    procs, urls = [], []
    logs = Path(tempfile.mkdtemp(prefix="cron-bench-"))
    try:
        for i in range(count):
            port = free_port()
            log = open(logs / f"coordinator-{i}.log", "wb")
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "scheduler_core.command.cli", "coordinator", "--port", str(port)],
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "DATABASE_URL": dsn, "SCHEDULER_LOG_FORMAT": "json"}))
            urls.append(f"http://127.0.0.1:{port}")
        for url in urls:
            deadline = time.monotonic() + 30
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(url + "/health", timeout=1).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise SystemExit(f"coordinator at {url} never became healthy; logs in {logs}")
                time.sleep(0.1)
        yield urls
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=10)


def percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def main(fires: int, cron: str, count: int) -> None:
    with fresh_database() as dsn, coordinators(dsn, count) as urls:
        resp = httpx.post(urls[0] + "/api/jobs", json={"type": "noop", "cron": cron},
                          timeout=10)
        resp.raise_for_status()
        schedule_id = resp.json()["id"]
        print(f"{count} coordinator(s), schedule {cron!r}, waiting for {fires} fires ...")
        with psycopg.connect(dsn, autocommit=True) as conn:
            while True:
                row = conn.execute("SELECT count(*) FROM jobs WHERE schedule_id = %s",
                                   (schedule_id,)).fetchone()
                if row and row[0] >= fires:
                    break
                time.sleep(0.5)
            rows = conn.execute(
                "SELECT fire_time, created_at FROM jobs WHERE schedule_id = %s "
                "ORDER BY fire_time", (schedule_id,)).fetchall()
    times: list[dt.datetime] = [r[0] for r in rows]
    lags = sorted((r[1] - r[0]).total_seconds() * 1000 for r in rows)
    steps = {b - a for a, b in itertools.pairwise(times)}
    print(f"  fires          {len(rows)} over {times[-1] - times[0]}")
    print(f"  duplicates     {len(times) - len(set(times))}")
    print(f"  gaps           {sorted(str(s) for s in steps)} between consecutive fires")
    print(f"  lag            p50 {statistics.median(lags):.1f} ms, "
          f"p90 {percentile(lags, 0.9):.1f} ms, p99 {percentile(lags, 0.99):.1f} ms, "
          f"max {lags[-1]:.1f} ms, min {lags[0]:.1f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fires", type=int, default=110)
    parser.add_argument("--cron", default="* * * * * *")
    parser.add_argument("--coordinators", type=int, default=1)
    args = parser.parse_args()
    main(args.fires, args.cron, args.coordinators)
