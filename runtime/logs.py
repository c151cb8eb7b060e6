"""structlog set-up: one JSON object per line in production, a readable console
format on a terminal. Events are snake_case past tense (``job_claimed``); context keys
come from a fixed set (job_id, run_id, worker_id, attempt, type, queue, actor).

Every JSON line carries ``timestamp`` (ISO-8601, UTC, ``Z``), ``level``, ``event`` and
``logger`` (the name given to ``structlog.get_logger(name)``), plus ``process``
(coordinator or worker) when the entry point names it.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import msgspec
import structlog


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


def configure(fmt: str = "auto", level: str = "info", *, process: str | None = None) -> None:
    """Configure structlog (and stdlib logging) for this process."""
    use_console = fmt == "console" or (fmt == "auto" and sys.stdout.isatty())
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
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty())
    else:
        processors += [structlog.processors.dict_tracebacks]
        renderer = structlog.processors.JSONRenderer(serializer=dumps)
    numeric = logging.getLevelName(level.upper())
    structlog.configure(
        processors=[*processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(
            numeric if isinstance(numeric, int) else logging.INFO),
        logger_factory=NamedPrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
