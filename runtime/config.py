"""Configuration from environment variables, each with a documented default.

Every setting is listed in :data:`SETTINGS` (name, meaning) and has its default in
:class:`Config` (typed, written once); README.md and ``.env.example`` are written from
the two, and a unit test keeps them in step.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import msgspec

from scheduler_core.runtime import jsonlimits
from scheduler_core.runtime.errors import ConfigError


class Setting(msgspec.Struct, frozen=True):
    """One environment variable: its name, the :class:`Config` field it sets, the type
    it parses as, and what it means. Its default is the field's, written there only."""

    env: str
    field: str
    kind: type
    doc: str

    @property
    def default(self) -> object:
        return _DEFAULTS[self.field]


SETTINGS: tuple[Setting, ...] = (
    Setting("DATABASE_URL", "database_url", str,
            "PostgreSQL connection string. Empty: `scheduler up` starts an embedded PostgreSQL."),
    Setting("SCHEDULER_READ_DATABASE_URL", "read_database_url", str,
            "A PostgreSQL read replica (streaming standby) for what only shows: the "
            "dashboard's lists, counts and search, the job reads of the public API and the "
            "/metrics gauges. Claims, transitions, idempotency and cron stay on "
            "DATABASE_URL; `consistency=strong` on a read sends it to DATABASE_URL too "
            "(read-your-writes). Empty: every read goes to DATABASE_URL."),
    Setting("SCHEDULER_DIRECT_DATABASE_URL", "direct_database_url", str,
            "A connection straight to PostgreSQL for what a transaction-pooling "
            "PgBouncer cannot carry: LISTEN and the migrations' advisory lock. Empty: "
            "DATABASE_URL; with SCHEDULER_DB_POOLER=transaction it must be set (the "
            "coordinator does not start without it)."),
    Setting("SCHEDULER_DB_POOLER", "db_pooler", str,
            "`none`, or `transaction` when DATABASE_URL goes through a pooler in "
            "transaction mode (PgBouncer's pool_mode = transaction): no server-side "
            "prepared statements and no session state are then used on it."),
    Setting("SCHEDULER_DATA_DIR", "data_dir", str,
            "Folder for the embedded PostgreSQL (pgdata/) and other local state."),
    Setting("SCHEDULER_HOST", "host", str, "Address the coordinator binds."),
    Setting("SCHEDULER_PORT", "port", int, "Port the coordinator binds."),
    Setting("COORDINATOR_URL", "coordinator_url", str,
            "Where workers and the CLI client reach the coordinator: one http:// or "
            "https:// URL (a load balancer's, or a coordinator's), or several "
            "comma-separated, one per coordinator. A worker stays on one until a request "
            "to it fails (no answer, or 5xx), then moves to the next for its next "
            "request, round robin. The CLI client uses the first."),
    Setting("SCHEDULER_ADMIN_TOKEN", "admin_token", str,
            "Bearer token(s) for the whole public API and the dashboard's actions; "
            "comma-separated to rotate (each at least 16 characters of A-Z a-z 0-9 - . _ ~ "
            "+ / =), each optionally named `name:token` (the name, never the token, is "
            "what the audit trail and the logs show; a bare token is named "
            "token-<first 8 hex of its SHA-256>). Empty, with the other two tokens empty "
            "too: no authentication, and the coordinator binds loopback only."),
    Setting("SCHEDULER_READ_TOKEN", "read_token", str,
            "Bearer token(s) for read-only viewing: GETs of the public API, the dashboard "
            "and its event stream, /openapi.json. Comma-separated to rotate; each "
            "optionally `name:token`."),
    Setting("SCHEDULER_WORKER_TOKEN", "worker_token", str,
            "Bearer token(s) for the worker API (/api/workers/...) only. The coordinator "
            "accepts each; a worker sends the first. Comma-separated to rotate; each "
            "optionally `name:token`."),
    Setting("SCHEDULER_TOKEN", "token", str,
            "The token the client commands (submit, jobs, schedules) send. Empty: the "
            "first SCHEDULER_ADMIN_TOKEN."),
    Setting("SCHEDULER_PUBLIC_PATHS", "public_paths", str,
            "Comma-separated paths that GET and HEAD reach without a token when "
            "authentication is on (exact paths, no prefixes). `none`: every path needs one."),
    Setting("SCHEDULER_ALLOW_NO_AUTH", "allow_no_auth", str,
            "true: let the coordinator bind a non-loopback address with no token configured "
            "(as `--insecure-no-auth`). Anyone who reaches it can then do everything."),
    Setting("SCHEDULER_ALLOWED_ORIGINS", "allowed_origins", str,
            "Comma-separated origins (scheme://host[:port]) besides the coordinator's own "
            "whose pages may send writes (POST, PUT, PATCH, DELETE): a request with "
            "another Origin header gets 403."),
    Setting("SCHEDULER_ALLOWED_HOSTS", "allowed_hosts", str,
            "Comma-separated host names (no port) a coordinator without tokens answers "
            "besides loopback ones (localhost, 127.0.0.0/8, [::1]); another Host header "
            "gets 421, so DNS rebinding cannot reach it. Ignored when tokens are set."),
    Setting("SCHEDULER_SESSION_HOURS", "session_hours", float,
            "How long a dashboard sign-in lasts (fixed, from sign-in), unless signed out "
            "or revoked sooner."),
    Setting("SCHEDULER_AUTH_THROTTLE_FAILURES", "auth_throttle_failures", int,
            "Failed token checks (bearer, dashboard cookie, login form) a client address "
            "may make before it is locked out (429 with Retry-After, even for the right "
            "token); each further failure doubles the lockout. A recognised token resets "
            "the count. 0: no throttle (e.g. behind a proxy, where every client shares "
            "the proxy's address)."),
    Setting("SCHEDULER_AUTH_THROTTLE_BASE_SECONDS", "auth_throttle_base_seconds", float,
            "The first lockout of the login throttle, in seconds."),
    Setting("SCHEDULER_AUTH_THROTTLE_MAX_SECONDS", "auth_throttle_max_seconds", float,
            "The longest lockout of the login throttle, in seconds."),
    Setting("SCHEDULER_DB_POOL_SIZE", "db_pool_size", int,
            "Connections in the coordinator's pool."),
    Setting("SCHEDULER_MAX_BODY_BYTES", "max_body_bytes", int,
            "Largest request body the API accepts (413 beyond)."),
    Setting("SCHEDULER_MAX_PAYLOAD_BYTES", "max_payload_bytes", int,
            "Largest job payload (as JSON) a submission may carry (413 naming `payload` "
            "beyond)."),
    Setting("SCHEDULER_MAX_JSON_DEPTH", "max_json_depth", int,
            "Deepest nesting of arrays and objects a request body may have, checked before "
            "it is decoded (400 naming the field beyond); 35 to 500."),
    Setting("SCHEDULER_LEASE_SECONDS", "lease_seconds", float,
            "How long a claim is owned without a renewal."),
    Setting("SCHEDULER_HEARTBEAT_SECONDS", "heartbeat_seconds", float,
            "Worker heartbeat interval: renews leases, brings cancel requests. "
            "0: a third of the lease."),
    Setting("SCHEDULER_REAP_INTERVAL_SECONDS", "reap_interval_seconds", float,
            "How often the lease reaper looks for expired leases."),
    Setting("SCHEDULER_WORKER_LOST_SECONDS", "worker_lost_seconds", float,
            "Heartbeat silence after which a worker shows Lost. 0: twice the lease."),
    Setting("SCHEDULER_CLAIM_WAIT_SECONDS", "claim_wait_seconds", float,
            "Longest a claim request long-polls when nothing is due."),
    Setting("SCHEDULER_RETRY_BASE_SECONDS", "retry_base_seconds", float,
            "Retry backoff base: attempt n waits up to base * 2^(n-1), full jitter."),
    Setting("SCHEDULER_RETRY_CAP_SECONDS", "retry_cap_seconds", float,
            "Retry backoff cap."),
    Setting("SCHEDULER_MAX_SNOOZES", "max_snoozes", int,
            "Most times a job may snooze (its handler returns or raises Snooze); the "
            "snooze past it fails the job for good, naming the cap."),
    Setting("SCHEDULER_WORKER_SLOTS", "worker_slots", int,
            "Jobs a worker runs at once. 0: the CPU count."),
    Setting("SCHEDULER_WORKER_PREFETCH", "worker_prefetch", int,
            "Most jobs a worker claims beyond its free slots, so that its slots never "
            "wait for a claim's round trip; scaled down to what its slots get through in "
            "about 50 ms at the recent run times (none for long jobs). Queued jobs are "
            "handed back at once on a drain. 0: claim only for free slots."),
    Setting("SCHEDULER_WORKERS", "workers", int, "Worker processes `scheduler up` starts."),
    Setting("SCHEDULER_QUEUES", "queues", str,
            "Comma-separated queues a worker takes jobs from; * is every queue, including "
            "ones created later. Empty: `scheduler worker` takes default, the workers of "
            "`scheduler up` take *."),
    Setting("SCHEDULER_DRAIN_TIMEOUT_SECONDS", "drain_timeout_seconds", float,
            "On SIGTERM, how long a worker lets running jobs finish before handing them "
            "back, and how long a coordinator lets its requests in flight finish once it "
            "stopped listening."),
    Setting("SCHEDULER_DRAIN_DELAY_SECONDS", "drain_delay_seconds", float,
            "On SIGTERM, how long a coordinator goes on serving while /health/ready answers "
            "503, before it stops listening and answers its long polls: time for a load "
            "balancer's health check to take it out (its check interval times its fall "
            "count, plus a check's timeout). 0: stop listening at once."),
    Setting("SCHEDULER_KILL_GRACE_SECONDS", "kill_grace_seconds", float,
            "Between SIGTERM and SIGKILL when a job's child process is stopped."),
    Setting("SCHEDULER_WORKER_DATA_DIR", "worker_data_dir", str,
            "The only folder file_write jobs may write in."),
    Setting("SCHEDULER_WORKER_ID", "worker_id", str,
            "A worker's id. Empty: hostname-pid-random."),
    Setting("SCHEDULER_HTTP_ALLOW_PRIVATE", "http_allow_private", str,
            "Whether http_get jobs may reach loopback, private, link-local and other "
            "non-public addresses (checked on every address the host resolves to). "
            "true, false, or auto: allowed when the worker's COORDINATOR_URL is on "
            "loopback (everything on one machine, as with `scheduler up`), refused "
            "otherwise. Read by workers."),
    Setting("SCHEDULER_MISFIRE_MAX_CATCHUP", "misfire_max_catchup", int,
            "Most missed fires a schedule with misfirePolicy `all` catches up at once "
            "(the latest ones)."),
    Setting("SCHEDULER_RETENTION_SUCCEEDED_DAYS", "retention_succeeded_days", float,
            "Succeeded and Cancelled jobs (with their runs) are deleted this many days "
            "after they finished. 0: kept forever."),
    Setting("SCHEDULER_RETENTION_DEADLETTER_DAYS", "retention_deadletter_days", float,
            "DeadLetter jobs (with their runs) are deleted this many days after they "
            "finished. 0: kept forever."),
    Setting("SCHEDULER_RETENTION_AUDIT_DAYS", "retention_audit_days", float,
            "Audit rows (GET /api/audit) are deleted this many days after they were "
            "written. 0: kept forever."),
    Setting("SCHEDULER_PRUNE_INTERVAL_SECONDS", "prune_interval_seconds", float,
            "How often the coordinator's pruner deletes finished jobs past their retention."),
    Setting("SCHEDULER_PRUNE_BATCH", "prune_batch", int,
            "Most jobs one pruning statement deletes (one short transaction per batch)."),
    Setting("SCHEDULER_BULK_BATCH", "bulk_batch", int,
            "Most jobs one transaction of a bulk action (POST /api/jobs/bulk) changes: "
            "its row locks last one batch. Small, so claims keep flowing during a large "
            "bulk action (100: claim p99 within 2x while 100,000 jobs are retried; 1,000: "
            "2.5x)."),
    Setting("SCHEDULER_BULK_MAX", "bulk_max", int,
            "Most jobs one bulk action request changes; the answer says when more match "
            "(call again for the rest)."),
    Setting("SCHEDULER_JOB_ENV", "job_env", str,
            "Comma-separated names of environment variables a worker passes on to its job "
            "processes, besides the ordinary ones (PATH, HOME, USER, LOGNAME, SHELL, TERM, "
            "LANG, LANGUAGE, LC_*, TZ, TMPDIR, PYTHONPATH and a few more for Python and TLS: "
            "runtime/child_env.py). "
            "Nothing else reaches a job: no token, no DATABASE_URL (which may not be "
            "named here). Read by workers."),
    Setting("SCHEDULER_START_ID", "start_id", str,
            "Set by `scheduler up` on the coordinator it starts (a random id per start): "
            "/health/ready returns it as `startId`, so `up` knows the coordinator that "
            "answers is its own. Leave it empty."),
    Setting("SCHEDULER_HANDLERS", "handlers", str,
            "Comma-separated modules (or module:function) that register more job types, "
            "besides the `scheduler_core.handlers` entry points."),
    Setting("SCHEDULER_LOG_FORMAT", "log_format", str,
            "json, console, or auto (console on a terminal, else json)."),
    Setting("SCHEDULER_LOG_LEVEL", "log_level", str, "debug, info, warning or error."),
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


_SECRETS = frozenset({"admin_token", "read_token", "worker_token", "token"})
# The settings that hold secrets: never passed on to a job process.
SECRET_ENV = frozenset({"DATABASE_URL", "SCHEDULER_READ_DATABASE_URL",
                        "SCHEDULER_DIRECT_DATABASE_URL", "SCHEDULER_ADMIN_TOKEN", "SCHEDULER_READ_TOKEN",
                        "SCHEDULER_WORKER_TOKEN", "SCHEDULER_TOKEN"})
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class Config(msgspec.Struct, frozen=True, kw_only=True):
    database_url: str = ""
    read_database_url: str = ""
    direct_database_url: str = ""
    db_pooler: str = "none"
    data_dir: str = ".scheduler"
    host: str = "127.0.0.1"
    port: int = 5000
    coordinator_url: str = "http://127.0.0.1:5000"  # the first of coordinator_urls
    # Every COORDINATOR_URL, in order: derived from coordinator_url (__post_init__), not a
    # setting of its own.
    coordinator_urls: tuple[str, ...] = ()
    admin_token: str = ""
    read_token: str = ""
    worker_token: str = ""
    token: str = ""
    public_paths: str = "/health,/health/ready,/metrics"
    allow_no_auth: str = "false"
    allowed_origins: str = ""
    allowed_hosts: str = ""
    session_hours: float = 12.0
    auth_throttle_failures: int = 5
    auth_throttle_base_seconds: float = 1.0
    auth_throttle_max_seconds: float = 300.0
    db_pool_size: int = 16
    max_body_bytes: int = 1_048_576
    max_payload_bytes: int = 262_144
    max_json_depth: int = 64
    lease_seconds: float = 30.0
    heartbeat_seconds: float = 1.0
    reap_interval_seconds: float = 1.0
    worker_lost_seconds: float = 0.0
    claim_wait_seconds: float = 5.0
    retry_base_seconds: float = 1.0
    retry_cap_seconds: float = 300.0
    max_snoozes: int = 100
    worker_slots: int = 0
    worker_prefetch: int = 64
    workers: int = 2
    queues: str = ""
    drain_timeout_seconds: float = 30.0
    drain_delay_seconds: float = 0.0
    kill_grace_seconds: float = 0.2
    worker_data_dir: str = ".scheduler/worker-data"
    worker_id: str = ""
    http_allow_private: str = "auto"
    misfire_max_catchup: int = 100
    retention_succeeded_days: float = 7.0
    retention_deadletter_days: float = 30.0
    retention_audit_days: float = 90.0
    prune_interval_seconds: float = 60.0
    prune_batch: int = 1000
    bulk_batch: int = 100
    bulk_max: int = 100_000
    job_env: str = ""
    start_id: str = ""
    handlers: str = ""
    log_format: str = "auto"
    log_level: str = "info"

    def __post_init__(self) -> None:
        # COORDINATOR_URL may list several URLs: keep them all in coordinator_urls and
        # the first in coordinator_url, for the callers that need one. A copy made with
        # msgspec.structs.replace keeps the list unless coordinator_url changed.
        urls = _split(self.coordinator_url) or (self.coordinator_url,)
        if len(urls) == 1 and self.coordinator_urls[:1] == urls:
            return
        msgspec.structs.force_setattr(self, "coordinator_url", urls[0])
        msgspec.structs.force_setattr(self, "coordinator_urls", urls)

    def __repr__(self) -> str:
        """Every field, the tokens masked (a Config may end up in a log or a traceback)."""
        shown = []
        for name in self.__struct_fields__:
            value = getattr(self, name)
            shown.append(f"{name}={'***' if name in _SECRETS and value else repr(value)}")
        return f"Config({', '.join(shown)})"

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
        when every coordinator URL's host is loopback (an IP literal or ``localhost``):
        one coordinator elsewhere means the worker is not alone on its machine."""
        if self.http_allow_private != "auto":
            return self.http_allow_private == "true"
        return all(_is_loopback_url(url) for url in self.coordinator_urls)

    @property
    def job_env_names(self) -> tuple[str, ...]:
        """SCHEDULER_JOB_ENV split on commas, blanks dropped."""
        return _split(self.job_env)

    @property
    def pgdata(self) -> Path:
        return Path(self.data_dir) / "pgdata"

    @property
    def admin_tokens(self) -> tuple[str, ...]:
        return tuple(t.secret for t in named_tokens(self.admin_token))

    @property
    def read_tokens(self) -> tuple[str, ...]:
        return tuple(t.secret for t in named_tokens(self.read_token))

    @property
    def worker_tokens(self) -> tuple[str, ...]:
        return tuple(t.secret for t in named_tokens(self.worker_token))

    @property
    def admin_named_tokens(self) -> tuple[NamedToken, ...]:
        return named_tokens(self.admin_token)

    @property
    def read_named_tokens(self) -> tuple[NamedToken, ...]:
        return named_tokens(self.read_token)

    @property
    def worker_named_tokens(self) -> tuple[NamedToken, ...]:
        return named_tokens(self.worker_token)

    @property
    def auth_enabled(self) -> bool:
        """Whether any token is configured: then every route but the public paths
        needs one."""
        return bool(self.admin_tokens or self.read_tokens or self.worker_tokens)

    @property
    def client_token(self) -> str:
        """What the client commands send: SCHEDULER_TOKEN, else the first admin token
        ("" for none)."""
        own = named_tokens(self.token)
        return own[0].secret if own else next(iter(self.admin_tokens), "")

    @property
    def public_path_set(self) -> frozenset[str]:
        """SCHEDULER_PUBLIC_PATHS as a set (``none``: the empty set)."""
        if self.public_paths.strip() == "none":
            return frozenset()
        return frozenset(_split(self.public_paths))

    @property
    def no_auth_allowed(self) -> bool:
        return self.allow_no_auth == "true"

    @property
    def allowed_origin_set(self) -> frozenset[str]:
        """SCHEDULER_ALLOWED_ORIGINS, each as ``scheme://host[:port]`` in lower case."""
        return frozenset(item.lower().rstrip("/") for item in _split(self.allowed_origins))

    @property
    def allowed_host_set(self) -> frozenset[str]:
        """SCHEDULER_ALLOWED_HOSTS, in lower case."""
        return frozenset(item.lower() for item in _split(self.allowed_hosts))


_DEFAULTS: dict[str, object] = dict(zip(Config.__struct_fields__, Config.__struct_defaults__,
                                       strict=True))


def _split(value: str) -> tuple[str, ...]:
    """A comma-separated setting's items, blanks dropped."""
    return tuple(item.strip() for item in value.split(",") if item.strip())


class NamedToken(msgspec.Struct, frozen=True):
    """A configured token and its name: ``ops:<token>`` is named ``ops``; a bare token
    is named by :func:`default_token_name`. The name is what the audit trail and the
    logs show; the secret is never shown (the repr masks it)."""

    name: str
    secret: str

    def __repr__(self) -> str:
        return f"NamedToken(name={self.name!r}, secret='***')"


def default_token_name(secret: str) -> str:
    """The name of a token configured without one: ``token-`` and the first 8 hex
    digits of its SHA-256 (32 bits of a hash: nothing of a 16+ character random token)."""
    digest = hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()
    return f"token-{digest[:8]}"


def named_tokens(value: str) -> tuple[NamedToken, ...]:
    """A token setting's items as :class:`NamedToken`: ``name:token`` split at the
    first colon (a token never holds one: RFC 6750's token68 has none), a bare token
    named by :func:`default_token_name`. Checked by :func:`load_config`."""
    out = []
    for item in _split(value):
        name, colon, secret = item.partition(":")
        if not colon:
            name, secret = default_token_name(item), item
        out.append(NamedToken(name.strip(), secret.strip()))
    return tuple(out)


def _is_loopback_url(url: str) -> bool:
    try:
        host = urlsplit(url).hostname or ""
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # not a URL, or a host name that is not localhost
        return False


MIN_TOKEN_LENGTH = 16
TOKEN_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.@\-]{0,63}"
_TOKEN_NAME = re.compile(TOKEN_NAME_PATTERN)
_ORIGIN = re.compile(r"https?://[a-z0-9.\-]+(?::\d{1,5})?|https?://\[[0-9a-f:.]+\](?::\d{1,5})?")
_HOST = re.compile(r"[a-z0-9.\-]+|\[[0-9a-f:.]+\]")
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


def is_loopback_host(host: str) -> bool:
    """Whether binding ``host`` keeps the coordinator reachable from this machine only:
    ``localhost`` or a loopback IP literal (``127.0.0.1``, ``::1``, ``[::1]``)."""
    host = host.strip()
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.removeprefix("[").removesuffix("]")).is_loopback
    except ValueError:  # a host name, or "" (every interface)
        return False


def bind_refusal(config: Config) -> str | None:
    """Why the coordinator must not start as configured, or None when it may.

    With no token configured, anyone who reaches the coordinator can do everything, so
    it binds a loopback address only; another address needs tokens, or the explicit
    SCHEDULER_ALLOW_NO_AUTH=true (what ``--insecure-no-auth`` sets).
    """
    if config.auth_enabled or is_loopback_host(config.host) or config.no_auth_allowed:
        return None
    return (f"refusing to bind {config.host!r} without authentication: set "
            "SCHEDULER_ADMIN_TOKEN, SCHEDULER_READ_TOKEN and SCHEDULER_WORKER_TOKEN "
            "(see README, Authentication), bind 127.0.0.1, or pass --insecure-no-auth "
            "(SCHEDULER_ALLOW_NO_AUTH=true) to let anyone who reaches it do everything")


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
                "retry_base_seconds", "retry_cap_seconds", "max_snoozes", "db_pool_size",
                "max_body_bytes", "max_payload_bytes", "session_hours",
                "misfire_max_catchup", "prune_interval_seconds", "prune_batch",
                "bulk_batch", "bulk_max",
                "auth_throttle_base_seconds", "auth_throttle_max_seconds")
    for name in positive:
        if getattr(cfg, name) <= 0:
            env = next(s.env for s in SETTINGS if s.field == name)
            raise ConfigError(f"{env} must be positive, found {getattr(cfg, name)!r}")
    if not jsonlimits.LEAST_BODY_DEPTH <= cfg.max_json_depth <= jsonlimits.MOST_BODY_DEPTH:
        raise ConfigError(f"SCHEDULER_MAX_JSON_DEPTH must be {jsonlimits.LEAST_BODY_DEPTH}.."
                          f"{jsonlimits.MOST_BODY_DEPTH} (a job result may nest "
                          f"{jsonlimits.MAX_RESULT_DEPTH} levels, 3 deep in a completion), "
                          f"found {cfg.max_json_depth!r}")
    if cfg.db_pooler not in ("none", "transaction"):
        raise ConfigError(f"SCHEDULER_DB_POOLER must be none or transaction, found {cfg.db_pooler!r}")
    if cfg.log_format not in ("auto", "json", "console"):
        raise ConfigError(f"SCHEDULER_LOG_FORMAT must be auto, json or console, found {cfg.log_format!r}")
    if cfg.http_allow_private not in ("auto", "true", "false"):
        raise ConfigError("SCHEDULER_HTTP_ALLOW_PRIVATE must be auto, true or false, "
                          f"found {cfg.http_allow_private!r}")
    if cfg.auth_throttle_failures < 0:
        raise ConfigError("SCHEDULER_AUTH_THROTTLE_FAILURES must not be negative, found "
                          f"{cfg.auth_throttle_failures!r}")
    if cfg.workers < 0 or cfg.worker_slots < 0 or cfg.drain_timeout_seconds < 0:
        raise ConfigError("SCHEDULER_WORKERS, SCHEDULER_WORKER_SLOTS and "
                          "SCHEDULER_DRAIN_TIMEOUT_SECONDS must not be negative")
    if not 0 <= cfg.drain_delay_seconds <= 600:
        raise ConfigError("SCHEDULER_DRAIN_DELAY_SECONDS must be 0..600, found "
                          f"{cfg.drain_delay_seconds!r}")
    if not 0 <= cfg.worker_prefetch <= 1000:
        raise ConfigError("SCHEDULER_WORKER_PREFETCH must be 0..1000, "
                          f"found {cfg.worker_prefetch!r}")
    if cfg.allow_no_auth not in ("true", "false"):
        raise ConfigError("SCHEDULER_ALLOW_NO_AUTH must be true or false, "
                          f"found {cfg.allow_no_auth!r}")
    _check_tokens(cfg)
    for name in cfg.job_env_names:
        if not _ENV_NAME.fullmatch(name):
            raise ConfigError("SCHEDULER_JOB_ENV must be comma-separated variable names, "
                              f"found {name!r}")
        if name in SECRET_ENV:
            raise ConfigError(f"SCHEDULER_JOB_ENV must not name {name}: a job process never "
                              "gets the scheduler's secrets")
    for path in cfg.public_path_set:
        if not path.startswith("/"):
            raise ConfigError("SCHEDULER_PUBLIC_PATHS must be comma-separated paths "
                              f"starting with /, found {path!r}")
    for origin in cfg.allowed_origin_set:
        if not _ORIGIN.fullmatch(origin):
            raise ConfigError("SCHEDULER_ALLOWED_ORIGINS must be comma-separated origins "
                              f"like https://ops.example.com:8443, found {origin!r}")
    for host in cfg.allowed_host_set:
        if not _HOST.fullmatch(host):
            raise ConfigError("SCHEDULER_ALLOWED_HOSTS must be comma-separated host names "
                              f"or addresses without a port, found {host!r}")
    for name in ("retention_succeeded_days", "retention_deadletter_days",
                 "retention_audit_days"):
        if getattr(cfg, name) < 0:
            env = next(s.env for s in SETTINGS if s.field == name)
            raise ConfigError(f"{env} must not be negative (0 keeps them forever), "
                              f"found {getattr(cfg, name)!r}")


def _check_tokens(cfg: Config) -> None:
    """Each token long enough and sendable in a Bearer header (RFC 6750 token68), and
    each in one role only: a read token that is also the admin token is a mistake.
    Messages name the variable, never the token."""
    roles: dict[str, str] = {}
    for env, named in (("SCHEDULER_ADMIN_TOKEN", cfg.admin_named_tokens),
                       ("SCHEDULER_READ_TOKEN", cfg.read_named_tokens),
                       ("SCHEDULER_WORKER_TOKEN", cfg.worker_named_tokens),
                       ("SCHEDULER_TOKEN", named_tokens(cfg.token))):
        for i, item in enumerate(named, 1):
            token = item.secret
            where = f"{env} (token {i} of {len(named)})"
            if not _TOKEN_NAME.fullmatch(item.name):
                raise ConfigError(f"{where} must be a token or name:token, the name 1-64 "
                                  "characters of A-Z a-z 0-9 _ . @ - starting with a letter "
                                  "or digit; found another name")
            if len(token) < MIN_TOKEN_LENGTH:
                raise ConfigError(f"{where} must be at least {MIN_TOKEN_LENGTH} characters, "
                                  f"found {len(token)}; make one with: python -c "
                                  "\"import secrets; print(secrets.token_urlsafe(32))\"")
            if not _TOKEN68.fullmatch(token):
                raise ConfigError(f"{where} must use only A-Z a-z 0-9 - . _ ~ + / "
                                  "(and = at the end), found another character")
            if env == "SCHEDULER_TOKEN":
                continue
            other = roles.setdefault(token, env)
            if other != env:
                raise ConfigError(f"{where} is also in {other}: give each role its own "
                                  "tokens")


def check_coordinator_urls(cfg: Config) -> None:
    """Each COORDINATOR_URL item an http:// or https:// URL with a host (and a numeric
    port, when there is one).

    Called by the processes that use the setting (the worker, the client commands), not
    by :func:`load_config`: a coordinator does not read COORDINATOR_URL, and the http_get
    policy (``http_private_allowed``) treats an unusable URL as not loopback.

    Error handling: raises :class:`ConfigError` naming COORDINATOR_URL (and which item of
    a list), the expectation and the value found.
    """
    urls = cfg.coordinator_urls
    for i, url in enumerate(urls, 1):
        where = f"COORDINATOR_URL (URL {i} of {len(urls)})" if len(urls) > 1 else (
            "COORDINATOR_URL")
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 (raises ValueError for a port that is not a number)
        except ValueError as exc:
            raise ConfigError(f"{where} must be an http:// or https:// URL, found {url!r} "
                              f"({exc})") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"{where} must be an http:// or https:// URL with a host "
                              f"(several: comma-separated), found {url!r}")
