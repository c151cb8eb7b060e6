"""The coordinator's Quart-Trio application: public API, worker API, dashboard,
health and metrics. It talks to PostgreSQL only through :class:`schema.store.Store`.

:func:`serve` runs it on hypercorn as a trio task (``nursery.start``), told to stop by
cancellation and given a short graceful deadline.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import hypercorn.config
import hypercorn.trio
import msgspec
import structlog
import trio
from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from handlers import Registry
from runtime.config import Config
from runtime.doorbell import Doorbell
from runtime.errors import DatabaseUnavailable
from runtime.supervisor import SupervisorStatistics
from schema.queue_store import QueueStore
from schema.schedule_store import ScheduleStore
from schema.stats_store import StatsStore
from schema.store import Conflict, NotFound, Store
from web.errors import ApiError, new_error_id

log = structlog.get_logger("web")


@dataclass
class AppContext:
    """What the web layer needs, built by the composition root."""

    store: Store
    registry: Registry
    config: Config
    doorbell: Doorbell = field(default_factory=Doorbell)
    # Built on the store's pool when not given.
    schedules: ScheduleStore = None  # type: ignore[assignment]
    # The dashboard's and /metrics' reads; built on the store's pool when not given.
    stats: StatsStore = None  # type: ignore[assignment]
    # Queue settings (pause, concurrency limits); built on the store's pool when not given.
    queues: QueueStore = None  # type: ignore[assignment]
    # The coordinator tree's statistics, for /health/ready (None: not checked).
    supervisor: Callable[[], SupervisorStatistics] | None = None

    def __post_init__(self) -> None:
        if self.schedules is None:
            self.schedules = ScheduleStore(self.store.pool)
        if self.stats is None:
            self.stats = StatsStore(self.store.pool)
        if self.queues is None:
            self.queues = QueueStore(self.store.pool)


_encoder = msgspec.json.Encoder()

BODY_DRAIN_SECONDS = 5.0  # the longest an answer waits for the rest of an unread body


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(_encoder.encode(body), status=status, headers=headers,
                    content_type="application/json")


def create_app(ctx: AppContext) -> QuartTrio:
    from web import (  # local: the routes import this module
        api,
        auth,
        dashboard,
        observability,
        openapi,
        queues_api,
        schedules_api,
        worker_api,
    )

    # No app-wide static route: the dashboard serves its own files, and a /static/
    # folder of whatever directory the coordinator was started in must not be served.
    app = QuartTrio("scheduler", static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = ctx.config.max_body_bytes
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = True
    app.extensions["scheduler"] = ctx
    app.register_blueprint(api.blueprint)
    app.register_blueprint(schedules_api.blueprint)
    app.register_blueprint(queues_api.blueprint)
    app.register_blueprint(worker_api.blueprint)
    app.register_blueprint(observability.blueprint)
    app.register_blueprint(dashboard.blueprint)
    app.register_blueprint(openapi.blueprint)
    auth.install(app, ctx.config)  # after the blueprints: the request timer runs first

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


def context(app: Any) -> AppContext:
    ctx: AppContext = app.extensions["scheduler"]
    return ctx


async def serve(app: QuartTrio, host: str, port: int, *,
                task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve ``app`` until cancelled; ``task_status.started`` gets the bound URLs."""
    cfg = hypercorn.config.Config()
    cfg.bind = [f"{host}:{port}"]
    cfg.accesslog = None
    cfg.errorlog = None
    cfg.graceful_timeout = 1.0
    cfg.keep_alive_timeout = 75.0
    cfg.loglevel = "WARNING"
    never = trio.Event()

    async def shutdown_trigger() -> None:
        await never.wait()

    await hypercorn.trio.serve(app, cfg, shutdown_trigger=shutdown_trigger,
                               task_status=task_status)


def seconds_or_none(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else value
