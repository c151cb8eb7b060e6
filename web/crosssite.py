"""Requests a browser sends on behalf of another site: refused before anything else.

A page on any website can make the browser of someone who runs ``scheduler up``
send requests to ``http://127.0.0.1:5000``: "simple" cross-site requests (an HTML
form, ``fetch`` with ``mode: "no-cors"``) need no CORS permission to be *sent*, only
to be read. And through DNS rebinding a site's own name can come to point at
127.0.0.1, making the request same-origin in the browser's eyes. One
``before_request`` hook, :func:`check_request`, runs ahead of authentication:

    a Host that is not a loopback name or address (localhost,   421 misdirected_request
    127.0.0.0/8, [::1], any port) nor in SCHEDULER_ALLOWED_HOSTS,    field "Host"
    when no token is configured (DNS rebinding)
    a write (POST, PUT, PATCH, DELETE) whose Origin header is      403 forbidden
    present and neither this coordinator's own origin (scheme,      field "Origin"
    host and port as the request's Host shows them) nor in
    SCHEDULER_ALLOWED_ORIGINS
    a body whose Content-Type is not application/json (at          415 unsupported_media_type
    POST /login: application/x-www-form-urlencoded, the form's)      field "Content-Type"

A request without a body (``curl -X POST .../cancel``) needs no Content-Type, and one
without an Origin header (curl, the CLI, workers) is not a browser's cross-site
request. A cross-site form can only send ``application/x-www-form-urlencoded``,
``multipart/form-data`` or ``text/plain``, so requiring JSON alone stops it; the
Origin check also covers what a future CORS mistake would let through.
"""

from __future__ import annotations

from quart import Response, current_app, request

from scheduler_core.runtime.config import Config, is_loopback_host
from scheduler_core.web.context import json_response

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
# Routes (method, path) whose body is a browser form, not JSON.
FORM_ROUTES = frozenset({("POST", "/login")})
_DEFAULT_PORTS = {"http": "80", "https": "443"}
_SHOWN = 100  # characters of a refused header's value shown back


def host_name(host: str) -> str:
    """The name or address of a Host header value, without its port, in lower case:
    ``127.0.0.1:5000`` -> ``127.0.0.1``, ``[::1]:80`` -> ``[::1]``."""
    host = host.strip().lower()
    if host.startswith("["):
        return host.split("]", 1)[0] + "]" if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def host_allowed(host: str, allowed: frozenset[str]) -> bool:
    """Whether a coordinator without tokens answers a request for ``host`` (a Host
    header value): a loopback name or address, or one of ``allowed``."""
    name = host_name(host)
    return bool(name) and (is_loopback_host(name) or name in allowed)


def origin_of(scheme: str, host: str) -> str:
    """``scheme://host[:port]`` as a browser writes it in Origin: lower case, the
    scheme's default port left out."""
    scheme, host = scheme.lower(), host.strip().lower()
    name = host_name(host)
    port = host[len(name) + 1:] if host.startswith(name + ":") else ""
    if port and port != _DEFAULT_PORTS.get(scheme):
        return f"{scheme}://{name}:{port}"
    return f"{scheme}://{name}"


def own_origins(host: str, scheme: str, forwarded_proto: str) -> frozenset[str]:
    """The origins of this coordinator as the request reached it: its scheme, and the
    one a TLS-terminating proxy says in X-Forwarded-Proto."""
    schemes = {scheme} | ({forwarded_proto} if forwarded_proto in _DEFAULT_PORTS else set())
    return frozenset(origin_of(s, host) for s in schemes)


def origin_allowed(origin: str, host: str, scheme: str, forwarded_proto: str,
                   allowed: frozenset[str]) -> bool:
    """Whether a write from a page of ``origin`` may reach this coordinator."""
    origin = origin.strip().lower().rstrip("/")
    return origin in allowed or origin in own_origins(host, scheme, forwarded_proto)


def has_body() -> bool:
    """Whether the request carries a body (a length above 0, or chunks to come)."""
    return bool(request.content_length) or "Transfer-Encoding" in request.headers


def _shown(value: str) -> str:
    return repr(value[:_SHOWN] + ("..." if len(value) > _SHOWN else ""))


def _refuse(status: int, error: str, message: str, field: str) -> Response:
    return json_response({"error": error, "message": message, "field": field}, status)


async def check_request() -> Response | None:
    """The ``before_request`` hook: None lets the request on (to authentication)."""
    config: Config = current_app.extensions["crosssite_config"]
    host = request.headers.get("Host", "")
    if not config.auth_enabled and not host_allowed(host, config.allowed_host_set):
        return _refuse(421, "misdirected_request",
                       f"this coordinator has no tokens configured and answers only "
                       f"loopback host names (localhost, 127.0.0.1, [::1]) or those in "
                       f"SCHEDULER_ALLOWED_HOSTS; found Host {_shown(host)}", "Host")
    origin = request.headers.get("Origin")
    if origin is not None and request.method in WRITE_METHODS:
        forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
        if not origin_allowed(origin, host, request.scheme, forwarded,
                              config.allowed_origin_set):
            return _refuse(403, "forbidden",
                           f"a write from another site is refused: Origin {_shown(origin)} "
                           f"is neither this coordinator's ({origin_of(request.scheme, host)}) "
                           f"nor in SCHEDULER_ALLOWED_ORIGINS", "Origin")
    if has_body():
        expected = FORM if (request.method, request.path) in FORM_ROUTES else JSON
        if request.mimetype != expected:
            found = request.headers.get("Content-Type")
            return _refuse(415, "unsupported_media_type",
                           f"expected a body with Content-Type: {expected}, found "
                           f"{_shown(found) if found is not None else 'none'}",
                           "Content-Type")
    return None
