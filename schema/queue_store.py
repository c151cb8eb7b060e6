"""The queue store: a queue's pause state, cluster-wide concurrency limit and rate
limits.

Queues need no definition: a job names its queue, and a queue without settings is
active and unlimited. Settings live in the ``queues`` table (migration 0006), where
the claim (``scheduler_claim``) reads them; a change notifies ``scheduler_jobs`` by
trigger, so long-polling claims look again at once.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec

from scheduler_core.runtime.db import Pool, TrioConnection
from scheduler_core.schema import wire
from scheduler_core.schema.queries import q

WAITING_CAP = 10_000
MAX_QUEUES = 1000


def rate_limits_out(stored: list[dict[str, Any]] | None) -> list[wire.RateLimit] | None:
    """The windows as the API shows them, from ``queues.rate_limits``."""
    if not stored:
        return None
    return [wire.RateLimit(limit=w["limit"], per=w["per"], burst=w["burst"]) for w in stored]


def rate_limits_in(limits: list[wire.RateLimit] | None) -> str | None:
    """``queues.rate_limits`` for these windows (what the claim reads: perMs)."""
    if not limits:
        return None
    return msgspec.json.encode([{"limit": w.limit, "per": w.per, "perMs": w.per_ms,
                                 "burst": w.burst} for w in limits]).decode()


def queue_out(row: dict[str, Any]) -> wire.QueueOut:
    rates = rate_limits_out(row["rate_limits"])
    limits: list[wire.LimitUse] = []
    if row["concurrency_limit"] is not None:
        limits.append(wire.LimitUse(kind="concurrency", limit=row["concurrency_limit"],
                                    used=row["running"]))
    for w, (used, until) in zip(rates or [], row["rate_use"] or [], strict=False):
        limits.append(wire.LimitUse(
            kind="rate", limit=w.limit, per=w.per, used=used,
            until=None if until is None else dt.datetime.fromisoformat(until)))
    waiting = min(row["waiting"], WAITING_CAP)
    return wire.QueueOut(
        name=row["name"], paused=row["paused"], concurrency_limit=row["concurrency_limit"],
        rate_limits=rates,
        running=row["running"], waiting=waiting,
        waiting_capped=row["waiting"] > WAITING_CAP, updated_at=row["updated_at"],
        key_concurrency_limit=row["key_concurrency_limit"],
        key_rate_limits=rate_limits_out(row["key_rate_limits"]),
        limits=limits,
        top_keys=[wire.KeyLoad(key=k["key"], waiting=k["waiting"], running=k["running"])
                  for k in row["top_keys"] or []],
        workers=row["workers"],
        warning="no_worker" if waiting > 0 and row["workers"] == 0 else None)


class QueueStore:
    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    async def list_queues(self) -> list[wire.QueueOut]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(q("queue_names"), {"limit": MAX_QUEUES})
            names = [r["name"] for r in await cur.fetchall()]
            return await self._details(conn, names)

    async def get(self, name: str) -> wire.QueueOut:
        async with self.pool.connection() as conn:
            return (await self._details(conn, [name]))[0]

    async def _details(self, conn: TrioConnection, names: list[str]) -> list[wire.QueueOut]:
        cur = await conn.execute(q("queue_details"), {"names": names, "cap": WAITING_CAP + 1})
        return [queue_out(r) for r in await cur.fetchall()]

    async def update(self, name: str, change: wire.UpdateQueue) -> wire.QueueOut:
        """Apply the fields of ``change`` that are set; the queue as it is now."""
        set_limit = change.concurrency_limit is not msgspec.UNSET
        paused = None if change.paused is msgspec.UNSET else change.paused
        rates = change.rate_limits
        set_rates = not isinstance(rates, msgspec.UnsetType)
        key_limit = change.key_concurrency_limit
        set_key_limit = key_limit is not msgspec.UNSET
        key_rates = change.key_rate_limits
        set_key_rates = not isinstance(key_rates, msgspec.UnsetType)
        async with self.pool.connection() as conn, conn.transaction():
            # Keys before the queue's row: the order a claim locks them in (it takes
            # its keys, then the limited queues' rows: migration 0012), so the two
            # cannot deadlock.
            if set_key_rates:
                await conn.execute(q("reset_key_rates"), {"name": name})
            await conn.execute(q("set_queue"), {
                "name": name, "set_limit": set_limit,
                "limit": change.concurrency_limit if set_limit else None, "paused": paused,
                "set_rates": set_rates,
                "rates": None if isinstance(rates, msgspec.UnsetType) else rate_limits_in(rates),
                "set_key_limit": set_key_limit,
                "key_limit": None if isinstance(key_limit, msgspec.UnsetType) else key_limit,
                "set_key_rates": set_key_rates,
                "key_rates": (None if isinstance(key_rates, msgspec.UnsetType)
                              else rate_limits_in(key_rates))})
        return await self.get(name)
