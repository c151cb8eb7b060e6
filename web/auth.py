"""Authentication: bearer tokens by role, the dashboard's login cookie, and CSRF.

Roles (tokens from runtime/config.py; each setting may hold several, for rotation):

    admin    SCHEDULER_ADMIN_TOKEN   the public API and the dashboard, reads and writes
    read     SCHEDULER_READ_TOKEN    GETs of the public API, the dashboard, its events
    worker   SCHEDULER_WORKER_TOKEN  the worker API (/api/workers/...) only
    public   (no token)              /login, /logout, the dashboard's static files, and
                                     GET/HEAD of SCHEDULER_PUBLIC_PATHS

With no token configured at all, nothing is checked (the coordinator then binds
loopback only: runtime.config.bind_refusal). Otherwise one ``before_request`` hook,
:func:`authenticate`, decides every request from :data:`ROUTE_ROLES` (method and URL
rule -> role; a unit test keeps it complete):

    no credentials, a malformed header, an unknown token   401 unauthorized
                                                           (WWW-Authenticate: Bearer)
    a known token whose role may not call the route        403 forbidden
    a cookie-authenticated write without a matching        403 forbidden
    X-CSRF-Token header

Credentials are ``Authorization: Bearer <token>``, or else the dashboard's cookie set
by ``POST /login`` (HttpOnly, SameSite=Strict, Secure over https). Writes that a
cookie authenticates also need the double-submit CSRF header: the value of the
readable ``scheduler_csrf`` cookie, which only a page of this origin can read.
Tokens are compared in constant time: SHA-256 digests with ``hmac.compare_digest``
against every configured token, without stopping at the first match.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import re
import secrets
from typing import Literal

import structlog
from quart import Blueprint, Quart, Response, current_app, request
from werkzeug.routing import Rule

from runtime.config import Config
from web.app import json_response
from web.throttle import AuthThrottle, retry_after_header

Role = Literal["public", "read", "admin", "worker"]

blueprint = Blueprint("auth", __name__)
log = structlog.get_logger("web.auth")

SESSION_COOKIE = "scheduler_session"
CSRF_COOKIE = "scheduler_csrf"
CSRF_HEADER = "X-CSRF-Token"
SESSION_MAX_AGE = 7 * 24 * 3600  # seconds; a rotated-out token ends the session sooner
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_ANY: frozenset[Role] = frozenset({"read", "admin", "worker"})
_BEARER = re.compile(r"Bearer +([A-Za-z0-9\-._~+/]+=*) *", re.IGNORECASE)

# The role each route needs (HEAD: as GET; OPTIONS: any role of the rule's methods).
# A route missing here needs the admin token (and fails tests/unit/test_auth.py).
ROUTE_ROLES: dict[tuple[str, str], Role] = {
    # the public API: reads
    ("GET", "/api/jobs"): "read",
    ("GET", "/api/jobs/<job_id>"): "read",
    ("GET", "/api/jobs/by-key"): "read",
    ("GET", "/api/schedules"): "read",
    ("GET", "/api/schedules/<schedule_id>"): "read",
    ("GET", "/api/queues"): "read",
    ("GET", "/api/queues/<name>"): "read",
    ("GET", "/openapi.json"): "read",
    # the public API: writes
    ("POST", "/api/jobs"): "admin",
    ("POST", "/api/jobs/batch"): "admin",
    ("POST", "/api/jobs/<job_id>/cancel"): "admin",
    ("POST", "/api/jobs/<job_id>/retry"): "admin",
    ("POST", "/api/seed"): "admin",
    ("POST", "/api/schedules/<schedule_id>/pause"): "admin",
    ("POST", "/api/schedules/<schedule_id>/resume"): "admin",
    ("DELETE", "/api/schedules/<schedule_id>"): "admin",
    ("PATCH", "/api/queues/<name>"): "admin",
    ("POST", "/api/queues/<name>/pause"): "admin",
    ("POST", "/api/queues/<name>/resume"): "admin",
    # the worker protocol
    ("POST", "/api/workers/register"): "worker",
    ("POST", "/api/workers/heartbeat"): "worker",
    ("POST", "/api/workers/claim"): "worker",
    ("POST", "/api/workers/complete"): "worker",
    ("POST", "/api/workers/deregister"): "worker",
    # operations: public by default through SCHEDULER_PUBLIC_PATHS, else read
    ("GET", "/health"): "read",
    ("GET", "/health/ready"): "read",
    ("GET", "/metrics"): "read",
    # the dashboard
    ("GET", "/"): "read",
    ("GET", "/api/dashboard/overview"): "read",
    ("GET", "/api/dashboard/meta"): "read",
    ("GET", "/api/dashboard/events"): "read",
    ("GET", "/dashboard/static/<path:filename>"): "public",  # the repository's own files
    ("GET", "/login"): "public",
    ("POST", "/login"): "public",
    ("GET", "/logout"): "public",
    ("POST", "/logout"): "public",
}


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class Tokens:
    """The configured tokens, kept as SHA-256 digests with their role."""

    def __init__(self, config: Config) -> None:
        by_role: tuple[tuple[Role, tuple[str, ...]], ...] = (
            ("admin", config.admin_tokens), ("read", config.read_tokens),
            ("worker", config.worker_tokens))
        self._known = [(_digest(token), role) for role, tokens in by_role for token in tokens]

    def __bool__(self) -> bool:
        return bool(self._known)

    def identify(self, presented: str) -> Role | None:
        """The role of ``presented``, or None if it is no configured token (or empty).

        Constant time: digests of equal length are compared with
        ``hmac.compare_digest`` against every token, with no early exit, so how long
        it takes says nothing about how close a guess was, nor which token matched.
        """
        digest = _digest(presented)
        found: Role | None = None
        for known, role in self._known:
            if hmac.compare_digest(digest, known):
                found = role
        return found if presented else None


def permits(role: Role, needed: Role) -> bool:
    """Whether a token of ``role`` may call a route that needs ``needed`` (admin may
    also read; the worker role and the others do not mix)."""
    return needed == "public" or role == needed or (role == "admin" and needed == "read")


def required_roles(method: str, rule: Rule | None) -> frozenset[Role]:
    """The roles any one of which lets ``method`` through on ``rule`` (None: no route
    matched, a 404 or 405 to come: any valid token may learn that)."""
    if rule is None:
        return _ANY
    if method == "HEAD":
        method = "GET"
    if method == "OPTIONS":
        return frozenset(ROUTE_ROLES.get((m, rule.rule), "admin")
                         for m in (rule.methods or set()) - {"HEAD", "OPTIONS"})
    return frozenset({ROUTE_ROLES.get((method, rule.rule), "admin")})


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
        return None
    public: frozenset[str] = current_app.extensions["auth_public_paths"]
    if request.method in ("GET", "HEAD") and request.path in public:
        return None
    needed = required_roles(request.method, request.url_rule)
    if "public" in needed:
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
    elif cookie:
        token = cookie
    else:
        if _wants_page():
            return Response("", 303, {"Location": "/login"})
        return _refuse(401, "this endpoint needs a token: send 'Authorization: Bearer "
                       "<token>' (or sign in to the dashboard at /login)")
    role = tokens.identify(token)
    if role is None:
        note_failure()
        if header is None and _wants_page():
            return Response("", 303, {"Location": "/login"})
        return _refuse(401, "the token is not valid (unknown, or rotated out)",
                       invalid_token=True)
    note_success()
    if not any(permits(role, n) for n in needed):
        wanted = " or ".join(sorted(needed))
        return _refuse(403, f"this endpoint needs the {wanted} role; the token given "
                       f"is a {role} token")
    if header is None and request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        expected = request.cookies.get(CSRF_COOKIE, "")
        # compare_digest even when one is empty: no shortcut on what was sent.
        if not (hmac.compare_digest(sent.encode(), expected.encode()) and expected):
            return _refuse(403, f"a write authenticated by the dashboard's cookie needs "
                           f"the {CSRF_HEADER} header (the {CSRF_COOKIE} cookie's value)")
    return None


def install(app: Quart, config: Config) -> None:
    """Register the login routes and the hook on ``app`` (after the blueprints whose
    ``before_app_request`` hooks, the request timer, should run first)."""
    app.extensions["auth_tokens"] = Tokens(config)
    app.extensions["auth_public_paths"] = config.public_path_set
    app.extensions["auth_throttle"] = AuthThrottle(
        free=config.auth_throttle_failures, base=config.auth_throttle_base_seconds,
        cap=config.auth_throttle_max_seconds)
    app.register_blueprint(blueprint)
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


@blueprint.get("/login")
async def login_page() -> Response:
    if not current_app.extensions["auth_tokens"]:
        return Response("", 303, {"Location": "/"})
    return _login_page()


@blueprint.post("/login")
async def login() -> Response:
    """Check the form's ``token``; an admin or read token gets the session cookie and
    a fresh CSRF cookie, and is sent to the dashboard (303 to /)."""
    tokens: Tokens = current_app.extensions["auth_tokens"]
    if not tokens:
        return Response("", 303, {"Location": "/"})
    locked = throttled("token")
    if locked is not None:
        return locked
    token = ((await request.form).get("token") or "").strip()
    role = tokens.identify(token) if parse_bearer(f"Bearer {token}") else None
    if role is None:
        note_failure()
        log.warning("login_refused", reason="unknown token", remote=request.remote_addr)
        return _login_page("That token is not valid.", 401)
    note_success()
    if role == "worker":
        log.warning("login_refused", reason="worker token", remote=request.remote_addr)
        return _login_page("That is a worker token; the dashboard takes the admin or the "
                           "read token.", 403)
    log.info("login_succeeded", role=role, remote=request.remote_addr)
    response = Response("", 303, {"Location": "/", "Cache-Control": "no-store"})
    secure = _over_https()
    response.set_cookie(SESSION_COOKIE, token, max_age=SESSION_MAX_AGE, path="/",
                        secure=secure, httponly=True, samesite="Strict")
    response.set_cookie(CSRF_COOKIE, secrets.token_urlsafe(32), max_age=SESSION_MAX_AGE,
                        path="/", secure=secure, httponly=False, samesite="Strict")
    return response


@blueprint.route("/logout", methods=["GET", "POST"])
async def logout() -> Response:
    """Forget the dashboard's cookies (303 to /login)."""
    response = Response("", 303, {"Location": "/login", "Cache-Control": "no-store"})
    for name, httponly in ((SESSION_COOKIE, True), (CSRF_COOKIE, False)):
        response.delete_cookie(name, path="/", secure=_over_https(), httponly=httponly,
                               samesite="Strict")
    return response
