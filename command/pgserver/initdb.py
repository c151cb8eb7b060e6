"""Initialising a data folder with ``initdb``, so that a killed initdb leaves no
half-made cluster behind."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from scheduler_core.command.pgserver.conf import INCLUDE_LINE
from scheduler_core.command.pgserver.errors import EmbeddedPostgresError
from scheduler_core.command.pgserver.pids import kill_all, stray_processes
from scheduler_core.command.pgserver.users import Identity, prepare_dir

__all__ = ["SUPERUSER", "RunTool", "initdb"]

_log = logging.getLogger(__name__)

SUPERUSER: Final = "postgres"  # connects without a password (trust, Unix socket only)

RunTool = Callable[[str, list[str]], None]
"""Runs a PostgreSQL tool (``"initdb"``) with arguments as the server's user; raises
EmbeddedPostgresError when it fails."""


def initdb(data_dir: Path, ident: Identity, *, durable: bool, run: RunTool) -> None:
    """Initialise into a sibling folder, then rename it into place: a killed initdb
    leaves no half-made cluster behind at ``data_dir``."""
    if data_dir.exists() and any(data_dir.iterdir()):
        raise EmbeddedPostgresError(
            f"{data_dir} is not empty and holds no PostgreSQL cluster (no PG_VERSION)"
        )
    strays = stray_processes(data_dir)
    if strays:  # servers of an earlier cluster here, deleted while they ran
        _log.warning("killing postgres processes left on a deleted %s: %s", data_dir, strays)
        kill_all(strays, time.monotonic() + 5.0)
    staging = data_dir.with_name(f".{data_dir.name}.initdb")
    if staging.exists():  # a starter was killed during initdb, which may still run
        kill_all(stray_processes(staging), time.monotonic() + 5.0)
        shutil.rmtree(staging, ignore_errors=True)
    prepare_dir(staging, ident)
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
    if not durable:
        args.append("--no-sync")
    run("initdb", args)
    with (staging / "postgresql.conf").open("a") as conf:
        conf.write(
            f"\n# Added by command/pgserver: its settings, rewritten on start.\n{INCLUDE_LINE}\n"
        )
    try:
        os.rename(staging, data_dir)  # replaces an empty data_dir
    except OSError as exc:
        if exc.errno not in (errno.EBUSY, errno.EXDEV):
            raise
        shutil.rmtree(staging, ignore_errors=True)  # data_dir is a mount point
        prepare_dir(data_dir, ident)
        run("initdb", [*args[:1], str(data_dir), *args[2:]])
        with (data_dir / "postgresql.conf").open("a") as conf:
            conf.write(f"\n{INCLUDE_LINE}\n")
