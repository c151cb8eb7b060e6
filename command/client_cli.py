"""The client half of the CLI: ``submit``, ``jobs ...`` and ``schedules ...`` over HTTP
(client/).

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

from scheduler_core.client import Client, ClientError, Job, WaitTimeout
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
    runs = job.get("runs") or []
    if runs:
        print()
        print(_table(runs, [("RUN", "id"), ("ATTEMPT", "attempt"), ("WORKER", "workerId"),
                            ("STARTED", "startedAt"), ("FINISHED", "finishedAt"),
                            ("OUTCOME", "outcome"), ("ERROR", "error")]))


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
                        queue=args.queue, priority=args.priority)
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


def _jobs(client: Client, args: argparse.Namespace) -> int:
    cmd = args.jobs_command
    if cmd == "list":
        page = client.list(status=args.status, type=args.type, queue=args.queue,
                           take=args.take, cursor=args.cursor)
        if args.json:
            _print_json(page)
        else:
            print(_table(page["items"], _JOB_COLUMNS))
            if page.get("nextCursor"):
                print(f"\nmore: --cursor {page['nextCursor']}")
    elif cmd == "show":
        _print_job(client.get(args.id), args.json)
    elif cmd == "cancel":
        _print_job(client.cancel(args.id), args.json)
    elif cmd == "retry":
        _print_job(client.retry(args.id, args.reason), args.json)
    return 0


def _schedules(client: Client, args: argparse.Namespace) -> int:
    cmd = args.schedules_command
    if cmd == "list":
        items = client.list_schedules(take=args.take)
        if args.json:
            _print_json({"items": items})
        else:
            print(_table(_schedule_rows(items), _SCHEDULE_COLUMNS))
    elif cmd == "show":
        _print_schedule(client.get_schedule(args.id), args.json)
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


_QUEUE_COLUMNS = [("QUEUE", "name"), ("STATE", "state"), ("LIMIT", "limit"),
                  ("RUNNING", "running"), ("WAITING", "waiting")]


def _queue_rows(queues: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**q, "state": "paused" if q["paused"] else "active",
             "limit": "-" if q["concurrencyLimit"] is None else q["concurrencyLimit"],
             "waiting": f"{q['waiting']}+" if q["waitingCapped"] else q["waiting"]}
            for q in queues]


def _queues(client: Client, args: argparse.Namespace) -> int:
    cmd = args.queues_command
    if cmd == "list":
        items = client.list_queues()
        if args.json:
            _print_json({"items": items})
        else:
            print(_table(_queue_rows(items), _QUEUE_COLUMNS))
        return 0
    if cmd == "show":
        queue = client.get_queue(args.name)
    elif cmd == "pause":
        queue = client.pause_queue(args.name)
    elif cmd == "resume":
        queue = client.resume_queue(args.name)
    else:
        queue = client.set_queue_limit(args.name, args.limit)
    if args.json:
        _print_json(queue)
    else:
        print(_table(_queue_rows([queue]), _QUEUE_COLUMNS))
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
