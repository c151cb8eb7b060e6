"""The capacity model (issue 19): jobs/s against workers and coordinators, and what a job
costs PostgreSQL (CPU, WAL, disk), the coordinators and the workers.

    just capacity [ARGS]      # the same as:
    .venv/bin/python bench/capacity.py [--quick] [--jobs 60000] [--backlog 5000]
        [--repeat 2] [--slots 8] [--workers 1,2,4,8,16] [--coordinators 1,2,4]
        [--spread-workers 8] [--dsn URL | --embedded] [--out FILE]
    .venv/bin/python bench/capacity.py --report bench/results/capacity-<stamp>.json [--markdown]

Cells: W workers (each ``--slots`` slots) on one coordinator, for each W of
``--workers``; then C coordinators sharing ``--spread-workers`` workers, for each C of
``--coordinators`` (worker i gets every coordinator's URL in COORDINATOR_URL, rotated by
i, so it talks to coordinator i mod C and fails over to the others; the C = 1 cell is
the W sweep's cell of that size, not run twice). Each cell on a fresh database
(bench/run.py's ``Cluster``: real ``scheduler coordinator`` and ``scheduler worker``
processes on 127.0.0.1), as bench/run.py's CPU cells: the workers start and are ready
first (with their warm job processes), then N ``noop_inline`` jobs (run in the worker
process: job-process spawning does not dominate) are streamed in: a producer on a
connection of its own keeps a backlog of ``--backlog`` Pending jobs (each time fewer
wait, one more ``INSERT ... SELECT generate_series`` of that many), as a queue that keeps
up rather than one drained from a million; the cell ends when all N have finished.
Measured per cell, from the first insert to the last finished job:

- jobs/s steady: the jobs that finished between the 10th and the 90th percentile of
  ``jobs.finished_at`` over that time (the first and last 10% trimmed); also the span
  from the first claim to the last finish.
- CPU ms per job (utime + stime from /proc/<pid>/stat, bench/fastpath.py's ``Groups``):
  PostgreSQL (every backend of the cell's database: the coordinators' connections,
  autovacuum, and the producer's inserts), the server's shared processes (walwriter,
  checkpointer, ...: other databases on a shared server use them too), the
  coordinators, the workers, their job processes. And the cores each group kept busy.
- WAL bytes per job: ``pg_current_wal_lsn()`` before and after (a CHECKPOINT first, so
  each cell starts alike), the whole cluster's; and, with pg_walinspect (PostgreSQL
  15+, contrib), the records of this database only: those whose blocks are in it and
  every record of their transactions (the commits). On a shared server only the
  second is this cell's alone.
- connections: the most ``pg_stat_activity`` rows of the database each coordinator
  held at once (each coordinator's ``PGAPPNAME`` names it), and the TCP connections
  from each worker process (and its job processes) to the PostgreSQL port, from
  /proc: workers talk HTTP to a coordinator and have no database URL, so 0.
- disk per retained job: ``pg_total_relation_size`` of every table of the database
  (indexes and TOAST included) after the cell minus before the insert, over N: as the
  run left it (dead row versions included) and after ``VACUUM FULL`` (compact).
- the HTTP requests per job by route (from the coordinators' /metrics), and the whole
  machine's busy share (/proc/stat) and load average: figures taken beside other work
  are loaded, and say so.

Each cell runs ``--repeat`` times (2; quick 1) and the run with the most jobs/s is kept
(other work on the machine only slows a run down), the others' jobs/s beside it. About
6-8 minutes on 2 cores (quick: 5,000 jobs a cell, once, under 2 minutes).

Writes bench/results/capacity-<stamp>.json (git-ignored, as bench/run.py's results) with
the machine's facts (cores, memory, PostgreSQL version and settings, git commit) and
prints the cells' table, the medians and the sizing table built from them (peak 5x the
average, PostgreSQL and coordinators half busy at the peak). ``--report FILE
--markdown`` prints the same as Markdown: the block between the capacity markers of
docs/operations.md ("Capacity and sizing"), which a rerun replaces whole.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib as bl
import fastpath as fp
import psycopg
import run as rp
from benchlib import log

JOB_TYPE = "noop_inline"
PROBE = "capacity-probe"  # application_name of the measuring connection
ENQUEUE = "capacity-enqueue"  # ... and of the one that inserts the jobs
COORDINATOR_APP = "capacity-coordinator"  # + index: each coordinator's PGAPPNAME
PG_SETTINGS = ("server_version", "max_connections", "shared_buffers", "synchronous_commit",
               "fsync", "full_page_writes", "wal_level", "wal_compression", "max_wal_size",
               "checkpoint_timeout", "autovacuum", "work_mem")

# pg_walinspect: the bytes of the WAL records between two LSNs that belong to the
# database %(db)s (its blocks), and every record of the transactions that wrote them
# (their commit records carry no block).
OWN_WAL = """
WITH r AS (SELECT xid, record_length, block_ref
           FROM pg_get_wal_records_info(%(start)s::pg_lsn, %(end)s::pg_lsn)),
     mine AS (SELECT xid, record_length, xid::text::bigint <> 0 AS has_xid,
                     coalesce(block_ref ~ ('rel [0-9]+/' || %(db)s::text || '/'), false) AS own
              FROM r),
     xids AS (SELECT DISTINCT xid FROM mine WHERE own AND has_xid)
SELECT coalesce(sum(record_length), 0)::bigint,
       coalesce(sum(record_length) FILTER (WHERE own OR xid IN (SELECT xid FROM xids)), 0)::bigint,
       count(*) FILTER (WHERE own OR xid IN (SELECT xid FROM xids))
FROM mine
"""

TABLE_SIZES = """
SELECT c.relname, pg_total_relation_size(c.oid)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg_toast%%'
"""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


# ======================================================================= processes


class CapacityCluster(rp.Cluster):
    """bench/run.py's Cluster with C coordinators on its one database, each on its own
    port and with its own PGAPPNAME (its connections are told apart in
    pg_stat_activity), and workers given every coordinator's URL, rotated."""

    def __init__(self, run: rp.Run, purpose: str) -> None:
        super().__init__(run, purpose)
        self.coordinators: list[bl.Proc] = []
        self.urls: list[str] = []

    @contextmanager
    def _as(self, **attrs: Any) -> Iterator[None]:
        """The base class's start_* read self.port, self.url and self.env: set them for
        one call, then put them back."""
        saved = {k: getattr(self, k) for k in attrs}
        for k, v in attrs.items():
            setattr(self, k, v)
        try:
            yield
        finally:
            for k, v in saved.items():
                setattr(self, k, v)

    def start_coordinators(self, count: int) -> None:
        for i in range(count):
            port = self.port if i == 0 else bl.free_port()
            url = f"http://127.0.0.1:{port}"
            with self._as(port=port, url=url,
                          env={**self.env, "PGAPPNAME": f"{COORDINATOR_APP}{i}"}):
                proc = self.start_coordinator()
            self.coordinators.append(proc)
            self.urls.append(url)
        self.coordinator = self.coordinators[0]

    def start_workers(self, count: int, slots: int) -> None:
        """Worker i: COORDINATOR_URL lists every coordinator, starting with i mod C."""
        n = len(self.urls)
        for i in range(count):
            k = i % n
            with self._as(url=",".join(self.urls[k:] + self.urls[:k])):
                self.start_worker(slots, i)

    def stop_processes(self) -> None:
        """Workers first (they deregister through a coordinator), then coordinators."""
        for w in self.workers:
            self.run.procs.stop(w, grace=20)
        self.workers = []
        for c in self.coordinators:
            self.run.procs.stop(c, grace=15)
        self.coordinators = []
        self.coordinator = None

    def stop(self) -> None:
        self.stop_processes()
        super().stop()


# ======================================================================= measuring


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0)  # idle + iowait
    total = sum(parts[:8])  # guest time is already in user
    return total - idle, total


def pg_tcp_connections(pids: set[int], pg_port: int) -> int:
    """TCP connections to ``pg_port`` held by any of ``pids`` (their socket inodes in
    /proc/<pid>/fd against /proc/net/tcp and tcp6)."""
    inodes: set[str] = set()
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                lines = f.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            remote_port = int(cols[2].rsplit(":", 1)[1], 16)
            if remote_port == pg_port and cols[9] in inodes:
                found += 1
    return found


def table_sizes(conn: psycopg.Connection[Any]) -> dict[str, int]:
    return {r[0]: int(r[1]) for r in conn.execute(TABLE_SIZES).fetchall()}


def http_requests(urls: list[str]) -> dict[str, float]:
    total: dict[str, float] = {}
    for url in urls:
        for route, n in fp.http_counts(url).items():
            total[route] = total.get(route, 0.0) + n
    return total


class Capacity:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.run = rp.Run(args)  # the server, the processes, the temp folder, the stamp
        self.walinspect: bool | None = None

    def cell(self, coordinators: int, workers: int) -> dict[str, Any]:
        a = self.args
        n, slots = a.jobs, a.slots
        label = f"{coordinators}c x {workers}w"
        log(f"cell {label}: {coordinators} coordinator(s), {workers} worker(s) x {slots} slots,"
            f" {n} {JOB_TYPE} jobs")
        c = CapacityCluster(self.run, f"cap{coordinators}c{workers}w")
        try:
            c.start_coordinators(coordinators)
            c.start_workers(workers, slots)
            c.wait_workers_active(workers, timeout=60 + 10 * workers)
            bl.wait_for(lambda: all(len(fp.descendants(w.pid)) >= slots for w in c.workers),
                        timeout=60 + 15 * workers, what=f"{slots} job processes per worker")
            time.sleep(0.5)  # as fastpath: let the first long polls settle
            out = self._measure(c, n)
            out.update({"coordinators": coordinators, "workers": workers, "slots": slots})
            c.stop_processes()
            out["disk"] = self._disk(c, n, out.pop("_sizes_before"))
            log(f"cell {label}: {out['jobs_per_s_steady']} jobs/s steady; CPU ms/job "
                f"{out['cpu_ms_per_job']}; WAL B/job {out['wal']['bytes_per_job']}; "
                f"disk B/job {out['disk']['bytes_per_job']}, compact "
                f"{out['disk']['bytes_per_job_compact']}")
            return out
        finally:
            c.stop()

    def _measure(self, c: CapacityCluster, n: int) -> dict[str, Any]:
        admin = self.run.server.admin_dsn
        pg_port = urlsplit(self.run.server.dsn).port or 5432
        with psycopg.connect(c.dsn, autocommit=True, application_name=PROBE) as probe, \
                psycopg.connect(c.dsn, autocommit=True, application_name=ENQUEUE) as enqueue, \
                psycopg.connect(admin, autocommit=True, connect_timeout=10) as shared:
            if self.walinspect is not False:
                try:
                    probe.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
                    self.walinspect = True
                except psycopg.Error as exc:
                    log(f"no pg_walinspect ({str(exc).strip()[:120]}): WAL of the whole "
                        "cluster only")
                    self.walinspect = False
            db_oid = probe.execute("SELECT oid FROM pg_database WHERE datname = "
                                   "current_database()").fetchone()[0]  # type: ignore[index]
            enqueue_pid = enqueue.execute("SELECT pg_backend_pid()").fetchone()[0]  # type: ignore[index]
            sizes_before = table_sizes(probe)
            coord_pids = {p.pid for p in c.coordinators}
            worker_pids = {w.pid for w in c.workers}
            job_pids = {k for w in c.workers for k in fp.descendants(w.pid)}
            requests_before = http_requests(c.urls)
            probe.execute("CHECKPOINT")
            groups = fp.Groups()
            groups.add("coordinators", coord_pids)
            groups.add("workers", worker_pids)
            groups.add("job processes", job_pids)
            groups.add("pg backends", fp.pg_pids(probe, own_db=True))
            groups.add("pg shared", fp.pg_pids(shared, own_db=False))
            if self.walinspect:  # keep the cell's WAL until it is read: a temporary slot
                shared.execute("SELECT pg_create_physical_replication_slot(%s, true, true)",
                               (f"capacity_{c.dbname}",))
            lsn_before = shared.execute("SELECT pg_current_wal_lsn()").fetchone()[0]  # type: ignore[index]
            busy0, total0 = machine_jiffies()
            load_before = bl.loadavg()
            t0 = time.monotonic()
            backlog = min(self.args.backlog, n)
            inserted = 0

            def produce(k: int) -> int:
                enqueue.execute(("INSERT INTO jobs (id, type, payload, status, queue, "
                                 "priority, run_at, max_attempts, timeout_seconds) "
                                 f"SELECT {bl.sql_uuid7('clock_timestamp()')}, %s, "
                                 "'{}'::jsonb, 'Pending', 'default', 0, now(), 3, 300 "
                                 "FROM generate_series(1, %s::int)").encode(), (JOB_TYPE, k))
                return k
            inserted += produce(min(2 * backlog, n))
            peak: dict[str, int] = {}
            worker_sockets = 0
            deadline = t0 + 60 + n / 100
            polls = 0
            while True:
                for p in [*c.coordinators, *c.workers]:
                    p.check()
                done, pending = probe.execute(
                    "SELECT count(*) FILTER (WHERE finished_at IS NOT NULL), "
                    "count(*) FILTER (WHERE status = 'Pending') FROM jobs").fetchone()  # type: ignore[misc]
                if inserted < n and pending < backlog:  # keep the backlog
                    inserted += produce(min(backlog, n - inserted))
                groups.late("pg backends", fp.pg_pids(probe, own_db=True))
                for app, k in probe.execute(
                        "SELECT coalesce(nullif(application_name, ''), backend_type), count(*) "
                        "FROM pg_stat_activity WHERE datname = current_database() "
                        "GROUP BY 1").fetchall():
                    peak[app] = max(peak.get(app, 0), k)
                if polls % 10 == 0:  # /proc walks are not free: once a second
                    worker_sockets = max(worker_sockets,
                                         pg_tcp_connections(worker_pids | job_pids, pg_port))
                polls += 1
                if done >= n:
                    break
                if time.monotonic() > deadline:
                    raise bl.Timeout(f"{n - done} of {n} jobs not finished after "
                                     f"{60 + n / 100:.0f} s")
                time.sleep(0.1)
            window = time.monotonic() - t0
            spent = groups.spent()
            busy1, total1 = machine_jiffies()
            lsn_after = shared.execute("SELECT pg_current_wal_lsn()").fetchone()[0]  # type: ignore[index]
            wal_cluster = int(shared.execute("SELECT %s::pg_lsn - %s::pg_lsn",
                                             (lsn_after, lsn_before)).fetchone()[0])  # type: ignore[index]
            requests_after = http_requests(c.urls)
            coord_tcp = [pg_tcp_connections({p.pid}, pg_port) for p in c.coordinators]
            wal: dict[str, Any] = {"cluster_bytes": wal_cluster,
                                   "cluster_bytes_per_job": round(wal_cluster / n)}
            if self.walinspect:
                t = time.monotonic()
                try:  # pg_walinspect reads only flushed WAL: wait for the last record
                    bl.wait_for(lambda: shared.execute(
                        "SELECT pg_current_wal_flush_lsn() >= %s::pg_lsn",
                        (str(lsn_after),)).fetchone()[0], timeout=10,  # type: ignore[index]
                        what="the cell's WAL flushed")
                    row = probe.execute(OWN_WAL, {"start": str(lsn_before),
                                                  "end": str(lsn_after), "db": db_oid}).fetchone()
                    assert row is not None
                    wal.update({"inspected_bytes": int(row[0]), "own_db_bytes": int(row[1]),
                                "own_db_records": int(row[2]),
                                "own_db_bytes_per_job": round(int(row[1]) / n),
                                "own_db_records_per_job": round(int(row[2]) / n, 1),
                                "inspect_seconds": round(time.monotonic() - t, 1)})
                except (psycopg.Error, bl.Timeout) as exc:  # the cluster's figure stands alone
                    wal["own_db_error"] = str(exc).strip()[:300]
                    log(f"pg_walinspect failed: {wal['own_db_error']}")
                shared.execute("SELECT pg_drop_replication_slot(%s)", (f"capacity_{c.dbname}",))
            wal["bytes_per_job"] = wal.get("own_db_bytes_per_job", wal["cluster_bytes_per_job"])
            row = probe.execute("""
                WITH f AS (SELECT extract(epoch FROM finished_at)::float8 AS t,
                                  row_number() OVER (ORDER BY finished_at) AS k, count(*) OVER () AS n
                           FROM jobs WHERE status = 'Succeeded')
                SELECT max(t) FILTER (WHERE k = greatest(1, round(n * 0.1))) ,
                       max(t) FILTER (WHERE k = greatest(1, round(n * 0.9))),
                       count(*) FILTER (WHERE k > round(n * 0.1) AND k <= round(n * 0.9)),
                       max(n),
                       extract(epoch FROM (SELECT max(finished_at) - min(started_at) FROM job_runs))
                FROM f""").fetchone()
            assert row is not None
            t10, t90, mid, succeeded, span = row
            runs, claims, retried = probe.execute(
                "SELECT count(*), count(DISTINCT (worker_id, started_at)), "
                "(SELECT count(*) FROM jobs WHERE attempts > 1) FROM job_runs").fetchone()  # type: ignore[misc]
            per_coord = probe.execute(
                "SELECT w.coordinator_index, count(*) FROM job_runs r JOIN (SELECT id, "
                "(regexp_match(id, '-([0-9]+)$'))[1]::int %% %s AS coordinator_index "
                "FROM workers) w ON w.id = r.worker_id GROUP BY 1 ORDER BY 1",
                (len(c.coordinators),)).fetchall()
        steady = bl.rate(int(mid), float(t90) - float(t10)) if t10 and t90 else None
        per_job = {g: round(v * 1000 / n, 4) for g, v in spent.items()}
        per_job["pg total"] = round(per_job.get("pg backends", 0) + per_job.get("pg shared", 0), 4)
        per_job["total"] = round(sum(v for g, v in per_job.items()
                                     if g not in ("pg total", "total")), 4)
        # what the measuring connection counted as a coordinator's: none of ours
        by_coord = [peak.get(f"{COORDINATOR_APP}{i}", 0) for i in range(len(c.coordinators))]
        requests = {r: round((requests_after.get(r, 0) - requests_before.get(r, 0)) / n, 4)
                    for r in requests_after
                    if requests_after.get(r, 0) - requests_before.get(r, 0)}
        return {
            "jobs": n, "succeeded": int(succeeded or 0), "runs": runs, "retried_jobs": retried,
            "claims": claims, "jobs_per_claim": round(runs / claims, 1) if claims else None,
            "jobs_per_s_steady": steady,
            "jobs_per_s_span": bl.rate(n, float(span)) if span else None,
            "span_s": round(float(span), 3) if span else None, "window_s": round(window, 3),
            "cpu_s": {g: round(v, 3) for g, v in spent.items()},
            "cpu_ms_per_job": per_job,
            "cores_busy": {g: round(v / window, 2) for g, v in spent.items()},
            "wal": wal,
            "connections": {
                "peak_by_application": peak,
                "peak_per_coordinator": by_coord,
                "coordinator_tcp_at_end": coord_tcp,
                "worker_processes_tcp_to_postgres_peak": worker_sockets,
                "enqueue_backend_pid": enqueue_pid,
            },
            "runs_by_coordinator_of_worker": [list(r) for r in per_coord],
            "http_requests_per_job": requests,
            "machine": {"busy_share": round((busy1 - busy0) / max(1, total1 - total0), 3),
                        "loadavg_before": load_before, "loadavg_after": bl.loadavg()},
            "_sizes_before": sizes_before,
        }

    def _disk(self, c: CapacityCluster, n: int, before: dict[str, int]) -> dict[str, Any]:
        """Bytes per retained job: the tables' growth over the cell, as left and compact."""
        with psycopg.connect(c.dsn, autocommit=True, application_name=PROBE) as conn:
            conn.execute("DROP EXTENSION IF EXISTS pg_walinspect")
            after = table_sizes(conn)
            conn.execute("VACUUM FULL")
            compact = table_sizes(conn)
            rows: dict[str, int] = dict(conn.execute("SELECT 'jobs', count(*) FROM jobs UNION ALL "
                                     "SELECT 'run_history', count(*) FROM run_history").fetchall())

        def grown(sizes: dict[str, int]) -> dict[str, int]:
            return {t: sizes[t] - before.get(t, 0) for t in sizes
                    if sizes[t] - before.get(t, 0) > 0}
        g, gc = grown(after), grown(compact)
        return {"rows": rows, "grown_bytes": g, "grown_bytes_compact": gc,
                "bytes_per_job": round(sum(g.values()) / n),
                "bytes_per_job_compact": round(sum(gc.values()) / n)}


# ======================================================================= the report


def fmt(v: Any, nd: int = 0) -> str:
    return rp.fmt(v, nd)


HEADERS = ["cell", "coord x workers x slots", "jobs/s steady, 10-90% (other runs)",
           "jobs/s span",
           "PG ms/job (db / shared)", "coord ms/job", "worker ms/job", "WAL B/job (db / cluster)",
           "peak PG conns per coordinator", "worker PG conns", "cores busy: PG / coord / workers",
           "machine busy, load"]


def _others(r: dict[str, Any]) -> str:
    """The other runs' jobs/s of a repeated cell, e.g. " (2,911)"."""
    rest = list(r.get("repeats_jobs_per_s_steady") or [])
    if r["jobs_per_s_steady"] in rest:
        rest.remove(r["jobs_per_s_steady"])
    return f" ({', '.join(fmt(x) for x in rest)})" if rest else ""


def cell_row(name: str, r: dict[str, Any]) -> list[str]:
    cpu = r["cpu_ms_per_job"]
    busy = r["cores_busy"]
    wal = r["wal"]
    m = r["machine"]
    pg_cores = busy.get("pg backends", 0) + busy.get("pg shared", 0)
    return [
        name, f"{r['coordinators']} x {r['workers']} x {r['slots']}",
        fmt(r["jobs_per_s_steady"]) + _others(r), fmt(r["jobs_per_s_span"]),
        f"{cpu.get('pg backends', 0):.3f} / {cpu.get('pg shared', 0):.3f}",
        f"{cpu.get('coordinators', 0):.3f}", f"{cpu.get('workers', 0):.3f}",
        f"{fmt(wal.get('own_db_bytes_per_job'))} / {fmt(wal['cluster_bytes_per_job'])}",
        ", ".join(str(k) for k in r["connections"]["peak_per_coordinator"]),
        str(r["connections"]["worker_processes_tcp_to_postgres_peak"]),
        f"{pg_cores:.2f} / {busy.get('coordinators', 0):.2f} / {busy.get('workers', 0):.2f}",
        f"{m['busy_share'] * 100:.0f}%, {m['loadavg_before'][0] if m['loadavg_before'] else '?'}"
        f" -> {m['loadavg_after'][0] if m['loadavg_after'] else '?'}",
    ]


def build_rows(res: dict[str, Any]) -> list[list[str]]:
    rows = []
    for name, r in res["cells"].items():
        if "error" in r:
            rows.append([name, r["error"][:120]] + [""] * (len(HEADERS) - 2))
        elif "same_as" in r:
            rows.append([name, f"= cell {r['same_as']}"] + [""] * (len(HEADERS) - 2))
        else:
            rows.append(cell_row(name, r))
    return rows


def summary(res: dict[str, Any]) -> dict[str, Any]:
    """The figures docs/operations.md's sizing table uses: medians over the cells."""
    good = [r for r in res["cells"].values() if "jobs_per_s_steady" in r]
    if not good:
        return {}

    def med(values: list[float]) -> float:
        return round(bl.percentile(values, 50), 4)
    best = max(good, key=lambda r: r["jobs_per_s_steady"] or 0)
    return {
        "best_jobs_per_s_steady": best["jobs_per_s_steady"],
        "best_cell": f"{best['coordinators']}c x {best['workers']}w",
        "pg_backend_ms_per_job": med([r["cpu_ms_per_job"].get("pg backends", 0) for r in good]),
        "pg_shared_ms_per_job": med([r["cpu_ms_per_job"].get("pg shared", 0) for r in good]),
        "coordinator_ms_per_job": med([r["cpu_ms_per_job"].get("coordinators", 0) for r in good]),
        "worker_ms_per_job": med([r["cpu_ms_per_job"].get("workers", 0) for r in good]),
        "wal_bytes_per_job": med([r["wal"]["bytes_per_job"] for r in good]),
        "disk_bytes_per_job": med([r["disk"]["bytes_per_job"] for r in good if "disk" in r]),
        "disk_bytes_per_job_compact": med([r["disk"]["bytes_per_job_compact"]
                                           for r in good if "disk" in r]),
        "peak_connections_per_coordinator": max(k for r in good
                                                for k in r["connections"]["peak_per_coordinator"]),
        "worker_connections_to_postgres": max(r["connections"]
                                              ["worker_processes_tcp_to_postgres_peak"]
                                              for r in good),
    }


SIZING_HEADERS = ["jobs per day", "avg / peak jobs/s", "PostgreSQL cores", "coordinators",
                  "PG connections", "WAL per day", "disk per day of retention",
                  "disk at 7 days"]
SIZING_DAYS = (100_000, 1_000_000, 10_000_000, 100_000_000, 500_000_000)
PEAK_FACTOR = 5  # the sizing table's peak: 5x the day's average rate
HEADROOM = 0.5  # plan PostgreSQL and each coordinator at half their cores at the peak
POOL = 16  # SCHEDULER_DB_POOL_SIZE's default


def gb(n: float) -> str:
    return f"{n / 1e9:,.1f} GB" if n >= 1e8 else f"{n / 1e6:,.0f} MB"


def sizing_rows(s: dict[str, Any]) -> list[list[str]]:
    """docs/operations.md's sizing table from a run's medians: at a peak of PEAK_FACTOR
    x the average, PostgreSQL and each coordinator at HEADROOM of their cores (a
    coordinator is one process: one core at most), at least 2 coordinators (one may
    fail); connections coordinators x (POOL + 2); WAL and disk at the measured bytes
    per job (disk as the run left it: dead row versions included). A peak above the
    run's best cell is marked: linear extrapolation, not a measurement."""
    rows = []
    pg_ms = s["pg_backend_ms_per_job"] + s["pg_shared_ms_per_job"]
    for day in SIZING_DAYS:
        avg = day / 86400
        peak = avg * PEAK_FACTOR
        pg_cores = peak * pg_ms / 1000 / HEADROOM
        coords = max(2, -(-peak * s["coordinator_ms_per_job"] / 1000 // HEADROOM))
        disk = day * s["disk_bytes_per_job"]
        beyond = " (beyond the run)" if peak > s["best_jobs_per_s_steady"] else ""
        rows.append([f"{day:,}", f"{avg:,.0f} / {peak:,.0f}{beyond}",
                     f"{max(1, -(-pg_cores // 1)):.0f} ({pg_cores:.2f})", f"{coords:.0f}",
                     f"{coords * (POOL + 2):.0f}", gb(day * s["wal_bytes_per_job"]), gb(disk),
                     gb(disk * 7)])
    return rows


def header(res: dict[str, Any]) -> str:
    m, srv, cfg = res["machine"], res.get("server", {}), res["config"]
    return (f"{res.get('results_file', 'capacity')}{' (--quick)' if res.get('quick') else ''}"
            f", {res['started_at']}, git "
            f"{res.get('git')}: {m.get('cpus')} cores, {m.get('memory_gb')} GB, PostgreSQL "
            f"{str(srv.get('server_version', '?')).split(' ')[0]} ({srv.get('kind', '?')}; "
            f"synchronous_commit {srv.get('synchronous_commit')}, fsync {srv.get('fsync')}, "
            f"shared_buffers {srv.get('shared_buffers')}, autovacuum {srv.get('autovacuum')}); "
            f"{cfg['jobs']:,} {JOB_TYPE} jobs a cell (backlog {cfg.get('backlog', '-')}), best "
            f"of {cfg.get('repeat', 1)}; load average {m.get('loadavg_at_start', ['?'])[0]} at "
            f"start, {m.get('loadavg_at_end', ['?'])[0]} at end; {res.get('seconds')} s")


def print_report(res: dict[str, Any], markdown: bool) -> None:
    """The run's tables; with ``markdown``, the block docs/operations.md cites (between
    its capacity markers), paragraphs and tables apart."""
    gap = "\n" if markdown else ""
    print(header(res) + gap)
    print(rp.render(build_rows(res), markdown=markdown, headers=HEADERS) + gap)
    s = res.get("summary") or {}
    if s:
        print(f"Medians over the cells: PostgreSQL {s['pg_backend_ms_per_job']} ms/job (+ shared "
              f"{s['pg_shared_ms_per_job']}), coordinator {s['coordinator_ms_per_job']} ms/job, "
              f"worker {s['worker_ms_per_job']} ms/job, WAL {s['wal_bytes_per_job']:,.0f} B/job, "
              f"disk {s['disk_bytes_per_job']:,.0f} B per retained job as run "
              f"({s['disk_bytes_per_job_compact']:,.0f} compact); at most "
              f"{s['peak_connections_per_coordinator']} connections per coordinator, "
              f"{s['worker_connections_to_postgres']} per worker; best "
              f"{s['best_jobs_per_s_steady']:,.0f} jobs/s ({s['best_cell']}).")
        print()
        print(f"Sizing (peak = {PEAK_FACTOR}x the average; PostgreSQL and coordinators at "
              f"{HEADROOM:.0%} of their cores at the peak; SCHEDULER_DB_POOL_SIZE {POOL}):"
              + gap)
        print(rp.render(sizing_rows(s), markdown=markdown, headers=SIZING_HEADERS))
    for name, err in res.get("errors", {}).items():
        print(f"error: {name}: {err}")


# ======================================================================= main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="5,000 jobs a cell instead of 60,000 (a smoke run, about 2 minutes)")
    p.add_argument("--jobs", type=int, help="jobs per cell (60,000; quick 5,000)")
    p.add_argument("--slots", type=int, default=8, help="slots per worker (8)")
    p.add_argument("--repeat", type=int,
                   help="runs of each cell; the one with the most jobs/s is reported, the "
                        "others' jobs/s beside it (other work on the machine only slows a "
                        "run down) (2; quick 1)")
    p.add_argument("--backlog", type=int, default=5000,
                   help="Pending jobs the producer keeps (5,000): when fewer wait, it "
                        "inserts this many more, until --jobs were inserted")
    p.add_argument("--workers", default="1,2,4,8,16",
                   help="worker counts with one coordinator (1,2,4,8,16)")
    p.add_argument("--coordinators", default="1,2,4",
                   help="coordinator counts sharing --spread-workers workers (1,2,4)")
    p.add_argument("--spread-workers", type=int, default=8,
                   help="workers of the coordinator cells (8)")
    p.add_argument("--dsn", default=None,
                   help=f"PostgreSQL URL (default: DATABASE_URL, else {rp.DEFAULT_DSN} if it "
                        "answers, else an embedded one)")
    p.add_argument("--embedded", action="store_true",
                   help="an embedded PostgreSQL of this run's own (durable): the whole "
                        "cluster's CPU and WAL are the cells' alone")
    p.add_argument("--keep-dbs", action="store_true", help="do not drop the cells' databases")
    p.add_argument("--out", help="result file (default bench/results/capacity-<stamp>.json)")
    p.add_argument("--report", metavar="JSON", help="only print the table of an earlier run")
    p.add_argument("--markdown", action="store_true", help="a Markdown table")
    a = p.parse_args(argv)
    a.jobs = a.jobs or (5000 if a.quick else 60000)
    a.repeat = a.repeat or (1 if a.quick else 2)
    a.worker_counts = [int(x) for x in a.workers.split(",") if x.strip()]
    a.coordinator_counts = [int(x) for x in a.coordinators.split(",") if x.strip()]
    return a


def _shown(path: Path) -> str:
    """``path`` relative to the repository when it is in it."""
    try:
        return str(path.resolve().relative_to(rp.ROOT))
    except ValueError:
        return str(path)


def memory_gb() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            return round(int(f.readline().split()[1]) / 1024 / 1024, 1)
    except (OSError, ValueError, IndexError):
        return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report:
        earlier = json.loads(Path(args.report).read_text())
        earlier["results_file"] = _shown(Path(args.report))
        print_report(earlier, args.markdown)
        return 0
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    cap = Capacity(args)
    run = cap.run
    res: dict[str, Any] = {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "quick": args.quick,
        "config": {k: v for k, v in vars(args).items()}, "git": rp.git_head(),
        "machine": {"host": platform.node(), "cpus": os.cpu_count(), "memory_gb": memory_gb(),
                    "python": platform.python_version(), "kernel": platform.release(),
                    "loadavg_at_start": bl.loadavg()},
        "cells": {}, "errors": {}}
    started = time.monotonic()
    interrupted = False
    try:
        run.server = bl.open_server(rp.resolve_dsn(args), run.tmp)
        with psycopg.connect(run.server.admin_dsn, connect_timeout=10) as conn:
            settings: dict[str, str] = dict(conn.execute(
                "SELECT name, setting || coalesce(' ' || unit, '') FROM pg_settings "
                "WHERE name = ANY(%s)", (list(PG_SETTINGS),)).fetchall())
        res["server"] = {"kind": run.server.kind, **run.server.settings(), **settings}
        log(f"PostgreSQL {run.server.kind} {settings.get('server_version')}; logs in "
            f"{run.procs.log_dir}")
        plan: list[tuple[str, int, int]] = [(f"1c x {w}w", 1, w) for w in args.worker_counts]
        plan += [(f"{c}c x {args.spread_workers}w", c, args.spread_workers)
                 for c in args.coordinator_counts]
        for name, coords, workers in plan:
            if name in res["cells"]:  # the W sweep's cell of this size
                continue
            t = time.monotonic()
            try:
                tries = [cap.cell(coords, workers) for _ in range(args.repeat)]
                best = max(tries, key=lambda r: r["jobs_per_s_steady"] or 0)
                best["repeats_jobs_per_s_steady"] = [r["jobs_per_s_steady"] for r in tries]
                res["cells"][name] = best
            except Exception as exc:
                res["errors"][name] = f"{type(exc).__name__}: {exc}"
                res["cells"][name] = {"error": res["errors"][name]}
                log(f"cell {name} FAILED: {type(exc).__name__}: {exc}")
                traceback.print_exc(file=sys.stderr)
            res["cells"][name]["cell_seconds"] = round(time.monotonic() - t, 1)
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted: stopping everything")
    except (Exception, SystemExit) as exc:
        res["errors"]["setup"] = f"{type(exc).__name__}: {exc}"
        log(f"setup FAILED: {type(exc).__name__}: {exc}")
    finally:
        run.shut_down(keep_dbs=args.keep_dbs)
    res["seconds"] = round(time.monotonic() - started, 1)
    res["machine"]["loadavg_at_end"] = bl.loadavg()
    res["log_issues"] = run.procs.log_issues
    res["summary"] = summary(res)
    res["markdown"] = rp.render(build_rows(res), markdown=True, headers=HEADERS)
    out = Path(args.out) if args.out else rp.RESULTS / f"capacity-{run.stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    res["results_file"] = _shown(out)
    out.write_text(json.dumps(res, indent=2, default=str))
    print()
    print_report(res, markdown=False)
    print(f"results: {out}")
    if res["errors"] or interrupted:
        print(f"logs of the processes: {run.procs.log_dir}")
    else:
        import shutil

        shutil.rmtree(run.tmp, ignore_errors=True)
    if interrupted:
        return 130
    return 1 if res["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
