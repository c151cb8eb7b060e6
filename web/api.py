"""The public API: jobs, schedules, seed, health and metrics.

Every bad input is a 4xx whose JSON body names the field and says what was wrong;
validation happens completely before anything is written.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Collection, Mapping
from typing import Any

import msgspec
import prometheus_client
import structlog
import trio
from quart import Blueprint, Response, current_app, request

from handlers import HandlerError, PayloadError, UnknownHandler
from runtime import clock, cron, jsonlimits
from schema import wire
from schema.store import NewJob, NewSchedule
from web.app import context, json_response
from web.errors import ApiError, from_msgspec, new_error_id

blueprint = Blueprint("api", __name__)
log = structlog.get_logger("web.api")

DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_TIMEOUT_SECONDS = 300

JOBS_SUBMITTED = prometheus_client.Counter(
    "scheduler_jobs_submitted_total", "Jobs created through the API", ["type"])


async def read_body(type_: type[Any], *, allow_empty: bool = False) -> Any:
    """Decode the request body as ``type_``; 400 naming the field on any problem.

    Every JSON body of the API comes through here. Before anything decodes or walks
    it, its nesting is measured on the raw bytes (runtime/jsonlimits.py): deeper than
    SCHEDULER_MAX_JSON_DEPTH is a 400 naming the path of the first array or object
    past the limit, answered in milliseconds whatever the body's size.
    """
    raw = await request.get_data(cache=False, as_text=False)
    assert isinstance(raw, bytes)  # as_text=False
    if not raw.strip():
        if allow_empty:
            return msgspec.convert({}, type_)
        raise ApiError(400, "malformed_json", "the request body is empty; expected a JSON object",
                       "body")
    limit = context(current_app).config.max_json_depth
    where = jsonlimits.too_deep(raw, limit)
    if where is not None:
        raise ApiError(400, "too_deep",
                       f"expected JSON nested at most {limit} levels deep, found deeper",
                       where or "body")
    try:
        value = msgspec.json.decode(raw, type=type_)
    except msgspec.MsgspecError as exc:
        raise from_msgspec(exc) from None
    except UnicodeDecodeError:  # raised by msgspec for invalid UTF-8 inside a string
        raise ApiError(400, "malformed_json",
                       f"the body is not valid JSON: expected UTF-8 text, found "
                       f"{_first_invalid_utf8(raw)}", "body") from None
    if b"\\u0000" in raw:  # cheap pre-filter; PostgreSQL text and jsonb refuse NUL
        where = nul_path(msgspec.json.decode(raw))
        if where is not None:
            raise ApiError(400, "validation_error",
                           "expected text without NUL (\\u0000) characters, found one",
                           where or "body")
    return value


def _first_invalid_utf8(raw: bytes) -> str:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"the byte 0x{raw[exc.start]:02x} at offset {exc.start}"
    return "an invalid byte"


def nul_path(value: Any) -> str | None:
    """The JSON path (``payload.url``, ``items[2]``) of the first string or key holding a
    NUL character, ``""`` for the document itself, or None if there is none.

    Walked with an explicit stack, depth first in document order: no recursion over
    what a client sent, however deep it is."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return path
        elif isinstance(item, dict):
            children = []
            for key, child in item.items():
                if "\x00" in key:
                    return path
                children.append((child, f"{path}.{key}" if path else key))
            stack.extend(reversed(children))
        elif isinstance(item, list):
            stack.extend((child, f"{path}[{i}]") for i, child in reversed(list(enumerate(item))))
    return None


def query_args(allowed: Collection[str]) -> dict[str, str]:
    """The request's query parameters by name; 400 naming the first one that is not in
    ``allowed`` or that is given more than once (``take=5&take=1000``: no silent pick).
    Every list route reads its parameters through this."""
    args = request.args
    for name in args:
        if name not in allowed:
            expected = (f"expected one of {', '.join(sorted(allowed))}" if allowed
                        else "this route takes none")
            raise ApiError(400, "unknown_parameter", f"unknown query parameter; {expected}",
                           name)
        count = len(args.getlist(name))
        if count > 1:
            raise ApiError(400, "repeated_parameter",
                           f"expected {name} at most once, found it {count} times", name)
    return {name: args[name] for name in args}


def parse_take(args: Mapping[str, str], default: int, *, most: int = 500) -> int:
    """``take`` from ``query_args``: an integer 1..``most``; 400 naming ``take``."""
    raw = args.get("take", str(default))
    if not re.fullmatch(r"-?[0-9]{1,20}", raw):
        raise ApiError(400, "validation_error", f"take must be an integer, found {raw!r}", "take")
    take = int(raw)
    if not 1 <= take <= most:
        raise ApiError(400, "validation_error", f"take must be 1..{most}, found {take}", "take")
    return take


def parse_id(value: str, field: str = "id") -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise ApiError(400, "invalid_id", f"{field} must be a UUID, found {value!r}", field) from None


def parse_run_at(value: str) -> dt.datetime:
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ApiError(400, "validation_error",
                       f"expected an ISO-8601 date-time with a zone, found {value!r}",
                       "runAt") from None
    if when.tzinfo is None:
        raise ApiError(400, "validation_error",
                       f"runAt needs a time zone (e.g. 'Z' or '+02:00'), found {value!r}",
                       "runAt")
    try:
        return when.astimezone(dt.UTC)
    except OverflowError:
        # PostgreSQL would store it, and every later read of the row would fail.
        raise ApiError(400, "validation_error",
                       f"expected a date-time between years 1 and 9999 in UTC, found {value!r}",
                       "runAt") from None


def check_payload_size(payload: Any, field: str = "payload") -> None:
    """413 naming ``field`` when ``payload``, as JSON, is over SCHEDULER_MAX_PAYLOAD_BYTES."""
    limit = context(current_app).config.max_payload_bytes
    size = len(msgspec.json.encode(payload))
    if size > limit:
        raise ApiError(413, "payload_too_large",
                       f"expected a payload of at most {limit} bytes of JSON, found {size}",
                       field)


def _validate_payload(job_type: str, payload: dict[str, Any] | None) -> dict[str, Any]:
    registry = context(current_app).registry
    check_payload_size(payload)
    try:
        registry.get(job_type)
    except UnknownHandler:
        raise ApiError(400, "unknown_type",
                       f"unknown job type {job_type!r}; known types: "
                       + ", ".join(sorted(registry.names())), "type") from None
    try:
        registry.validate(job_type, payload if payload is not None else {})
    except PayloadError as exc:
        raise ApiError(400, "invalid_payload", str(exc), exc.field) from None
    except HandlerError as exc:
        raise ApiError(400, "invalid_payload", str(exc), "payload") from None
    return payload if payload is not None else {}


def _defaults(job_type: str, body: wire.SubmitJob) -> tuple[int, int, str, int]:
    spec = context(current_app).registry.get(job_type)
    max_attempts = body.max_attempts or spec.max_attempts or DEFAULT_MAX_ATTEMPTS
    timeout = body.timeout_seconds or spec.timeout_seconds or DEFAULT_TIMEOUT_SECONDS
    queue = body.queue or spec.queue or "default"
    return max_attempts, timeout, queue, body.priority or 0


def _new_job(body: wire.SubmitJob, payload: dict[str, Any], max_attempts: int,
             timeout: int, queue: str, priority: int) -> NewJob:
    """The job a submission without ``cron`` describes (its payload already valid)."""
    for name, value in (("timezone", body.timezone), ("misfirePolicy", body.misfire_policy),
                        ("overlapPolicy", body.overlap_policy)):
        if value is not None:
            raise ApiError(400, "validation_error", f"{name} applies only with cron", name)
    run_at = parse_run_at(body.run_at) if body.run_at is not None else None
    return NewJob(type=body.type, payload=payload, queue=queue, priority=priority,
                  run_at=run_at, max_attempts=max_attempts, timeout_seconds=timeout,
                  idempotency_key=body.idempotency_key)


@blueprint.post("/api/jobs")
async def submit_job() -> Response:
    body: wire.SubmitJob = await read_body(wire.SubmitJob)
    ctx = context(current_app)
    payload = _validate_payload(body.type, body.payload)
    max_attempts, timeout, queue, priority = _defaults(body.type, body)
    if body.cron is not None:
        return await _submit_schedule(body, payload, max_attempts, timeout, queue, priority)
    job, created = await ctx.store.submit(
        _new_job(body, payload, max_attempts, timeout, queue, priority))
    if created:
        JOBS_SUBMITTED.labels(body.type).inc()
    return json_response(job, 201 if created else 200,
                         {"Location": f"/api/jobs/{job.id}"})


@blueprint.post("/api/jobs/batch")
async def submit_batch() -> Response:
    """Up to 1000 jobs in one request and one INSERT, all or nothing.

    Each item is validated exactly as ``POST /api/jobs`` validates a job (errors name
    the field as ``jobs[3].payload.url``); ``cron`` is refused (schedules are made one
    at a time). Answers ``{"items": [job, ...]}`` in request order, each job with
    ``created`` (false: its idempotency key named an existing job, or an earlier item
    of this batch); 201 when anything was created, else 200.
    """
    body: wire.SubmitBatch = await read_body(wire.SubmitBatch)
    ctx = context(current_app)
    jobs = []
    for i, item in enumerate(body.jobs):
        try:
            if item.cron is not None:
                raise ApiError(400, "validation_error",
                               "cron is not allowed in a batch; create schedules one at a "
                               "time with POST /api/jobs", "cron")
            payload = _validate_payload(item.type, item.payload)
            max_attempts, timeout, queue, priority = _defaults(item.type, item)
            jobs.append(_new_job(item, payload, max_attempts, timeout, queue, priority))
        except ApiError as exc:
            where = exc.body.field
            exc.body.field = f"jobs[{i}].{where}" if where else f"jobs[{i}]"
            raise
    items = await ctx.store.submit_many(jobs)
    created: dict[str, int] = {}
    for job in items:
        if job.created:
            created[job.type] = created.get(job.type, 0) + 1
    for job_type, n in created.items():
        JOBS_SUBMITTED.labels(job_type).inc(n)
    return json_response(wire.SubmittedBatch(items=items), 201 if created else 200)


async def _submit_schedule(body: wire.SubmitJob, payload: dict[str, Any], max_attempts: int,
                           timeout_seconds: int, queue: str, priority: int) -> Response:
    assert body.cron is not None
    if body.run_at is not None:
        raise ApiError(400, "validation_error", "runAt cannot be combined with cron", "runAt")
    tz = body.timezone or "UTC"
    try:
        cron.validate(body.cron, tz)
        next_fire = cron.next_fire(body.cron, tz, clock.utcnow())
    except cron.CronError as exc:
        raise ApiError(400, "validation_error", str(exc), exc.field) from None
    except ValueError as exc:  # croniter's CroniterBadDateError: no fire time ever
        raise ApiError(400, "validation_error",
                       f"expected a cron expression that fires, found {body.cron!r} "
                       f"which never does ({exc})", "cron") from None
    ctx = context(current_app)
    schedule, created = await ctx.schedules.create_schedule(NewSchedule(
        cron=body.cron, timezone=tz, type=body.type, payload=payload, queue=queue,
        priority=priority, max_attempts=max_attempts, timeout_seconds=timeout_seconds,
        misfire_policy=body.misfire_policy or "once",
        overlap_policy=body.overlap_policy or "allow", next_fire_at=next_fire,
        idempotency_key=body.idempotency_key))
    return json_response(schedule, 201 if created else 200,
                         {"Location": f"/api/schedules/{schedule.id}"})


_LIST_PARAMS = {"status", "type", "queue", "take", "cursor"}


@blueprint.get("/api/jobs")
async def list_jobs() -> Response:
    args = query_args(_LIST_PARAMS)
    status = args.get("status") or None
    if status is not None and status not in wire.JOB_STATUSES:
        raise ApiError(400, "validation_error", "status must be one of "
                       + ", ".join(wire.JOB_STATUSES) + f"; found {status!r}", "status")
    take = parse_take(args, 50)
    cursor = args.get("cursor") or None
    before = parse_id(cursor, "cursor") if cursor else None
    for name in ("type", "queue"):
        value = args.get(name)
        if value is not None and not 1 <= len(value) <= 100:
            raise ApiError(400, "validation_error", f"{name} must be 1..100 characters", name)
        if value is not None and "\x00" in value:
            raise ApiError(400, "validation_error",
                           f"expected {name} without NUL characters, found one", name)
    page = await context(current_app).store.list_jobs(
        status=status, type=args.get("type") or None, queue=args.get("queue") or None,
        before=before, take=take)
    return json_response(page)


@blueprint.get("/api/jobs/<job_id>")
async def get_job(job_id: str) -> Response:
    return json_response(await context(current_app).store.get_job(parse_id(job_id)))


@blueprint.post("/api/jobs/<job_id>/cancel")
async def cancel_job(job_id: str) -> Response:
    return json_response(await context(current_app).store.cancel(parse_id(job_id)))


@blueprint.post("/api/jobs/<job_id>/retry")
async def retry_job(job_id: str) -> Response:
    jid = parse_id(job_id)
    body: wire.RetryJob = await read_body(wire.RetryJob, allow_empty=True)
    return json_response(await context(current_app).store.retry(jid, body.reason))


@blueprint.post("/api/seed")
async def seed() -> Response:
    """Demo jobs of every built-in type (loopback only: no outside network needed)."""
    ctx = context(current_app)
    base = f"http://{ctx.config.host}:{ctx.config.port}"
    demos: list[tuple[str, dict[str, Any]]] = [
        ("http_get", {"url": f"{base}/health"}),
        ("cpu", {"durationSeconds": 1}),
        ("file_write", {"fileName": "hello.txt", "content": "hello"}),
        ("noop", {}),
        ("sleep", {"seconds": 1}),
    ]
    items = []
    for job_type, payload in demos:
        if job_type not in ctx.registry.names():
            continue
        spec = ctx.registry.get(job_type)
        job, _ = await ctx.store.submit(NewJob(
            type=job_type, payload=payload, queue=spec.queue or "default",
            max_attempts=spec.max_attempts or DEFAULT_MAX_ATTEMPTS,
            timeout_seconds=spec.timeout_seconds or 60))
        JOBS_SUBMITTED.labels(job_type).inc()
        items.append(job)
    return json_response({"items": items}, 201)


@blueprint.get("/health")
async def health() -> Response:
    try:
        with trio.fail_after(2.0):
            await context(current_app).store.ping()
    except Exception as exc:  # any failure to reach the database is "unavailable"
        timed_out = isinstance(exc, trio.TooSlowError)
        error_id = new_error_id()
        log.warning("health_check_failed", error_id=error_id,
                    error="timed out after 2 s" if timed_out else f"{type(exc).__name__}: {exc}")
        return json_response({"status": "unavailable", "database": "unreachable",
                              "reason": "timed out after 2 s" if timed_out else
                              "the database did not answer", "errorId": error_id}, 503)
    return json_response({"status": "ok", "database": "ok"})
