"""Configuration from environment variables, each with a documented default.

Every setting is listed in :data:`SETTINGS` (name, default, meaning); README.md and
``.env.example`` are written from the same list, and a unit test keeps them in step.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import msgspec

from runtime.errors import ConfigError


class Setting(msgspec.Struct, frozen=True):
    env: str
    field: str
    kind: type
    default: object
    doc: str


SETTINGS: tuple[Setting, ...] = (
    Setting("DATABASE_URL", "database_url", str, "",
            "PostgreSQL connection string. Empty: `scheduler up` starts an embedded PostgreSQL."),
    Setting("SCHEDULER_DATA_DIR", "data_dir", str, ".scheduler",
            "Folder for the embedded PostgreSQL (pgdata/) and other local state."),
    Setting("SCHEDULER_HOST", "host", str, "127.0.0.1", "Address the coordinator binds."),
    Setting("SCHEDULER_PORT", "port", int, 5000, "Port the coordinator binds."),
    Setting("COORDINATOR_URL", "coordinator_url", str, "http://127.0.0.1:5000",
            "Where workers and the CLI client reach the coordinator."),
    Setting("SCHEDULER_DB_POOL_SIZE", "db_pool_size", int, 16,
            "Connections in the coordinator's pool."),
    Setting("SCHEDULER_MAX_BODY_BYTES", "max_body_bytes", int, 1_048_576,
            "Largest request body the API accepts (413 beyond)."),
    Setting("SCHEDULER_MAX_PAYLOAD_BYTES", "max_payload_bytes", int, 262_144,
            "Largest job payload (as JSON) a submission may carry (413 naming `payload` "
            "beyond)."),
    Setting("SCHEDULER_LEASE_SECONDS", "lease_seconds", float, 30.0,
            "How long a claim is owned without a renewal."),
    Setting("SCHEDULER_HEARTBEAT_SECONDS", "heartbeat_seconds", float, 1.0,
            "Worker heartbeat interval: renews leases, brings cancel requests. "
            "0: a third of the lease."),
    Setting("SCHEDULER_REAP_INTERVAL_SECONDS", "reap_interval_seconds", float, 1.0,
            "How often the lease reaper looks for expired leases."),
    Setting("SCHEDULER_WORKER_LOST_SECONDS", "worker_lost_seconds", float, 0.0,
            "Heartbeat silence after which a worker shows Lost. 0: twice the lease."),
    Setting("SCHEDULER_CLAIM_WAIT_SECONDS", "claim_wait_seconds", float, 5.0,
            "Longest a claim request long-polls when nothing is due."),
    Setting("SCHEDULER_RETRY_BASE_SECONDS", "retry_base_seconds", float, 1.0,
            "Retry backoff base: attempt n waits up to base * 2^(n-1), full jitter."),
    Setting("SCHEDULER_RETRY_CAP_SECONDS", "retry_cap_seconds", float, 300.0,
            "Retry backoff cap."),
    Setting("SCHEDULER_WORKER_SLOTS", "worker_slots", int, 0,
            "Jobs a worker runs at once. 0: the CPU count."),
    Setting("SCHEDULER_WORKER_PREFETCH", "worker_prefetch", int, 64,
            "Most jobs a worker claims beyond its free slots, so that its slots never "
            "wait for a claim's round trip; scaled down to what its slots get through in "
            "about 50 ms at the recent run times (none for long jobs). Queued jobs are "
            "handed back at once on a drain. 0: claim only for free slots."),
    Setting("SCHEDULER_WORKERS", "workers", int, 2, "Worker processes `scheduler up` starts."),
    Setting("SCHEDULER_DRAIN_TIMEOUT_SECONDS", "drain_timeout_seconds", float, 30.0,
            "On SIGTERM, how long a worker lets running jobs finish before handing them back."),
    Setting("SCHEDULER_KILL_GRACE_SECONDS", "kill_grace_seconds", float, 0.2,
            "Between SIGTERM and SIGKILL when a job's child process is stopped."),
    Setting("SCHEDULER_WORKER_DATA_DIR", "worker_data_dir", str, ".scheduler/worker-data",
            "The only folder file_write jobs may write in."),
    Setting("SCHEDULER_WORKER_ID", "worker_id", str, "",
            "A worker's id. Empty: hostname-pid-random."),
    Setting("SCHEDULER_HTTP_ALLOW_PRIVATE", "http_allow_private", str, "auto",
            "Whether http_get jobs may reach loopback, private, link-local and other "
            "non-public addresses (checked on every address the host resolves to). "
            "true, false, or auto: allowed when the worker's COORDINATOR_URL is on "
            "loopback (everything on one machine, as with `scheduler up`), refused "
            "otherwise. Read by workers."),
    Setting("SCHEDULER_MISFIRE_MAX_CATCHUP", "misfire_max_catchup", int, 100,
            "Most missed fires a schedule with misfirePolicy `all` catches up at once "
            "(the latest ones)."),
    Setting("SCHEDULER_RETENTION_SUCCEEDED_DAYS", "retention_succeeded_days", float, 7.0,
            "Succeeded and Cancelled jobs (with their runs) are deleted this many days "
            "after they finished. 0: kept forever."),
    Setting("SCHEDULER_RETENTION_DEADLETTER_DAYS", "retention_deadletter_days", float, 30.0,
            "DeadLetter jobs (with their runs) are deleted this many days after they "
            "finished. 0: kept forever."),
    Setting("SCHEDULER_PRUNE_INTERVAL_SECONDS", "prune_interval_seconds", float, 60.0,
            "How often the coordinator's pruner deletes finished jobs past their retention."),
    Setting("SCHEDULER_PRUNE_BATCH", "prune_batch", int, 1000,
            "Most jobs one pruning statement deletes (one short transaction per batch)."),
    Setting("SCHEDULER_HANDLERS", "handlers", str, "",
            "Comma-separated modules (or module:function) that register more job types, "
            "besides the `scheduler_core.handlers` entry points."),
    Setting("SCHEDULER_LOG_FORMAT", "log_format", str, "auto",
            "json, console, or auto (console on a terminal, else json)."),
    Setting("SCHEDULER_LOG_LEVEL", "log_level", str, "info", "debug, info, warning or error."),
)


def env_example() -> str:
    """The text of ``.env.example``: every setting as ``NAME=default`` under its doc.

    Regenerate the file with
    ``python -c "from runtime.config import env_example; print(env_example(), end='')" > .env.example``.
    """
    import textwrap

    lines = ["# scheduler-core settings: every environment variable of runtime/config.py",
             "# (SETTINGS) with its default. All are optional. They are read from the",
             "# environment only: set them in your deployment (e.g. a compose env_file).", ""]
    for s in SETTINGS:
        lines += ["# " + line for line in textwrap.wrap(s.doc, 86)]
        lines += [f"{s.env}={s.default}", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


class Config(msgspec.Struct, frozen=True, kw_only=True):
    database_url: str = ""
    data_dir: str = ".scheduler"
    host: str = "127.0.0.1"
    port: int = 5000
    coordinator_url: str = "http://127.0.0.1:5000"
    db_pool_size: int = 16
    max_body_bytes: int = 1_048_576
    max_payload_bytes: int = 262_144
    lease_seconds: float = 30.0
    heartbeat_seconds: float = 1.0
    reap_interval_seconds: float = 1.0
    worker_lost_seconds: float = 0.0
    claim_wait_seconds: float = 5.0
    retry_base_seconds: float = 1.0
    retry_cap_seconds: float = 300.0
    worker_slots: int = 0
    worker_prefetch: int = 64
    workers: int = 2
    drain_timeout_seconds: float = 30.0
    kill_grace_seconds: float = 0.2
    worker_data_dir: str = ".scheduler/worker-data"
    worker_id: str = ""
    http_allow_private: str = "auto"
    misfire_max_catchup: int = 100
    retention_succeeded_days: float = 7.0
    retention_deadletter_days: float = 30.0
    prune_interval_seconds: float = 60.0
    prune_batch: int = 1000
    handlers: str = ""
    log_format: str = "auto"
    log_level: str = "info"

    @property
    def heartbeat_interval(self) -> float:
        return self.heartbeat_seconds if self.heartbeat_seconds > 0 else self.lease_seconds / 3

    @property
    def worker_lost_after(self) -> float:
        return self.worker_lost_seconds if self.worker_lost_seconds > 0 else 2 * self.lease_seconds

    @property
    def slots(self) -> int:
        return self.worker_slots if self.worker_slots > 0 else (os.cpu_count() or 1)

    @property
    def handler_modules(self) -> list[str]:
        """``handlers`` split on commas, blanks dropped."""
        return [m.strip() for m in self.handlers.split(",") if m.strip()]

    @property
    def http_private_allowed(self) -> bool:
        """``http_allow_private`` decided: ``auto`` allows private addresses exactly
        when the coordinator URL's host is loopback (an IP literal or ``localhost``)."""
        if self.http_allow_private != "auto":
            return self.http_allow_private == "true"
        try:
            host = urlsplit(self.coordinator_url).hostname or ""
            return host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:  # not a URL, or a host name that is not localhost
            return False

    @property
    def pgdata(self) -> Path:
        return Path(self.data_dir) / "pgdata"


def load_config(env: Mapping[str, str] | None = None, **overrides: object) -> Config:
    """Read every setting from ``env`` (default ``os.environ``); ``overrides`` win.

    Error handling: a value that does not parse as its type raises :class:`ConfigError`
    naming the variable, the expected type and the value found.
    """
    env = os.environ if env is None else env
    values: dict[str, object] = {}
    for s in SETTINGS:
        raw = env.get(s.env)
        if raw is None or raw == "":
            continue
        try:
            values[s.field] = s.kind(raw)
        except ValueError:
            raise ConfigError(
                f"{s.env} must be {s.kind.__name__}, found {raw!r}"
            ) from None
    values.update(overrides)
    cfg = Config(**values)  # type: ignore[arg-type]
    _check(cfg)
    return cfg


def _check(cfg: Config) -> None:
    positive = ("lease_seconds", "reap_interval_seconds", "claim_wait_seconds",
                "retry_base_seconds", "retry_cap_seconds", "db_pool_size", "max_body_bytes",
                "max_payload_bytes",
                "misfire_max_catchup", "prune_interval_seconds", "prune_batch")
    for name in positive:
        if getattr(cfg, name) <= 0:
            env = next(s.env for s in SETTINGS if s.field == name)
            raise ConfigError(f"{env} must be positive, found {getattr(cfg, name)!r}")
    if cfg.log_format not in ("auto", "json", "console"):
        raise ConfigError(f"SCHEDULER_LOG_FORMAT must be auto, json or console, found {cfg.log_format!r}")
    if cfg.http_allow_private not in ("auto", "true", "false"):
        raise ConfigError("SCHEDULER_HTTP_ALLOW_PRIVATE must be auto, true or false, "
                          f"found {cfg.http_allow_private!r}")
    if cfg.workers < 0 or cfg.worker_slots < 0 or cfg.drain_timeout_seconds < 0:
        raise ConfigError("SCHEDULER_WORKERS, SCHEDULER_WORKER_SLOTS and "
                          "SCHEDULER_DRAIN_TIMEOUT_SECONDS must not be negative")
    if not 0 <= cfg.worker_prefetch <= 1000:
        raise ConfigError("SCHEDULER_WORKER_PREFETCH must be 0..1000, "
                          f"found {cfg.worker_prefetch!r}")
    for name in ("retention_succeeded_days", "retention_deadletter_days"):
        if getattr(cfg, name) < 0:
            env = next(s.env for s in SETTINGS if s.field == name)
            raise ConfigError(f"{env} must not be negative (0 keeps jobs forever), "
                              f"found {getattr(cfg, name)!r}")
