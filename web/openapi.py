"""The OpenAPI 3.1 document of the whole HTTP API, served at ``GET /openapi.json``.

It is generated, not written: :data:`ROUTES` says for each route its method, path,
parameters and which msgspec Struct is its request body and its response for each
status; the JSON Schemas come from those Structs (``msgspec.json.schema_components``),
so a field added to a Struct in schema/wire.py shows up here by itself. Every 4xx and
5xx body is :class:`schema.wire.ErrorBody`. A job submission (``POST /api/jobs``, the
items of ``POST /api/jobs/batch``) is ``JobSubmission``: a ``oneOf`` with one variant
of SubmitJob per registered job type, whose ``payload`` is that type's payload Struct.

A unit test checks that the document is valid OpenAPI 3.1 and that it lists exactly
the routes the app has; tests/integration/test_fuzz_api.py fuzzes a live coordinator
from it (schemathesis) and checks every answer against it. A new route therefore needs
its line in :data:`ROUTES`.

Some answers are built as dicts by their handlers; the Structs below (``SeedReply``,
``Health``, ...) only describe them here, and the fuzz test keeps the two in step.
"""

from __future__ import annotations

import http
import mimetypes
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import msgspec
from quart import Blueprint, Response, current_app

from scheduler_core.handlers import Registry
from scheduler_core.schema import wire
from scheduler_core.schema.schedule_store import ScheduleDetail
from scheduler_core.schema.session_store import RevokedSessions, SessionList, SessionOut
from scheduler_core.schema.stats_store import Overview
from scheduler_core.web import metrics
from scheduler_core.web.context import context

blueprint = Blueprint("openapi", __name__)

JSON = "application/json"
_REF = "#/components/schemas/{name}"
_STATIC = Path(__file__).parent / "static"


# -- answers built as dicts, described ----------------------------------------------------

class ConflictBody(wire.ErrorBody, kw_only=True):
    """A 409: the error, and where it applies the resource as it is now (``current``)."""

    current: Any = None


class SeedReply(msgspec.Struct, rename="camel", kw_only=True):
    items: list[wire.JobOut]


class ScheduleList(msgspec.Struct, rename="camel", kw_only=True):
    items: list[wire.ScheduleOut]


class DeregisteredWorker(msgspec.Struct, rename="camel", kw_only=True):
    worker_id: str
    state: Literal["Stopped"]


class Health(msgspec.Struct, rename="camel", kw_only=True):
    """Liveness: the process answers and reaches PostgreSQL (503: it does not)."""

    status: Literal["ok", "unavailable"]
    database: Literal["ok", "unreachable"]
    reason: str | None = None


class ReadyCheck(msgspec.Struct, rename="camel", kw_only=True):
    """One readiness check; more keys say what was found (``missing``, ``states``...)."""

    ok: bool
    reason: str | None = None


class Readiness(msgspec.Struct, rename="camel", kw_only=True):
    status: Literal["ready", "not_ready"]
    checks: dict[str, ReadyCheck]
    # SCHEDULER_START_ID, when set: how `scheduler up` knows its own coordinator.
    start_id: str | None = None


class LoginForm(msgspec.Struct, kw_only=True):
    """The login form: an admin or read token (web/auth.py)."""

    token: str


class DashboardMeta(msgspec.Struct, rename="camel", kw_only=True):
    types: list[str]
    statuses: list[str]
    terminal: list[str]


# -- the route table ----------------------------------------------------------------------

@dataclass(frozen=True)
class Param:
    name: str
    location: Literal["path", "query", "header"]
    schema: Mapping[str, Any]
    description: str
    required: bool = False


@dataclass(frozen=True)
class Media:
    """A body that is not JSON described by a Struct: its media types and schema."""

    types: tuple[str, ...]
    description: str
    schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "string"})


@dataclass(frozen=True)
class OneOf:
    """A JSON body that is one of several Structs."""

    types: tuple[type, ...]


@dataclass(frozen=True)
class Route:
    method: Literal["get", "post", "patch", "delete"]
    path: str  # OpenAPI style: /api/jobs/{id}
    operation_id: str
    summary: str
    tag: str
    ok: Mapping[int, Any]  # status -> Struct type | OneOf | Media
    errors: tuple[int, ...] = ()  # each answered with ErrorBody (409: ConflictBody)
    body: Any = None  # a Struct type
    body_required: bool = True
    body_media: str = JSON  # the request body's media type
    params: tuple[Param, ...] = ()
    description: str = ""


UUID = {"type": "string", "format": "uuid"}
ID = Param("id", "path", UUID, "The id (a UUID).", required=True)
QUEUE = Param("name", "path", {"type": "string", "pattern": wire.QUEUE_NAME_PATTERN},
              "The queue name.", required=True)
TAKE_JOBS = Param("take", "query", {"type": "integer", "minimum": 1, "maximum": 500,
                                    "default": 50}, "Page size.")
TAKE_SCHEDULES = Param("take", "query", {"type": "integer", "minimum": 1, "maximum": 500,
                                         "default": 100}, "How many, newest first.")
FILTER = {"type": "string", "minLength": 1, "maxLength": 100}
WORKER_SECRET = Param("X-Worker-Secret", "header", {"type": "string"},
                      "The secret the worker's registration answered (403 without it).")

SEE_OTHER = Media(("text/html",), "See Other: `Location` says where")

# What the database may answer for any route that reads or writes it.
DB = (503,)

ROUTES: tuple[Route, ...] = (
    # jobs
    Route("post", "/api/jobs", "submitJob", "Submit a job, or with cron a schedule", "jobs",
          {201: OneOf((wire.JobOut, wire.ScheduleOut)), 200: OneOf((wire.JobOut, wire.ScheduleOut))},
          (400, 409, 413, *DB), body=wire.SubmitJob,
          description="201 with the new job (with `cron`: the new schedule); 200 with the "
                      "existing one when the `idempotencyKey` is known."),
    Route("post", "/api/jobs/batch", "submitBatch", "Submit up to 1000 jobs, all or none",
          "jobs", {201: wire.SubmittedBatch, 200: wire.SubmittedBatch}, (400, 413, *DB),
          body=wire.SubmitBatch,
          description="Each item as `POST /api/jobs` takes it, without `cron`; errors name "
                      "the item (`jobs[3].payload.url`). 201 when any job was created, "
                      "else 200."),
    Route("get", "/api/jobs", "listJobs", "List jobs, newest first (keyset paging)", "jobs",
          {200: wire.JobPage}, (400, *DB), params=(
              Param("status", "query", {"enum": list(wire.JOB_STATUSES)}, "Only this status."),
              Param("type", "query", FILTER, "Only this job type."),
              Param("queue", "query", FILTER, "Only this queue."),
              TAKE_JOBS,
              Param("cursor", "query", UUID, "`nextCursor` of the previous page."))),
    Route("get", "/api/jobs/{id}", "getJob", "A job with its runs", "jobs",
          {200: wire.JobOut}, (400, 404, *DB), params=(ID,)),
    Route("post", "/api/jobs/{id}/cancel", "cancelJob", "Cancel a job", "jobs",
          {200: wire.JobOut}, (400, 404, 409, *DB), params=(ID,),
          description="A waiting job is Cancelled at once, a Running one is flagged; a "
                      "finished one is a 409."),
    Route("post", "/api/jobs/{id}/retry", "retryJob", "Retry a finished job", "jobs",
          {200: wire.JobOut}, (400, 404, 409, *DB), body=wire.RetryJob, body_required=False,
          params=(ID,)),
    Route("get", "/api/jobs/by-key", "getJobByKey", "The job submitted with an idempotency key",
          "jobs", {200: wire.JobOut}, (400, 404, *DB), params=(
              Param("key", "query", {"type": "string", "minLength": 1, "maxLength": 200},
                    "The idempotency key.", required=True),)),
    Route("post", "/api/seed", "seed", "Create one demo job of each built-in type", "jobs",
          {201: SeedReply}, DB),
    # schedules
    Route("get", "/api/schedules", "listSchedules", "List schedules, newest first",
          "schedules", {200: ScheduleList}, (400, *DB), params=(TAKE_SCHEDULES,)),
    Route("get", "/api/schedules/{id}", "getSchedule", "A schedule with its recent fires",
          "schedules", {200: ScheduleDetail}, (400, 404, *DB), params=(ID,)),
    Route("post", "/api/schedules/{id}/pause", "pauseSchedule", "Stop new fires",
          "schedules", {200: wire.ScheduleOut}, (400, 404, *DB), params=(ID,)),
    Route("post", "/api/schedules/{id}/resume", "resumeSchedule", "Fire again", "schedules",
          {200: wire.ScheduleOut}, (400, 404, *DB), params=(ID,)),
    Route("delete", "/api/schedules/{id}", "deleteSchedule", "Delete (softly) a schedule",
          "schedules", {200: wire.ScheduleOut}, (400, 404, *DB), params=(ID,)),
    # queues
    Route("get", "/api/queues", "listQueues", "Queues with settings, waiting or running jobs",
          "queues", {200: wire.QueuePage}, (400, *DB)),
    Route("get", "/api/queues/{name}", "getQueue", "A queue's settings and load", "queues",
          {200: wire.QueueOut}, (400, *DB), params=(QUEUE,),
          description="Any valid name answers: a queue never configured is active and "
                      "unlimited."),
    Route("patch", "/api/queues/{name}", "updateQueue", "Set a queue's limit or pause state",
          "queues", {200: wire.QueueOut}, (400, *DB), body=wire.UpdateQueue, params=(QUEUE,),
          description="Only the fields given change; `concurrencyLimit: null` removes the "
                      "limit, which caps the queue's Running jobs across the cluster."),
    Route("post", "/api/queues/{name}/pause", "pauseQueue", "Stop claims from a queue",
          "queues", {200: wire.QueueOut}, (400, *DB), params=(QUEUE,),
          description="Running jobs finish; new and waiting jobs wait until resumed."),
    Route("post", "/api/queues/{name}/resume", "resumeQueue", "Claim from a queue again",
          "queues", {200: wire.QueueOut}, (400, *DB), params=(QUEUE,)),
    # the worker protocol
    Route("post", "/api/workers/register", "registerWorker", "A worker introduces itself",
          "workers", {201: wire.RegisteredWorker}, (400, 409, *DB), body=wire.RegisterWorker,
          params=(WORKER_SECRET,),
          description="Answers the worker's secret (`workerSecret`), which its later "
                      "requests send as X-Worker-Secret. 409: the id is a live worker's, "
                      "and X-Worker-Secret is not its current secret."),
    Route("post", "/api/workers/heartbeat", "heartbeat", "Renew leases, learn of cancels",
          "workers", {200: wire.HeartbeatReply}, (400, 403, *DB), body=wire.Heartbeat,
          params=(WORKER_SECRET,)),
    Route("post", "/api/workers/claim", "claim", "Claim due jobs (a long poll)", "workers",
          {200: wire.ClaimReply}, (400, 403, *DB), body=wire.Claim, params=(WORKER_SECRET,),
          description="Waits at most min(waitSeconds, SCHEDULER_CLAIM_WAIT_SECONDS) when "
                      "nothing is due."),
    Route("post", "/api/workers/complete", "complete", "Report outcomes of runs", "workers",
          {200: wire.CompleteReply, 409: wire.CompleteReply}, (400, 403, *DB),
          body=wire.Complete, params=(WORKER_SECRET,),
          description="409 when any item was fenced off (a stale lease token); the body "
                      "still lists each item's fate."),
    Route("post", "/api/workers/deregister", "deregisterWorker", "A worker says goodbye",
          "workers", {200: DeregisteredWorker}, (400, 403, *DB), body=wire.Heartbeat,
          params=(WORKER_SECRET,)),
    # operations
    Route("get", "/health", "health", "Liveness: the process reaches PostgreSQL",
          "operations", {200: Health, 503: Health}),
    Route("get", "/health/ready", "ready", "Readiness: database, migrations, actors",
          "operations", {200: Readiness, 503: Readiness}),
    Route("get", "/metrics", "metrics", "Prometheus metrics", "operations",
          {200: Media((metrics.CONTENT_TYPE.split(";")[0],), "Prometheus text exposition")}),
    Route("get", "/openapi.json", "openapi", "This document", "operations",
          {200: Media((JSON,), "The OpenAPI document", {"type": "object"})}),
    # the dashboard
    Route("get", "/", "dashboard", "The dashboard page", "dashboard",
          {200: Media(("text/html",), "The page")}),
    Route("get", "/dashboard/static/{filename}", "dashboardStatic", "The page's files",
          "dashboard", {200: Media(tuple(sorted({mimetypes.guess_type(p.name)[0] or
                                                 "application/octet-stream"
                                                 for p in _STATIC.iterdir()})),
                                   "A static file")},
          (404,), params=(Param("filename", "path", {"type": "string", "minLength": 1},
                                "The file name.", required=True),)),
    Route("get", "/api/dashboard/overview", "dashboardOverview", "The overview snapshot",
          "dashboard", {200: Overview}, DB),
    Route("get", "/api/dashboard/meta", "dashboardMeta", "Job types and statuses",
          "dashboard", {200: DashboardMeta}),
    Route("get", "/api/dashboard/events", "dashboardEvents",
          "Server-sent events: the overview every second", "dashboard",
          {200: Media(("text/event-stream",), "An endless stream of `overview` events")}),
    # the dashboard's login (web/auth.py)
    Route("get", "/login", "loginPage", "The login form", "dashboard",
          {200: Media(("text/html",), "The page"), 303: SEE_OTHER},
          description="303 to / when no token is configured."),
    Route("post", "/login", "login", "Sign in to the dashboard with a token", "dashboard",
          {303: SEE_OTHER, 401: Media(("text/html",), "The form again: not a valid token"),
           403: Media(("text/html",), "The form again: a worker token")}, (429,),
          body=LoginForm, body_media="application/x-www-form-urlencoded",
          description="An admin or read token gets the HttpOnly session cookie and the "
                      "CSRF cookie, and a 303 to /."),
    Route("post", "/logout", "logout", "Sign out of the dashboard", "dashboard",
          {303: SEE_OTHER}, (403, *DB),
          description="Ends the session of the cookie; a live session needs its "
                      "X-CSRF-Token header (403 otherwise)."),
    # the dashboard's sessions (web/auth.py)
    Route("get", "/api/sessions", "listSessions", "The live dashboard sessions", "sessions",
          {200: SessionList}, DB),
    Route("delete", "/api/sessions/{id}", "revokeSession", "End a dashboard session",
          "sessions", {200: SessionOut}, (400, 404, *DB), params=(ID,)),
    Route("post", "/api/sessions/revoke-all", "revokeAllSessions",
          "End every dashboard session", "sessions", {200: RevokedSessions}, DB),
)

_ERROR_TEXT = {
    400: "Bad input; `field` names it.",
    404: "No such resource (or route); `field` names the culprit when there is one.",
    403: "Refused: `field` names what was missing or wrong.",
    409: "The request conflicts with the resource's state.",
    413: "The request body, or the job's payload, is too large; `field` names which.",
    415: "The body is not `application/json` (`field`: `Content-Type`).",
    429: "Too many failed token checks from this address: wait `Retry-After` seconds.",
    503: "PostgreSQL is unavailable.",
}


# -- the generator ------------------------------------------------------------------------

def _variant_name(job_type: str) -> str:
    return "SubmitJob_" + re.sub(r"[^A-Za-z0-9._-]", "_", job_type)


def build_document(registry: Registry, *, version: str | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document for an app whose job types are ``registry``'s."""
    specs = [registry.get(name) for name in registry.names()]
    types: list[Any] = [wire.ErrorBody, ConflictBody, wire.SubmitJob]
    types += [spec.payload_type for spec in specs]
    for route in ROUTES:
        if isinstance(route.body, type) and issubclass(route.body, msgspec.Struct):
            types.append(route.body)
        for answer in route.ok.values():
            types.extend(answer.types if isinstance(answer, OneOf)
                         else [] if isinstance(answer, Media) else [answer])
    types = list(dict.fromkeys(types))
    refs, components = msgspec.json.schema_components(types, ref_template=_REF)
    ref_of = dict(zip(types, refs, strict=True))

    # SubmitJob, wherever it is used, becomes JobSubmission: one variant per job type.
    submit = components.pop("SubmitJob")
    ref_of[wire.SubmitJob] = {"$ref": _REF.format(name="JobSubmission")}
    components = _replace_ref(components, _REF.format(name="SubmitJob"),
                              _REF.format(name="JobSubmission"))
    variants = []
    for spec in specs:
        variant = {**submit, "title": _variant_name(spec.name),
                   "description": f"A `{spec.name}` job (with `cron`: a schedule of them).",
                   "properties": dict(submit["properties"]),
                   "required": list(submit.get("required", []))}
        variant["properties"]["type"] = {"const": spec.name}
        payload_ref = ref_of[spec.payload_type]
        if any(f.required for f in msgspec.structs.fields(spec.payload_type)):
            variant["properties"]["payload"] = payload_ref
            variant["required"].append("payload")
        else:  # a missing or null payload is validated as {}
            variant["properties"]["payload"] = {"anyOf": [payload_ref, {"type": "null"}]}
        components[_variant_name(spec.name)] = variant
        variants.append({"$ref": _REF.format(name=_variant_name(spec.name))})
    components["JobSubmission"] = {
        "title": "JobSubmission", "description": submit.get("description", ""),
        **({"oneOf": variants} if variants else {"type": "object"})}

    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        op: dict[str, Any] = {"operationId": route.operation_id, "summary": route.summary,
                              "tags": [route.tag], "responses": {}}
        if route.description:
            op["description"] = route.description
        if route.params:
            op["parameters"] = [{"name": p.name, "in": p.location, "required": p.required,
                                 "description": p.description, "schema": dict(p.schema)}
                                for p in route.params]
        if route.body is not None:
            op["requestBody"] = {"required": route.body_required,
                                 "content": {route.body_media: {"schema": ref_of[route.body]}}}
        for status, answer in sorted(route.ok.items()):
            op["responses"][str(status)] = _response(status, answer, ref_of)
        errors = set(route.errors) | ({413, 415} if route.body is not None else set())
        for status in sorted(errors):
            body = ConflictBody if status == 409 else wire.ErrorBody
            op["responses"][str(status)] = {
                "description": _ERROR_TEXT.get(status, http.HTTPStatus(status).phrase),
                "content": {JSON: {"schema": ref_of[body]}}}
        paths.setdefault(route.path, {})[route.method] = op

    return {
        "openapi": "3.1.0",
        "info": {"title": "scheduler-core", "version": version or _version(),
                 "description": "The coordinator's HTTP API: jobs, schedules, the worker "
                                "protocol, health, metrics and the dashboard. JSON field "
                                "names are camelCase; every error is an ErrorBody naming "
                                "the culprit `field`."},
        "paths": paths,
        "components": {"schemas": components},
    }


def _replace_ref(value: Any, old: str, new: str) -> Any:
    if isinstance(value, dict):
        if value.get("$ref") == old:
            return {**value, "$ref": new}
        return {k: _replace_ref(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_ref(v, old, new) for v in value]
    return value


def _response(status: int, answer: Any, ref_of: Mapping[Any, Any]) -> dict[str, Any]:
    phrase = http.HTTPStatus(status).phrase
    if isinstance(answer, Media):
        return {"description": answer.description,
                "content": {t: {"schema": dict(answer.schema)} for t in answer.types}}
    if isinstance(answer, OneOf):
        schema: dict[str, Any] = {"oneOf": [ref_of[t] for t in answer.types]}
    else:
        schema = ref_of[answer]
    return {"description": phrase, "content": {JSON: {"schema": schema}}}


def _version() -> str:
    try:
        return metadata.version("scheduler-core")
    except metadata.PackageNotFoundError:
        return "0.0.0"


_encoder = msgspec.json.Encoder()


@blueprint.get("/openapi.json")
async def openapi_json() -> Response:
    """The document, generated once per app (the job types do not change while it runs)."""
    cached: bytes | None = current_app.extensions.get("openapi")
    if cached is None:
        cached = _encoder.encode(build_document(context(current_app).registry))
        current_app.extensions["openapi"] = cached
    return Response(cached, content_type=JSON)
