"""The OpenAPI 3.1 document of the whole HTTP API, served at ``GET /openapi.json``.

It is generated, not written: each :class:`Route` of the route table (web/routes.py)
says its method, path, parameters and which msgspec Struct is its request body and its
response for each status; the JSON Schemas come from those Structs
(``msgspec.json.schema_components``), so a field added to a Struct in schema/wire.py
shows up here by itself. Every 4xx and 5xx body is :class:`schema.wire.ErrorBody`. A job
submission (``POST /api/jobs``, the items of ``POST /api/jobs/batch``) is
``JobSubmission``: a ``oneOf`` with one variant of SubmitJob per registered job type,
whose ``payload`` is that type's payload Struct. ``POST /api/jobs`` alone also takes
``ScheduledWorkflowSubmission`` (``cron`` and ``workflow``, no ``type``): its body is
``Submission``, one of the two.

This module holds the table's vocabulary (:class:`Route`, :class:`Param`,
:class:`Media`, :class:`OneOf`, the shared parameters) and the generator; the table
itself is web/routes.py, which imports the views. A route's path is a Werkzeug rule
(``/api/jobs/<job_id>``); :func:`openapi_path` writes it as OpenAPI does
(``/api/jobs/{id}``), naming the rule's variables, in order, by the route's path
parameters.

A unit test checks that the document is valid OpenAPI 3.1 and that it lists exactly
the routes the app has; tests/integration/test_fuzz_api.py fuzzes a live coordinator
from it (schemathesis) and checks every answer against it.

Some answers are built as dicts by their handlers; the Structs below (``SeedReply``,
``Health``, ...) only describe them here, and the fuzz test keeps the two in step.
"""

from __future__ import annotations

import http
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Literal

import msgspec
from quart import Blueprint, Response, current_app

from scheduler_core.handlers import Registry
from scheduler_core.schema import wire
from scheduler_core.web.auth import Role
from scheduler_core.web.context import context

blueprint = Blueprint("openapi", __name__)

JSON = "application/json"
_REF = "#/components/schemas/{name}"


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
    statuses: list[str]  # display order
    terminal: list[str]  # by name (the first key; kept)
    terminal_statuses: list[str]  # display order
    active_statuses: list[str]


# -- the route table's vocabulary ---------------------------------------------------------

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


View = Callable[..., Awaitable[Response]]
_RULE_VARIABLE = re.compile(r"<(?:[^<>:]+:)?[^<>:]+>")  # <job_id>, <path:filename>


@dataclass(frozen=True)
class Route:
    """One route: how the app serves it, who may call it, what the document says."""

    method: Literal["get", "post", "patch", "delete"]
    path: str  # a Werkzeug rule: /api/jobs/<job_id>
    role: Role  # who may call it (web/auth.py)
    view: View
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

    def __post_init__(self) -> None:
        variables = len(_RULE_VARIABLE.findall(self.path))
        declared = sum(p.location == "path" for p in self.params)
        if variables != declared:
            raise ValueError(f"expected one path parameter per variable of {self.path!r} "
                             f"({variables}), found {declared}")


def openapi_path(route: Route) -> str:
    """The route's path as OpenAPI writes it: ``/api/jobs/<job_id>`` with the path
    parameter ``id`` is ``/api/jobs/{id}``."""
    names = iter([p.name for p in route.params if p.location == "path"])
    return _RULE_VARIABLE.sub(lambda _: "{" + next(names) + "}", route.path)


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

# The fields of POST /api/jobs that a schedule of workflows takes (JSON names).
_SCHEDULED_WORKFLOW_FIELDS = ("cron", "workflow", "timezone", "misfirePolicy", "overlapPolicy",
                              "idempotencyKey")


def _variant_name(job_type: str) -> str:
    return "SubmitJob_" + re.sub(r"[^A-Za-z0-9._-]", "_", job_type)


def build_document(registry: Registry, routes: Iterable[Route], *,
                   version: str | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``routes`` for an app whose job types are
    ``registry``'s."""
    routes = tuple(routes)
    specs = [registry.get(name) for name in registry.names()]
    types: list[Any] = [wire.ErrorBody, ConflictBody, wire.SubmitJob]
    types += [spec.payload_type for spec in specs]
    for route in routes:
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
    job_properties = {k: v for k, v in submit["properties"].items() if k != "workflow"}
    for spec in specs:
        variant = {**submit, "title": _variant_name(spec.name),
                   "description": f"A `{spec.name}` job (with `cron`: a schedule of them).",
                   "properties": dict(job_properties),
                   "required": [*submit.get("required", []), "type"]}
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
    # POST /api/jobs with cron and workflow: a schedule of workflows, no job fields.
    components["ScheduledWorkflowSubmission"] = {
        **submit, "title": "ScheduledWorkflowSubmission",
        "description": "A schedule that fires a whole workflow (its steps as "
                       "`POST /api/workflows` takes them) once per tick.",
        "properties": {k: v for k, v in submit["properties"].items()
                       if k in _SCHEDULED_WORKFLOW_FIELDS},
        "required": ["cron", "workflow"]}
    components["Submission"] = {
        "title": "Submission", "description": "A job or a schedule of jobs "
        "(JobSubmission), or a schedule of workflows (ScheduledWorkflowSubmission).",
        "oneOf": [{"$ref": _REF.format(name="JobSubmission")},
                  {"$ref": _REF.format(name="ScheduledWorkflowSubmission")}]}
    body_ref = {**ref_of, wire.SubmitJob: {"$ref": _REF.format(name="Submission")}}

    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
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
                                 "content": {route.body_media: {"schema": body_ref[route.body]}}}
        for status, answer in sorted(route.ok.items()):
            op["responses"][str(status)] = _response(status, answer, ref_of)
        errors = set(route.errors) | ({413, 415} if route.body is not None else set())
        for status in sorted(errors):
            body = ConflictBody if status == 409 else wire.ErrorBody
            op["responses"][str(status)] = {
                "description": _ERROR_TEXT.get(status, http.HTTPStatus(status).phrase),
                "content": {JSON: {"schema": ref_of[body]}}}
        paths.setdefault(openapi_path(route), {})[route.method] = op

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


async def openapi_json() -> Response:
    """The document of the app's route table (``routes.install`` hands it over),
    generated once per app (the job types do not change while it runs)."""
    cached: bytes | None = current_app.extensions.get("openapi")
    if cached is None:
        cached = _encoder.encode(build_document(context(current_app).registry,
                                                current_app.extensions["routes"]))
        current_app.extensions["openapi"] = cached
    return Response(cached, content_type=JSON)
