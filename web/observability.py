"""Metrics, readiness and request timing.

    GET /metrics        Prometheus exposition (web/metrics.py lists every metric)
    GET /health/ready   200 when the database answers, every migration this version
                        ships is applied and every coordinator actor is running;
                        503 otherwise, and at once while draining (web/drain.py). JSON either way, one entry per check, and
                        ``startId`` (SCHEDULER_START_ID) when set: `scheduler up`
                        knows by it that the coordinator answering is its own.

``GET /health`` (liveness: the process answers and reaches its database) stays in
web/api.py. Every request's duration is recorded by route (the URL rule, so
``/api/jobs/<job_id>`` is one series however many jobs there are), method and status.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import structlog
import trio
from quart import Blueprint, Response, current_app, g, request

from scheduler_core.schema import migrate
from scheduler_core.web import metrics, replica
from scheduler_core.web.context import context, json_response
from scheduler_core.web.errors import new_error_id

blueprint = Blueprint("observability", __name__)
log = structlog.get_logger("web.observability")

READY_TIMEOUT_SECONDS = 2.0


@blueprint.before_app_request
async def _start_timer() -> None:
    g.request_started = trio.current_time()


@blueprint.after_app_request
async def _observe(response: Response) -> Response:
    started = g.get("request_started")
    if started is not None:
        rule = request.url_rule.rule if request.url_rule is not None else "(unmatched)"
        metrics.observe_request(request.method, rule, response.status_code,
                                trio.current_time() - started)
    return response


async def scrape() -> Response:
    """The process's metrics and the cluster's gauges from the cached snapshot. With
    the database unreachable the gauges are left out and the rest still answers."""
    ctx = context(current_app)
    stats = ctx.reads().stats  # the replica's, when one is set
    try:
        overview = await replica.overview(ctx)
    except Exception as exc:  # an outage must not take the counters down with it
        log.warning("metrics_snapshot_failed", error=f"{type(exc).__name__}: {exc}")
        overview = None
    return Response(metrics.render(overview, stats.statistics(),
                                   replica.read_statistics(ctx)),
                    content_type=metrics.CONTENT_TYPE)


@cache
def _shipped_versions() -> tuple[int, ...]:
    return tuple(m.version for m in migrate.available())


async def ready() -> Response:
    ctx = context(current_app)
    if ctx.drain.draining:  # stopping: the balancer must send nothing new here
        body: dict[str, Any] = {"status": "draining", "checks": {"drain": {
            "ok": False, "reason": "the coordinator is stopping (SIGTERM)"}}}
        if ctx.config.start_id:
            body["startId"] = ctx.config.start_id
        return json_response(body, 503)
    checks: dict[str, dict[str, Any]] = {}
    expected = list(_shipped_versions())
    try:
        with trio.fail_after(READY_TIMEOUT_SECONDS):
            applied = await ctx.stats.applied_migrations()
    except Exception as exc:  # any failure to reach the database is "not ready"
        # The exception's text goes to the log only, joined to the answer by its id.
        timed_out = isinstance(exc, trio.TooSlowError)
        error_id = new_error_id()
        log.warning("readiness_check_failed", error_id=error_id,
                    error=f"timed out after {READY_TIMEOUT_SECONDS:g} s" if timed_out
                    else f"{type(exc).__name__}: {exc}")
        reason = (f"timed out after {READY_TIMEOUT_SECONDS:g} s" if timed_out
                  else "the database did not answer")
        checks["database"] = {"ok": False, "reason": reason, "errorId": error_id}
        checks["migrations"] = {"ok": False, "reason": "the database is unreachable",
                                "expected": expected}
    else:
        missing = sorted(set(expected) - set(applied))
        checks["database"] = {"ok": True}
        checks["migrations"] = {"ok": not missing, "applied": applied, "expected": expected,
                                "missing": missing}
    if ctx.supervisor is None:
        checks["actors"] = {"ok": True, "states": {}, "reason": "no supervisor attached"}
    else:
        tree = ctx.supervisor()
        states = {c.name: c.state for c in tree.children}
        checks["actors"] = {"ok": all(s == "running" for s in states.values()),
                            "states": states, "restarts": tree.total_restarts}
    ok = all(check["ok"] for check in checks.values())
    body = {"status": "ready" if ok else "not_ready", "checks": checks}
    if ctx.config.start_id:
        body["startId"] = ctx.config.start_id
    return json_response(body, 200 if ok else 503)
