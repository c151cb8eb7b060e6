"""The session store: the dashboard's sign-ins, kept server-side (migration 0007).

The browser's cookie holds a random id (:func:`new_session_id`); the table holds only
its SHA-256 (:func:`session_hash`), so a copy of the database opens no session. A
session is live until it expires (``SCHEDULER_SESSION_HOURS`` after sign-in: a fixed
lifetime, not a sliding one) or is revoked (sign-out, or an admin). The public
``id`` (a UUID) names a session in the admin's list without giving it away.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import uuid
from typing import Any, Literal

import msgspec

from scheduler_core.runtime.db import Pool
from scheduler_core.schema.queries import q
from scheduler_core.schema.store import NotFound

SessionRole = Literal["admin", "read"]
MAX_LISTED = 1000


class SessionOut(msgspec.Struct, rename="camel", kw_only=True):
    """A session as ``GET /api/sessions`` lists it: never its cookie, nor a hash of it."""

    id: uuid.UUID
    role: SessionRole
    remote_addr: str | None
    created_at: dt.datetime
    expires_at: dt.datetime
    last_seen_at: dt.datetime
    revoked_at: dt.datetime | None = None


class SessionList(msgspec.Struct, rename="camel", kw_only=True):
    items: list[SessionOut]


class RevokedSessions(msgspec.Struct, rename="camel", kw_only=True):
    """What ``POST /api/sessions/revoke-all`` ended."""

    revoked: int


class LiveSession(msgspec.Struct, frozen=True, kw_only=True):
    """A live session found by its cookie: what the auth hook needs."""

    id: uuid.UUID
    role: SessionRole
    token_fingerprint: bytes


def new_session_id() -> str:
    """A fresh cookie value: 32 random bytes, URL-safe base64."""
    return secrets.token_urlsafe(32)


def session_hash(session_id: str) -> bytes:
    """What the table stores of a cookie value."""
    return hashlib.sha256(session_id.encode("utf-8", "surrogatepass")).digest()


def session_out(row: dict[str, Any]) -> SessionOut:
    return SessionOut(id=row["id"], role=row["role"], remote_addr=row["remote_addr"],
                      created_at=row["created_at"], expires_at=row["expires_at"],
                      last_seen_at=row["last_seen_at"], revoked_at=row["revoked_at"])


class SessionStore:
    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    async def create(self, session_id: str, *, role: SessionRole, fingerprint: bytes,
                     remote_addr: str | None, hours: float) -> SessionOut:
        """Store a session for cookie value ``session_id``, live for ``hours``."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(q("create_session"), {
                "token_hash": session_hash(session_id), "fingerprint": fingerprint,
                "role": role, "remote_addr": remote_addr, "hours": float(hours)})
            row = await cur.fetchone()
        assert row is not None
        return session_out(row)

    async def find(self, session_id: str) -> LiveSession | None:
        """The live session of cookie value ``session_id`` (None: unknown, expired or
        revoked); notes its use at most once a minute."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(q("find_session"),
                                     {"token_hash": session_hash(session_id)})
            row = await cur.fetchone()
            if row is None:
                return None
            if row["stale"]:
                await conn.execute(q("touch_session"), {"id": row["id"]})
        return LiveSession(id=row["id"], role=row["role"],
                           token_fingerprint=bytes(row["token_fingerprint"]))

    async def revoke_by_cookie(self, session_id: str) -> uuid.UUID | None:
        """End the session of cookie value ``session_id``; its id (None: none live)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(q("revoke_session_by_hash"),
                                     {"token_hash": session_hash(session_id)})
            row = await cur.fetchone()
        return None if row is None else uuid.UUID(str(row["id"]))

    async def revoke(self, id: uuid.UUID) -> SessionOut:
        """End session ``id`` (already ended: unchanged); NotFound if there is none."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(q("revoke_session"), {"id": id})
            row = await cur.fetchone()
        if row is None:
            raise NotFound(f"no session {id}")
        return session_out(row)

    async def revoke_all(self) -> int:
        """End every live session; how many."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(q("revoke_all_sessions"))
            return len(await cur.fetchall())

    async def live(self) -> list[SessionOut]:
        """The live sessions, newest first (up to MAX_LISTED)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(q("live_sessions"), {"limit": MAX_LISTED})
            return [session_out(r) for r in await cur.fetchall()]
