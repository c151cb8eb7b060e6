"""Which connection string each of the coordinator's database uses goes to, and how the
pool's connections behave, from SCHEDULER_DB_POOLER and SCHEDULER_DIRECT_DATABASE_URL.

Behind a transaction-pooling PgBouncer (``SCHEDULER_DB_POOLER=transaction``) a client
connection owns a server connection only for one transaction, so nothing that lives in
a server session may be used on DATABASE_URL:

- server-side prepared statements: psycopg's automatic ones are turned off
  (``prepare_threshold=None``; no query asks for ``prepare=True``);
- LISTEN and the migrations' session advisory lock: they go to the direct URL;
- the echo filter (runtime/doorbell.py ``EchoFilter``): its key is the backend pid the
  connection was told at start-up, which PgBouncer invents, so it is off and an echo
  rings the doorbell once more (one extra claim query, nothing lost);
- the session time zone stays a ``SET``: PgBouncer tracks TimeZone per client.

With ``none`` (the default) nothing changes: prepared statements after 5 runs, the
direct URL is DATABASE_URL unless set. docs/decisions/0028-transaction-pooler.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from scheduler_core.runtime.config import Config
from scheduler_core.runtime.errors import ConfigError

__all__ = ["DatabaseRoutes", "database_routes"]

PREPARE_THRESHOLD = 5  # psycopg's default, kept when no pooler sits in between


@dataclass(frozen=True)
class DatabaseRoutes:
    """Where the coordinator's connections go.

    ``pooled``: the pool's (every statement of the stores); ``direct``: LISTEN and the
    migrations; ``prepare_threshold``: the pool's connections' (``None``: no server-side
    prepared statements); ``echoes``: whether the pool's backend pids are real, so the
    listener may skip the echoes of its own process's notifications.
    """

    pooled: str
    direct: str
    prepare_threshold: int | None
    echoes: bool


def database_routes(config: Config, dsn: str) -> DatabaseRoutes:
    """The routes for DATABASE_URL ``dsn`` (or the embedded server's) under ``config``.

    Error handling: raises :class:`ConfigError` for SCHEDULER_DB_POOLER=transaction
    without SCHEDULER_DIRECT_DATABASE_URL. Falling back to DATABASE_URL there would
    start a coordinator that looks healthy but whose LISTEN hears nothing (claims wait
    out their long poll, schedule changes and SQL enqueues go unseen until a timeout)
    and whose migration lock can be left held on a pooled server connection, hanging
    the next migration; so it does not start.
    """
    if config.db_pooler == "transaction":
        if not config.direct_database_url:
            raise ConfigError(
                "SCHEDULER_DB_POOLER=transaction needs SCHEDULER_DIRECT_DATABASE_URL: LISTEN "
                "and the migrations' advisory lock do not work through a transaction "
                "pooler (set it to a connection straight to PostgreSQL; to DATABASE_URL "
                "itself if that one is not pooled)")
        return DatabaseRoutes(pooled=dsn, direct=config.direct_database_url,
                              prepare_threshold=None, echoes=False)
    return DatabaseRoutes(pooled=dsn, direct=config.direct_database_url or dsn,
                          prepare_threshold=PREPARE_THRESHOLD, echoes=True)
