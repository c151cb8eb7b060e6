"""Structured logs: the JSON line format of runtime/logs.py, and the house rules for
event names (snake_case, past tense) checked on every log call in the code."""

from __future__ import annotations

import ast
import datetime as dt
import io
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from scheduler_core.runtime import logs

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("runtime", "actors", "handlers", "web", "schema")
LEVELS = {"debug", "info", "warning", "error", "exception", "critical"}
# Past participles that do not end in -ed.
IRREGULAR = {"lost", "broken", "sent", "begun", "done", "run", "found", "held", "kept",
             "left", "set", "taken", "given", "gone", "seen", "written", "thrown", "shut"}
# The particle of a phrasal verb: the verb before it carries the tense (gave_up).
PARTICLES = {"up", "out", "down", "off", "over", "back", "in"}
# Events already named otherwise, to be renamed by their module's owner.
NOT_YET_RENAMED: set[str] = set()


def configured(monkeypatch: pytest.MonkeyPatch, level: str, **kw: str) -> io.StringIO:
    """structlog configured as in production, its stdout a buffer."""
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    logs.configure("json", level, **kw)
    monkeypatch.undo()
    return out


@pytest.fixture
def json_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """JSON logs at debug level from a "worker" process; defaults restored after."""
    try:
        yield configured(monkeypatch, "debug", process="worker")
    finally:
        structlog.contextvars.clear_contextvars()
        structlog.reset_defaults()


def lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines() if line]


def test_a_json_line_has_utc_timestamp_level_event_logger_and_process(
        json_logs: io.StringIO) -> None:
    structlog.get_logger("actors.executor").info("run_finished", job_id="j", outcome="Succeeded")
    [line] = lines(json_logs)
    assert {"timestamp", "level", "event", "logger", "process", "job_id", "outcome"} == set(line)
    assert ("info", "run_finished", "actors.executor", "worker") == (
        line["level"], line["event"], line["logger"], line["process"])
    stamp = str(line["timestamp"])
    assert stamp.endswith("Z")
    assert dt.timedelta(0) == dt.datetime.fromisoformat(stamp).utcoffset()


def test_the_level_is_the_method_called(json_logs: io.StringIO) -> None:
    log = structlog.get_logger("web")
    log.warning("completion_refused")
    log.error("request_failed")
    assert ["warning", "error"] == [line["level"] for line in lines(json_logs)]


def test_a_logger_made_without_a_name_has_no_logger_key(
        json_logs: io.StringIO) -> None:
    structlog.get_logger().info("thing_happened")
    [line] = lines(json_logs)
    assert "logger" not in line


def test_an_explicit_logger_key_is_kept(json_logs: io.StringIO) -> None:
    structlog.get_logger("web").info("thing_happened", logger="custom")
    [line] = lines(json_logs)
    assert "custom" == line["logger"]


def test_exceptions_are_rendered_as_structured_tracebacks(
        json_logs: io.StringIO) -> None:
    try:
        raise ValueError("bad value")
    except ValueError as exc:
        structlog.get_logger("web").error("request_failed", exc_info=exc)
    [line] = lines(json_logs)
    assert "ValueError" == line["exception"][0]["exc_type"]  # type: ignore[index]


def test_levels_below_the_configured_one_are_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    out = configured(monkeypatch, "warning")
    try:
        log = structlog.get_logger("web")
        log.info("not_shown")
        log.warning("shown")
        assert ["shown"] == [line["event"] for line in lines(out)]
    finally:
        structlog.reset_defaults()


# --- event names ---------------------------------------------------------------------

def structlog_loggers(tree: ast.Module) -> set[str]:
    """Names bound to ``structlog.get_logger(...)`` (stdlib loggers are not checked)."""
    names = set()
    for node in ast.walk(tree):
        if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
                and isinstance(node.value.func, ast.Attribute)
                and node.value.func.attr == "get_logger"
                and isinstance(node.value.func.value, ast.Name)
                and node.value.func.value.id == "structlog"):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return names


def log_events() -> list[tuple[str, int, str]]:
    """(file, line, event) of every ``log.<level>("event", ...)`` call in the code."""
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text())
            loggers = structlog_loggers(tree)
            for node in ast.walk(tree):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr in LEVELS
                        and isinstance(node.func.value, ast.Name)
                        and node.func.value.id in loggers
                        and node.args and isinstance(node.args[0], ast.Constant)
                        and isinstance(node.args[0].value, str)):
                    found.append((str(path.relative_to(ROOT)), node.lineno, node.args[0].value))
    return found


def test_the_code_logs_events() -> None:
    events = {e for _, _, e in log_events()}
    assert {"run_finished", "actor_started", "actor_crashed", "actor_restarted",
            "supervisor_gave_up", "lease_reaped", "worker_registered"} <= events


@pytest.mark.parametrize("where", log_events(), ids=lambda w: f"{w[0]}:{w[1]}:{w[2]}")
def test_event_names_are_snake_case_past_tense(where: tuple[str, int, str]) -> None:
    event = where[2]
    assert re.fullmatch(r"[a-z]+(_[a-z0-9]+)*", event), f"{event!r} is not snake_case"
    if event in NOT_YET_RENAMED:
        return
    words = event.split("_")
    verb = words[-2] if words[-1] in PARTICLES and len(words) > 1 else words[-1]
    assert verb.endswith("ed") or verb in IRREGULAR | {"gave", "took", "went", "ran"}, (
        f"{event!r} does not end in a past tense")
