"""The dashboard: one static page (web/static/: JavaScript modules the browser loads
itself, no build step, nothing from the internet) and the JSON it reads besides the
public API.

    GET /                          the page (overview, jobs, job detail, schedules, queues)
    GET /dashboard/static/<file>   its script modules, style sheet and icon
    GET /api/dashboard/overview    the cached overview snapshot (schema/stats_store.py)
    GET /api/dashboard/meta        job types and statuses (all, terminal, active)
    GET /api/dashboard/events      server-sent events: ``overview`` with the snapshot
                                   every second, and soon after new jobs arrive
    GET /api/jobs/by-key?key=K     the job submitted with idempotency key K (404: none)

Every write the page makes goes through the public API (cancel, retry, pause, ...).
"""

from __future__ import annotations

import mimetypes
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import structlog
import trio
from quart import Blueprint, Response, current_app, request, send_from_directory
from werkzeug.exceptions import NotFound

from scheduler_core.web import replica
from scheduler_core.web.context import context, json_response
from scheduler_core.web.errors import ApiError
from scheduler_core.web.inputs import strong_reads

STATIC = Path(__file__).parent / "static"
_JAVASCRIPT = "text/javascript"


def media_type(name: str) -> str:
    """The type a page file is served (and documented) with. The scripts are JavaScript
    modules, which a browser runs only with a JavaScript type: that one is fixed here,
    not left to the host's mime.types."""
    if name.endswith(".js"):
        return _JAVASCRIPT
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


blueprint = Blueprint("dashboard", __name__)
log = structlog.get_logger("web.dashboard")

# Seconds between two pushes of the event stream when nothing happens; and the
# shortest gap after a doorbell ring (a burst of submissions becomes one push).
PUSH_INTERVAL = 1.0
RING_COALESCE = 0.2

# The page may load only what the coordinator serves (its module scripts too); nothing inline.
_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")

_encoder = msgspec.json.Encoder()


async def static_file(filename: str) -> Response:
    """One of the page's files. A name the file system cannot even look up (longer
    than NAME_MAX) is a 404 like any other missing file, not the OSError Quart lets
    through (a 500). Scripts get :func:`media_type`'s JavaScript type."""
    try:
        response = await send_from_directory(STATIC, filename)
    except OSError:
        raise NotFound() from None
    if filename.endswith(".js"):
        response.content_type = f"{_JAVASCRIPT}; charset=utf-8"
    return response


async def index() -> Response:
    page = (STATIC / "index.html").read_bytes()
    return Response(page, content_type="text/html; charset=utf-8",
                    headers={"Content-Security-Policy": _CSP, "Cache-Control": "no-cache"})


async def overview() -> Response:
    return json_response(await replica.overview(context(current_app), strong=strong_reads()))


async def meta() -> Response:
    from scheduler_core.schema import wire

    ctx = context(current_app)
    return json_response({"types": sorted(ctx.registry.names()),
                          "statuses": list(wire.JOB_STATUSES),
                          "terminal": sorted(wire.TERMINAL),  # as before: sorted by name
                          "terminalStatuses": [s for s in wire.JOB_STATUSES
                                               if s in wire.TERMINAL],
                          "activeStatuses": list(wire.ACTIVE)})


async def job_by_key() -> Response:
    key = request.args.get("key", "")
    if not 1 <= len(key) <= 200:
        raise ApiError(400, "validation_error",
                       f"key must be 1..200 characters, found {len(key)}", "key")
    if "\x00" in key:
        raise ApiError(400, "validation_error", "expected key without NUL characters, "
                       "found one", "key")
    strong = strong_reads()
    return json_response(await context(current_app).read(lambda r: r.stats.job_by_key(key),
                                                         strong))


async def events() -> Response:
    """``event: overview`` with the snapshot (as ``/api/dashboard/overview``) at once,
    then every second and shortly after each doorbell ring (new jobs). A database
    error is pushed as ``event: problem`` and the stream goes on.

    Cancellation: the stream ends when the client goes away (the server cancels it),
    and within PUSH_INTERVAL of the coordinator's drain (web/drain.py): the browser
    reconnects, through the balancer, to another coordinator.
    """
    ctx = context(current_app)
    strong = strong_reads()

    async def stream() -> AsyncIterator[bytes]:
        yield b"retry: 2000\n\n"
        generation = ctx.doorbell.generation
        rang_at: float | None = None
        while not ctx.drain.closing.is_set():
            try:
                snapshot = await replica.overview(ctx, strong=strong,
                                                  max_age=PUSH_INTERVAL / 2,
                                                  newer_than=rang_at)
                yield b"event: overview\ndata: " + _encoder.encode(snapshot) + b"\n\n"
            except Exception as exc:  # the database is down: say so, keep the stream
                body = {"message": f"{type(exc).__name__}: {exc}"}
                yield b"event: problem\ndata: " + _encoder.encode(body) + b"\n\n"
            with trio.move_on_after(PUSH_INTERVAL) as timer:
                await ctx.doorbell.wait_since(generation)
            rang_at = None
            if not timer.cancelled_caught:
                await trio.sleep(RING_COALESCE)  # let a burst of submissions land
                rang_at = trio.current_time()  # the snapshot must show them
            generation = ctx.doorbell.generation

    response = Response(stream(), content_type="text/event-stream",
                        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    response.timeout = None  # a stream lives as long as its client
    return response
