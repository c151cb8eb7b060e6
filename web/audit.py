"""The audit trail: one row per operator's write, with its answer (migration 0019).

What is audited is decided once, by the route table (web/routes.py ``AUDITED``): every
route whose method is not GET or HEAD, except the submits (``POST /api/jobs``,
``/api/jobs/batch``, ``/api/workflows``: the jobs themselves are their record, and
they are the hot path) and the worker protocol (``/api/workers/...``: machine
traffic, not an operator's action). Sign-in and sign-out are routes of the table, so
they are audited like the rest, failures included.

Two hooks, installed after web/auth.py's:

    before_request   on an audited route, reads the (small, JSON) body first, cached,
                     so the row can hold its fields; the view reads it as before
    after_request    writes the row: who (:class:`Principal`, set by web/auth.py: the
                     token's configured name, its role, the dashboard session if one
                     made the call), what (method, rule, the path's id), the status and
                     outcome (``ok`` or the error's code), the client's address and the
                     request's fields

The after hook runs for every answer, the hooks' refusals (401, 403, 415, 429) and
the error handlers' included, so each call of an audited route writes exactly one row.
The row is written after the action, in its own statement: if the database fails in
between, the action stands and an ``audit_write_failed`` line carries the row's fields.

Secrets never reach a row: the principal is the token's name, never the token; the
login form is not JSON and is never read here; in a JSON body every field whose name
speaks of a token, secret, password, credential, cookie or authorization, and every
string that is one of the configured tokens, is ``[redacted]``; strings, lists and
depth are cut short and a body over :data:`MAX_DETAILS_BYTES` keeps only its keys.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import uuid
from collections.abc import Collection
from typing import Any

import msgspec
import structlog
from quart import Blueprint, Quart, Response, current_app, g, request

from scheduler_core.runtime import jsonlimits
from scheduler_core.schema.audit_store import (
    AuditEntry,
    AuditFilter,
    AuditRole,
    AuditStore,
)
from scheduler_core.web.context import context, json_response
from scheduler_core.web.errors import ApiError
from scheduler_core.web.inputs import CONSISTENCY, parse_take, query_args, strong_reads

blueprint = Blueprint("audit", __name__)
log = structlog.get_logger("web.audit")

REDACTED = "[redacted]"
MAX_BODY_READ = 65_536  # larger bodies are not read for the row (their size is noted)
MAX_DETAILS_BYTES = 4_096
MAX_STRING = 200
MAX_ITEMS = 20
MAX_DEPTH = 4
_SECRET_KEY = re.compile(r"token|secret|passw|credential|cookie|authoriz|api.?key",
                         re.IGNORECASE)
# Outcomes of answers whose body names no error (the login page's HTML).
_STATUS_OUTCOME = {401: "unauthorized", 403: "forbidden", 404: "not_found",
                   429: "too_many_attempts"}

Audited = Collection[tuple[str, str]]  # (METHOD, URL rule) of each audited route


class Principal(msgspec.Struct, frozen=True):
    """Who made a request, as the audit trail names them: a token's configured name
    (never the token), its role, and the dashboard session that carried it, if any."""

    name: str
    role: AuditRole
    session_id: uuid.UUID | None = None


ANONYMOUS = Principal("anonymous", "none")


def note_principal(principal: Principal) -> None:
    """Record who the request is (web/auth.py, once it knows)."""
    g.audit_principal = principal


def principal() -> Principal:
    """Who the request is, as far as web/auth.py found (:data:`ANONYMOUS` if nobody)."""
    found: Principal = g.get("audit_principal", ANONYMOUS)
    return found


def note_outcome(outcome: str, **details: Any) -> None:
    """Name the outcome of the request (instead of the one read off its answer) and
    add ``details`` (no secret) to its row: the login's refusals, say."""
    g.audit_outcome = outcome
    note_details(**details)


def note_details(**details: Any) -> None:
    """Add ``details`` (no secret) to the request's row: what a revoke-all ended."""
    g.audit_details = {**g.get("audit_details", {}), **details}


# -- what a row keeps of a request ---------------------------------------------------------

def _clean_text(text: str) -> str:
    """Text jsonb stores: valid UTF-8 (lone surrogates replaced), no NUL."""
    text = text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")
    return text if len(text) <= MAX_STRING else text[:MAX_STRING] + "…"


def scrub(value: Any, secrets: frozenset[bytes], depth: int = 0) -> Any:
    """``value`` as a row may hold it: secret-named fields and configured tokens
    redacted, strings, lists and nesting cut short (the depth bounds the recursion)."""
    if isinstance(value, str):
        if hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest() in secrets:
            return REDACTED
        return _clean_text(value)
    if isinstance(value, dict):
        if depth >= MAX_DEPTH:
            return "…"
        kept = {_clean_text(k): REDACTED if _SECRET_KEY.search(k) else
                scrub(v, secrets, depth + 1) for k, v in list(value.items())[:MAX_ITEMS]}
        if len(value) > MAX_ITEMS:
            kept["…"] = f"{len(value) - MAX_ITEMS} more"
        return kept
    if isinstance(value, list):
        if depth >= MAX_DEPTH:
            return "…"
        return [scrub(v, secrets, depth + 1) for v in value[:MAX_ITEMS]]
    return value


def details_of(raw: bytes, *, max_depth: int, secrets: frozenset[bytes]) -> dict[str, Any]:
    """The row's ``details`` for a JSON body: its fields scrubbed (:func:`scrub`), or,
    over :data:`MAX_DETAILS_BYTES`, only its keys; what it was when it is no object."""
    if not raw.strip():
        return {}
    if jsonlimits.too_deep(raw, max_depth) is not None:
        return {"body": "too deep", "bodyBytes": len(raw)}
    try:
        body = msgspec.json.decode(raw)
    except (msgspec.MsgspecError, UnicodeDecodeError):
        return {"body": "not JSON", "bodyBytes": len(raw)}
    if not isinstance(body, dict):
        return {"body": type(body).__name__, "bodyBytes": len(raw)}
    fields = scrub(body, secrets)
    if len(msgspec.json.encode(fields)) <= MAX_DETAILS_BYTES:
        return {"body": fields}
    return {"bodyKeys": [_clean_text(k) for k in list(body)[:MAX_ITEMS]], "truncated": True,
            "bodyBytes": len(raw)}


def _audited() -> bool:
    rule = request.url_rule
    audited: Audited = current_app.extensions["audit_routes"]
    return rule is not None and (request.method, rule.rule) in audited


async def read_details() -> None:
    """``before_request``, after web/auth.py's hooks: on an audited route, read a small
    JSON body (cached, so the view reads it as before) and keep its scrubbed fields."""
    if not _audited():
        return
    details: dict[str, Any] = {}
    size = request.content_length
    config = context(current_app).config
    if request.mimetype == "application/json" and size is not None:
        if size <= min(MAX_BODY_READ, config.max_body_bytes):
            raw = await request.get_data(cache=True, as_text=False)
            assert isinstance(raw, bytes)  # as_text=False
            details = details_of(raw, max_depth=config.max_json_depth,
                                 secrets=current_app.extensions["audit_secrets"])
        else:
            details = {"bodyBytes": size}
    if request.args:
        details["query"] = scrub({k: request.args.getlist(k) for k in request.args},
                                 current_app.extensions["audit_secrets"])
    g.audit_details = {**details, **g.get("audit_details", {})}


async def _outcome(response: Response) -> str:
    if response.status_code < 400:
        return "ok"
    size = response.content_length  # None: a stream, not read here
    if response.mimetype == "application/json" and size is not None and size <= 65_536:
        try:
            body = msgspec.json.decode(await response.get_data())
        except msgspec.MsgspecError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            return _clean_text(body["error"])
    return _STATUS_OUTCOME.get(response.status_code, f"http_{response.status_code}")


async def write_row(response: Response) -> Response:
    """``after_request``: the row of an audited route's call, whatever its answer."""
    if not _audited():
        return response
    who = principal()
    rule = request.url_rule
    assert rule is not None  # _audited
    target = "/".join(str(v) for v in (request.view_args or {}).values()) or None
    entry = AuditEntry(
        actor=who.name, role=who.role, session_id=who.session_id,
        method=request.method, route=rule.rule,
        target=None if target is None else _clean_text(target),
        status=response.status_code,
        outcome=g.get("audit_outcome") or await _outcome(response),
        remote_addr=request.remote_addr, details=g.get("audit_details", {}))
    try:
        await current_app.extensions["audit_store"].record(entry)
    except Exception as exc:  # the action stands; the log line keeps the row
        log.error("audit_write_failed", actor=entry.actor, role=entry.role,
                  session_id=None if entry.session_id is None else str(entry.session_id),
                  method=entry.method, route=entry.route, target=entry.target,
                  status=entry.status, outcome=entry.outcome, remote=entry.remote_addr,
                  error=type(exc).__name__)
    return response


def install(app: Quart, audited: Audited) -> None:
    """Audit the calls of ``audited`` on ``app`` (after web/auth.py's install: its hook
    names the principal before this one reads a body)."""
    config = context(app).config
    app.extensions["audit_routes"] = frozenset(audited)
    app.extensions["audit_store"] = AuditStore(context(app).store.pool)
    app.extensions["audit_secrets"] = frozenset(
        hashlib.sha256(t.encode("utf-8", "surrogatepass")).digest()
        for t in (*config.admin_tokens, *config.read_tokens, *config.worker_tokens,
                  config.client_token) if t)
    app.before_request(read_details)
    app.after_request(write_row)


# -- GET /api/audit ------------------------------------------------------------------------

_LIST_PARAMS = ("actor", "route", "status", "after", "before", "take", "cursor", CONSISTENCY)


def _text(args: dict[str, str], name: str, most: int) -> str | None:
    value = args.get(name)
    if value is None:
        return None
    if not 1 <= len(value) <= most or "\x00" in value:
        raise ApiError(400, "validation_error",
                       f"{name} must be 1..{most} characters without NUL", name)
    return value


def _int(args: dict[str, str], name: str, low: int, high: int) -> int | None:
    raw = args.get(name)
    if raw is None:
        return None
    if not re.fullmatch(r"[0-9]{1,19}", raw) or not low <= int(raw) <= high:
        raise ApiError(400, "validation_error",
                       f"{name} must be an integer {low}..{high}, found {raw[:40]!r}", name)
    return int(raw)


def _time(args: dict[str, str], name: str) -> dt.datetime | None:
    raw = args.get(name)
    if raw is None:
        return None
    try:
        when = dt.datetime.fromisoformat(raw)
        if when.tzinfo is None:
            raise ValueError("no zone")
        return when.astimezone(dt.UTC)
    except (ValueError, OverflowError):
        raise ApiError(400, "validation_error", "expected an ISO-8601 date-time with a "
                       f"zone (e.g. 2026-01-31T12:00:00Z), found {raw[:40]!r}", name) from None


async def list_audit() -> Response:
    """The audit rows, newest first, keyset-paged (``cursor``: the previous page's
    ``nextCursor``), filtered by actor, route rule, status and time."""
    args = query_args(_LIST_PARAMS)
    filters = AuditFilter(actor=_text(args, "actor", 100), route=_text(args, "route", 200),
                          status=_int(args, "status", 100, 599),
                          after=_time(args, "after"), before=_time(args, "before"))
    take = parse_take(args, 50)
    cursor = _int(args, "cursor", 1, 2**63 - 1)
    # The rows are written on the primary (record); listed from the replica's side.
    page = await context(current_app).read(
        lambda r: AuditStore(r.store.pool).list(filters, before_id=cursor, take=take),
        strong_reads(args))
    return json_response(page)
