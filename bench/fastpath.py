"""The fast path, end to end: jobs/s and CPU per job in each process.

    .venv/bin/python bench/fastpath.py [--workers W] [--slots S] [--jobs N] [--type noop]
        [--queue-limit L]
        [--phases throughput,latency,submit] [--latency-jobs K] [--submit-jobs N]
        [--profile DIR] [--cprofile DIR] [--env NAME=VALUE ...] [--dsn ADMIN_DSN] [--keep]

Makes a scratch database on the server of ``--dsn`` (default ``DATABASE_URL``, else
``postgresql://postgres@127.0.0.1:5432/postgres``), migrates it and starts a real
coordinator. Then, by phase:

- ``submit``: with no worker running, POST /api/jobs one job per request from C
  connections, then POST /api/jobs/batch with 1000 jobs per request; jobs/s each.
- ``throughput``: starts W workers x S slots, inserts N jobs with one
  ``INSERT ... SELECT generate_series`` and waits for all of them to finish. Reports
  jobs/s from the first claim to the last finish (database clock), the CPU seconds
  each process spent meanwhile (utime + stime from /proc/<pid>/stat: coordinator,
  workers, their warm children, the PostgreSQL backends of this database, and the
  server's shared background processes, which other databases use too), the HTTP
  requests per job by route (from the coordinator's /metrics) and whether every job
  ran exactly once.
- ``latency``: one job at a time through POST /api/jobs on an idle system (a pause
  between jobs), pickup = the run's start minus the job's creation (database clock).

``--profile DIR`` samples the coordinator and the first worker with py-spy (install it
into the venv: ``pip install py-spy``) during the phases and prints the functions that
took the most wall-clock time, own and total: where each process waits, including time
it is runnable but preempted (a write that wakes the reader). ``--cprofile DIR`` runs
the coordinator and the first worker under cProfile with a CPU clock instead and prints
their top functions at the end (whole process life; 2-3x slower while profiled).
docs/decisions/0009-fast-path.md has the figures this measured.
"""

from __future__ import annotations

import argparse
import collections
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import msgspec
import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

ROOT = Path(__file__).resolve().parents[1]
TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(") ", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def descendants(pid: int) -> set[int]:
    found: set[int] = set()
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return found
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                found.update(int(c) for c in f.read().split())
        except FileNotFoundError:
            continue
    for child in list(found):
        found |= descendants(child)
    return found


# ``python -c CPROFILE OUT ARGS``: command.cli under cProfile with a CPU-time clock
# (process_time), the stats written to OUT when it exits.
CPROFILE = """
import atexit, cProfile, sys, time
out = sys.argv.pop(1)
prof = cProfile.Profile(time.process_time)
atexit.register(lambda: (prof.disable(), prof.dump_stats(out)))
from scheduler_core.command import cli
prof.enable()
sys.exit(cli.main(sys.argv[1:]))
"""


class Proc:
    def __init__(self, name: str, args: list[str], env: dict[str, str], logdir: Path, *,
                 cprofile: Path | None = None) -> None:
        self.name = name
        self.log_path = logdir / f"{name}.log"
        self._log = open(self.log_path, "wb")
        argv = [sys.executable, "-m", "scheduler_core.command.cli", *args]
        if cprofile is not None:
            argv = [sys.executable, "-c", CPROFILE, str(cprofile), *args]
        self.popen = subprocess.Popen(argv, env={**os.environ, **env}, cwd=ROOT,
                                      stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._log.close()


class Groups:
    """CPU seconds by group of processes, between two snapshots."""

    def __init__(self) -> None:
        self.pids: dict[str, set[int]] = collections.defaultdict(set)
        self.before: dict[int, float] = {}

    def add(self, group: str, pids: set[int]) -> None:
        for pid in pids:
            self.pids[group].add(pid)
            if pid not in self.before:
                self.before[pid] = cpu_seconds(pid) or 0.0

    def late(self, group: str, pids: set[int]) -> None:
        """Processes that appeared after the first snapshot: all their CPU counts."""
        for pid in pids:
            if pid not in self.before:
                self.pids[group].add(pid)
                self.before[pid] = 0.0

    def spent(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for group, pids in self.pids.items():
            total = 0.0
            for pid in pids:
                now = cpu_seconds(pid)
                if now is not None:
                    total += now - self.before[pid]
            out[group] = total
        return out


def pg_pids(conn: psycopg.Connection[Any], *, own_db: bool) -> set[int]:
    if own_db:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                            " AND pid <> pg_backend_pid()").fetchall()
    else:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname IS NULL"
                            " AND backend_type <> 'client backend'").fetchall()
    return {r[0] for r in rows}


def http_counts(url: str) -> dict[str, float]:
    """Requests served so far, by route, from the coordinator's /metrics."""
    text = httpx.get(url + "/metrics", timeout=10).text
    out: dict[str, float] = collections.Counter()
    for line in text.splitlines():
        if line.startswith("scheduler_http_request_duration_seconds_count{"):
            labels, value = line.rsplit(" ", 1)
            route = labels.split('route="', 1)[1].split('"', 1)[0]
            out[route] += float(value)
    return out


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        admin = args.dsn or os.environ.get("DATABASE_URL") or \
            "postgresql://postgres@127.0.0.1:5432/postgres"
        self.admin = make_conninfo(admin, dbname="postgres")
        self.dbname = f"fastpath_{uuid.uuid4().hex[:10]}"
        self.dsn = make_conninfo(self.admin, dbname=self.dbname)
        self.logdir = Path(args.logdir or f"/tmp/{self.dbname}")
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {"DATABASE_URL": self.dsn, "SCHEDULER_LOG_FORMAT": "json",
                    "COORDINATOR_URL": self.url}
        for item in args.env:
            name, _, value = item.partition("=")
            self.env[name] = value
        self.coordinator: Proc | None = None
        self.workers: list[Proc] = []

    # --- set-up --------------------------------------------------------------------

    def setup(self) -> None:
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {self.dbname}".encode())
        subprocess.run([sys.executable, "-m", "scheduler_core.command.cli", "migrate"], check=True,
                       env={**os.environ, **self.env}, cwd=ROOT, stdout=subprocess.DEVNULL)
        self.coordinator = Proc("coordinator", ["coordinator", "--port", str(self.port),
                                                "--no-migrate"], self.env, self.logdir,
                                cprofile=self._cprofile("coordinator"))
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or self.coordinator.popen.poll() is not None:
                raise SystemExit("coordinator did not come up; see "
                                 f"{self.coordinator.log_path}")
            time.sleep(0.05)

    def start_workers(self) -> None:
        a = self.args
        for i in range(a.workers):
            self.workers.append(Proc(f"worker{i}", [
                "worker", "--slots", str(a.slots), "--coordinator-url", self.url,
                "--worker-id", f"fp{i}"], self.env, self.logdir,
                cprofile=self._cprofile("worker0") if i == 0 else None))
        deadline = time.monotonic() + 60
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while True:
                n = conn.execute("SELECT count(*) FROM workers WHERE state = 'Active'"
                                 ).fetchone()[0]  # type: ignore[index]
                kids = [len(descendants(w.pid)) for w in self.workers]
                if n == a.workers and all(k >= a.children for k in kids):
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"workers did not come up ({n} active, children {kids})")
                time.sleep(0.05)
        time.sleep(0.5)  # let the first long polls settle

    def _cprofile(self, name: str) -> Path | None:
        if not self.args.cprofile:
            return None
        folder = Path(self.args.cprofile)
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{name}.prof"

    def teardown(self) -> None:
        for w in self.workers:
            w.stop()
        if self.coordinator is not None:
            self.coordinator.stop()
        if not self.args.keep:
            with psycopg.connect(self.admin, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {self.dbname} WITH (FORCE)".encode())

    # --- phases --------------------------------------------------------------------

    def throughput(self) -> dict[str, Any]:
        a = self.args
        n = a.jobs
        groups = Groups()
        assert self.coordinator is not None
        conn = psycopg.connect(self.dsn, autocommit=True)
        shared = psycopg.connect(self.admin, autocommit=True)
        groups.add("coordinator", {self.coordinator.pid})
        groups.add("workers", {w.pid for w in self.workers})
        groups.add("children", {c for w in self.workers for c in descendants(w.pid)})
        groups.add("pg backends", pg_pids(conn, own_db=True))
        groups.add("pg shared", pg_pids(shared, own_db=False))
        if a.queue_limit:  # a cluster-wide limit on the jobs' queue (migration 0006)
            conn.execute("INSERT INTO queues (name, concurrency_limit) VALUES ('default', %s)",
                         (a.queue_limit,))
        before_http = http_counts(self.url)
        profilers = self._start_profilers("throughput")
        started = time.monotonic()
        conn.execute("""
            INSERT INTO jobs (id, type, payload, status, queue, priority, run_at,
                              max_attempts, timeout_seconds)
            SELECT gen_random_uuid(), %s, '{}'::jsonb, 'Pending', 'default', 0, now(), 3, 60
            FROM generate_series(1, %s)""", (a.type, n))
        deadline = started + a.timeout
        while True:
            done = conn.execute("SELECT count(*) FROM jobs WHERE finished_at IS NOT NULL"
                                ).fetchone()[0]  # type: ignore[index]
            groups.late("pg backends", pg_pids(conn, own_db=True))
            if done >= n:
                break
            if time.monotonic() > deadline:
                print(f"  timed out: {done} of {n} finished", file=sys.stderr)
                break
            time.sleep(0.05)
        wall = time.monotonic() - started
        spent = groups.spent()
        self._stop_profilers(profilers)
        after_http = http_counts(self.url)
        span = conn.execute(
            "SELECT EXTRACT(EPOCH FROM max(finished_at) - min(started_at))::float8,"
            " count(*), count(DISTINCT job_id), count(*) FILTER (WHERE outcome = 'Succeeded')"
            " FROM job_runs").fetchone()
        assert span is not None
        per_worker = conn.execute(
            "SELECT worker_id, count(*) FROM job_runs GROUP BY 1 ORDER BY 1").fetchall()
        statuses = dict(conn.execute(
            "SELECT status, count(*) FROM jobs GROUP BY 1").fetchall())
        # The most runs alive at one instant (an end sorts before a start at a tie).
        most_at_once = conn.execute(
            "SELECT max(n) FROM (SELECT sum(d) OVER (ORDER BY t, d ROWS UNBOUNDED PRECEDING)"
            " AS n FROM (SELECT started_at AS t, 1 AS d FROM job_runs UNION ALL"
            " SELECT finished_at, -1 FROM job_runs) e) x").fetchone()[0]  # type: ignore[index]
        conn.close()
        shared.close()
        seconds, runs, jobs_run, succeeded = span
        requests = {route: after_http.get(route, 0) - before_http.get(route, 0)
                    for route in after_http}
        return {"jobs": n, "seconds": seconds, "wall": wall, "jobs_per_s": n / seconds,
                "cpu": spent, "runs": runs, "jobs_run": jobs_run, "succeeded": succeeded,
                "statuses": statuses, "per_worker": per_worker, "most_at_once": most_at_once,
                "requests": {r: c for r, c in requests.items() if c}}

    def latency(self) -> dict[str, Any]:
        ids = []
        with httpx.Client(base_url=self.url, timeout=10) as client:
            for _ in range(self.args.latency_jobs):
                resp = client.post("/api/jobs", json={"type": self.args.type, "payload": {}})
                assert resp.status_code == 201, resp.text
                ids.append(resp.json()["id"])
                time.sleep(self.args.latency_gap)
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            deadline = time.monotonic() + 30
            while conn.execute("SELECT count(*) FROM jobs WHERE id = ANY(%s::uuid[])"
                               " AND finished_at IS NULL", (ids,)).fetchone()[0]:  # type: ignore[index]
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            rows = conn.execute("""
                SELECT EXTRACT(EPOCH FROM r.started_at - j.created_at)::float8,
                       EXTRACT(EPOCH FROM j.finished_at - j.created_at)::float8
                FROM jobs j JOIN job_runs r ON r.job_id = j.id
                WHERE j.id = ANY(%s::uuid[])""", (ids,)).fetchall()
        pickup = sorted(r[0] * 1000 for r in rows)
        total = sorted(r[1] * 1000 for r in rows if r[1] is not None)

        def pct(values: list[float], p: float) -> float:
            return values[min(len(values) - 1, int(len(values) * p))]
        return {"n": len(rows), "pickup_p50": pct(pickup, 0.5), "pickup_p99": pct(pickup, 0.99),
                "pickup_max": pickup[-1], "done_p50": pct(total, 0.5),
                "done_p99": pct(total, 0.99)}

    def submit(self) -> dict[str, Any]:
        """Submission rate, one job per request and in batches (no worker running)."""
        import threading

        body = msgspec.json.encode({"type": self.args.type, "payload": {}})
        batch = msgspec.json.encode({"jobs": [{"type": self.args.type, "payload": {}}] * 1000})
        out: dict[str, Any] = {}
        for phase, name, path, payload, per, total in (
                ("single", "one per request", "/api/jobs", body, 1, self.args.submit_jobs),
                ("batch", "batch of 1000", "/api/jobs/batch", batch, 1000,
                 self.args.submit_jobs * 10)):
            requests = max(1, total // per)
            conns = self.args.submit_connections
            counts = [requests // conns + (i < requests % conns) for i in range(conns)]
            errors: list[str] = []

            def post(count: int, path: str = path, payload: bytes = payload,
                     errors: list[str] = errors) -> None:
                raw = post_loop(self.port, path, payload, count)
                if raw:
                    errors.append(raw)
            profilers = self._start_profilers(f"submit-{phase}")
            before = cpu_seconds(self.coordinator.pid) if self.coordinator else 0.0
            t0 = time.monotonic()
            threads = [threading.Thread(target=post, args=(c,)) for c in counts]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed = time.monotonic() - t0
            after = cpu_seconds(self.coordinator.pid) if self.coordinator else 0.0
            self._stop_profilers(profilers)
            out[name] = {"jobs": requests * per, "seconds": elapsed,
                         "jobs_per_s": requests * per / elapsed,
                         "coordinator_cpu_ms_per_job": ((after or 0) - (before or 0))
                         * 1000 / (requests * per),
                         "errors": errors[:3]}
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute("TRUNCATE jobs CASCADE")
        return out

    # --- profiling -----------------------------------------------------------------

    def _start_profilers(self, phase: str) -> list[tuple[str, subprocess.Popen[bytes], Path]]:
        if not self.args.profile:
            return []
        folder = Path(self.args.profile)
        folder.mkdir(parents=True, exist_ok=True)
        spy = Path(sys.executable).with_name("py-spy")
        out = []
        assert self.coordinator is not None
        targets = [("coordinator", self.coordinator.pid)]
        if self.workers:
            targets.append(("worker0", self.workers[0].pid))
        for name, pid in targets:
            path = folder / f"{phase}-{name}.txt"
            p = subprocess.Popen([str(spy), "record", "-p", str(pid), "-r", "250",
                                  "--nonblocking", "-f", "raw", "-o", str(path), "-d", "600"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            out.append((name, p, path))
        time.sleep(0.5)
        return out

    def _stop_profilers(self, profilers: list[tuple[str, subprocess.Popen[bytes], Path]]) -> None:
        for name, p, path in profilers:
            p.send_signal(signal.SIGINT)
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
            if path.exists():
                print(f"\nprofile of {name} ({path}):")
                print(summarize_profile(path, self.args.profile_top))


def post_loop(port: int, path: str, payload: bytes, count: int) -> str:
    """``count`` POSTs on one keep-alive connection (a bare HTTP/1.1 client, so the
    client's own cost stays small); returns the first unexpected answer, if any."""
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n").encode() + payload
    s = socket.create_connection(("127.0.0.1", port))
    buf = b""
    try:
        for _ in range(count):
            s.sendall(head)
            while b"\r\n\r\n" not in buf:
                chunk = s.recv(65536)
                if not chunk:
                    return "connection closed by the server"
                buf += chunk
            header, buf = buf.split(b"\r\n\r\n", 1)
            length = 0
            for line in header.split(b"\r\n")[1:]:
                k, _, v = line.partition(b":")
                if k.strip().lower() == b"content-length":
                    length = int(v)
            while len(buf) < length:
                chunk = s.recv(65536)
                if not chunk:
                    return "connection closed by the server"
                buf += chunk
            body, buf = buf[:length], buf[length:]
            status = int(header.split(b" ", 2)[1])
            if status not in (200, 201):
                return f"{status}: {body[:300]!r}"
    finally:
        s.close()
    return ""


def summarize_profile(path: Path, top: int) -> str:
    """Own and total time per function from py-spy's collapsed stacks."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        frames = [f.split(" (", 1)[0] + " (" + f.split(" (", 1)[1].split(":", 1)[0].rsplit("/", 1)[-1]
                  + ")" if " (" in f else f for f in stack.split(";")]
        samples += n
        own[frames[-1]] += n
        for f in set(frames):
            total[f] += n
    lines = [f"  {samples} samples; own time:"]
    lines += [f"    {c / samples * 100:5.1f}%  {f}" for f, c in own.most_common(top)]
    lines.append("  total time (including callees):")
    lines += [f"    {c / samples * 100:5.1f}%  {f}" for f, c in total.most_common(top * 2)]
    return "\n".join(lines)


def report_throughput(r: dict[str, Any], args: argparse.Namespace) -> None:
    n = r["jobs"]
    print(f"\nthroughput: {n} {args.type} jobs on {args.workers} workers x {args.slots} slots")
    print(f"  {r['jobs_per_s']:8.0f} jobs/s  (first claim to last finish: {r['seconds']:.2f} s;"
          f" wall {r['wall']:.2f} s)")
    print(f"  runs {r['runs']}, distinct jobs run {r['jobs_run']}, succeeded {r['succeeded']};"
          f" statuses {r['statuses']}")
    print(f"  per worker: {r['per_worker']}")
    print(f"  most runs alive at once: {r['most_at_once']}"
          + (f" (queue limit {args.queue_limit})" if args.queue_limit else ""))
    total = 0.0
    print("  CPU per job:")
    for group in ("coordinator", "workers", "children", "pg backends", "pg shared"):
        s = r["cpu"].get(group, 0.0)
        total += s
        print(f"    {group:12s} {s * 1000 / n:7.3f} ms  ({s:.2f} s)")
    print(f"    {'total':12s} {total * 1000 / n:7.3f} ms")
    print("  HTTP requests per job:")
    for route, count in sorted(r["requests"].items()):
        print(f"    {route:28s} {count / n:7.3f}  ({count:.0f})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--slots", type=int, default=4)
    p.add_argument("--children", type=int, default=None,
                   help="warm children to wait for per worker (default: slots)")
    p.add_argument("--jobs", type=int, default=5000)
    p.add_argument("--type", default="noop")
    p.add_argument("--phases", default="throughput")
    p.add_argument("--latency-jobs", type=int, default=200)
    p.add_argument("--latency-gap", type=float, default=0.03)
    p.add_argument("--submit-jobs", type=int, default=3000)
    p.add_argument("--submit-connections", type=int, default=4)
    p.add_argument("--timeout", type=float, default=300)
    p.add_argument("--queue-limit", type=int, default=0,
                   help="throughput: give the jobs' queue this cluster-wide concurrency "
                   "limit (0: none)")
    p.add_argument("--profile", help="folder for py-spy's samples")
    p.add_argument("--profile-top", type=int, default=25)
    p.add_argument("--cprofile", help="folder: run the coordinator and the first worker "
                   "under cProfile (CPU clock) and print their top functions")
    p.add_argument("--env", action="append", default=[], help="NAME=VALUE for every process")
    p.add_argument("--dsn")
    p.add_argument("--logdir")
    p.add_argument("--keep", action="store_true")
    args = p.parse_args()
    if args.children is None:
        args.children = args.slots
    phases = [x.strip() for x in args.phases.split(",") if x.strip()]
    bench = Bench(args)
    print(f"database {conninfo_to_dict(bench.dsn)['dbname']}, logs in {bench.logdir}; "
          f"load average {os.getloadavg()[0]:.1f}")
    try:
        bench.setup()
        if "submit" in phases:
            for name, r in bench.submit().items():
                print(f"\nsubmit, {name}: {r['jobs_per_s']:8.0f} jobs/s ({r['jobs']} jobs in "
                      f"{r['seconds']:.2f} s; coordinator CPU "
                      f"{r['coordinator_cpu_ms_per_job']:.3f} ms/job) {r['errors'] or ''}")
        if "throughput" in phases or "latency" in phases:
            bench.start_workers()
        if "throughput" in phases:
            report_throughput(bench.throughput(), args)
        if "latency" in phases:
            r = bench.latency()
            print(f"\nidle pickup latency over {r['n']} jobs: p50 {r['pickup_p50']:.2f} ms, "
                  f"p99 {r['pickup_p99']:.2f} ms, max {r['pickup_max']:.2f} ms; "
                  f"submit to finished p50 {r['done_p50']:.2f} ms, p99 {r['done_p99']:.2f} ms")
        print(f"\nload average after: {os.getloadavg()[0]:.1f}")
    finally:
        bench.teardown()
    if args.cprofile:
        import pstats

        for name in ("coordinator", "worker0"):
            path = Path(args.cprofile) / f"{name}.prof"
            if path.exists():
                print(f"\ncProfile (CPU time, whole process life) of {name}: {path}")
                pstats.Stats(str(path)).sort_stats("tottime").print_stats(args.profile_top)


if __name__ == "__main__":
    main()
