"""The public API: jobs, schedules, seed, health and metrics.

Every bad input is a 4xx whose JSON body names the field and says what was wrong;
validation happens completely before anything is written.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import msgspec
import prometheus_client
import structlog
import trio
from quart import Blueprint, Response, current_app, request

from scheduler_core.handlers import (
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_TIMEOUT_SECONDS,
    HandlerError,
    PayloadError,
    UnknownHandler,
)
from scheduler_core.runtime import clock, cron
from scheduler_core.schema import job_filter, wire
from scheduler_core.schema.bulk_store import BulkStore
from scheduler_core.schema.job_filter import JobFilter
from scheduler_core.schema.store import NewJob, NewSchedule, Parent, TooDeep, UnknownParent
from scheduler_core.schema.workflow_template import TYPE_PREFIX, TemplateStep, WorkflowTemplate
from scheduler_core.web.context import AppContext, context, json_response
from scheduler_core.web.errors import ApiError, new_error_id
from scheduler_core.web.inputs import (
    CONSISTENCY,
    check_payload_size,
    parse_id,
    parse_run_at,
    parse_take,
    query_lists,
    read_body,
    strong_reads,
)
from scheduler_core.web.tracing import current_traceparent, traced_submit
from scheduler_core.web.workflow_graph import edges_of, order_of

blueprint = Blueprint("api", __name__)
log = structlog.get_logger("web.api")

JOBS_SUBMITTED = prometheus_client.Counter(
    "scheduler_jobs_submitted_total", "Jobs created through the API", ["type"])


def _type_of(body: wire.SubmitJob) -> str:
    """The job's ``type``, which every job needs (SubmitJob leaves it optional only for
    a scheduled workflow's body): missing, the 400 a missing field gets."""
    if body.type is None:
        raise ApiError(400, "validation_error", "required field is missing", "type")
    return body.type


def _validate_payload(ctx: AppContext, job_type: str,
                      payload: dict[str, Any] | None) -> dict[str, Any]:
    registry = ctx.registry
    check_payload_size(payload, ctx.config.max_payload_bytes)
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


def _defaults(ctx: AppContext, job_type: str,
              body: wire.SubmitJob) -> tuple[int, int, str, int]:
    spec = ctx.registry.get(job_type)
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
    job = NewJob(type=_type_of(body), payload=payload, queue=queue, priority=priority,
                 run_at=run_at, max_attempts=max_attempts, timeout_seconds=timeout,
                 idempotency_key=body.idempotency_key, concurrency_key=body.concurrency_key,
                 traceparent=current_traceparent())
    if body.unique is not None:
        problem = wire.unique_problem(body.unique)
        if problem is not None:
            raise ApiError(400, "validation_error", problem[1], problem[0])
        job.unique_key = body.unique.key
        job.unique_window_ms = body.unique.window_ms
        job.unique_states = body.unique.held_in
        job.unique_replace = body.unique.on_conflict == "replace"
    if body.tags is not None:
        job.tags = list(dict.fromkeys(body.tags))  # a repeated tag says nothing more
    return job


def _parents(body: wire.SubmitJob, index: int | None,
             refs: dict[str, int]) -> list[Parent] | None:
    """``body.dependsOn`` resolved: job ids, and in a batch (``index``: the item's
    position) earlier items by index or ``ref``. An entry naming the item itself or a
    later one is refused (that is how a cycle would be spelled)."""
    if body.depends_on is None:
        if body.on_parent_failure is not None:
            raise ApiError(400, "validation_error",
                           "onParentFailure applies only with dependsOn", "onParentFailure")
        return None
    default = body.on_parent_failure or "cancel"
    out = []
    for pos, entry in enumerate(body.depends_on):
        field = f"dependsOn[{pos}]"
        policy = default
        if isinstance(entry, wire.Dependency):
            policy = entry.on_parent_failure or default
            target: str | int = entry.job
            field += ".job"
        else:
            target = entry
        if isinstance(target, int):
            if index is None:
                raise ApiError(400, "validation_error",
                               "an index names an item of a batch (POST /api/jobs/batch); "
                               f"a single job depends on job ids, found {target}", field)
            if not 0 <= target < index:
                raise ApiError(400, "validation_error",
                               f"a job may depend on earlier items of its batch only (0.."
                               f"{index - 1}), found {target}: that would be a cycle or a "
                               "forward reference", field)
            out.append(Parent(item=target, on_failure=policy))
            continue
        if index is not None and target in refs:
            if refs[target] >= index:
                raise ApiError(400, "validation_error",
                               f"a job may depend on earlier items of its batch only; "
                               f"{target!r} is item {refs[target]}: that would be a cycle "
                               "or a forward reference", field)
            out.append(Parent(item=refs[target], on_failure=policy))
            continue
        try:
            job_id = uuid.UUID(target)
        except ValueError:
            what = "a job id or the ref of an earlier item" if index is not None else "a job id"
            raise ApiError(400, "validation_error",
                           f"expected {what}, found {target[:100]!r}", field) from None
        out.append(Parent(job_id=job_id, on_failure=policy))
    return out


def _unknown_parent(exc: UnknownParent, jobs_prefix: bool) -> ApiError:
    where = f"jobs[{exc.item}]." if jobs_prefix else ""
    return ApiError(400, "unknown_parent", str(exc), f"{where}dependsOn[{exc.position}]")


def _too_deep(exc: TooDeep, jobs_prefix: bool) -> ApiError:
    where = f"jobs[{exc.item}]." if jobs_prefix else ""
    return ApiError(400, "validation_error", str(exc), f"{where}dependsOn")


@contextlib.contextmanager
def fields_under(where: str) -> Iterator[None]:
    """Prefix the field of an ApiError raised in the block with ``where`` (``jobs[3]``,
    ``batch.onFinish``, ``steps.load``)."""
    try:
        yield
    except ApiError as exc:
        field = exc.body.field
        exc.body.field = f"{where}.{field}" if field else where
        raise


def job_of(ctx: AppContext, item: wire.SubmitJob, where: str) -> NewJob:
    """The job a batch item, a callback or a workflow step describes, validated as
    ``POST /api/jobs`` validates one; an error's field is prefixed with ``where``."""
    with fields_under(where):
        if item.workflow is not None:
            raise ApiError(400, "validation_error",
                           "a workflow is created by POST /api/workflows, or fired by a "
                           "schedule (POST /api/jobs with cron and workflow)", "workflow")
        job_type = _type_of(item)
        payload = _validate_payload(ctx, job_type, item.payload)
        max_attempts, timeout, queue, priority = _defaults(ctx, job_type, item)
        return _new_job(item, payload, max_attempts, timeout, queue, priority)


IDEMPOTENCY_HEADER = "Idempotency-Key"


def _with_header_key(body: wire.SubmitJob) -> wire.SubmitJob:
    """``body`` with the ``Idempotency-Key`` header as its ``idempotencyKey``.

    A load balancer sees headers, not bodies: deploy/haproxy/haproxy.cfg resends a
    submit that a dying coordinator never answered only when it carries the header, and
    the header must then make the resend find the first job. Both given must agree.
    """
    header = request.headers.get(IDEMPOTENCY_HEADER)
    if header is None or header == body.idempotency_key:
        return body
    if body.idempotency_key is not None:
        raise ApiError(400, "validation_error",
                       f"expected the {IDEMPOTENCY_HEADER} header to equal idempotencyKey, "
                       "found two different keys", IDEMPOTENCY_HEADER)
    try:
        key = msgspec.convert(header, wire.IdempotencyKey)
    except msgspec.ValidationError as exc:
        raise ApiError(400, "validation_error", f"{IDEMPOTENCY_HEADER}: {exc}",
                       IDEMPOTENCY_HEADER) from None
    return msgspec.structs.replace(body, idempotency_key=key)


@traced_submit
async def submit_job() -> Response:
    body: wire.SubmitJob = _with_header_key(await read_body(wire.SubmitJob))
    ctx = context(current_app)
    if body.workflow is not None:
        return await _submit_workflow_schedule(ctx, body)
    job_type = _type_of(body)
    payload = _validate_payload(ctx, job_type, body.payload)
    max_attempts, timeout, queue, priority = _defaults(ctx, job_type, body)
    if body.ref is not None:
        raise ApiError(400, "validation_error",
                       "ref names an item of a batch for the items after it "
                       "(POST /api/jobs/batch)", "ref")
    if body.cron is not None:
        if body.unique is not None:
            raise ApiError(400, "validation_error",
                           "unique applies to jobs, not to schedules (each fire is one job "
                           "already)", "unique")
        if body.tags is not None:
            raise ApiError(400, "validation_error",
                           "tags apply to jobs, not to schedules", "tags")
        return await _submit_schedule(body, payload, max_attempts, timeout, queue, priority)
    new = _new_job(body, payload, max_attempts, timeout, queue, priority)
    new.parents = _parents(body, None, {})
    if new.parents is not None:
        try:
            [item] = await ctx.store.submit_dependent([new])
        except UnknownParent as exc:
            raise _unknown_parent(exc, False) from None
        except TooDeep as exc:
            raise _too_deep(exc, False) from None
        if item.created:
            JOBS_SUBMITTED.labels(job_type).inc()
        return json_response(item, 201 if item.created else 200,
                             {"Location": f"/api/jobs/{item.id}"})
    job, created = await ctx.submits.submit(new)  # written with the submits in flight
    if created:
        JOBS_SUBMITTED.labels(job_type).inc()
    answer = wire.SubmittedJob(**{f: getattr(job, f) for f in wire.JobOut.__struct_fields__},
                               created=created)
    return json_response(answer, 201 if created else 200,
                         {"Location": f"/api/jobs/{job.id}"})


@traced_submit
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
    refs: dict[str, int] = {}  # ref -> item
    edges = 0
    for i, item in enumerate(body.jobs):
        with fields_under(f"jobs[{i}]"):
            if item.cron is not None:
                raise ApiError(400, "validation_error",
                               "cron is not allowed in a batch; create schedules one at a "
                               "time with POST /api/jobs", "cron")
        new = job_of(ctx, item, f"jobs[{i}]")
        with fields_under(f"jobs[{i}]"):
            new.parents = _parents(item, i, refs)
            edges += len(new.parents or ())
            if edges > wire.MAX_PARENTS:
                raise ApiError(400, "validation_error",
                               f"a batch may name at most {wire.MAX_PARENTS:,} parents in "
                               "all (dependsOn entries)", "dependsOn")
            if item.ref is not None:
                if item.ref in refs:
                    raise ApiError(400, "validation_error",
                                   f"ref {item.ref!r} is item {refs[item.ref]}'s already",
                                   "ref")
                refs[item.ref] = i
        jobs.append(new)
    callbacks = _callbacks(ctx, body, len(jobs))
    callback_items: dict[str, wire.SubmittedJob] | None = None
    if callbacks or any(j.parents for j in jobs):
        try:
            items = await ctx.store.submit_dependent(jobs + [job for _, job in callbacks])
        except UnknownParent as exc:
            raise _unknown_parent(exc, True) from None
        except TooDeep as exc:
            raise _too_deep(exc, True) from None
        if callbacks:
            callback_items = dict(zip([name for name, _ in callbacks], items[len(jobs):],
                                      strict=True))
            items = items[:len(jobs)]
            for job in callback_items.values():
                if job.created:
                    JOBS_SUBMITTED.labels(job.type).inc()
    else:
        items = await ctx.store.submit_many(jobs)
    created: dict[str, int] = {}
    for job in items:
        if job.created:
            created[job.type] = created.get(job.type, 0) + 1
    for job_type, n in created.items():
        JOBS_SUBMITTED.labels(job_type).inc(n)
    return json_response(wire.SubmittedBatch(items=items, callbacks=callback_items),
                         201 if created or callback_items else 200)


# A batch's callbacks: (its name in the answer, the policy of its edges to the
# members, its release condition).
_CALLBACKS = (("onFinish", "run", None), ("onSuccess", "cancel", None),
              ("onFailure", "run", "any_failed"))


def _callbacks(ctx: AppContext, body: wire.SubmitBatch,
               members: int) -> list[tuple[str, NewJob]]:
    """The batch's callback jobs, each depending on every member (docs/decisions/0021:
    released once the last member has ended, exactly once, by the same trigger)."""
    if body.batch is None:
        return []
    out = []
    for name, policy, run_if in _CALLBACKS:
        attr = {"onFinish": "on_finish", "onSuccess": "on_success",
                "onFailure": "on_failure"}[name]
        item: wire.SubmitJob | None = getattr(body.batch, attr)
        if item is None:
            continue
        for field, value in (("cron", item.cron), ("dependsOn", item.depends_on),
                             ("ref", item.ref), ("onParentFailure", item.on_parent_failure)):
            if value is not None:
                raise ApiError(400, "validation_error",
                               f"a batch callback takes no {field}: it depends on every "
                               "member of the batch", f"batch.{name}.{field}")
        job = job_of(ctx, item, f"batch.{name}")
        job.parents = [Parent(item=i, on_failure=policy) for i in range(members)]
        job.run_if = run_if
        out.append((name, job))
    if not out:
        raise ApiError(400, "validation_error",
                       "batch takes at least one of onFinish, onSuccess, onFailure", "batch")
    return out


async def _submit_schedule(body: wire.SubmitJob, payload: dict[str, Any], max_attempts: int,
                           timeout_seconds: int, queue: str, priority: int) -> Response:
    assert body.cron is not None
    if body.depends_on is not None or body.on_parent_failure is not None:
        raise ApiError(400, "validation_error",
                       "dependsOn applies to jobs, not to schedules",
                       "dependsOn" if body.depends_on is not None else "onParentFailure")
    if body.concurrency_key is not None:
        raise ApiError(400, "validation_error",
                       "concurrencyKey applies to jobs, not to schedules", "concurrencyKey")
    if body.run_at is not None:
        raise ApiError(400, "validation_error", "runAt cannot be combined with cron", "runAt")
    tz, next_fire = _first_fire(body.cron, body.timezone)
    ctx = context(current_app)
    schedule, created = await ctx.schedules.create_schedule(NewSchedule(
        cron=body.cron, timezone=tz, type=_type_of(body), payload=payload, queue=queue,
        priority=priority, max_attempts=max_attempts, timeout_seconds=timeout_seconds,
        misfire_policy=body.misfire_policy or "once",
        overlap_policy=body.overlap_policy or "allow", next_fire_at=next_fire,
        idempotency_key=body.idempotency_key))
    return json_response(schedule, 201 if created else 200,
                         {"Location": f"/api/schedules/{schedule.id}"})


def _first_fire(expr: str, timezone: str | None) -> tuple[str, dt.datetime]:
    """A schedule's time zone (UTC by default) and first fire, the expression checked."""
    tz = timezone or "UTC"
    try:
        cron.validate(expr, tz)
        return tz, cron.next_fire(expr, tz, clock.utcnow())
    except cron.CronError as exc:
        raise ApiError(400, "validation_error", str(exc), exc.field) from None
    except ValueError as exc:  # croniter's CroniterBadDateError: no fire time ever
        raise ApiError(400, "validation_error",
                       f"expected a cron expression that fires, found {expr!r} "
                       f"which never does ({exc})", "cron") from None


# What a scheduled workflow's body may not carry beside cron and workflow: the job's own
# fields (each step has its own) and what applies to one job only.
_NOT_WITH_WORKFLOW = (("type", "type"), ("payload", "payload"), ("runAt", "run_at"),
                      ("maxAttempts", "max_attempts"), ("timeoutSeconds", "timeout_seconds"),
                      ("queue", "queue"), ("priority", "priority"),
                      ("concurrencyKey", "concurrency_key"), ("dependsOn", "depends_on"),
                      ("onParentFailure", "on_parent_failure"), ("ref", "ref"),
                      ("unique", "unique"))


async def _submit_workflow_schedule(ctx: AppContext, body: wire.SubmitJob) -> Response:
    """``POST /api/jobs`` with ``cron`` and ``workflow``: a schedule that fires the
    workflow (docs/decisions/0021-dependencies.md, "Workflows on a schedule"). Every
    check happens before anything is written."""
    assert body.workflow is not None
    if body.cron is None:
        raise ApiError(400, "validation_error",
                       "workflow applies only with cron (a schedule of workflows); create "
                       "one workflow with POST /api/workflows", "workflow")
    for field, attr in _NOT_WITH_WORKFLOW:
        if getattr(body, attr) is not None:
            raise ApiError(400, "validation_error",
                           f"a scheduled workflow takes no {field}: each step of the "
                           "workflow carries its own", field)
    template = _workflow_template(ctx, body.workflow)
    tz, next_fire = _first_fire(body.cron, body.timezone)
    schedule, created = await ctx.schedules.create_schedule(NewSchedule(
        cron=body.cron, timezone=tz, type=TYPE_PREFIX + template.name, payload={},
        queue="default", priority=0, max_attempts=DEFAULT_MAX_ATTEMPTS,
        timeout_seconds=DEFAULT_TIMEOUT_SECONDS,
        misfire_policy=body.misfire_policy or "once",
        overlap_policy=body.overlap_policy or "allow", next_fire_at=next_fire,
        idempotency_key=body.idempotency_key, workflow=template))
    return json_response(schedule, 201 if created else 200,
                         {"Location": f"/api/schedules/{schedule.id}"})


def _workflow_template(ctx: AppContext, wf: wire.SubmitWorkflow) -> WorkflowTemplate:
    """The steps validated as ``POST /api/workflows`` validates them (errors under
    ``workflow.``), depth included, and normalised: parents first, defaults applied.
    A step may not carry runAt or idempotencyKey: every fire would collide on them."""
    with fields_under("workflow"):
        edges = edges_of(wf)
        order = order_of(edges)
        index = {name: i for i, name in enumerate(order)}
        depth: dict[str, int] = {}
        steps = []
        for name in order:
            item = wf.steps[name]
            for field, value in (("runAt", item.run_at),
                                 ("idempotencyKey", item.idempotency_key),
                                 ("unique", item.unique)):
                if value is not None:
                    raise ApiError(400, "validation_error",
                                   f"a scheduled workflow's step takes no {field}: every "
                                   "fire would make the same one", f"steps.{name}.{field}")
            job = job_of(ctx, item, f"steps.{name}")
            depth[name] = max((depth[p] + 1 for p, _ in edges[name]), default=0)
            if depth[name] > wire.MAX_DEPTH:
                raise ApiError(400, "validation_error",
                               f"the step would be {depth[name]} levels deep; at most "
                               f"{wire.MAX_DEPTH} are allowed", f"steps.{name}.dependsOn")
            steps.append(TemplateStep(
                step=name, type=job.type, payload=job.payload, queue=job.queue,
                priority=job.priority, max_attempts=job.max_attempts,
                timeout_seconds=job.timeout_seconds, concurrency_key=job.concurrency_key,
                parents=[(index[p], policy) for p, policy in edges[name]]))
    return WorkflowTemplate(name=wf.name, steps=steps)


_LIST_PARAMS = {*job_filter.KEYS, "take", "cursor", CONSISTENCY}


def _filter_of(args: Mapping[str, str | Sequence[str]], where: str = "") -> JobFilter:
    """The search filter (schema/job_filter.py, one parser for every caller); a 400
    naming the parameter (``where``, or with ``where`` given ``filter.where``)."""
    try:
        return job_filter.parse_filter(args)
    except job_filter.FilterError as exc:
        raise ApiError(400, "validation_error", exc.message,
                       f"{where}.{exc.field}" if where else exc.field) from None


async def list_jobs() -> Response:
    args = query_lists(_LIST_PARAMS, job_filter.REPEATABLE)
    strong = strong_reads(args)
    args.pop(CONSISTENCY, None)
    found = _filter_of(args)
    take = parse_take({k: v for k, v in args.items() if isinstance(v, str)}, 50)
    cursor = args.get("cursor") or None
    before = parse_id(cursor, "cursor") if isinstance(cursor, str) else None
    page = await context(current_app).read(
        lambda r: r.store.list_jobs(found, before=before, take=take), strong)
    return json_response(page)


async def bulk_jobs() -> Response:
    """Retry, cancel or delete the jobs a filter matches (schema/bulk_store.py)."""
    ctx = context(current_app)
    body: wire.BulkJobs = await read_body(wire.BulkJobs)
    for name in body.filter:
        if name not in job_filter.KEYS:
            raise ApiError(400, "unknown_parameter", "unknown filter; expected one of "
                           + ", ".join(job_filter.KEYS), f"filter.{name}")
    found = _filter_of(body.filter, "filter")
    most = ctx.config.bulk_max
    if body.limit is not None and body.limit > most:
        raise ApiError(400, "validation_error",
                       f"limit must be 1..{most} (SCHEDULER_BULK_MAX), found {body.limit}",
                       "limit")
    if body.reason is not None and body.action != "retry":
        raise ApiError(400, "validation_error", "reason applies only to retry", "reason")
    limit = body.limit or most
    bulk = BulkStore(ctx.store.pool, batch=ctx.config.bulk_batch, wake=ctx.store.wake)
    if body.dry_run:
        return json_response(await bulk.dry_run(body.action, found, ids=body.ids, limit=limit))
    result = await bulk.run(body.action, found, ids=body.ids, limit=limit, after=body.after,
                            reason=body.reason)
    log.info("jobs_bulk_changed", action=body.action, count=result.count,
             skipped=sum(result.skipped.values()), batches=result.batches)
    return json_response(result)


async def get_job(job_id: str) -> Response:
    strong = strong_reads()
    job = parse_id(job_id)
    return json_response(await context(current_app).read(lambda r: r.store.get_job(job),
                                                         strong))


async def cancel_job(job_id: str) -> Response:
    return json_response(await context(current_app).store.cancel(parse_id(job_id)))


async def retry_job(job_id: str) -> Response:
    jid = parse_id(job_id)
    body: wire.RetryJob = await read_body(wire.RetryJob, allow_empty=True)
    return json_response(await context(current_app).store.retry(jid, body.reason))


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
