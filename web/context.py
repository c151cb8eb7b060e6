"""What every route module of the web layer shares: the :class:`AppContext` the
composition root builds, :func:`context` to reach it from a request, and
:func:`json_response`. It imports no route module, so the routes and the app that
registers them (web/app.py) all import it and nothing imports back up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from quart import Response

from scheduler_core.handlers import Registry
from scheduler_core.runtime.config import Config
from scheduler_core.runtime.doorbell import Doorbell
from scheduler_core.runtime.supervisor import SupervisorStatistics
from scheduler_core.schema.queue_store import QueueStore
from scheduler_core.schema.schedule_store import ScheduleStore
from scheduler_core.schema.stats_store import StatsStore
from scheduler_core.schema.store import Store


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

def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(_encoder.encode(body), status=status, headers=headers,
                    content_type="application/json")


def context(app: Any) -> AppContext:
    ctx: AppContext = app.extensions["scheduler"]
    return ctx
