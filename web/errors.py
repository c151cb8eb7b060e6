"""API errors: every 4xx/5xx is a JSON :class:`schema.wire.ErrorBody`.

    ApiError(status, error, message, field)   raised by handlers, rendered as JSON

msgspec's validation messages ("Expected `int`, got `str` - at `$.maxAttempts`") are
turned into a ``field`` ("maxAttempts") and a message that says what was expected.
A problem with the document as a whole (not JSON, not an object) names ``body``.

A 5xx never carries an exception's text (it may name hosts, paths or SQL): it carries
an ``errorId`` from :func:`new_error_id`, and the log line with the details carries
the same ``error_id``.
"""

from __future__ import annotations

import re
import secrets

import msgspec

from scheduler_core.schema.wire import ErrorBody

_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)


class ApiError(Exception):
    def __init__(self, status: int, error: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = ErrorBody(error=error, message=message, field=field)


def new_error_id() -> str:
    """A random id that joins a 5xx answer to the log line holding its details."""
    return secrets.token_hex(8)


def field_path(path: str) -> str | None:
    """``.payload.url`` -> ``payload.url``; ``[0].type`` -> ``[0].type``; '' -> None."""
    path = path.lstrip(".")
    return path or None


def from_msgspec(exc: msgspec.MsgspecError, *, prefix: str = "") -> ApiError:
    """A 400 from a msgspec decode/validation error, naming the field."""
    text = str(exc)
    if isinstance(exc, msgspec.ValidationError):
        m = _AT.match(text)
        msg = m.group("msg") if m else text
        path = field_path(m.group("path") or "") if m else None
        missing = re.match(r"Object missing required field `([^`]+)`", msg)
        if missing:
            path = ".".join(p for p in (path, missing.group(1)) if p)
            msg = "required field is missing"
        unknown = re.match(r"Object contains unknown field `([^`]+)`", msg)
        if unknown:
            path = ".".join(p for p in (path, unknown.group(1)) if p)
            msg = "unknown field"
        field = (prefix + path) if path else (prefix.rstrip(".") or "body")
        return ApiError(400, "validation_error", msg, field)
    return ApiError(400, "malformed_json", f"the body is not valid JSON: {text}",
                    prefix.rstrip(".") or "body")
