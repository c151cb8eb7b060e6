"""structlog set-up: one JSON object per line in production, a readable console
format on a terminal. Events are snake_case past tense (``job_claimed``); context keys
come from a fixed set (job_id, run_id, worker_id, attempt, type, queue, actor).

Every JSON line carries ``timestamp`` (ISO-8601, UTC, ``Z``), ``level``, ``event`` and
``logger`` (the name given to ``structlog.get_logger(name)``), plus ``process``
(coordinator or worker) when the entry point names it.

Secrets stay out of the logs in two ways. No traceback shows local variables (structlog
and rich show them by default, and a frame's locals hold the tokens and DATABASE_URL:
an ``env`` mapping, a Config, a connection string). And, as a second line of defence,
every rendered line (structlog's and the stdlib's) has each secret value the process was
configured with (:func:`secrets_of`) replaced by ``[redacted]``: one precompiled
alternation over the final string, only when there are secrets at all.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import unquote, urlsplit

import msgspec
import structlog

if TYPE_CHECKING:
    from scheduler_core.runtime.config import Config

REDACTED = "[redacted]"
# A DATABASE_URL password shorter than this is not redacted on its own (the whole URL
# still is): replacing "pw" in every line would garble the logs and protect nothing.
MIN_PASSWORD_LENGTH = 6
_KV_PASSWORD = re.compile(r"(?:^|\s)password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)")


class NamedPrintLogger(structlog.PrintLogger):
    """A PrintLogger that remembers the name it was asked for."""

    def __init__(self, file: TextIO | None = None, name: str | None = None) -> None:
        super().__init__(file)
        self.name = name


class NamedPrintLoggerFactory:
    """``structlog.get_logger("web")`` gives a logger whose ``name`` is ``"web"``."""

    def __init__(self, file: TextIO | None = None) -> None:
        self._file = file

    def __call__(self, *args: Any) -> NamedPrintLogger:
        name = args[0] if args and isinstance(args[0], str) else None
        return NamedPrintLogger(self._file, name)


def add_logger_name(logger: Any, method_name: str,
                    event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Add ``logger``: the name the logger was created with (if any, and not set)."""
    name = getattr(logger, "name", None)
    if name and "logger" not in event_dict:
        event_dict["logger"] = name
    return event_dict


def _fallback(obj: Any) -> Any:
    """What the JSON renderer writes for a value JSON has no type for: its
    ``__structlog__()`` if it has one (as structlog's own renderer does), else repr."""
    method = getattr(obj, "__structlog__", None)
    return method() if callable(method) else repr(obj)


_json = msgspec.json.Encoder(enc_hook=_fallback)


def dumps(event_dict: Any, **_ignored: Any) -> str:
    """structlog's JSON serializer here: msgspec, several times faster than ``json``
    (one line per job run is logged), same keys in the same order."""
    return _json.encode(event_dict).decode()


def secrets_of(config: Config) -> list[str]:
    """The values no log line may carry: each admin, read and worker token, the client
    token, DATABASE_URL (and the read and direct URLs) whole and its password (URL or ``key=value`` form). A token
    configured as ``name:token`` is redacted without its name: the name is what the
    logs show of it."""
    from scheduler_core.runtime.config import named_tokens

    found = [*config.admin_tokens, *config.read_tokens, *config.worker_tokens]
    found += [t.secret for t in named_tokens(config.token)]
    for url in (config.database_url, config.read_database_url, config.direct_database_url):
        found += _url_secrets(url.strip())
    return found


def _url_secrets(url: str) -> list[str]:
    """A connection string whole and its password (URL or ``key=value`` form)."""
    if not url:
        return []
    found = [url]
    password: str | None = None
    try:
        password = urlsplit(url).password if "://" in url else None
    except ValueError:  # not a URL after all
        password = None
    if password is None and (match := _KV_PASSWORD.search(url)):
        password = match.group(1).strip("'")
    if password:
        found += [password, unquote(password)]
    return found


class Redactor:
    """Replaces every secret value in a string with ``[redacted]``.

    One regular expression, the alternation of the secrets (longest first, so the whole
    DATABASE_URL wins over the password inside it), each also in its JSON-escaped form.
    It runs only on a line that holds one of them: a plain substring test per secret
    (C speed, about a microsecond for a canonical line) finds nothing on almost every
    line. Built once per :func:`configure`; with no secrets there is no Redactor at all.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        forms: set[str] = set()
        for secret in secrets:
            if len(secret) < MIN_PASSWORD_LENGTH:
                continue
            forms.add(secret)
            forms.add(_json.encode(secret).decode()[1:-1])
        self._forms = tuple(sorted(forms, key=len, reverse=True))
        self._pattern = re.compile("|".join(re.escape(f) for f in self._forms))

    def __bool__(self) -> bool:
        return bool(self._forms)

    def redact(self, text: str) -> str:
        for form in self._forms:
            if form in text:
                return self._pattern.sub(REDACTED, text)
        return text

    def __call__(self, logger: Any, method_name: str, rendered: Any) -> Any:
        """The last structlog processor: it gets the renderer's string."""
        if isinstance(rendered, str):
            return self.redact(rendered)
        return rendered


class _RedactingFormatter(logging.Formatter):
    """The stdlib's lines (libraries' warnings and tracebacks), redacted the same way."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__(logging.BASIC_FORMAT)
        self._redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        return self._redactor.redact(super().format(record))


def _console_exception_formatter() -> structlog.typing.ExceptionRenderer:
    """rich's tracebacks without their local variables (rich shows them by default);
    the plain traceback when rich is not installed."""
    try:
        import rich  # noqa: F401
    except ImportError:
        return structlog.dev.plain_traceback
    return structlog.dev.RichTracebackFormatter(show_locals=False)


def configure(fmt: str = "auto", level: str = "info", *, process: str | None = None,
              secrets: Iterable[str] = ()) -> None:
    """Configure structlog (and stdlib logging) for this process; ``secrets`` (see
    :func:`secrets_of`) are replaced by ``[redacted]`` in every line."""
    use_console = fmt == "console" or (fmt == "auto" and sys.stdout.isatty())
    redactor = Redactor(secrets)
    processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if process:
        structlog.contextvars.bind_contextvars(process=process)
    renderer: structlog.typing.Processor
    if use_console:
        renderer = structlog.dev.ConsoleRenderer(
            colors=sys.stdout.isatty(), exception_formatter=_console_exception_formatter())
    else:
        processors += [structlog.processors.ExceptionRenderer(
            structlog.tracebacks.ExceptionDictTransformer(show_locals=False))]
        renderer = structlog.processors.JSONRenderer(serializer=dumps)
    numeric = logging.getLevelName(level.upper())
    structlog.configure(
        processors=[*processors, renderer, *([redactor] if redactor else [])],
        wrapper_class=structlog.make_filtering_bound_logger(
            numeric if isinstance(numeric, int) else logging.INFO),
        logger_factory=NamedPrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if redactor:
        for handler in logging.getLogger().handlers:
            handler.setFormatter(_RedactingFormatter(redactor))
