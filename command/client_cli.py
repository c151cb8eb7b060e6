"""The client half of the CLI: ``submit``, ``jobs ...``, ``schedules ...`` and
``queues ...`` over HTTP (client/).

Output goes to stdout (a table, or JSON with ``--json``); errors are one line on
stderr and exit 1. ``submit --wait`` shows its progress on stderr (a live status line
on a terminal, one line per status change otherwise) and exits with the job's outcome.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, TextIO

from scheduler_core.client import UNSET, Client, ClientError, Job, WaitTimeout
from scheduler_core.runtime.config import Config, check_coordinator_urls
from scheduler_core.schema.wire import JobStatus


def _table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    cells = [[h for h, _ in columns]]
    for r in rows:
        cells.append(["" if r.get(k) is None else str(r.get(k)) for _, k in columns])
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                     for row in cells)


_JOB_COLUMNS = [("ID", "id"), ("TYPE", "type"), ("STATUS", "status"), ("QUEUE", "queue"),
                ("ATTEMPTS", "attempts"), ("RUN AT", "runAt"), ("LAST ERROR", "lastError")]
_SCHEDULE_COLUMNS = [("ID", "id"), ("CRON", "cron"), ("TIMEZONE", "timezone"), ("TYPE", "type"),
                     ("STATE", "state"), ("NEXT FIRE", "nextFireAt"),
                     ("LAST FIRED", "lastFiredAt")]


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2))


def _print_job(job: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _print_json(job)
        return
    if job.get("kind") == "schedule":
        print(_table([job], [("SCHEDULE", "id"), ("CRON", "cron"), ("TIMEZONE", "timezone"),
                             ("TYPE", "type"), ("NEXT FIRE", "nextFireAt")]))
        return
    print(_table([job], _JOB_COLUMNS))
    if job.get("concurrencyKey") is not None:
        print(f"concurrency key: {job['concurrencyKey']}")
    if job.get("waiting"):
        print(f"waiting: {_waiting(job['waiting'])}")
    runs = job.get("runs") or []
    if runs:
        print()
        print(_table(runs, [("RUN", "id"), ("ATTEMPT", "attempt"), ("WORKER", "workerId"),
                            ("STARTED", "startedAt"), ("FINISHED", "finishedAt"),
                            ("OUTCOME", "outcome"), ("ERROR", "error")]))


def _waiting(why: dict[str, Any]) -> str:
    """Why a waiting job has not started, as one phrase: ``key_concurrency (2 running,
    limit 2)``, ``queue_rate until 2030-01-01T00:00:00Z``, ``ready``."""
    text = str(why.get("reason"))
    if why.get("running") is not None or why.get("limit") is not None:
        text += f" ({why.get('running')} running, limit {why.get('limit')})"
    if why.get("until"):
        text += f" until {why['until']}"
    return text


def _schedule_rows(schedules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**s, "state": "active" if s.get("enabled") else "paused"} for s in schedules]


def _print_schedule(schedule: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _print_json(schedule)
        return
    print(_table(_schedule_rows([schedule]), _SCHEDULE_COLUMNS))
    fires = schedule.get("recentFires") or []
    if fires:
        print()
        print(_table(fires, [("JOB", "id"), ("FIRE TIME", "fireTime"), ("STATUS", "status"),
                             ("CREATED", "createdAt")]))


class Progress:
    """A waited-for job's progress on ``stream``: on a terminal one status line redrawn
    at every poll (spinner, status, attempt, elapsed); otherwise one line per change of
    status or attempt, so a log stays short."""

    FRAMES = "|/-\\"

    def __init__(self, stream: TextIO, job_id: str) -> None:
        self.stream = stream
        self.job_id = job_id
        self.live = stream.isatty()
        self.started = time.monotonic()
        self.polls = 0
        self.last: tuple[Any, Any] | None = None

    def _describe(self, job: Job) -> str:
        return (f"job {self.job_id} {job.get('status')} "
                f"(attempt {job.get('attempts')}/{job.get('maxAttempts')}) "
                f"{time.monotonic() - self.started:.1f}s")

    def __call__(self, job: Job) -> None:
        state = (job.get("status"), job.get("attempts"))
        if self.live:
            frame = self.FRAMES[self.polls % len(self.FRAMES)]
            self.stream.write(f"\r\033[K{frame} {self._describe(job)}")
        elif state != self.last:
            self.stream.write(self._describe(job) + "\n")
        self.stream.flush()
        self.polls += 1
        self.last = state

    def close(self) -> None:
        """Take the live line off the terminal."""
        if self.live and self.polls:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self.polls = 0


def _submit(client: Client, args: argparse.Namespace) -> int:
    job = client.submit(args.type, args.payload, run_at=args.run_at,
                        max_attempts=args.max_attempts, timeout_seconds=args.timeout,
                        idempotency_key=args.key, cron=args.cron, timezone=args.timezone,
                        queue=args.queue, priority=args.priority,
                        concurrency_key=args.concurrency_key)
    if not args.json:
        print("created" if job.created else "exists (idempotency key)", flush=True)
    if not args.wait:
        _print_job(job, args.json)
        return 0
    progress = Progress(sys.stderr, job["id"])
    try:
        done = client.wait(job, timeout=args.wait_timeout, on_poll=progress,
                           poll_interval=0.1 if progress.live else 0.5)
    except WaitTimeout as exc:
        progress.close()
        _print_job(exc.job or job, args.json)  # the last state seen
        print(f"scheduler: gave up waiting: {exc}; it goes on "
              f"(scheduler jobs show {exc.job_id})", file=sys.stderr)
        return 1
    finally:
        progress.close()
    _print_job(done, args.json)
    if done["status"] == JobStatus.SUCCEEDED:
        return 0
    error = done.get("lastError")
    print(f"scheduler: job {done['id']} ended {done['status']} after "
          f"{done.get('attempts')} attempt(s)" + (f": {error}" if error else ""),
          file=sys.stderr)
    return 1


# The search filter's keywords of Client.list and Client.bulk, as cli.FILTER_OPTIONS
# names them (``--created-after`` -> ``created_after``).
FILTER_KEYWORDS = ("status", "type", "queue", "tag", "where", "created_after",
                   "created_before", "finished_after", "finished_before", "last_error")


def filter_of(args: argparse.Namespace) -> dict[str, Any]:
    """The search filter the options give (none: empty)."""
    return {k: getattr(args, k) for k in FILTER_KEYWORDS if getattr(args, k, None) is not None}


_DONE = {"retry": "retried", "cancel": "cancelled", "delete": "deleted"}
# Skip reasons a step of a bulk action finds in its own batches; the others (a job's
# status, waiting dependents) are the dry run's: a later step would count again as
# "not retryable: Pending" the jobs an earlier step retried.
_STEP_REASONS = ("locked", "unique key held by another job")


def _print_skipped(skipped: dict[str, int]) -> None:
    if skipped:
        print(_table([{"reason": k, "jobs": v} for k, v in sorted(skipped.items())],
                     [("SKIPPED", "reason"), ("JOBS", "jobs")]))


def _bulk(client: Client, args: argparse.Namespace) -> int:
    """``jobs retry|cancel|delete`` with a filter: count (a dry run); with ``--yes``
    act, ``--per-request`` jobs a request, following ``next``, a progress line on
    stderr after each; without it exit 1 saying so."""
    action = args.jobs_command
    found = filter_of(args)
    reason = getattr(args, "reason", None)
    plan = client.bulk(action, dry_run=True, **found)
    if not args.yes:
        if args.json:
            _print_json(plan)
        else:
            print(f"would {action} {plan['count']} of {plan['matched']} matching job(s)")
            _print_skipped(plan["skipped"])
        print(f"scheduler: nothing changed (a dry run); add --yes to {action} "
              f"{plan['count']} job(s)", file=sys.stderr)
        return 1
    changed, steps, after = 0, 0, None
    skipped = dict(plan["skipped"])
    while True:
        step = client.bulk(action, limit=args.per_request, after=after, reason=reason,
                           **found)
        changed += step["count"]
        steps += 1
        for why in _STEP_REASONS:
            if step["skipped"].get(why):
                skipped[why] = skipped.get(why, 0) + step["skipped"][why]
        print(f"{action}: {changed}/{plan['count']}", file=sys.stderr, flush=True)
        after = step.get("next")
        if not after:
            break
    if args.json:
        _print_json({"action": action, "matched": plan["matched"], "count": changed,
                     "skipped": skipped, "requests": steps})
    else:
        print(f"{_DONE[action]} {changed} job(s)")
        _print_skipped(skipped)
    return 0


def _jobs(client: Client, args: argparse.Namespace) -> int:
    cmd = args.jobs_command
    if cmd in _DONE and args.id is None:
        return _bulk(client, args)
    if cmd == "list":
        page = client.list(take=args.take, cursor=args.cursor,
                           consistency=args.consistency, **filter_of(args))
        if args.json:
            _print_json(page)
        else:
            print(_table(page["items"], _JOB_COLUMNS))
            if page.get("nextCursor"):
                print(f"\nmore: --cursor {page['nextCursor']}")
    elif cmd == "show":
        _print_job(client.get(args.id, consistency=args.consistency), args.json)
    elif cmd == "cancel":
        _print_job(client.cancel(args.id), args.json)
    elif cmd == "retry":
        _print_job(client.retry(args.id, args.reason), args.json)
    elif cmd == "delete":
        done = client.bulk("delete", ids=[args.id])
        if done["count"] != 1:
            why = ", ".join(done["skipped"]) or "no such job"
            print(f"scheduler: job {args.id} not deleted: {why}", file=sys.stderr)
            return 1
        if args.json:
            _print_json({"id": args.id, "deleted": True})
        else:
            print(f"deleted {args.id}")
    return 0


def _schedules(client: Client, args: argparse.Namespace) -> int:
    cmd = args.schedules_command
    if cmd == "list":
        items = client.list_schedules(take=args.take, consistency=args.consistency)
        if args.json:
            _print_json({"items": items})
        else:
            print(_table(_schedule_rows(items), _SCHEDULE_COLUMNS))
    elif cmd == "show":
        _print_schedule(client.get_schedule(args.id, consistency=args.consistency),
                        args.json)
    elif cmd == "pause":
        _print_schedule(client.pause_schedule(args.id), args.json)
    elif cmd == "resume":
        _print_schedule(client.resume_schedule(args.id), args.json)
    elif cmd == "delete":
        deleted = client.delete_schedule(args.id)
        if args.json:
            _print_json(deleted)
        else:
            print(f"deleted {deleted['id']}")
    return 0


# The flow-control columns come last and are blank when unset, so a queue without
# them reads as it always did.
_QUEUE_COLUMNS = [("QUEUE", "name"), ("STATE", "state"), ("LIMIT", "limit"),
                  ("RUNNING", "running"), ("WAITING", "waiting"), ("RATE", "rate"),
                  ("KEY LIMIT", "keyLimit"), ("KEY RATE", "keyRate"),
                  ("WARNING", "warning")]


def rate_text(window: dict[str, Any]) -> str:
    """A window as ``--rate`` takes it: ``10/1s``, ``1000/1h:50``."""
    burst = window.get("burst", 1)
    return f"{window['limit']}/{window['per']}" + ("" if burst == 1 else f":{burst}")


def _rates_text(windows: list[dict[str, Any]] | None) -> str | None:
    return ",".join(rate_text(w) for w in windows) if windows else None


def _queue_rows(queues: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**q, "state": "paused" if q["paused"] else "active",
             "limit": "-" if q["concurrencyLimit"] is None else q["concurrencyLimit"],
             "waiting": f"{q['waiting']}+" if q["waitingCapped"] else q["waiting"],
             "rate": _rates_text(q.get("rateLimits")),
             "keyLimit": q.get("keyConcurrencyLimit"),
             "keyRate": _rates_text(q.get("keyRateLimits"))}
            for q in queues]


def _warning_text(queue: dict[str, Any]) -> str | None:
    if queue.get("warning") == "no_worker":
        return (f"no_worker: no live worker takes jobs from queue {queue['name']} and "
                f"{queue['waiting']} job(s) wait (start a worker with --queues "
                f"{queue['name']}, or --queues '*')")
    if queue.get("warning"):
        return str(queue["warning"])
    return None


def _print_queue(queue: dict[str, Any], as_json: bool, *, details: bool = False) -> None:
    if as_json:
        _print_json(queue)
        return
    print(_table(_queue_rows([queue]), _QUEUE_COLUMNS))
    if not details:
        return
    limits = queue.get("limits") or []
    if limits:
        print()
        print(_table(limits, [("LIMIT", "kind"), ("USED", "used"), ("OF", "limit"),
                              ("PER", "per"), ("UNTIL", "until")]))
    keys = queue.get("topKeys") or []
    if keys:
        print()
        print(_table(keys, [("KEY", "key"), ("WAITING", "waiting"), ("RUNNING", "running")]))
    print()
    print(f"workers: {queue.get('workers', 0)}")
    warning = _warning_text(queue)
    if warning:
        print(f"warning: {warning}")


def _set_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """The settings ``queues set`` names (the others are left out: unchanged)."""
    settings: dict[str, Any] = {}
    for option, name in (("limit", "limit"), ("key_limit", "key_concurrency_limit"),
                         ("rate", "rate_limits"), ("key_rate", "key_rate_limits")):
        if getattr(args, f"no_{option}"):
            settings[name] = None
        elif getattr(args, option) is not None:
            settings[name] = getattr(args, option)
    return settings


def _queues(client: Client, args: argparse.Namespace) -> int:
    cmd = args.queues_command
    if cmd == "list":
        items = client.list_queues(consistency=args.consistency)
        if args.json:
            _print_json({"items": items})
        else:
            print(_table(_queue_rows(items), _QUEUE_COLUMNS))
        return 0
    if cmd == "set":
        settings = _set_arguments(args)
        if not settings:
            print("scheduler: error: queues set: nothing to set; give --limit, --rate, "
                  "--key-limit or --key-rate (or a --no-... to remove one)", file=sys.stderr)
            return 2
        _print_queue(client.set_queue_limit(
            args.name, settings.get("limit", UNSET),
            rate_limits=settings.get("rate_limits", UNSET),
            key_concurrency_limit=settings.get("key_concurrency_limit", UNSET),
            key_rate_limits=settings.get("key_rate_limits", UNSET)), args.json)
        return 0
    if cmd == "show":
        _print_queue(client.get_queue(args.name, consistency=args.consistency), args.json,
                     details=True)
        return 0
    if cmd == "pause":
        queue = client.pause_queue(args.name)
    elif cmd == "resume":
        queue = client.resume_queue(args.name)
    else:
        queue = client.set_queue_limit(args.name, args.limit)
    _print_queue(queue, args.json)
    return 0


def run(args: argparse.Namespace, config: Config) -> int:
    # COORDINATOR_URL may list several coordinators; the client uses the first (a
    # command is not resent elsewhere: a submission that timed out may have landed).
    check_coordinator_urls(config)
    try:
        with Client(config.coordinator_url, token=config.client_token or None) as client:
            if args.command == "submit":
                return _submit(client, args)
            if args.command == "schedules":
                return _schedules(client, args)
            if args.command == "queues":
                return _queues(client, args)
            return _jobs(client, args)
    except ClientError as exc:
        print(f"scheduler: {exc}", file=sys.stderr)
        return 1
