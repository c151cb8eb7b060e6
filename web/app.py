"""The coordinator's Quart-Trio application: public API, worker API, dashboard,
health and metrics. It talks to PostgreSQL only through :class:`schema.store.Store`.

:func:`serve` runs it on hypercorn as a trio task (``nursery.start``), told to stop by
the drain (web/drain.py: listeners closed, requests in flight answered, up to the
drain timeout) or at once by cancellation.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import hypercorn.config
import hypercorn.trio
import structlog
import trio
from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from scheduler_core.runtime.errors import DatabaseUnavailable
from scheduler_core.schema.store import Conflict, NotFound
from scheduler_core.web import audit, auth, routes
from scheduler_core.web.context import AppContext, context, json_response
from scheduler_core.web.errors import ApiError, new_error_id

__all__ = ["AppContext", "context", "create_app", "json_response", "serve"]

log = structlog.get_logger("web")


BODY_DRAIN_SECONDS = 5.0  # the longest an answer waits for the rest of an unread body


def create_app(ctx: AppContext) -> QuartTrio:

    # No app-wide static route: the dashboard serves its own files, and a /static/
    # folder of whatever directory the coordinator was started in must not be served.
    app = QuartTrio("scheduler", static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = ctx.config.max_body_bytes
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = True
    app.extensions["scheduler"] = ctx
    routes.install(app)  # every route, from the one table (web/routes.py)
    # after the blueprints: the request timer runs first
    auth.install(app, ctx.config, routes.ROUTE_ROLES)
    audit.install(app, routes.AUDITED)  # after auth: it names who made the call

    @app.after_request
    async def _finish_reading_the_body(response: Response) -> Response:
        """Receive the rest of a request body the handler did not read (a 405, a bad
        id, a route that takes none) before answering.

        Answered while the client is still sending, hypercorn closes the connection
        from inside the request's task, which quart-trio is cancelling at that moment:
        the close never happens and the next request on that keep-alive connection
        hangs. A body over the size limit, or one that does not arrive within
        BODY_DRAIN_SECONDS, is not waited for: the answer says ``Connection: close``.
        """
        try:
            with trio.move_on_after(BODY_DRAIN_SECONDS):
                await request.body
                return response
        except HTTPException:  # over MAX_CONTENT_LENGTH
            pass
        response.headers["Connection"] = "close"
        return response

    @app.after_request
    async def _close_while_draining(response: Response) -> Response:
        """While draining, no connection is kept alive: a balancer must open its next
        one to another coordinator, not reuse one this server is about to close."""
        if ctx.drain.draining:
            response.headers["Connection"] = "close"
        return response

    @app.errorhandler(ApiError)
    async def _api_error(exc: ApiError) -> Response:
        return json_response(exc.body, exc.status)

    @app.errorhandler(NotFound)
    async def _not_found(exc: NotFound) -> Response:
        return json_response({"error": "not_found", "message": str(exc), "field": "id"}, 404)

    @app.errorhandler(Conflict)
    async def _conflict(exc: Conflict) -> Response:
        body: dict[str, Any] = {"error": "conflict", "message": str(exc), "field": exc.field}
        if exc.current is not None:
            body["current"] = exc.current
        return json_response(body, 409)

    @app.errorhandler(DatabaseUnavailable)
    async def _db_down(exc: DatabaseUnavailable) -> Response:
        error_id = new_error_id()
        log.warning("database_unreached", path=request.path, method=request.method,
                    error_id=error_id, error=str(exc))
        return json_response({"error": "database_unavailable",
                              "message": "the database is unavailable; try again later",
                              "errorId": error_id, "field": None}, 503)

    @app.errorhandler(HTTPException)
    async def _http(exc: HTTPException) -> Response:
        status = exc.code or 500
        code = {404: "not_found", 405: "method_not_allowed",
                413: "body_too_large"}.get(status, "http_error")
        message = exc.description or exc.name
        fieldname = None
        if status == 413:
            message = f"the request body is larger than {ctx.config.max_body_bytes} bytes"
            fieldname = "body"
        return json_response({"error": code, "message": message, "field": fieldname}, status)

    @app.errorhandler(Exception)
    async def _unexpected(exc: Exception) -> Response:
        """A bug: the details go to the log line, the client gets only its id."""
        error_id = new_error_id()
        log.error("request_failed", path=request.path, method=request.method,
                  error_id=error_id, exc_info=exc)
        return json_response({"error": "internal_error", "message": "internal error",
                              "errorId": error_id, "field": None}, 500)

    return app


def hypercorn_config(host: str, port: int, *,
                     graceful_timeout: float = 1.0) -> hypercorn.config.Config:
    """How the coordinator's hypercorn serves (bench/bare_asgi.py's floor uses it too).
    ``graceful_timeout``: once the shutdown trigger fired, how long the requests in
    flight get."""
    cfg = hypercorn.config.Config()
    cfg.bind = [f"{host}:{port}"]
    cfg.accesslog = None
    cfg.errorlog = None
    cfg.graceful_timeout = graceful_timeout
    cfg.keep_alive_timeout = 75.0
    cfg.loglevel = "WARNING"
    return cfg


async def serve(app: QuartTrio, host: str, port: int, *,
                task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve ``app`` until its drain (web/drain.py) or cancellation;
    ``task_status.started`` gets the bound URLs.

    When the drain closes, hypercorn closes the listeners; once every request in
    flight is answered (at most the drain's timeout) the server is stopped, which
    closes the idle keep-alive connections. This task then sets ``drain.served`` and
    waits to be cancelled: a server that stopped on purpose is not one for the
    supervisor to restart.

    Cancellation: stops at once, requests in flight cancelled.
    """
    drain = context(app).drain
    cfg = hypercorn_config(host, port, graceful_timeout=drain.timeout)
    drain.serving = True
    async with trio.open_nursery() as nursery:
        urls = await nursery.start(partial(
            hypercorn.trio.serve, drain.track(app), cfg,  # type: ignore[arg-type]
            shutdown_trigger=drain.closing.wait))
        task_status.started(urls)
        await drain.closing.wait()
        with trio.move_on_after(drain.timeout):
            await drain.wait_answered()
        nursery.cancel_scope.cancel()
    log.info("web_drained", unanswered=drain.in_flight)
    drain.served.set()
    await trio.sleep_forever()
