"""What every route module of the web layer shares: the :class:`AppContext` the
composition root builds, :func:`context` to reach it from a request, and
:func:`json_response`. It imports no route module, so the routes and the app that
registers them (web/app.py) all import it and nothing imports back up.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
import structlog
from psycopg import errors as pg_errors
from quart import Response

from scheduler_core.actors.coordinator.claim_gate import ClaimGate
from scheduler_core.actors.coordinator.submit_batcher import SubmitBatcher
from scheduler_core.handlers import Registry
from scheduler_core.runtime.config import Config
from scheduler_core.runtime.doorbell import Doorbell
from scheduler_core.runtime.read_pool import ReplicaLost
from scheduler_core.runtime.supervisor import SupervisorStatistics
from scheduler_core.schema.queue_store import QueueStore
from scheduler_core.schema.replica_store import ReplicaStore
from scheduler_core.schema.schedule_store import ScheduleStore
from scheduler_core.schema.stats_store import StatsStore
from scheduler_core.schema.store import Store
from scheduler_core.web.drain import Drain
from scheduler_core.web.worker_secrets import WorkerSecrets

T = TypeVar("T")
log = structlog.get_logger("web")

# What a standby may answer a read with that the primary would not: a query cancelled
# for a conflict with recovery (40001: a lock, snapshot or buffer pin conflict with
# the WAL being replayed; 57P04: its database dropped), and a connection the standby
# ended mid-read (ReplicaLost; runtime/read_pool.py marks the replica down). A primary
# that fails a read the read pool sent it while the replica was down is not retried.
_REPLICA_FAILURES = (pg_errors.SerializationFailure, pg_errors.DatabaseDropped,
                     ReplicaLost)


class AppContext:
    """What the web layer needs, built by the composition root.

    Every attribute is always set: a doorbell, a store of schedules, stats or queues,
    a claim gate, a submit batcher or a worker-secrets cache not given is built here
    (the stores on ``store``'s pool, the claim gate on ``store`` and the doorbell, its
    waits capped by ``config.claim_wait_seconds``, the batcher on ``store``).
    ``supervisor`` is the coordinator tree's statistics for /health/ready; None: not
    checked. ``drain`` is the coordinator's graceful stop (web/drain.py); one not given
    is built from ``config``'s drain delay and timeout.
    """

    def __init__(self, *, store: Store, registry: Registry, config: Config,
                 doorbell: Doorbell | None = None, schedules: ScheduleStore | None = None,
                 stats: StatsStore | None = None, queues: QueueStore | None = None,
                 claims: ClaimGate | None = None, submits: SubmitBatcher | None = None,
                 worker_secrets: WorkerSecrets | None = None,
                 supervisor: Callable[[], SupervisorStatistics] | None = None,
                 drain: Drain | None = None, replica: Reads | None = None,
                 replica_lag: ReplicaStore | None = None) -> None:
        self.store = store
        self.registry = registry
        self.config = config
        self.doorbell = doorbell if doorbell is not None else Doorbell()
        self.schedules = schedules if schedules is not None else ScheduleStore(store.pool)
        # The dashboard's and /metrics' reads.
        self.stats = stats if stats is not None else StatsStore(store.pool)
        # Queue settings (pause, concurrency limits).
        self.queues = queues if queues is not None else QueueStore(store.pool)
        # Claims and their long polls (actors/coordinator/claim_gate.py).
        self.claims = claims if claims is not None else ClaimGate(
            store, self.doorbell, max_wait=config.claim_wait_seconds)
        # Single submits, written in groups (actors/coordinator/submit_batcher.py).
        self.submits = submits if submits is not None else SubmitBatcher(store)
        # The per-worker secrets' check and its cache (web/worker_secrets.py).
        self.worker_secrets = worker_secrets if worker_secrets is not None else WorkerSecrets()
        self.supervisor = supervisor
        # The graceful stop: readiness, long polls, event streams, listeners.
        self.drain = drain if drain is not None else Drain(
            delay=config.drain_delay_seconds, timeout=config.drain_timeout_seconds)
        self.drain.attach(self.claims)
        # What only shows, read from the read replica (SCHEDULER_READ_DATABASE_URL;
        # runtime/read_pool.py falls back to the primary): see reads(). None: no replica.
        self.replica = replica
        self.replica_lag = replica_lag

    def reads(self, strong: bool = False) -> Reads:
        """The stores a read route uses: the replica's, or with ``strong``
        (``consistency=strong``: read-your-writes) or no replica the primary's. Never
        for a read inside a decision (docs/decisions/0030-read-replica.md)."""
        if strong or self.replica is None:
            return Reads(store=self.store, stats=self.stats, schedules=self.schedules,
                         queues=self.queues)
        return self.replica

    async def read(self, call: Callable[[Reads], Awaitable[T]], strong: bool = False) -> T:
        """``call`` on the stores :meth:`reads` picks. A read the replica fails (the
        standby cancelled it for a conflict with recovery, or its connection broke
        mid-read) is run again on the primary: a read may always be, and the client
        gets its answer, not a 5xx.

        Error handling: the primary's errors propagate as they are."""
        side = self.reads(strong)
        if side is not self.replica:
            return await call(side)
        try:
            return await call(side)
        except _REPLICA_FAILURES as exc:
            if self.replica_lag is not None:  # set with the replica: its read pool
                self.replica_lag.replica.retried()
            log.info("replica_read_retried", on="primary", error=type(exc).__name__)
        return await call(self.reads(strong=True))


@dataclass(frozen=True, kw_only=True)
class Reads:
    """One side's stores for the read routes (lists, counts, search, details, the
    stats snapshot): :meth:`AppContext.reads`."""

    store: Store
    stats: StatsStore
    schedules: ScheduleStore
    queues: QueueStore


_encoder = msgspec.json.Encoder()

def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(_encoder.encode(body), status=status, headers=headers,
                    content_type="application/json")


def context(app: Any) -> AppContext:
    ctx: AppContext = app.extensions["scheduler"]
    return ctx
