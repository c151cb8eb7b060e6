"""Authentication: bearer tokens by role, the dashboard's login cookie, and CSRF.

Roles (tokens from runtime/config.py; each setting may hold several, for rotation):

    admin    SCHEDULER_ADMIN_TOKEN   the public API and the dashboard, reads and writes
    read     SCHEDULER_READ_TOKEN    GETs of the public API, the dashboard, its events
    worker   SCHEDULER_WORKER_TOKEN  the worker API (/api/workers/...) only
    public   (no token)              /login, /logout, the dashboard's static files, and
                                     GET/HEAD of SCHEDULER_PUBLIC_PATHS

With no token configured at all, nothing is checked (the coordinator then binds
loopback only: runtime.config.bind_refusal). Otherwise one ``before_request`` hook,
:func:`authenticate`, decides every request from the roles of the route table
(web/routes.py ``ROUTE_ROLES``: method and URL rule -> role, handed to :func:`install`;
HEAD needs what GET needs, OPTIONS any role of the rule's methods, a rule missing there
the admin role):

    no credentials, a malformed header, an unknown token   401 unauthorized
                                                           (WWW-Authenticate: Bearer)
    a known token whose role may not call the route        403 forbidden
    a cookie-authenticated write without a matching        403 forbidden
    X-CSRF-Token header

Credentials are ``Authorization: Bearer <token>``, or else the dashboard's session
cookie set by ``POST /login``: a random id (HttpOnly, SameSite=Strict, Path=/, Secure
over https) naming a server-side session (schema/session_store.py; only its SHA-256 is
stored). A session ends when it expires (SCHEDULER_SESSION_HOURS after sign-in), at
``POST /logout``, when an admin revokes it (``/api/sessions``), or when the token that
signed it in is no longer configured with its role. Writes that the cookie
authenticates also need ``X-CSRF-Token``: an HMAC of the session id
(:func:`csrf_token`), handed to the page in the readable ``scheduler_csrf`` cookie; a
value from another session, or one the page made up, does not match. Before all this,
web/crosssite.py refuses other sites' writes (Origin), non-JSON bodies and, without
tokens, foreign Host names.

Tokens are compared in constant time: SHA-256 digests with ``hmac.compare_digest``
against every configured token, without stopping at the first match.

Each token has a name (``SCHEDULER_ADMIN_TOKEN=ops:<token>``; a bare token is
``token-<8 hex of its SHA-256>``): the hook names the request's principal by it
(web/audit.py's :class:`Principal`, with the session of a cookie) for the audit trail,
and the log lines here show it, never the token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import re
from collections.abc import Mapping
from typing import Literal

import structlog
from quart import Blueprint, Quart, Response, current_app, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.routing import Rule

from scheduler_core.runtime.config import Config, NamedToken
from scheduler_core.schema.session_store import (
    LiveSession,
    SessionList,
    SessionStore,
    new_session_id,
)
from scheduler_core.web import crosssite
from scheduler_core.web.audit import (
    Principal,
    note_details,
    note_outcome,
    note_principal,
    principal,
)
from scheduler_core.web.context import context, json_response
from scheduler_core.web.inputs import parse_id
from scheduler_core.web.throttle import AuthThrottle, retry_after_header

Role = Literal["public", "read", "admin", "worker"]
TokenRole = Literal["read", "admin", "worker"]  # the roles a token has

blueprint = Blueprint("auth", __name__)
log = structlog.get_logger("web.auth")

SESSION_COOKIE = "scheduler_session"
CSRF_COOKIE = "scheduler_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_ANY: frozenset[Role] = frozenset({"read", "admin", "worker"})
_BEARER = re.compile(r"Bearer +([A-Za-z0-9\-._~+/]+=*) *", re.IGNORECASE)

RouteRoles = Mapping[tuple[str, str], Role]  # (METHOD, URL rule) -> the role it needs

def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def fingerprint(token: str) -> bytes:
    """What a session records of the token that signed it in: a SHA-256 apart from
    :func:`_digest`'s (domain-separated), checked against the configured tokens on
    every request so that a token rotated out ends its sessions."""
    return hashlib.sha256(b"scheduler-core session\x00"
                          + token.encode("utf-8", "surrogatepass")).digest()


def csrf_token(session_id: str) -> str:
    """The CSRF token of a session: an HMAC keyed by its (secret, HttpOnly) id. Only
    the coordinator, which sees the cookie, and the page it hands the value to know
    it; it needs no secret of its own, so every coordinator computes the same one."""
    mac = hmac.new(session_id.encode("utf-8", "surrogatepass"), b"scheduler-core csrf",
                   hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


class Tokens:
    """The configured tokens, kept as SHA-256 digests with their role and name."""

    def __init__(self, config: Config) -> None:
        by_role: tuple[tuple[TokenRole, tuple[NamedToken, ...]], ...] = (
            ("admin", config.admin_named_tokens), ("read", config.read_named_tokens),
            ("worker", config.worker_named_tokens))
        self._known = [(_digest(t.secret), role, t.name)
                       for role, tokens in by_role for t in tokens]
        self._fingerprints = {(fingerprint(t.secret), role): t.name
                              for role, tokens in by_role for t in tokens}

    def __bool__(self) -> bool:
        return bool(self._known)

    def holds(self, session: LiveSession) -> bool:
        """Whether the token that signed ``session`` in is still configured, with the
        session's role."""
        return (session.token_fingerprint, session.role) in self._fingerprints

    def name_of(self, session: LiveSession) -> str:
        """The configured name of the token that signed ``session`` in."""
        return self._fingerprints.get((session.token_fingerprint, session.role), "unknown")

    def match(self, presented: str) -> tuple[TokenRole, str] | None:
        """The role and name of ``presented``, or None if it is no configured token (or
        empty).

        Constant time: digests of equal length are compared with
        ``hmac.compare_digest`` against every token, with no early exit, so how long
        it takes says nothing about how close a guess was, nor which token matched.
        """
        digest = _digest(presented)
        found: tuple[TokenRole, str] | None = None
        for known, role, name in self._known:
            if hmac.compare_digest(digest, known):
                found = (role, name)
        return found if presented else None

    def identify(self, presented: str) -> Role | None:
        """The role of ``presented`` (:meth:`match`), or None."""
        found = self.match(presented)
        return None if found is None else found[0]


def permits(role: Role, needed: Role) -> bool:
    """Whether a token of ``role`` may call a route that needs ``needed`` (admin may
    also read; the worker role and the others do not mix)."""
    return needed == "public" or role == needed or (role == "admin" and needed == "read")


def required_roles(method: str, rule: Rule | None, roles: RouteRoles) -> frozenset[Role]:
    """The roles any one of which lets ``method`` through on ``rule`` (None: no route
    matched, a 404 or 405 to come: any valid token may learn that), by ``roles``."""
    if rule is None:
        return _ANY
    if method == "HEAD":
        method = "GET"
    if method == "OPTIONS":
        return frozenset(roles.get((m, rule.rule), "admin")
                         for m in (rule.methods or set()) - {"HEAD", "OPTIONS"})
    return frozenset({roles.get((method, rule.rule), "admin")})


def _roles() -> RouteRoles:
    roles: RouteRoles = current_app.extensions["auth_roles"]
    return roles


def _other_methods_public() -> bool:
    """Whether the request is a 405 on a path that every method it has makes public
    (``GET /logout``): the 405 may then be told without a token."""
    exc = request.routing_exception
    if not isinstance(exc, MethodNotAllowed) or not exc.valid_methods:
        return False
    adapter = current_app.url_map.bind("")
    for method in set(exc.valid_methods) - {"HEAD", "OPTIONS"}:
        try:
            rule, _ = adapter.match(request.path, method, return_rule=True)
        except HTTPException:
            return False
        if _roles().get((method, rule.rule), "admin") != "public":
            return False
    return True


def parse_bearer(value: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` value, None if malformed."""
    match = _BEARER.fullmatch(value)
    return match.group(1) if match else None


def _refuse(status: int, message: str, *, invalid_token: bool = False) -> Response:
    if status == 401:
        challenge = 'Bearer realm="scheduler-core"'
        if invalid_token:
            challenge += ', error="invalid_token"'
        return json_response({"error": "unauthorized", "message": message, "field": None},
                             401, {"WWW-Authenticate": challenge})
    return json_response({"error": "forbidden", "message": message, "field": None}, 403)


def _wants_page() -> bool:
    """A browser opening the dashboard (sent to /login rather than shown JSON)."""
    rule = request.url_rule
    return (request.method == "GET" and rule is not None and rule.rule == "/"
            and "text/html" in request.headers.get("Accept", ""))


async def authenticate() -> Response | None:
    """The ``before_request`` hook: None lets the request through, else the refusal."""
    tokens: Tokens = current_app.extensions["auth_tokens"]
    if not tokens:
        note_principal(Principal("anonymous", "admin"))  # no tokens: everyone is admin
        return None
    public: frozenset[str] = current_app.extensions["auth_public_paths"]
    if request.method in ("GET", "HEAD") and request.path in public:
        return None
    needed = required_roles(request.method, request.url_rule, _roles())
    if "public" in needed or (request.url_rule is None and _other_methods_public()):
        return None
    header = request.headers.get("Authorization")
    cookie = request.cookies.get(SESSION_COOKIE)
    if header is not None or cookie:
        locked = throttled("Authorization")
        if locked is not None:
            return locked
    if header is not None:
        token = parse_bearer(header)
        if token is None:
            note_failure()
            return _refuse(401, "expected an Authorization header 'Bearer <token>', found "
                           "another form", invalid_token=True)
        found = tokens.match(token)
        role = None if found is None else found[0]
        if found is not None:
            note_principal(Principal(found[1], found[0]))
    elif cookie:
        session = await _live_session(cookie)
        role = session.role if session is not None else None
        if session is not None:
            note_principal(Principal(tokens.name_of(session), session.role, session.id))
    else:
        if _wants_page():
            return Response("", 303, {"Location": "/login"})
        return _refuse(401, "this endpoint needs a token: send 'Authorization: Bearer "
                       "<token>' (or sign in to the dashboard at /login)")
    if role is None:
        if header is not None:
            # Only a guessed token counts: a session cookie is 256 random bits that
            # cannot be guessed, and a tab whose session ended must not lock its user
            # out of signing in again.
            note_failure()
        if header is None and _wants_page():
            return Response("", 303, {"Location": "/login"})
        if header is None:
            return _refuse(401, "the dashboard session has ended (signed out, expired, "
                           "revoked, or its token rotated out): sign in again at /login")
        return _refuse(401, "the token is not valid (unknown, or rotated out)",
                       invalid_token=True)
    note_success()
    if not any(permits(role, n) for n in needed):
        wanted = " or ".join(sorted(needed))
        return _refuse(403, f"this endpoint needs the {wanted} role; the token given "
                       f"is a {role} token")
    if header is None and request.method not in SAFE_METHODS and not _csrf_matches(cookie or ""):
        return _refuse(403, f"a write authenticated by the dashboard's session needs the "
                       f"{CSRF_HEADER} header (the {CSRF_COOKIE} cookie's value, set at "
                       f"sign-in)")
    return None


async def _live_session(cookie: str) -> LiveSession | None:
    """The live session of a cookie whose token still holds its role, or None."""
    tokens: Tokens = current_app.extensions["auth_tokens"]
    session = await sessions().find(cookie)
    return session if session is not None and tokens.holds(session) else None


def _csrf_matches(cookie: str) -> bool:
    """Whether the request's X-CSRF-Token is the CSRF token of session ``cookie``."""
    sent = request.headers.get(CSRF_HEADER, "")
    # compare_digest even when nothing was sent: no shortcut on what was sent.
    return hmac.compare_digest(sent.encode("utf-8", "surrogatepass"),
                               csrf_token(cookie).encode())


def sessions() -> SessionStore:
    store: SessionStore = current_app.extensions["auth_sessions"]
    return store


def install(app: Quart, config: Config, roles: RouteRoles) -> None:
    """Install the hooks on ``app``, checking each route for its role in ``roles``
    (after the blueprints, whose ``before_app_request`` hook, the request timer, should
    run first; the login views are in the route table)."""
    app.extensions["auth_roles"] = roles
    app.extensions["auth_tokens"] = Tokens(config)
    app.extensions["auth_public_paths"] = config.public_path_set
    app.extensions["auth_sessions"] = SessionStore(context(app).store.pool)
    app.extensions["auth_session_hours"] = config.session_hours
    app.extensions["crosssite_config"] = config
    app.extensions["auth_throttle"] = AuthThrottle(
        free=config.auth_throttle_failures, base=config.auth_throttle_base_seconds,
        cap=config.auth_throttle_max_seconds)
    app.before_request(crosssite.check_request)  # other sites' requests: refused first
    app.before_request(authenticate)


# -- the brute-force throttle (web/throttle.py): failed token checks per address ---------


def _client() -> str:
    """The client's address as the server saw it (a proxy's headers are not trusted)."""
    return request.remote_addr or "unknown"


def throttled(field: str) -> Response | None:
    """429 with Retry-After while the client's address is locked out, else None."""
    wait = current_app.extensions["auth_throttle"].retry_after(_client())
    if wait <= 0:
        return None
    return json_response(
        {"error": "too_many_attempts", "message": "too many failed token checks from this "
         f"address: try again in {retry_after_header(wait)} s", "field": field},
        429, {"Retry-After": retry_after_header(wait), "Cache-Control": "no-store"})


def note_failure() -> None:
    """Count a failed token check; log ``auth_throttled`` once, when a burst begins."""
    throttle: AuthThrottle = current_app.extensions["auth_throttle"]
    failures = throttle.failed(_client())
    if failures is not None:
        log.warning("auth_throttled", remote=_client(), failures=failures,
                    retry_after_s=round(throttle.retry_after(_client()), 3))


def note_success() -> None:
    current_app.extensions["auth_throttle"].succeeded(_client())


# -- the dashboard's login ---------------------------------------------------------------

_LOGIN_CSP = ("default-src 'none'; img-src 'self'; style-src 'self'; form-action 'self'; "
              "base-uri 'none'; frame-ancestors 'none'")

_LOGIN_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · scheduler-core</title>
<link rel="icon" href="/dashboard/static/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/dashboard/static/app.css">
</head>
<body>
<header class="top"><span class="brand">scheduler-core</span></header>
<main>
<section class="panel login">
<h1>Sign in</h1>
<p class="muted">The dashboard takes the admin token (SCHEDULER_ADMIN_TOKEN) or, to
view only, the read token (SCHEDULER_READ_TOKEN).</p>
{message}
<form method="post" action="/login">
<label for="token">Token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<button class="primary" type="submit">Sign in</button>
</form>
</section>
</main>
</body>
</html>
"""


def _login_page(message: str = "", status: int = 200) -> Response:
    shown = f'<p class="error-text" role="alert">{html.escape(message)}</p>' if message else ""
    return Response(_LOGIN_PAGE.format(message=shown), status,
                    {"Content-Security-Policy": _LOGIN_CSP, "Cache-Control": "no-store"},
                    content_type="text/html; charset=utf-8")


def _over_https() -> bool:
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return request.scheme == "https" or forwarded == "https"


async def login_page() -> Response:
    if not current_app.extensions["auth_tokens"]:
        return Response("", 303, {"Location": "/"})
    return _login_page()


async def login() -> Response:
    """Check the form's ``token``; an admin or read token gets a new session (its
    cookie, and the readable CSRF cookie) and is sent to the dashboard (303 to /)."""
    tokens: Tokens = current_app.extensions["auth_tokens"]
    if not tokens:
        return Response("", 303, {"Location": "/"})
    locked = throttled("token")
    if locked is not None:
        return locked
    token = ((await request.form).get("token") or "").strip()
    found = tokens.match(token) if parse_bearer(f"Bearer {token}") else None
    if found is None:
        note_failure()
        note_outcome("invalid_token")
        log.warning("login_refused", reason="unknown token", remote=request.remote_addr)
        return _login_page("That token is not valid.", 401)
    note_success()
    role, name = found
    note_principal(Principal(name, role))
    if role != "admin" and role != "read":  # the worker token
        note_outcome("worker_token")
        log.warning("login_refused", reason="worker token", token_name=name,
                    remote=request.remote_addr)
        return _login_page("That is a worker token; the dashboard takes the admin or the "
                           "read token.", 403)
    hours: float = current_app.extensions["auth_session_hours"]
    session_id = new_session_id()
    session = await sessions().create(session_id, role=role, fingerprint=fingerprint(token),
                                      remote_addr=request.remote_addr, hours=hours)
    note_principal(Principal(name, role, session.id))
    log.info("login_succeeded", role=role, token_name=name, session_id=str(session.id),
             remote=request.remote_addr)
    response = Response("", 303, {"Location": "/", "Cache-Control": "no-store"})
    secure = _over_https()
    max_age = int(hours * 3600)
    response.set_cookie(SESSION_COOKIE, session_id, max_age=max_age, path="/",
                        secure=secure, httponly=True, samesite="Strict")
    response.set_cookie(CSRF_COOKIE, csrf_token(session_id), max_age=max_age, path="/",
                        secure=secure, httponly=False, samesite="Strict")
    return response


async def logout() -> Response:
    """End the cookie's session and forget the cookies (303 to /login). A live
    session ends only with its CSRF header (403 otherwise: no other page can sign
    someone out); a cookie of no live session is just forgotten."""
    cookie = request.cookies.get(SESSION_COOKIE)
    tokens: Tokens = current_app.extensions["auth_tokens"]
    if cookie and tokens:
        live = await sessions().find(cookie)
        if live is not None:
            note_principal(Principal(tokens.name_of(live), live.role, live.id))
        if not _csrf_matches(cookie):
            if live is not None:
                return _refuse(403, f"signing out needs the {CSRF_HEADER} header (the "
                               f"{CSRF_COOKIE} cookie's value)")
        elif (ended := await sessions().revoke_by_cookie(cookie)) is not None:
            log.info("logout_succeeded", session_id=str(ended),
                     token_name=None if live is None else tokens.name_of(live),
                     remote=request.remote_addr)
    response = Response("", 303, {"Location": "/login", "Cache-Control": "no-store"})
    for name, httponly in ((SESSION_COOKIE, True), (CSRF_COOKIE, False)):
        response.delete_cookie(name, path="/", secure=_over_https(), httponly=httponly,
                               samesite="Strict")
    return response


# -- the sessions, for an admin ----------------------------------------------------------

async def list_sessions() -> Response:
    """The live dashboard sessions, newest first (ids, roles and times; no secret)."""
    return json_response(SessionList(items=await sessions().live()))


async def revoke_session(session_id: str) -> Response:
    """End one session now: its next request gets 401 (or the login page)."""
    session = await sessions().revoke(parse_id(session_id))
    log.info("session_revoked", session_id=str(session.id), token_name=principal().name,
             remote=request.remote_addr)
    return json_response(session)


async def revoke_all_sessions() -> Response:
    """End every live session (after a token leak, say): everyone signs in again."""
    revoked = await sessions().revoke_all()
    note_details(revoked=revoked)
    log.info("sessions_revoked", count=revoked, token_name=principal().name,
             remote=request.remote_addr)
    return json_response({"revoked": revoked})
