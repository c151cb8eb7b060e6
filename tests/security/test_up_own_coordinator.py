"""Issue 12, item 12: a second ``scheduler up`` on a busy port fails, and ``up`` only
takes its own coordinator for ready.

``up`` checks the port before it starts anything (exit 1, a message naming the port,
no process started). It gives its coordinator a random start id
(SCHEDULER_START_ID) that /health/ready returns, and its readiness probe requires it,
so another system's coordinator answering on the port is never taken for its own.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from scheduler_core.command import up
from tests.security.up_process import Up
from tests.support import Coordinator, free_port, running_coordinator


def assert_refused_before_starting(second: Up, port: int) -> None:
    assert 1 == second.wait(timeout=60)
    text = second.output()
    assert re.search(rf"port {port} on 127\.0\.0\.1 is already in use", text), text
    assert "scheduler-core is up" not in text
    assert [] == [e for e in second.events() if e.get("event") == "process_started"]
    assert "migrations_checked" not in text  # nothing started, nothing touched


@pytest.mark.slow
def test_up_on_a_port_a_coordinator_holds_exits_1_naming_the_port_and_starts_nothing(
        db_dsn: str, tmp_path: Path,
        start_coordinator: Callable[..., Coordinator]) -> None:
    first = start_coordinator()
    second = Up(tmp_path, {"DATABASE_URL": db_dsn}, port=first.port)
    try:
        assert_refused_before_starting(second, first.port)
    finally:
        second.stop()
    assert 200 == httpx.get(first.url + "/health", timeout=10).status_code  # untouched


def test_up_on_a_port_something_listens_on_exits_1_naming_it(
        db_dsn: str, tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        second = Up(tmp_path, {"DATABASE_URL": db_dsn}, port=port)
        try:
            assert_refused_before_starting(second, port)
        finally:
            second.stop()


def test_a_port_nothing_listens_on_is_free() -> None:
    assert not up.port_in_use("127.0.0.1", free_port())


def test_a_port_something_listens_on_is_in_use() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        assert up.port_in_use("127.0.0.1", listener.getsockname()[1])


def test_health_ready_returns_the_start_id_it_was_given(module_dsn: str) -> None:
    with running_coordinator(module_dsn, env={"SCHEDULER_START_ID": "start-4f2a"}) as c:
        body = httpx.get(c.url + "/health/ready", timeout=10).json()
    assert "start-4f2a" == body["startId"]


def test_health_ready_has_no_start_id_when_none_was_given(api: Coordinator) -> None:
    assert "startId" not in httpx.get(api.url + "/health/ready", timeout=10).json()


async def test_the_readiness_probe_takes_only_the_coordinator_with_its_own_id(
        module_dsn: str) -> None:
    with running_coordinator(module_dsn, env={"SCHEDULER_START_ID": "ours"}) as c:
        assert await up.own_coordinator_ready(c.url, "ours")
        assert not await up.own_coordinator_ready(c.url, "another-start")


async def test_the_readiness_probe_does_not_take_a_coordinator_without_an_id(
        api: Coordinator) -> None:
    assert not await up.own_coordinator_ready(api.url, "ours")


async def test_the_readiness_probe_of_a_port_nobody_answers_is_false() -> None:
    assert not await up.own_coordinator_ready(f"http://127.0.0.1:{free_port()}", "ours")


@pytest.mark.parametrize(("host", "url"), [
    ("127.0.0.1", "http://127.0.0.1:5000"), ("localhost", "http://localhost:5000"),
    ("0.0.0.0", "http://127.0.0.1:5000"), ("::", "http://127.0.0.1:5000"),
    ("", "http://127.0.0.1:5000"), ("::1", "http://[::1]:5000"),
    ("10.1.2.3", "http://10.1.2.3:5000")])
def test_the_workers_of_up_reach_a_wildcard_bind_on_loopback(host: str, url: str) -> None:
    assert url == up.loopback_url(host, 5000)
