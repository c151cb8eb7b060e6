"""The ``scheduler`` command.

    scheduler up            embedded PostgreSQL (if no DATABASE_URL), coordinator, workers
    scheduler coordinator   the HTTP API, dashboard and coordinator actors
    scheduler worker        a worker process
    scheduler migrate       apply pending migrations
    scheduler prune         delete finished jobs past their retention, now
    scheduler submit TYPE   submit a job (client: talks HTTP to COORDINATOR_URL);
                            --wait: until it finishes, exit 0 only if it Succeeded
    scheduler jobs list|show|cancel|retry|delete
                            list, and cancel/retry/delete without an id, take the
                            search filter (--status, --where payload.customerId=42,
                            --tag, --created-after, ...); the bulk actions count
                            first and act only with --yes
    scheduler schedules list|show|pause|resume|delete
    scheduler queues list|show|pause|resume|limit|set
                            set: --limit N, --rate 10/1s (repeatable), --key-limit N,
                            --key-rate 5/1s, each with a --no-... that removes it

Bad arguments and an unreachable coordinator give a one-line message on stderr and a
non-zero exit (2 for usage, 1 for failures). ``coordinator`` and ``up`` with no token
configured bind loopback only: another ``--host`` exits 1 unless ``--insecure-no-auth``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from scheduler_core.runtime.config import Config, bind_refusal, is_loopback_host, load_config
from scheduler_core.runtime.errors import ConfigError, RuntimeCoreError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:
        self.print_usage(sys.stderr)
        self.exit(2, f"scheduler: error: {message}\n")


def _number(kind: type[int] | type[float], minimum: int) -> Callable[[str], Any]:
    """An argparse type: ``kind`` (int or float), at least ``minimum``."""
    what = "a whole number" if kind is int else "a number"

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, found {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a number >= {minimum}, found {value}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def _consistency(text: str) -> str:
    """An argparse type: where a read goes with a read replica (client.Consistency)."""
    from scheduler_core.client import CONSISTENCIES
    if text not in CONSISTENCIES:
        raise argparse.ArgumentTypeError(f"expected {' or '.join(CONSISTENCIES)}, "
                                         f"found {text!r}")
    return text


_consistency.__name__ = "consistency"
CONSISTENCY_HELP = ("strong: read the primary, to see what was just written; eventual "
                    "(the default): the read replica when the coordinator has one, which "
                    "may lag the primary (docs/operations.md, A read replica)")


def _add_consistency(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--consistency", type=_consistency, metavar="strong|eventual",
                        help=CONSISTENCY_HELP)


_positive_int = _number(int, 1)
_non_negative_int = _number(int, 0)
_non_negative_float = _number(float, 0)


def _uuid(what: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        try:
            return str(uuid.UUID(text))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a {what} id (a UUID), found {text!r}") from None
    return parse


_job_id = _uuid("job")
_schedule_id = _uuid("schedule")


def _queue_name(text: str) -> str:
    from scheduler_core.schema.wire import QUEUE_NAME

    if not QUEUE_NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"expected a queue name (1 to 64 letters, digits, _ . -), found {text!r}")
    return text


def _queue_limit(text: str) -> int | None:
    """A concurrency limit: 1..100000, or ``none`` for no limit."""
    if text.lower() == "none":
        return None
    value = int(_positive_int(text))
    if value > 100_000:
        raise argparse.ArgumentTypeError(f"expected at most 100000, found {value}")
    return value


def _concurrency_limit(text: str) -> int:
    """A concurrency limit: 1..100000 (``--no-limit`` and the like remove one)."""
    value = _queue_limit(text)
    if value is None:
        raise argparse.ArgumentTypeError(f"expected a whole number, found {text!r}")
    return value


def _rate_window(text: str) -> Any:
    """A rate window, ``LIMIT/PER[:BURST]`` (``10/1s``, ``1000/1h:50``)."""
    from scheduler_core.client import parse_rate_limit

    try:
        return parse_rate_limit(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class _Windows(argparse.Action):
    """``--rate`` / ``--key-rate``: each one more window, up to the API's 8."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        from scheduler_core.schema.wire import RATE_WINDOWS_MAX

        windows = [*(getattr(namespace, self.dest) or []), values]
        if len(windows) > RATE_WINDOWS_MAX:
            raise argparse.ArgumentError(
                self, f"at most {RATE_WINDOWS_MAX} windows, found {len(windows)}")
        setattr(namespace, self.dest, windows)


def _concurrency_key(text: str) -> str:
    """A job's concurrency key: 1 to 200 characters, as the API takes it."""
    if not 1 <= len(text) <= 200:
        raise argparse.ArgumentTypeError(
            f"expected 1 to 200 characters, found {len(text)}")
    return text


def _positive_float(text: str) -> float:
    value = float(_non_negative_float(text))
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, found {value:g}")
    return value


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object like '{\"url\": \"...\"}'")
    return value


HANDLERS_HELP = ("comma-separated modules (or module:function) registering more job types "
                 "(default: SCHEDULER_HANDLERS)")


QUEUES_HELP = ("comma-separated queues the workers take jobs from; * takes every queue, "
               "including ones created later")


def queue_list(text: str) -> list[str]:
    """The queues of a --queues or SCHEDULER_QUEUES value; ConfigError naming the first
    that is not a queue name (nor *)."""
    from scheduler_core.schema.wire import QUEUE_NAME

    names = [q.strip() for q in text.split(",") if q.strip()]
    if not names:
        raise ConfigError(f"--queues (SCHEDULER_QUEUES) names no queue: {text!r}")
    for name in names:
        if name != "*" and not QUEUE_NAME.fullmatch(name):
            raise ConfigError("--queues (SCHEDULER_QUEUES) must be comma-separated queue "
                              "names (1 to 64 letters, digits, _ . or -) or *, found "
                              f"{name[:80]!r}")
    return list(dict.fromkeys(names))


def _where(text: str) -> str:
    """A search condition, checked here so a typo is a usage error naming --where."""
    from scheduler_core.schema.job_filter import FilterError, parse_where

    try:
        parse_where(text)
    except FilterError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None
    return text


def _filter_time(text: str) -> str:
    from scheduler_core.schema.job_filter import FilterError, parse_time

    try:
        parse_time(text, "")
    except FilterError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None
    return text


def _status(text: str) -> str:
    from scheduler_core.schema.wire import JOB_STATUSES

    if text not in JOB_STATUSES:
        raise argparse.ArgumentTypeError(
            f"expected one of {', '.join(JOB_STATUSES)}, found {text!r}")
    return text


# The search filter's options (their dests are the client's keywords, which
# client_cli.FILTER_KEYWORDS lists) and argparse's keywords for each.
FILTER_OPTIONS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("--status", {"type": _status}),
    ("--type", {}),
    ("--queue", {}),
    ("--tag", {"action": "append", "help": "the job has this tag (repeatable: all)"}),
    ("--where", {"action": "append", "type": _where, "metavar": "COND",
                 "help": "payload.customerId=42, result.status>=500 (= != >= <= > <; "
                 "repeatable: all)"}),
    ("--created-after", {"type": _filter_time, "metavar": "TIME",
                         "help": "ISO-8601 with a zone, inclusive"}),
    ("--created-before", {"type": _filter_time, "metavar": "TIME"}),
    ("--finished-after", {"type": _filter_time, "metavar": "TIME"}),
    ("--finished-before", {"type": _filter_time, "metavar": "TIME"}),
    ("--last-error", {"metavar": "TEXT", "help": "the last error contains TEXT (any case)"}),
)


def _add_filter(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("search filter (docs/search.md)")
    for flag, keywords in FILTER_OPTIONS:
        group.add_argument(flag, **keywords)


NO_AUTH_HELP = ("bind a non-loopback address with no token configured: anyone who "
                "reaches it can do everything (default: SCHEDULER_ALLOW_NO_AUTH)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="scheduler", description="scheduler-core: a distributed job scheduler")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    up = sub.add_parser("up", help="start everything: database (embedded if needed), "
                        "coordinator and workers")
    up.add_argument("--workers", type=_non_negative_int, help="worker processes (default 2)")
    up.add_argument("--host")
    up.add_argument("--port", type=_positive_int)
    up.add_argument("--handlers", help=HANDLERS_HELP)
    up.add_argument("--queues", help=QUEUES_HELP + " (default: SCHEDULER_QUEUES, else *)")
    up.add_argument("--insecure-no-auth", action="store_true", help=NO_AUTH_HELP)

    co = sub.add_parser("coordinator", help="serve the API and run the coordinator actors")
    co.add_argument("--host")
    co.add_argument("--port", type=_positive_int)
    co.add_argument("--no-migrate", action="store_true", help="do not apply migrations first")
    co.add_argument("--handlers", help=HANDLERS_HELP)
    co.add_argument("--insecure-no-auth", action="store_true", help=NO_AUTH_HELP)

    wk = sub.add_parser("worker", help="run a worker process")
    wk.add_argument("--slots", type=_positive_int, help="jobs at once (default: CPU count)")
    wk.add_argument("--coordinator-url")
    wk.add_argument("--drain-timeout", type=_non_negative_float)
    wk.add_argument("--worker-id")
    wk.add_argument("--queues", help=QUEUES_HELP + " (default: SCHEDULER_QUEUES, else default)")
    wk.add_argument("--handlers", help=HANDLERS_HELP)

    sub.add_parser("migrate", help="apply pending database migrations")

    pr = sub.add_parser("prune", help="delete finished jobs past their retention, now")
    pr.add_argument("--succeeded-days", type=_non_negative_float,
                    help="age of Succeeded/Cancelled jobs to delete (0: keep; default 7)")
    pr.add_argument("--deadletter-days", type=_non_negative_float,
                    help="age of DeadLetter jobs to delete (0: keep; default 30)")
    pr.add_argument("--batch", type=_positive_int, help="jobs per statement (default 1000)")

    sm = sub.add_parser("submit", help="submit a job")
    sm.add_argument("type")
    sm.add_argument("--payload", type=_json_object, default=None, help="JSON object")
    sm.add_argument("--run-at", help="ISO-8601 with a zone")
    sm.add_argument("--max-attempts", type=_positive_int)
    sm.add_argument("--timeout", type=_positive_int, help="timeoutSeconds")
    sm.add_argument("--key", help="idempotency key")
    sm.add_argument("--cron")
    sm.add_argument("--timezone")
    sm.add_argument("--queue")
    sm.add_argument("--priority", type=int)
    sm.add_argument("--concurrency-key", type=_concurrency_key, metavar="KEY",
                    help="the job's flow-control key (a tenant, a customer; 1 to 200 "
                    "characters): its queue's --key-limit and --key-rate apply to it")
    sm.add_argument("--json", action="store_true", help="print JSON")
    sm.add_argument("--wait", action="store_true",
                    help="wait until the job finishes (progress on stderr); exit 0 if it "
                    "Succeeded, 1 if it ended DeadLetter or Cancelled")
    sm.add_argument("--wait-timeout", type=_positive_float, metavar="S",
                    help="with --wait: give up after S seconds (exit 1; the job goes on)")

    jobs = sub.add_parser("jobs", help="list, show, cancel, retry or delete jobs")
    jsub = jobs.add_subparsers(dest="jobs_command", required=True, parser_class=_Parser)
    ls = jsub.add_parser("list")
    _add_filter(ls)
    ls.add_argument("--take", type=_positive_int, default=25)
    ls.add_argument("--cursor", type=_job_id)
    ls.add_argument("--json", action="store_true")
    _add_consistency(ls)
    show = jsub.add_parser("show")
    show.add_argument("id", type=_job_id)
    show.add_argument("--json", action="store_true")
    _add_consistency(show)
    for name in ("cancel", "retry", "delete"):
        c = jsub.add_parser(name, help=f"{name} one job by id, or every job the filter "
                            "matches (a count first; --yes to act)")
        c.add_argument("id", type=_job_id, nargs="?")
        c.add_argument("--json", action="store_true")
        if name == "retry":
            c.add_argument("--reason")
        _add_filter(c)
        c.add_argument("--yes", action="store_true",
                       help=f"{name} every job the filter matches (without it: only count)")
        c.add_argument("--per-request", type=_positive_int, metavar="N", default=1000,
                       help="jobs a request (progress is shown after each; default 1000)")

    sch = sub.add_parser("schedules", help="list, show, pause, resume or delete schedules")
    ssub = sch.add_subparsers(dest="schedules_command", required=True, parser_class=_Parser)
    sls = ssub.add_parser("list")
    sls.add_argument("--take", type=_positive_int)
    sls.add_argument("--json", action="store_true")
    _add_consistency(sls)
    for name in ("show", "pause", "resume", "delete"):
        c = ssub.add_parser(name)
        c.add_argument("id", type=_schedule_id)
        c.add_argument("--json", action="store_true")
        if name == "show":
            _add_consistency(c)

    qs = sub.add_parser("queues", help="list queues; pause, resume or limit one")
    qsub = qs.add_subparsers(dest="queues_command", required=True, parser_class=_Parser)
    qls = qsub.add_parser("list")
    qls.add_argument("--json", action="store_true")
    _add_consistency(qls)
    for name in ("show", "pause", "resume", "limit"):
        c = qsub.add_parser(name)
        c.add_argument("name", type=_queue_name)
        if name == "limit":
            c.add_argument("limit", type=_queue_limit,
                           help="most jobs Running at once across the cluster, or none")
        c.add_argument("--json", action="store_true")
        if name == "show":
            _add_consistency(c)
    qset = qsub.add_parser(
        "set", help="set or remove a queue's limits (the ones not named stay as they are)",
        description="Set or remove a queue's limits, cluster-wide; the ones not named "
        "stay as they are. A rate window LIMIT/PER[:BURST] is at most LIMIT starts in any "
        "PER (a whole number and ms, s, m, h or d, up to 1d), BURST of them at once "
        "(default 1); --rate replaces every window of the queue (up to 8). The --key-... "
        "limits apply to the jobs of each concurrency key (submit --concurrency-key) apart.")
    qset.add_argument("name", type=_queue_name)
    for flag, what in (("limit", "most of the queue's jobs Running at once"),
                       ("key-limit", "most jobs of one concurrency key Running at once")):
        g = qset.add_mutually_exclusive_group()
        g.add_argument(f"--{flag}", type=_concurrency_limit, metavar="N",
                       help=f"{what} (1 to 100000)")
        g.add_argument(f"--no-{flag}", action="store_true", help=f"remove --{flag}")
    for flag, what in (("rate", "the queue"), ("key-rate", "each concurrency key")):
        g = qset.add_mutually_exclusive_group()
        g.add_argument(f"--{flag}", action=_Windows, type=_rate_window,
                       metavar="LIMIT/PER[:BURST]",
                       help=f"a rate window of {what}, e.g. 10/1s or 1000/1h:50; "
                       "repeat it for more windows")
        g.add_argument(f"--no-{flag}", action="store_true", help=f"remove every --{flag}")
    qset.add_argument("--json", action="store_true")
    return p


def _check_submit(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Combinations argparse cannot express (exit 2 like any bad argument)."""
    if args.wait_timeout is not None and not args.wait:
        parser.error("argument --wait-timeout: only with --wait")
    if args.wait and args.cron is not None:
        parser.error("argument --wait: not with --cron (a schedule does not finish; "
                     "wait on its jobs instead)")


def _check_jobs(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """cancel, retry, delete: one job by id, or a filter; not both, not neither."""
    from scheduler_core.command.client_cli import filter_of

    if args.jobs_command not in ("cancel", "retry", "delete"):
        return
    name = args.jobs_command
    if args.id is not None and filter_of(args):
        parser.error(f"jobs {name}: give a job id or a filter (--status, --where, ...), "
                     "not both")
    if args.id is None and not filter_of(args):
        parser.error(f"jobs {name}: give a job id, or a filter (--status, --where, --tag, "
                     f"...) to {name} every job it matches")
    if args.id is not None and args.yes:
        parser.error("argument --yes: only with a filter (one job by id acts at once)")


def _config(args: argparse.Namespace) -> Config:
    overrides: dict[str, Any] = {}
    for arg, field in (("host", "host"), ("port", "port"), ("workers", "workers"),
                       ("slots", "worker_slots"), ("coordinator_url", "coordinator_url"),
                       ("drain_timeout", "drain_timeout_seconds"), ("worker_id", "worker_id"),
                       ("handlers", "handlers"), ("queues", "queues"),
                       ("succeeded_days", "retention_succeeded_days"),
                       ("deadletter_days", "retention_deadletter_days"),
                       ("batch", "prune_batch")):
        value = getattr(args, arg, None)
        if value is not None:
            overrides[field] = value
    if getattr(args, "insecure_no_auth", False):
        overrides["allow_no_auth"] = "true"
    return load_config(**overrides)


def check_auth(config: Config) -> int | None:
    """Before a coordinator (or ``up``) binds: exit status 1 with a message when it
    would listen beyond loopback with no token; a loud warning when it runs without
    authentication, or without an admin or a worker token."""
    import structlog

    log = structlog.get_logger("runtime.cli")
    refusal = bind_refusal(config)
    if refusal is not None:
        print(f"scheduler: {refusal}", file=sys.stderr)
        return 1
    if not config.auth_enabled:
        log.warning("auth_disabled", host=config.host,
                    loopback_only=is_loopback_host(config.host))
        print("scheduler: WARNING: authentication is off (no SCHEDULER_ADMIN_TOKEN, "
              "SCHEDULER_READ_TOKEN or SCHEDULER_WORKER_TOKEN): anyone who reaches "
              f"{config.host}:{config.port} can do everything", file=sys.stderr, flush=True)
        return None
    missing = [env for env, tokens in (("SCHEDULER_ADMIN_TOKEN", config.admin_tokens),
                                       ("SCHEDULER_WORKER_TOKEN", config.worker_tokens))
               if not tokens]  # (no read token: simply no read-only users)
    if missing:
        log.warning("auth_role_unconfigured", missing=missing,
                    consequence="requests needing that role are refused")
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "submit":
        _check_submit(parser, args)
    if args.command == "jobs":
        _check_jobs(parser, args)
    try:
        config = _config(args)
        if args.command in ("submit", "jobs", "schedules", "queues"):
            from scheduler_core.command import client_cli

            return client_cli.run(args, config)
        return _run_service(args, config)
    except RuntimeCoreError as exc:
        print(f"scheduler: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # stdout closed early (``scheduler jobs list | head``): no traceback, and no
        # second error when Python flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _run_service(args: argparse.Namespace, config: Config) -> int:
    """migrate, coordinator, worker, up. Their imports (trio, psycopg, the runtime) are
    made here so that the client commands start quickly."""
    import psycopg
    import trio

    from scheduler_core.command import compose
    from scheduler_core.command.db_routes import database_routes
    from scheduler_core.runtime import logs

    logs.configure(config.log_format, config.log_level, process=args.command,
                   secrets=logs.secrets_of(config))
    if args.command in ("coordinator", "worker", "up"):
        import structlog

        from scheduler_core.runtime import tracing

        refusal = tracing.configure(f"scheduler-{args.command}")
        if refusal is not None:
            structlog.get_logger("runtime.cli").warning("tracing_unavailable",
                                                        reason=refusal)
    try:
        if args.command == "migrate":
            routes = database_routes(config, compose.resolve_database(config))
            applied = trio.run(compose.migrate, routes.direct)
            print(f"applied migrations: {applied}" if applied else "migrations: up to date")
            return 0
        if args.command == "prune":
            dsn = compose.resolve_database(config)
            database_routes(config, dsn)  # a ConfigError here, not inside trio.run
            result = trio.run(compose.prune, config, dsn)
            if result.idle_keys:
                print(f"pruned idle concurrency keys: {result.idle_keys}")
            print(f"pruned jobs: {result.deleted} (batches: {result.batches})")
            return 0
        if args.command in ("coordinator", "worker", "up"):
            from scheduler_core.handlers import PluginError

            try:
                compose.load_handlers(config)
            except PluginError as exc:
                print(f"scheduler: {exc}", file=sys.stderr)
                return 1
        if args.command in ("coordinator", "up"):
            refused = check_auth(config)
            if refused is not None:
                return refused
        if args.command == "coordinator":
            dsn = compose.resolve_database(config)
            database_routes(config, dsn)  # a ConfigError here, not inside trio.run
            trio.run(partial(compose.serve_coordinator, config, dsn,
                             run_migrations=not args.no_migrate))
            return 0
        if args.command == "worker":
            from scheduler_core.command import worker_main

            return worker_main.main(config, queue_list(config.queues or "default"))
        if args.command == "up":
            from scheduler_core.command import up

            queue_list(config.queues or "*")  # a bad list stops here, before anything starts
            return up.main(config)
    except psycopg.OperationalError as exc:
        print(f"scheduler: cannot use PostgreSQL: {str(exc).strip()}", file=sys.stderr)
        return 1
    return 2

if __name__ == "__main__":
    sys.exit(main())
