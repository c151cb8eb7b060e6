"""Issue 12, item 6: guessing tokens is throttled per client address, for bearer tokens
on any route and for the dashboard's login form. After 5 failures the address gets 429
with Retry-After (the right token too) until the lockout is over; the coordinator logs
one ``auth_throttled`` line per burst, not one per attempt."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from tests.support import Coordinator, running_coordinator, wait_until

ADMIN = "throttle-admin-" + "a" * 24
WORKER = "throttle-worker-" + "w" * 24
WRONG = "throttle-wrong-" + "x" * 24
BASE_SECONDS = 0.5  # the first lockout: short, so the tests wait for its end by polling
ENV = {"SCHEDULER_ADMIN_TOKEN": ADMIN, "SCHEDULER_WORKER_TOKEN": WORKER,
       "SCHEDULER_AUTH_THROTTLE_BASE_SECONDS": str(BASE_SECONDS)}


@pytest.fixture
def coordinator(db_dsn: str) -> Iterator[Coordinator]:
    """A coordinator per test: the throttle's state is the process's own."""
    with running_coordinator(db_dsn, env=ENV) as c:
        yield c


@pytest.fixture
def client(coordinator: Coordinator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=coordinator.url, timeout=10) as c:
        yield c


def jobs(client: httpx.Client, token: str) -> httpx.Response:
    return client.get("/api/jobs", headers={"Authorization": f"Bearer {token}"})


def sign_in(client: httpx.Client, token: str) -> httpx.Response:
    return client.post("/login", data={"token": token})


def throttled_lines(c: Coordinator) -> list[dict[str, object]]:
    lines = []
    for line in c.output().splitlines():
        if '"auth_throttled"' in line:
            lines.append(json.loads(line))
    return lines


def test_the_sixth_wrong_bearer_token_gets_429_with_retry_after(
        client: httpx.Client) -> None:
    for _ in range(5):
        assert 401 == jobs(client, WRONG).status_code
    resp = jobs(client, WRONG)
    assert 429 == resp.status_code
    assert 1 <= int(resp.headers["Retry-After"])
    body = resp.json()
    assert "too_many_attempts" == body["error"]
    assert "Authorization" == body["field"]


def test_the_right_token_is_refused_during_the_lockout_and_accepted_after_it(
        client: httpx.Client) -> None:
    for _ in range(5):
        jobs(client, WRONG)
    assert 429 == jobs(client, ADMIN).status_code
    wait_until(lambda: jobs(client, ADMIN).status_code == 200, timeout=10,
               what="the admin token to be accepted after the lockout")


def test_the_worker_api_is_throttled_too(client: httpx.Client) -> None:
    for _ in range(5):
        resp = client.post("/api/workers/deregister", json={"workerId": "w"},
                           headers={"Authorization": f"Bearer {WRONG}"})
        assert 401 == resp.status_code
    resp = client.post("/api/workers/deregister", json={"workerId": "w"},
                       headers={"Authorization": f"Bearer {WORKER}"})
    assert 429 == resp.status_code


def test_a_burst_of_guesses_is_logged_once(coordinator: Coordinator,
                                           client: httpx.Client) -> None:
    for _ in range(40):
        jobs(client, WRONG)
    wait_until(lambda: throttled_lines(coordinator), what="the auth_throttled line")
    # Outlast the first lockout and fail again: the lockout doubles, still one line.
    wait_until(lambda: jobs(client, WRONG).status_code == 401, timeout=10,
               what="the end of the first lockout")
    assert 429 == jobs(client, WRONG).status_code
    assert 200 != jobs(client, ADMIN).status_code
    [line] = throttled_lines(coordinator)
    assert 5 == line["failures"]
    assert WRONG not in coordinator.output()


def test_a_success_resets_the_count(client: httpx.Client) -> None:
    for _ in range(4):
        assert 401 == jobs(client, WRONG).status_code
    assert 200 == jobs(client, ADMIN).status_code
    for _ in range(4):
        assert 401 == jobs(client, WRONG).status_code
    assert 200 == jobs(client, ADMIN).status_code


def test_the_login_form_is_throttled_the_right_token_too_until_the_lockout_ends(
        coordinator: Coordinator, client: httpx.Client) -> None:
    for _ in range(5):
        assert 401 == sign_in(client, WRONG).status_code
    resp = sign_in(client, WRONG)
    assert 429 == resp.status_code
    assert 1 <= int(resp.headers["Retry-After"])
    assert "too_many_attempts" == resp.json()["error"]
    assert "token" == resp.json()["field"]
    assert 429 == sign_in(client, ADMIN).status_code
    assert "scheduler_session" not in client.cookies
    wait_until(lambda: sign_in(client, ADMIN).status_code == 303, timeout=10,
               what="the login to succeed after the lockout")
    assert 1 == len(throttled_lines(coordinator))
