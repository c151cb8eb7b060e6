"""Submit spans: the coordinator's side of tracing (docs/decisions/0025-tracing.md).

:func:`traced_submit` wraps a view that creates jobs (``POST /api/jobs``,
``/api/jobs/batch``, ``/api/workflows``) in a ``scheduler.submit`` span (kind SERVER)
whose parent is the request's W3C ``traceparent`` header when it has a valid one. The
views' jobs take :func:`current_traceparent`, the span's own, into ``jobs.traceparent``,
so each run's span joins the request's trace. The span carries the route, the answer's
status and, for one job, its id (from the answer's ``Location``).

With tracing off (``runtime.tracing.ENABLED`` false) the wrapper calls the view at
once and :func:`current_traceparent` is None: no span, nothing stored.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from quart import Response, request

from scheduler_core.runtime import tracing
from scheduler_core.web.errors import ApiError

__all__ = ["current_traceparent", "traced_submit"]

_TRACER = "scheduler_core.web"
_JOB_PATH = "/api/jobs/"

View = Callable[..., Awaitable[Response]]


def current_traceparent() -> str | None:
    """The traceparent a job created now stores: the current span's; None when tracing
    is off."""
    return tracing.traceparent_of() if tracing.ENABLED else None


def traced_submit(view: View) -> View:
    """``view`` inside a ``scheduler.submit`` span (when tracing is on)."""

    @functools.wraps(view)
    async def traced(*args: Any, **kwargs: Any) -> Response:
        if not tracing.ENABLED:
            return await view(*args, **kwargs)
        from opentelemetry import trace
        from opentelemetry.trace import SpanKind, Status, StatusCode

        parent = tracing.context_of(request.headers.get("traceparent"))
        with trace.get_tracer(_TRACER).start_as_current_span(
                "scheduler.submit", context=parent, kind=SpanKind.SERVER,
                record_exception=False, set_status_on_exception=False, attributes={
                    "http.request.method": request.method, "url.path": request.path,
                    "http.route": str(request.url_rule)}) as span:
            try:
                response = await view(*args, **kwargs)
            except ApiError as exc:
                span.set_attribute("http.response.status_code", exc.status)
                if exc.status >= 500:
                    span.set_status(Status(StatusCode.ERROR, str(exc)))
                raise
            except BaseException as exc:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                raise
            span.set_attribute("http.response.status_code", response.status_code)
            location = response.headers.get("Location", "")
            if location.startswith(_JOB_PATH):
                span.set_attribute("job.id", location[len(_JOB_PATH):])
            return response

    return traced
