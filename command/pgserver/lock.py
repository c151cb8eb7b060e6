"""Starts and stops on one data folder, serialised across processes: an exclusive
``fcntl.flock`` on ``<data folder>.lock`` beside it."""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from scheduler_core.command.pgserver.errors import EmbeddedPostgresError

__all__ = ["lock_path_of", "locked"]

_POLL: Final = 0.02


def lock_path_of(data_dir: Path) -> Path:
    """``<data folder>.lock``, beside the folder (not in it: initdb wants it empty)."""
    return data_dir.with_name(data_dir.name + ".lock")


@contextlib.contextmanager
def locked(lock_path: Path, deadline: float) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_path`` until ``deadline`` (``time.monotonic``).

    Released by the kernel if the holder dies, so a SIGKILLed starter never blocks the
    next one. Error handling: EmbeddedPostgresError when the deadline passes first.
    """
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise EmbeddedPostgresError(
                        f"timed out waiting for the lock {lock_path}"
                    ) from None
                time.sleep(_POLL)
        yield
    finally:
        os.close(fd)  # drops the lock
