"""Issue 12, item 1: no secret reaches a log line.

A crashed child of ``scheduler up`` used to be logged with its traceback's local
variables (``env`` in runtime/processes.py: every token and DATABASE_URL, on every
restart). Now no traceback shows locals, and every line has the configured secrets
replaced by ``[redacted]`` as a second line of defence.
"""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from scheduler_core.runtime import logs
from scheduler_core.runtime.config import load_config
from tests.security.up_process import Up, secret_settings
from tests.support import wait_until

ADMIN = "admin-" + "a" * 30
OLD_ADMIN = "admin-old-" + "o" * 30
READ = "read-" + "r" * 30
WORKER = "worker-" + "w" * 30
CLIENT = "client-" + "c" * 30
PASSWORD = "s3cret-pass word"  # a space: URL-quoted in the DATABASE_URL
URL = "postgresql://app:s3cret-pass%20word@db.example:5432/jobs"
SECRETS = (ADMIN, OLD_ADMIN, READ, WORKER, CLIENT, PASSWORD, "s3cret-pass%20word", URL)


def secret_config() -> object:
    return load_config({"SCHEDULER_ADMIN_TOKEN": f"{OLD_ADMIN},{ADMIN}",
                        "SCHEDULER_READ_TOKEN": READ, "SCHEDULER_WORKER_TOKEN": WORKER,
                        "SCHEDULER_TOKEN": CLIENT, "DATABASE_URL": URL})


@pytest.fixture
def json_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """JSON logs configured with the secrets above, written to the buffer yielded (the
    stdlib's lines too)."""
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", out)
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers = []
    try:
        logs.configure("json", "info", secrets=logs.secrets_of(secret_config()))  # type: ignore[arg-type]
        monkeypatch.undo()
        yield out
    finally:
        root.handlers = saved
        structlog.contextvars.clear_contextvars()
        structlog.reset_defaults()


def fail_with_secrets_in_locals() -> None:
    env = {"SCHEDULER_ADMIN_TOKEN": ADMIN, "DATABASE_URL": URL}  # noqa: F841 (a local)
    raise RuntimeError("the coordinator exited")


def test_the_secrets_of_a_config_are_each_token_the_url_and_its_password() -> None:
    found = set(logs.secrets_of(secret_config()))  # type: ignore[arg-type]
    assert {ADMIN, OLD_ADMIN, READ, WORKER, CLIENT, URL, PASSWORD} <= found


def test_a_key_value_database_url_gives_its_password_too() -> None:
    config = load_config({"DATABASE_URL": "host=db user=app password='pa ss-word' dbname=x"})
    assert "pa ss-word" in logs.secrets_of(config)


def test_a_logged_traceback_shows_no_local_variables(json_logs: io.StringIO) -> None:
    try:
        fail_with_secrets_in_locals()
    except RuntimeError:
        structlog.get_logger("t").exception("actor_crashed")
    [line] = [json.loads(text) for text in json_logs.getvalue().splitlines()]
    frames = line["exception"][0]["frames"]
    assert "fail_with_secrets_in_locals" in [f["name"] for f in frames]
    assert [] == [f for f in frames if "locals" in f]


def test_the_console_traceback_shows_no_local_variables(
        monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    try:
        logs.configure("console", "info")  # no secrets: only the locals are left out
        try:
            fail_with_secrets_in_locals()
        except RuntimeError:
            structlog.get_logger("t").exception("actor_crashed")
    finally:
        structlog.reset_defaults()
    text = out.getvalue()
    assert "fail_with_secrets_in_locals" in text
    assert ADMIN not in text
    assert URL not in text


def test_every_secret_in_an_event_is_redacted_wherever_it_is(json_logs: io.StringIO) -> None:
    try:
        raise ValueError(f"cannot connect to {URL}")
    except ValueError:
        structlog.get_logger("t").exception(
            "request_failed", header=f"Bearer {ADMIN}", nested={"k": [READ, f"x{WORKER}y"]},
            old=OLD_ADMIN, client=CLIENT, password=PASSWORD, note="nothing secret here")
    text = json_logs.getvalue()
    assert [] == [s for s in SECRETS if s in text]
    line = json.loads(text)
    assert "Bearer [redacted]" == line["header"]
    assert {"k": ["[redacted]", "x[redacted]y"]} == line["nested"]
    assert "cannot connect to [redacted]" == line["exception"][0]["exc_value"]
    assert "nothing secret here" == line["note"]


def test_the_stdlib_lines_are_redacted_too(json_logs: io.StringIO) -> None:
    logging.getLogger("somelibrary").warning("could not reach %s", URL)
    text = json_logs.getvalue()
    assert "could not reach [redacted]" in text
    assert URL not in text


def test_with_no_secrets_configured_nothing_is_replaced() -> None:
    assert not logs.Redactor([])
    assert f"token {ADMIN}" == logs.Redactor([]).redact(f"token {ADMIN}")


@pytest.mark.slow
def test_a_crashed_child_of_up_is_logged_without_any_secret(
        db_dsn: str, tmp_path: Path) -> None:
    env = secret_settings(db_dsn)
    up = Up(tmp_path, env)
    try:
        up.wait_up()
        [coordinator] = up.started("coordinator")
        os.kill(coordinator, signal.SIGKILL)
        wait_until(lambda: len(up.started("coordinator")) >= 2, timeout=60,
                   what="the coordinator to be restarted")
        crashes = wait_until(
            lambda: [e for e in up.events() if e.get("event") == "actor_crashed"
                     and e.get("actor") == "coordinator"],
            timeout=30, what="actor_crashed for the coordinator")
    finally:
        up.stop(timeout=30)
    assert "exception" in crashes[0]  # the crash was logged, with its traceback
    text = up.output()
    assert "ProcessExited" in text
    leaked = [name for name, value in env.items() if value in text]
    assert [] == leaked
