"""Worker identity: the per-worker secret a worker's registration answers, and the check
every later request of that worker passes (``X-Worker-Secret``; web/worker_api.py).

One :class:`WorkerSecrets` per app, held in the :class:`~scheduler_core.web.context.
AppContext`. It imports no route module and not the context, so both import it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import OrderedDict

import structlog
import trio
from quart import request

from scheduler_core.schema.store import Store
from scheduler_core.web.errors import ApiError

log = structlog.get_logger("web.workers")

SECRET_HEADER = "X-Worker-Secret"


def secret_digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


class WorkerSecrets:
    """Checks a request's ``X-Worker-Secret`` against its worker's stored hash.

    A hash read from the database is trusted for ``ttl`` seconds (trio's clock), so
    a busy worker's claims and completions do not each pay a query; a secret that
    does not match what is cached is always looked up again (the worker may have
    registered anew through another coordinator). At most ``max_entries`` workers
    are cached, the least recently checked dropped first."""

    def __init__(self, *, ttl: float = 10.0, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._known: OrderedDict[str, tuple[bytes, float]] = OrderedDict()

    def remember(self, worker_id: str, digest: bytes) -> None:
        self._known[worker_id] = (digest, trio.current_time())
        self._known.move_to_end(worker_id)
        while len(self._known) > self.max_entries:
            self._known.popitem(last=False)

    def forget(self, worker_id: str) -> None:
        self._known.pop(worker_id, None)

    async def check(self, store: Store, worker_id: str) -> None:
        """Raise 403 naming X-Worker-Secret unless the current request carries
        ``worker_id``'s current secret (looked up in ``store`` past the cache)."""
        sent = request.headers.get(SECRET_HEADER)
        if sent:
            digest = secret_digest(sent)
            cached = self._known.get(worker_id)
            if (cached is not None and trio.current_time() - cached[1] < self.ttl
                    and hmac.compare_digest(digest, cached[0])):
                return
            stored = await store.worker_secret_hash(worker_id)
            if stored is not None and hmac.compare_digest(digest, stored):
                self.remember(worker_id, stored)
                return
        self.forget(worker_id)
        log.warning("worker_secret_refused", worker_id=worker_id, path=request.path,
                    sent=bool(sent))
        raise ApiError(403, "forbidden", f"this request of worker {worker_id!r} needs the "
                       f"secret its registration answered, as {SECRET_HEADER} (none was "
                       "sent, or it is not that worker's current one: register again)",
                       SECRET_HEADER)
