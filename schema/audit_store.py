"""The audit store: one row per audited request (migration 0019, web/audit.py).

Rows are written once and never changed; the pruner deletes those older than
SCHEDULER_RETENTION_AUDIT_DAYS (:meth:`AuditStore.prune`). A row holds what the web
layer gives it: the token's configured name (never the token), the role, the route's
rule, its target, the answer's status and outcome, the client's address and the
request's fields with secrets already removed.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Literal

import msgspec
from psycopg.types.json import Jsonb

from scheduler_core.runtime.db import Pool
from scheduler_core.schema.queries import q

AuditRole = Literal["admin", "read", "worker", "none"]


class AuditEntry(msgspec.Struct, frozen=True, kw_only=True):
    """What the web layer records of one request."""

    actor: str
    role: AuditRole
    session_id: uuid.UUID | None
    method: str
    route: str
    target: str | None
    status: int
    outcome: str
    remote_addr: str | None
    details: dict[str, Any]


class AuditOut(msgspec.Struct, rename="camel", kw_only=True):
    """An audit row as ``GET /api/audit`` lists it."""

    id: int
    at: dt.datetime
    actor: str  # the token's configured name; "anonymous" when none was presented
    role: AuditRole
    session_id: uuid.UUID | None  # the dashboard session that made the call, if one did
    method: str
    route: str  # the route's rule: /api/jobs/<job_id>/cancel
    target: str | None  # the path's id or name
    status: int
    outcome: str  # "ok", or the error's code
    remote_addr: str | None
    details: dict[str, Any]


class AuditPage(msgspec.Struct, rename="camel", kw_only=True):
    items: list[AuditOut]
    next_cursor: str | None


class AuditFilter(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /api/audit``'s filters; None: any."""

    actor: str | None = None
    route: str | None = None
    status: int | None = None
    after: dt.datetime | None = None  # at or after
    before: dt.datetime | None = None  # strictly before


class AuditStore:
    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    async def record(self, entry: AuditEntry) -> int:
        """Write one row at the database clock's now(); its id."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(q("insert_audit"), {
                "actor": entry.actor, "role": entry.role, "session_id": entry.session_id,
                "method": entry.method, "route": entry.route, "target": entry.target,
                "status": entry.status, "outcome": entry.outcome,
                "remote_addr": entry.remote_addr, "details": Jsonb(entry.details)})
            row = await cur.fetchone()
        assert row is not None
        return int(row["id"])

    async def list(self, filters: AuditFilter, *, before_id: int | None,
                   take: int) -> AuditPage:
        """A page, newest first; ``next_cursor`` names the last row when more follow."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(q("list_audit"), {
                "actor": filters.actor, "route": filters.route, "status": filters.status,
                "after": filters.after, "before": filters.before, "before_id": before_id,
                "take": take + 1})
            rows = await cur.fetchall()
        items = [_out(r) for r in rows[:take]]
        more = len(rows) > take
        return AuditPage(items=items, next_cursor=str(items[-1].id) if more else None)


def _out(row: dict[str, Any]) -> AuditOut:
    return AuditOut(id=row["id"], at=row["at"], actor=row["actor"], role=row["role"],
                    session_id=row["session_id"], method=row["method"], route=row["route"],
                    target=row["target"], status=row["status"], outcome=row["outcome"],
                    remote_addr=row["remote_addr"], details=row["details"])
