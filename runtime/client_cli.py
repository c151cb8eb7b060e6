"""The client half of the CLI: ``submit`` and ``jobs ...`` over HTTP."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from runtime.config import Config
from web.client import ApiFailure, Client, ClientError


def _table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    cells = [[h for h, _ in columns]]
    for r in rows:
        cells.append(["" if r.get(k) is None else str(r.get(k)) for _, k in columns])
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                     for row in cells)


_JOB_COLUMNS = [("ID", "id"), ("TYPE", "type"), ("STATUS", "status"), ("QUEUE", "queue"),
                ("ATTEMPTS", "attempts"), ("RUN AT", "runAt"), ("LAST ERROR", "lastError")]


def _print_job(job: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(job, indent=2))
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


def run(args: argparse.Namespace, config: Config) -> int:
    try:
        with Client(config.coordinator_url) as client:
            if args.command == "submit":
                body: dict[str, Any] = {"type": args.type}
                for arg, key in (("payload", "payload"), ("run_at", "runAt"),
                                 ("max_attempts", "maxAttempts"), ("timeout", "timeoutSeconds"),
                                 ("key", "idempotencyKey"), ("cron", "cron"),
                                 ("timezone", "timezone"), ("queue", "queue"),
                                 ("priority", "priority")):
                    value = getattr(args, arg)
                    if value is not None:
                        body[key] = value
                status, job = client.submit(body)
                if not args.json:
                    print("created" if status == 201 else "exists (idempotency key)")
                _print_job(job, args.json)
                return 0
            cmd = args.jobs_command
            if cmd == "list":
                page = client.list(status=args.status, type=args.type, queue=args.queue,
                                   take=args.take, cursor=args.cursor)
                if args.json:
                    print(json.dumps(page, indent=2))
                else:
                    print(_table(page["items"], _JOB_COLUMNS))
                    if page.get("nextCursor"):
                        print(f"\nmore: --cursor {page['nextCursor']}")
                return 0
            if cmd == "show":
                _print_job(client.get(args.id), args.json)
            elif cmd == "cancel":
                _print_job(client.cancel(args.id), args.json)
            elif cmd == "retry":
                _print_job(client.retry(args.id, args.reason), args.json)
            return 0
    except ApiFailure as exc:
        print(f"scheduler: {exc}", file=sys.stderr)
        return 1
    except ClientError as exc:
        print(f"scheduler: {exc}", file=sys.stderr)
        return 1
