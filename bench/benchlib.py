"""Helpers for bench/run.py: processes it starts, databases it creates, memory, stats.

Every process is started in its own session (so a Ctrl-C on the terminal reaches only
the driver, which then stops everything in order) and registered in :class:`Procs`;
``Procs.stop_all`` stops each one by its pid (SIGTERM, a bounded wait, then SIGKILL of
its process group, which holds its own children: a worker's job processes, a peer
adapter's workers). Nothing here waits without a deadline.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import psycopg

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")


def log(*parts: object) -> None:
    print("[bench]", *parts, file=sys.stderr, flush=True)


# -- waiting ----------------------------------------------------------------------------


class Timeout(RuntimeError):
    pass


def wait_for(check: Callable[[], T], *, timeout: float, interval: float = 0.05,
             what: str = "condition") -> T:
    """Call ``check`` until it returns something truthy; Timeout after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = check()
        except ProcessDied:
            raise
        except Exception as exc:  # not up yet (connection refused, no table yet, ...)
            last = exc
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            raise Timeout(f"timed out after {timeout:g} s waiting for {what} (last: {last!r})")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- processes --------------------------------------------------------------------------


class ProcessDied(RuntimeError):
    pass


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def check(self) -> None:
        if self.popen.poll() is not None:
            raise ProcessDied(f"{self.name} (pid {self.pid}) exited with {self.popen.returncode}; "
                              f"log: {self.log_path}\n{self.tail()}")

    def tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


@dataclass
class Procs:
    """Every process the benchmark starts; ``stop_all`` ends them (also on errors)."""

    log_dir: Path
    items: list[Proc] = field(default_factory=list)
    # per stopped process: warning/error lines of its (JSON) log, e.g. a 500 a worker got
    log_issues: dict[str, dict[str, Any]] = field(default_factory=dict)

    def start(self, name: str, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
              cwd: Path = ROOT) -> Proc:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        path = self.log_dir / f"{name}.log"
        n = 1
        while path.exists():
            n += 1
            path = self.log_dir / f"{name}-{n}.log"
        with open(path, "wb") as out:
            popen = subprocess.Popen(list(argv), env={**os.environ, **(env or {})}, cwd=cwd,
                                     stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        proc = Proc(name, popen, path)
        self.items.append(proc)
        return proc

    def stop(self, proc: Proc, grace: float = 15.0) -> int | None:
        """SIGTERM the process; after ``grace`` s SIGKILL its process group. Then any
        member of its group still running (its children) is stopped the same way."""
        if proc.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.popen.send_signal(signal.SIGTERM)
            try:
                proc.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                log(f"{proc.name} (pid {proc.pid}) still running {grace:g} s after SIGTERM: SIGKILL")
                _killpg(proc.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.popen.wait(timeout=5)
        # The session we created has the leader's pid as its group id: what is left in it
        # (a peer adapter's workers, a worker's job processes) is ours.
        if _group_alive(proc.pid):
            _killpg(proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + 5
            while _group_alive(proc.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _group_alive(proc.pid):
                _killpg(proc.pid, signal.SIGKILL)
        if proc in self.items:
            self.items.remove(proc)
        issues = log_issues(proc.log_path)
        if issues:
            self.log_issues[proc.log_path.stem] = issues
        return proc.popen.returncode

    def stop_all(self) -> None:
        for proc in reversed(list(self.items)):
            try:
                self.stop(proc, grace=10.0)
            except Exception as exc:  # keep stopping the others
                log(f"stopping {proc.name} failed: {exc!r}")


def log_issues(path: Path) -> dict[str, Any] | None:
    """Warning and error lines of a structured (JSON lines) log: counts by event, and
    the first line of each event (cut), or None when there are none."""
    counts: dict[str, int] = {}
    first: dict[str, str] = {}
    try:
        with open(path, errors="replace") as f:
            for line in f:
                if '"level":"warning"' not in line and '"level":"error"' not in line:
                    continue
                try:
                    event = str(json.loads(line).get("event", "?"))
                except ValueError:
                    event = "?"
                counts[event] = counts.get(event, 0) + 1
                first.setdefault(event, line.strip()[:600])
    except OSError:
        return None
    return {"counts": counts, "first": first} if counts else None


def _killpg(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    """Does any non-zombie process of process group ``pgid`` run?"""
    for _pid, stat in _all_stats():
        if stat[2] == pgid and stat[0] != "Z":
            return True
    return False


def _all_stats() -> list[tuple[int, tuple[str, int, int]]]:
    """(pid, (state, ppid, pgrp)) for every process."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                rest = f.read().rsplit(") ", 1)[1].split()
        except (OSError, IndexError):
            continue
        out.append((int(entry), (rest[0], int(rest[1]), int(rest[2]))))
    return out


# -- memory -----------------------------------------------------------------------------


def rss_mb(pid: int) -> float | None:
    """VmRSS of ``pid`` in MB (the process alone, not its children)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def children(pid: int) -> list[int]:
    return sorted(p for p, st in _all_stats() if st[1] == pid and st[0] != "Z")


def memory_snapshot(pid: int) -> dict[str, Any]:
    kids = children(pid)
    kid_rss = [rss_mb(k) for k in kids]
    return {"rss_mb": rss_mb(pid), "children": len(kids),
            "children_rss_mb": [r for r in kid_rss if r is not None],
            "children_rss_total_mb": round(sum(r for r in kid_rss if r is not None), 1)}


# -- PostgreSQL -------------------------------------------------------------------------


def with_dbname(dsn: str, dbname: str) -> str:
    parts = urlsplit(dsn)
    if parts.scheme not in ("postgresql", "postgres"):
        raise SystemExit(f"expected a postgresql:// URL, found {dsn!r}")
    return urlunsplit(parts._replace(path="/" + dbname))


def can_connect(dsn: str) -> str | None:
    """None when ``dsn`` answers, else why not."""
    try:
        with psycopg.connect(dsn, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return None
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)


@dataclass
class Server:
    """The PostgreSQL server every figure of one run is measured on."""

    dsn: str  # any database on it; the driver only uses it to reach the server
    kind: str  # "given" or "embedded"
    databases: list[str] = field(default_factory=list)
    embedded: Any = None  # pgserver.EmbeddedPostgres when we started one
    embedded_ctx: Any = None

    @property
    def admin_dsn(self) -> str:
        return with_dbname(self.dsn, "postgres")

    def fresh_database(self, purpose: str) -> str:
        """Create an empty database (dropped again by ``drop_all``) and return its DSN."""
        name = f"scbench_{purpose}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(self.admin_dsn, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'CREATE DATABASE "{name}"'.encode())
        self.databases.append(name)
        return with_dbname(self.dsn, name)

    def drop(self, name: str) -> None:
        with psycopg.connect(self.admin_dsn, autocommit=True, connect_timeout=10) as conn:
            conn.execute("SET statement_timeout = '60s'")
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())
        if name in self.databases:
            self.databases.remove(name)

    def drop_all(self) -> None:
        for name in list(self.databases):
            try:
                self.drop(name)
            except psycopg.Error as exc:
                log(f"could not drop database {name}: {exc}")

    def settings(self) -> dict[str, str]:
        names = ("server_version", "max_connections", "shared_buffers", "synchronous_commit",
                 "fsync", "max_wal_size", "checkpoint_timeout")
        with psycopg.connect(self.admin_dsn, connect_timeout=10) as conn:
            rows = conn.execute("SELECT name, setting || coalesce(' ' || unit, '') FROM pg_settings "
                                "WHERE name = ANY(%s)", (list(names),)).fetchall()
            conns = conn.execute("SELECT count(*) FROM pg_stat_activity").fetchone()
        out = {r[0]: r[1] for r in rows}
        out["connections_in_use_at_start"] = str(conns[0] if conns else "?")
        return out

    def close(self) -> None:
        self.drop_all()
        if self.embedded_ctx is not None:
            self.embedded_ctx.__exit__(None, None, None)
            self.embedded_ctx = None


def open_server(dsn: str | None, data_dir: Path) -> Server:
    """``dsn`` (a URL) or, when None, an embedded PostgreSQL started for this run."""
    if dsn:
        why = can_connect(with_dbname(dsn, "postgres"))
        if why is not None:
            raise SystemExit(f"cannot reach PostgreSQL at {dsn}: {why}")
        return Server(dsn=dsn, kind="given")
    from scheduler_core.command import pgserver

    log("no --dsn / DATABASE_URL: starting an embedded PostgreSQL (durable: fsync on)")
    ctx = pgserver.temporary_server(data_dir, database="postgres", durable=True)
    server = ctx.__enter__()
    return Server(dsn=server.dsn_for("postgres"), kind="embedded", embedded=server,
                  embedded_ctx=ctx)


# A time-ordered UUID (version 7) made in SQL from a timestamp, like schema.store.uuid7:
# 48-bit milliseconds, then the random bits of a gen_random_uuid() with the version
# nibble set to 7 (its variant bits are already RFC 4122's).
def sql_uuid7(ts_expr: str) -> str:
    return ("encode(set_byte(overlay(uuid_send(gen_random_uuid()) placing "
            f"substring(int8send(floor(extract(epoch FROM {ts_expr}) * 1000)::bigint) FROM 3) "
            "FROM 1 FOR 6), 6, (get_byte(uuid_send(gen_random_uuid()), 6) & 15) | 112), "
            "'hex')::uuid")


# -- statistics -------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """Linear-interpolated percentile (numpy's default), p in [0, 100]."""
    if not values:
        return math.nan
    xs = sorted(values)
    k = (len(xs) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def summary_ms(seconds: Sequence[float]) -> dict[str, Any]:
    ms = [s * 1000.0 for s in seconds]
    if not ms:
        return {"n": 0}
    return {"n": len(ms), "p50_ms": round(percentile(ms, 50), 3),
            "p95_ms": round(percentile(ms, 95), 3), "p99_ms": round(percentile(ms, 99), 3),
            "mean_ms": round(sum(ms) / len(ms), 3), "min_ms": round(min(ms), 3),
            "max_ms": round(max(ms), 3)}


def rate(n: int, seconds: float | None) -> float | None:
    if not seconds or seconds <= 0:
        return None
    return round(n / seconds, 1)


def loadavg() -> list[float]:
    try:
        with open("/proc/loadavg") as f:
            return [float(x) for x in f.read().split()[:3]]
    except OSError:
        return []
