"""The route table: every HTTP route of the coordinator, once.

Each :class:`~scheduler_core.web.openapi.Route` says its method, its path (a Werkzeug
URL rule, ``/api/jobs/<job_id>``: the one path syntax of the table), the role that may
call it (web/auth.py), its view function, and what the OpenAPI document says of it
(operationId, summary, request Struct, response Structs by status, parameters). From
:data:`ROUTES`:

- the views are registered on their module's blueprint (:data:`BLUEPRINTS`; a view's
  blueprint is the one of the module that defines it), here, once, at import;
- :func:`install` registers the blueprints on an app and hands it the table, which
  ``GET /openapi.json`` turns into the document (web/openapi.py converts each rule to
  OpenAPI's ``/api/jobs/{id}``, naming its variables by the route's path parameters);
- :data:`ROUTE_ROLES` is what web/auth.py's hook checks (app.py passes it in).

A new route is one entry here and its view. tests/unit/test_routes.py checks the app's
URL map, the roles the hook applies and the document against each other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from quart import Blueprint, Quart

from scheduler_core.schema import wire
from scheduler_core.schema.audit_store import AuditPage
from scheduler_core.schema.schedule_store import ScheduleDetail
from scheduler_core.schema.session_store import RevokedSessions, SessionList, SessionOut
from scheduler_core.schema.stats_store import Overview
from scheduler_core.web import (
    api,
    audit,
    auth,
    dashboard,
    metrics,
    observability,
    openapi,
    queues_api,
    schedules_api,
    worker_api,
    workflows_api,
)
from scheduler_core.web.auth import Role
from scheduler_core.web.openapi import (
    DB,
    FILTER,
    ID,
    JSON,
    QUEUE,
    SEE_OTHER,
    TAKE_JOBS,
    TAKE_SCHEDULES,
    UUID,
    WORKER_SECRET,
    Media,
    OneOf,
    Param,
    Route,
)

_SUBMITTED = OneOf((wire.SubmittedJob, wire.ScheduleOut))
# The read routes' choice of server (docs/decisions/0030-read-replica.md).
CONSISTENCY = Param(
    "consistency", "query", {"enum": ["eventual", "strong"], "default": "eventual"},
    "`eventual` reads from the read replica when SCHEDULER_READ_DATABASE_URL sets one "
    "(it may lag the primary by its replication lag); `strong` from the primary: a read "
    "that must show what this client just wrote.")

ROUTES: tuple[Route, ...] = (
    # jobs
    Route("post", "/api/jobs", "admin", api.submit_job,
          "submitJob", "Submit a job, or with cron a schedule", "jobs",
          {201: _SUBMITTED, 200: _SUBMITTED}, (400, 409, 413, *DB), body=wire.SubmitJob,
          params=(Param("Idempotency-Key", "header", {"type": "string", "minLength": 1,
                                                      "maxLength": 200},
                        "The `idempotencyKey`, as a header a load balancer can see (it "
                        "may then resend the request, docs/operations.md); when both "
                        "are given they must be equal."),),
          description="201 with the new job (with `cron`: the new schedule; with `cron` and "
                      "`workflow` instead of `type`: a schedule that fires that workflow, "
                      "its steps as `POST /api/workflows` takes them); 200 with the "
                      "existing one when the `idempotencyKey` is known."),
    Route("post", "/api/jobs/batch", "admin", api.submit_batch,
          "submitBatch", "Submit up to 1000 jobs, all or none", "jobs",
          {201: wire.SubmittedBatch, 200: wire.SubmittedBatch}, (400, 413, *DB),
          body=wire.SubmitBatch,
          description="Each item as `POST /api/jobs` takes it, without `cron`; errors name "
                      "the item (`jobs[3].payload.url`). 201 when any job was created, "
                      "else 200."),
    Route("get", "/api/jobs", "read", api.list_jobs,
          "listJobs", "List jobs, newest first (keyset paging)", "jobs",
          {200: wire.JobPage}, (400, *DB), params=(
              Param("status", "query", {"enum": list(wire.JOB_STATUSES)}, "Only this status."),
              Param("type", "query", FILTER, "Only this job type."),
              Param("queue", "query", FILTER, "Only this queue."),
              Param("tag", "query", {"type": "array", "maxItems": 20, "items": {
                  "type": "string", "minLength": 1, "maxLength": 64}},
                  "Only jobs with every tag given (repeat the parameter)."),
              Param("where", "query", {"type": "array", "maxItems": 10, "items": {
                  "type": "string", "minLength": 1}},
                  "A condition on a payload or result field, repeatable: "
                  "`payload.customerId=42`, `result.status>=500` (= != >= <= > <; a "
                  "number, a \"quoted\" string or bare text). docs/search.md."),
              *(Param(name, "query", {"type": "string", "format": "date-time"},
                      f"Only jobs {what} (ISO-8601 with a zone).")
                for name, what in (("createdAfter", "created at or after this"),
                                   ("createdBefore", "created before this"),
                                   ("finishedAfter", "finished at or after this"),
                                   ("finishedBefore", "finished before this"))),
              Param("lastError", "query", {"type": "string", "minLength": 1,
                                           "maxLength": 200},
                    "Only jobs whose last error contains this text (any case)."),
              TAKE_JOBS,
              Param("cursor", "query", UUID, "`nextCursor` of the previous page."),
              CONSISTENCY)),
    Route("post", "/api/jobs/bulk", "admin", api.bulk_jobs,
          "bulkJobs", "Retry, cancel or delete the jobs a filter matches", "jobs",
          {200: wire.BulkResult}, (400, *DB), body=wire.BulkJobs,
          description="`filter` takes the parameters of `GET /api/jobs` (without `take` "
                      "and `cursor`) as a JSON object; `ids` narrows it to chosen jobs. "
                      "`dryRun` answers the count only. The real call acts on at most "
                      "`limit` (SCHEDULER_BULK_MAX) jobs, SCHEDULER_BULK_BATCH a "
                      "transaction, skipping rows another transaction holds; `next` "
                      "continues it (as `after`)."),
    Route("get", "/api/jobs/<job_id>", "read", api.get_job,
          "getJob", "A job with its runs", "jobs",
          {200: wire.JobOut}, (400, 404, *DB), params=(ID, CONSISTENCY)),
    Route("post", "/api/jobs/<job_id>/cancel", "admin", api.cancel_job,
          "cancelJob", "Cancel a job", "jobs",
          {200: wire.JobOut}, (400, 404, 409, *DB), params=(ID,),
          description="A waiting job is Cancelled at once, a Running one is flagged; a "
                      "finished one is a 409."),
    Route("post", "/api/jobs/<job_id>/retry", "admin", api.retry_job,
          "retryJob", "Retry a finished job", "jobs",
          {200: wire.JobOut}, (400, 404, 409, *DB), body=wire.RetryJob, body_required=False,
          params=(ID,)),
    Route("get", "/api/jobs/by-key", "read", dashboard.job_by_key,
          "getJobByKey", "The job submitted with an idempotency key", "jobs",
          {200: wire.JobOut}, (400, 404, *DB), params=(
              Param("key", "query", {"type": "string", "minLength": 1, "maxLength": 200},
                    "The idempotency key.", required=True), CONSISTENCY)),
    Route("post", "/api/seed", "admin", api.seed,
          "seed", "Create one demo job of each built-in type", "jobs",
          {201: openapi.SeedReply}, DB),
    # schedules
    Route("get", "/api/schedules", "read", schedules_api.list_schedules,
          "listSchedules", "List schedules, newest first", "schedules",
          {200: openapi.ScheduleList}, (400, *DB), params=(TAKE_SCHEDULES, CONSISTENCY)),
    Route("get", "/api/schedules/<schedule_id>", "read", schedules_api.get_schedule,
          "getSchedule", "A schedule with its recent fires", "schedules",
          {200: ScheduleDetail}, (400, 404, *DB), params=(ID, CONSISTENCY)),
    Route("post", "/api/schedules/<schedule_id>/pause", "admin", schedules_api.pause_schedule,
          "pauseSchedule", "Stop new fires", "schedules",
          {200: wire.ScheduleOut}, (400, 404, *DB), params=(ID,)),
    Route("post", "/api/schedules/<schedule_id>/resume", "admin",
          schedules_api.resume_schedule,
          "resumeSchedule", "Fire again", "schedules",
          {200: wire.ScheduleOut}, (400, 404, *DB), params=(ID,)),
    Route("delete", "/api/schedules/<schedule_id>", "admin", schedules_api.delete_schedule,
          "deleteSchedule", "Delete (softly) a schedule", "schedules",
          {200: wire.ScheduleOut}, (400, 404, *DB), params=(ID,)),
    # workflows
    Route("post", "/api/workflows", "admin", workflows_api.create_workflow,
          "createWorkflow", "Create a workflow: named steps and every job, at once",
          "workflows", {201: wire.WorkflowCreated}, (400, 413, *DB),
          body=wire.SubmitWorkflow,
          description="Each step a job as `POST /api/jobs` takes it (no `cron`, no `ref`), "
                      "its `dependsOn` naming other steps; errors name the step "
                      "(`steps.load.dependsOn[0]`)."),
    Route("get", "/api/workflows", "read", workflows_api.list_workflows,
          "listWorkflows", "List workflows, newest first (keyset paging)", "workflows",
          {200: wire.WorkflowPage}, (400, *DB), params=(
              Param("status", "query", {"enum": ["Running", "Succeeded", "Failed"]},
                    "Only this status."),
              TAKE_JOBS,
              Param("cursor", "query", UUID, "`nextCursor` of the previous page."),
              CONSISTENCY)),
    Route("get", "/api/workflows/<workflow_id>", "read", workflows_api.get_workflow,
          "getWorkflow", "A workflow: its steps, their statuses, timings and results",
          "workflows", {200: wire.WorkflowOut}, (400, 404, *DB), params=(ID, CONSISTENCY)),
    Route("post", "/api/workflows/<workflow_id>/cancel", "admin",
          workflows_api.cancel_workflow,
          "cancelWorkflow", "Cancel every step not finished", "workflows",
          {200: wire.WorkflowOut}, (400, 404, *DB), params=(ID,)),
    # queues
    Route("get", "/api/queues", "read", queues_api.list_queues,
          "listQueues", "Queues with settings, waiting or running jobs", "queues",
          {200: wire.QueuePage}, (400, *DB), params=(CONSISTENCY,)),
    Route("get", "/api/queues/<name>", "read", queues_api.get_queue,
          "getQueue", "A queue's settings and load", "queues",
          {200: wire.QueueOut}, (400, *DB), params=(QUEUE, CONSISTENCY),
          description="Any valid name answers: a queue never configured is active and "
                      "unlimited."),
    Route("patch", "/api/queues/<name>", "admin", queues_api.update_queue,
          "updateQueue", "Set a queue's limit or pause state", "queues",
          {200: wire.QueueOut}, (400, *DB), body=wire.UpdateQueue, params=(QUEUE,),
          description="Only the fields given change; `concurrencyLimit: null` removes the "
                      "limit, which caps the queue's Running jobs across the cluster."),
    Route("post", "/api/queues/<name>/pause", "admin", queues_api.pause_queue,
          "pauseQueue", "Stop claims from a queue", "queues",
          {200: wire.QueueOut}, (400, *DB), params=(QUEUE,),
          description="Running jobs finish; new and waiting jobs wait until resumed."),
    Route("post", "/api/queues/<name>/resume", "admin", queues_api.resume_queue,
          "resumeQueue", "Claim from a queue again", "queues",
          {200: wire.QueueOut}, (400, *DB), params=(QUEUE,)),
    # the worker protocol
    Route("post", "/api/workers/register", "worker", worker_api.register,
          "registerWorker", "A worker introduces itself", "workers",
          {201: wire.RegisteredWorker}, (400, 409, *DB), body=wire.RegisterWorker,
          params=(WORKER_SECRET,),
          description="Answers the worker's secret (`workerSecret`), which its later "
                      "requests send as X-Worker-Secret. 409: the id is a live worker's, "
                      "and X-Worker-Secret is not its current secret."),
    Route("post", "/api/workers/heartbeat", "worker", worker_api.heartbeat,
          "heartbeat", "Renew leases, learn of cancels", "workers",
          {200: wire.HeartbeatReply}, (400, 403, *DB), body=wire.Heartbeat,
          params=(WORKER_SECRET,)),
    Route("post", "/api/workers/claim", "worker", worker_api.claim,
          "claim", "Claim due jobs (a long poll)", "workers",
          {200: wire.ClaimReply}, (400, 403, *DB), body=wire.Claim, params=(WORKER_SECRET,),
          description="Waits at most min(waitSeconds, SCHEDULER_CLAIM_WAIT_SECONDS) when "
                      "nothing is due."),
    Route("post", "/api/workers/complete", "worker", worker_api.complete,
          "complete", "Report outcomes of runs", "workers",
          {200: wire.CompleteReply, 409: wire.CompleteReply}, (400, 403, *DB),
          body=wire.Complete, params=(WORKER_SECRET,),
          description="409 when any item was fenced off (a stale lease token); the body "
                      "still lists each item's fate."),
    Route("post", "/api/workers/deregister", "worker", worker_api.deregister,
          "deregisterWorker", "A worker says goodbye", "workers",
          {200: openapi.DeregisteredWorker}, (400, 403, *DB), body=wire.Heartbeat,
          params=(WORKER_SECRET,)),
    # operations: public by default through SCHEDULER_PUBLIC_PATHS, else read
    Route("get", "/health", "read", api.health,
          "health", "Liveness: the process reaches PostgreSQL", "operations",
          {200: openapi.Health, 503: openapi.Health}),
    Route("get", "/health/ready", "read", observability.ready,
          "ready", "Readiness: database, migrations, actors", "operations",
          {200: openapi.Readiness, 503: openapi.Readiness}),
    Route("get", "/metrics", "read", observability.scrape,
          "metrics", "Prometheus metrics", "operations",
          {200: Media((metrics.CONTENT_TYPE.split(";")[0],), "Prometheus text exposition")}),
    Route("get", "/openapi.json", "read", openapi.openapi_json,
          "openapi", "This document", "operations",
          {200: Media((JSON,), "The OpenAPI document", {"type": "object"})}),
    # the dashboard
    Route("get", "/", "read", dashboard.index,
          "dashboard", "The dashboard page", "dashboard",
          {200: Media(("text/html",), "The page")}),
    Route("get", "/dashboard/static/<path:filename>", "public", dashboard.static_file,
          "dashboardStatic", "The page's files", "dashboard",
          {200: Media(tuple(sorted({dashboard.media_type(p.name)
                                    for p in dashboard.STATIC.iterdir()})),
                      "A static file")},
          (404,), params=(Param("filename", "path", {"type": "string", "minLength": 1},
                                "The file name.", required=True),)),
    Route("get", "/api/dashboard/overview", "read", dashboard.overview,
          "dashboardOverview", "The overview snapshot", "dashboard",
          {200: Overview}, (400, *DB), params=(CONSISTENCY,),
          description="With a read replica configured, `replica` says where the reads "
                      "go and how far behind the replica is (LSNs compared)."),
    Route("get", "/api/dashboard/meta", "read", dashboard.meta,
          "dashboardMeta", "Job types and statuses", "dashboard",
          {200: openapi.DashboardMeta}),
    Route("get", "/api/dashboard/events", "read", dashboard.events,
          "dashboardEvents", "Server-sent events: the overview every second", "dashboard",
          {200: Media(("text/event-stream",), "An endless stream of `overview` events")},
          (400,), params=(CONSISTENCY,)),
    # the dashboard's login (web/auth.py)
    Route("get", "/login", "public", auth.login_page,
          "loginPage", "The login form", "dashboard",
          {200: Media(("text/html",), "The page"), 303: SEE_OTHER},
          description="303 to / when no token is configured."),
    Route("post", "/login", "public", auth.login,
          "login", "Sign in to the dashboard with a token", "dashboard",
          {303: SEE_OTHER, 401: Media(("text/html",), "The form again: not a valid token"),
           403: Media(("text/html",), "The form again: a worker token")}, (429,),
          body=openapi.LoginForm, body_media="application/x-www-form-urlencoded",
          description="An admin or read token gets the HttpOnly session cookie and the "
                      "CSRF cookie, and a 303 to /."),
    # ends the cookie's session; needs its CSRF token (web/auth.py)
    Route("post", "/logout", "public", auth.logout,
          "logout", "Sign out of the dashboard", "dashboard",
          {303: SEE_OTHER}, (403, *DB),
          description="Ends the session of the cookie; a live session needs its "
                      "X-CSRF-Token header (403 otherwise)."),
    # the dashboard's sessions, for an admin (web/auth.py)
    Route("get", "/api/sessions", "admin", auth.list_sessions,
          "listSessions", "The live dashboard sessions", "sessions",
          {200: SessionList}, DB),
    Route("delete", "/api/sessions/<session_id>", "admin", auth.revoke_session,
          "revokeSession", "End a dashboard session", "sessions",
          {200: SessionOut}, (400, 404, *DB), params=(ID,)),
    Route("post", "/api/sessions/revoke-all", "admin", auth.revoke_all_sessions,
          "revokeAllSessions", "End every dashboard session", "sessions",
          {200: RevokedSessions}, DB),
    # the audit trail (web/audit.py): admin only, it names operators and their addresses
    Route("get", "/api/audit", "admin", audit.list_audit,
          "listAudit", "The audit trail, newest first (keyset paging)", "audit",
          {200: AuditPage}, (400, *DB), params=(
              Param("actor", "query", FILTER, "Only this token name (`anonymous`: none)."),
              Param("route", "query", {"type": "string", "minLength": 1, "maxLength": 200},
                    "Only this route rule, e.g. `/api/jobs/<job_id>/cancel`."),
              Param("status", "query", {"type": "integer", "minimum": 100, "maximum": 599},
                    "Only this HTTP status."),
              Param("after", "query", {"type": "string", "format": "date-time"},
                    "Only rows written at or after this time."),
              Param("before", "query", {"type": "string", "format": "date-time"},
                    "Only rows written before this time."),
              TAKE_JOBS,
              Param("cursor", "query", {"type": "string", "pattern": "^[0-9]+$"},
                    "`nextCursor` of the previous page."), CONSISTENCY),
          description="One row per call of an audited route (every route that is not a "
                      "GET, except the submits and the worker protocol), with who made it "
                      "(the token's name, never the token), the answer's status and "
                      "outcome, and the request's fields with secrets removed."),
)

# The routes whose every call writes an audit row (web/audit.py): each whose method is
# not GET or HEAD, except the submits (their jobs are their record, and they are the
# hot path) and the worker protocol (machines, not operators).
NOT_AUDITED: frozenset[tuple[str, str]] = frozenset({
    ("POST", "/api/jobs"), ("POST", "/api/jobs/batch"), ("POST", "/api/workflows")})
AUDITED: frozenset[tuple[str, str]] = frozenset(
    (route.method.upper(), route.path) for route in ROUTES
    if route.method.upper() not in ("GET", "HEAD")
    and (route.method.upper(), route.path) not in NOT_AUDITED
    and not route.path.startswith("/api/workers/"))

# Registered on an app in this order (observability's request timer runs first).
BLUEPRINTS: tuple[Blueprint, ...] = (
    api.blueprint, schedules_api.blueprint, queues_api.blueprint, worker_api.blueprint,
    workflows_api.blueprint,
    observability.blueprint, dashboard.blueprint, openapi.blueprint, auth.blueprint,
    audit.blueprint)

# (METHOD, rule) -> the role web/auth.py's hook requires.
ROUTE_ROLES: Mapping[tuple[str, str], Role] = {
    (route.method.upper(), route.path): route.role for route in ROUTES}


def check_table(routes: Sequence[Route], blueprints: Sequence[Blueprint]) -> None:
    """Raise ValueError unless each method and rule is one entry and each view lives in
    the module of one of ``blueprints``."""
    if len({(r.method.upper(), r.path) for r in routes}) != len(routes):
        raise ValueError("expected one entry per method and rule in ROUTES, found a "
                         "method and rule twice")
    modules = {blueprint.import_name for blueprint in blueprints}
    for route in routes:
        if route.view.__module__ not in modules:
            raise ValueError(f"expected the view of {route.method.upper()} {route.path} in a "
                             f"module of BLUEPRINTS, found it in {route.view.__module__}")


def _register_views() -> None:
    """Add each route to the blueprint of its view's module (once: at import)."""
    check_table(ROUTES, BLUEPRINTS)
    blueprint_of = {blueprint.import_name: blueprint for blueprint in BLUEPRINTS}
    for route in ROUTES:
        blueprint_of[route.view.__module__].add_url_rule(
            route.path, view_func=route.view, methods=[route.method.upper()])


_register_views()


def install(app: Quart) -> None:
    """Register the blueprints, with their routes, on ``app`` and hand it the table
    (``GET /openapi.json`` documents it)."""
    app.extensions["routes"] = ROUTES
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
