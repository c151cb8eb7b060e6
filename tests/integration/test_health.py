"""/health against a real coordinator and a real (or unreachable) database."""

from __future__ import annotations

import httpx

from tests.support import Coordinator, free_port, wait_until


def test_health_is_ok_with_the_database_reachable(coordinator: Coordinator) -> None:
    resp = httpx.get(coordinator.url + "/health")
    assert (200, "ok") == (resp.status_code, resp.json()["status"])


def test_health_is_503_with_a_json_reason_when_the_database_is_unreachable(
        processes: list, db_dsn: str) -> None:
    closed = f"postgresql://nobody@127.0.0.1:{free_port()}/nothing?connect_timeout=1"
    c = Coordinator(closed, extra=["--no-migrate"])
    processes.append(c)
    resp = wait_until(lambda: httpx.get(c.url + "/health", timeout=3), timeout=20,
                      what="a /health answer")
    assert 503 == resp.status_code
    assert "unavailable" == resp.json()["status"]
    assert resp.json()["reason"]
