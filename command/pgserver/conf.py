"""The server's settings: ``scheduler.conf`` in the data folder, included from
``postgresql.conf`` and rewritten on every start, and where its Unix socket lives.

The server listens on a Unix socket only: in the data folder, or in a short folder
under the temp dir when that path is too long for a socket.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Final

from scheduler_core.command.pgserver.errors import EmbeddedPostgresError
from scheduler_core.command.pgserver.users import Identity, prepare_dir

__all__ = [
    "INCLUDE_LINE",
    "PORT",
    "SETTINGS_FILE",
    "settings_text",
    "socket_dir_for",
    "write_settings",
]

PORT: Final = 5432  # only names the socket file (.s.PGSQL.5432): no TCP listener
SETTINGS_FILE: Final = "scheduler.conf"
INCLUDE_LINE: Final = f"include_if_exists = '{SETTINGS_FILE}'"
_SOCKET_NAME_MAX: Final = 107  # sun_path is 108 bytes on Linux, NUL included


def socket_dir_for(data_dir: Path, ident: Identity) -> Path:
    """The data folder if the socket path fits in ``sun_path``, else a short private
    folder in the temp dir named after a hash of the data folder (created)."""
    if len(os.fsencode(data_dir / f".s.PGSQL.{PORT}")) <= _SOCKET_NAME_MAX:
        return data_dir
    digest = hashlib.sha256(os.fsencode(data_dir)).hexdigest()[:16]
    socket_dir = Path(tempfile.gettempdir()) / f"scheduler-pg-{digest}"
    if len(os.fsencode(socket_dir / f".s.PGSQL.{PORT}")) > _SOCKET_NAME_MAX:
        raise EmbeddedPostgresError(f"no socket folder short enough for {data_dir}")
    prepare_dir(socket_dir, ident)
    return socket_dir


def settings_text(socket_dir: Path, *, durable: bool, max_connections: int) -> str:
    """The contents of ``scheduler.conf``."""
    sockets = '"' + str(socket_dir).replace('"', '""') + '"'
    flush = "on" if durable else "off"
    lines = [
        # The file name of the single module this once was: a changed line would make
        # every existing cluster's settings differ, and be reloaded, once.
        "# Written by command/pgserver.py on every start: edits are overwritten.",
        "listen_addresses = ''",
        f"unix_socket_directories = {_quote_conf(sockets)}",
        f"port = {PORT}",
        f"max_connections = {max_connections}",
        f"fsync = {flush}",
        f"synchronous_commit = {flush}",
        f"full_page_writes = {flush}",
        "timezone = 'UTC'",
        "log_timezone = 'UTC'",
        "lc_messages = 'C'",
    ]
    return "\n".join(lines) + "\n"


def write_settings(data_dir: Path, text: str, ident: Identity) -> bool:
    """Write ``text`` to ``scheduler.conf`` (atomically, owned by ``ident``) and make sure
    ``postgresql.conf`` includes it; return whether it changed."""
    path = data_dir / SETTINGS_FILE
    with contextlib.suppress(FileNotFoundError):
        if path.read_text() == text:
            return False
    conf = data_dir / "postgresql.conf"
    if INCLUDE_LINE not in conf.read_text():  # a folder initialised by someone else
        with conf.open("a") as f:
            f.write(f"\n{INCLUDE_LINE}\n")
    tmp = path.with_name(SETTINGS_FILE + ".tmp")
    tmp.write_text(text)
    if ident.switches:
        assert ident.uid is not None and ident.gid is not None
        os.chown(tmp, ident.uid, ident.gid)
    tmp.chmod(0o600)
    tmp.replace(path)
    return True


def _quote_conf(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
