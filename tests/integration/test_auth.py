"""Authentication against a real coordinator started with all three tokens: each role
against each group of endpoints, workers with the right and a wrong token, the
dashboard's cookie login with its CSRF header, and the loopback rule of a coordinator
started without tokens. The dashboard's server-side sessions in depth:
tests/security/test_dashboard_sessions.py."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.support import (
    ROOT,
    Coordinator,
    Worker,
    free_port,
    running_coordinator,
    submit,
    wait_until,
)

ADMIN = "it-admin-" + "a" * 24
READ = "it-read-" + "r" * 24
WORKER = "it-worker-" + "w" * 24
UNKNOWN = "it-unknown-" + "u" * 24
TOKENS = {"SCHEDULER_ADMIN_TOKEN": f"it-old-admin-{'o' * 20},{ADMIN}",  # rotation
          "SCHEDULER_READ_TOKEN": READ, "SCHEDULER_WORKER_TOKEN": WORKER,
          "SCHEDULER_CLAIM_WAIT_SECONDS": "1", "SCHEDULER_HEARTBEAT_SECONDS": "0.2",
          # Unknown tokens are tried on purpose here, many in a row: not a guesser
          # (the throttle has tests/security/test_login_throttle.py).
          "SCHEDULER_AUTH_THROTTLE_FAILURES": "0"}
FUTURE = "2999-01-01T00:00:00Z"
CREDENTIALS = {"none": None, "unknown": UNKNOWN, "read": READ, "admin": ADMIN,
               "worker": WORKER}


def bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


@pytest.fixture(scope="module")
def api(module_dsn: str) -> Iterator[Coordinator]:
    with running_coordinator(module_dsn, env=TOKENS) as c:
        yield c


def scheduled_job(url: str) -> str:
    """A job due in the far future, submitted as the admin."""
    return str(submit(url, headers=bearer(ADMIN), runAt=FUTURE)["id"])


def schedule(url: str) -> str:
    return str(submit(url, headers=bearer(ADMIN), cron="0 3 * * *")["id"])


# -- each role against each group of endpoints -------------------------------------------

Call = Callable[[str, dict[str, str]], httpx.Response]


@dataclass(frozen=True)
class Endpoint:
    name: str
    call: Call
    roles: frozenset[str]  # who may call it; "public": anyone, no token needed
    ok: tuple[int, ...] = (200,)


def get(path: str) -> Call:
    return lambda url, h: httpx.get(url + path, headers=h, timeout=10)


def post(path: str | Callable[[str], str], body: Any = None) -> Call:
    def call(url: str, h: dict[str, str]) -> httpx.Response:
        where = path(url) if callable(path) else path
        return httpx.post(url + where, json=body, headers=h, timeout=10)
    return call


def as_registered(path: str, body: dict[str, Any]) -> Call:
    """POST ``body`` as a worker id registered just before with the same credentials,
    with the secret its registration answered (when it was let register)."""
    def call(url: str, h: dict[str, str]) -> httpx.Response:
        worker_id = f"auth-{uuid.uuid4().hex[:8]}"
        reg = httpx.post(url + "/api/workers/register", json={
            "workerId": worker_id, "hostname": "h", "pid": 1, "capacity": 1},
            headers=h, timeout=10)
        secret = {"X-Worker-Secret": reg.json()["workerSecret"]} if reg.status_code == 201 else {}
        return httpx.post(url + path, json={**body, "workerId": worker_id},
                          headers={**h, **secret}, timeout=10)
    return call


def sse(url: str, h: dict[str, str]) -> httpx.Response:
    with httpx.stream("GET", url + "/api/dashboard/events", headers=h, timeout=10) as resp:
        if resp.status_code == 200:
            assert resp.headers["content-type"].startswith("text/event-stream")
        else:
            resp.read()
        return resp


READERS = frozenset({"read", "admin"})
ADMINS = frozenset({"admin"})
WORKERS = frozenset({"worker"})
PUBLIC = frozenset({"public"})
WORKER_ID = "auth-table-worker"

ENDPOINTS = [
    # the public API: reads
    Endpoint("list jobs", get("/api/jobs"), READERS),
    Endpoint("get job", lambda url, h: httpx.get(
        f"{url}/api/jobs/{scheduled_job(url)}", headers=h, timeout=10), READERS),
    Endpoint("list schedules", get("/api/schedules"), READERS),
    Endpoint("get schedule", lambda url, h: httpx.get(
        f"{url}/api/schedules/{schedule(url)}", headers=h, timeout=10), READERS),
    Endpoint("openapi", get("/openapi.json"), READERS),
    # the public API: writes
    Endpoint("submit", post("/api/jobs", {"type": "noop", "runAt": FUTURE}), ADMINS, (201,)),
    Endpoint("submit batch", post("/api/jobs/batch", {"jobs": [{"type": "noop", "runAt": FUTURE}]}),
             ADMINS, (201,)),
    Endpoint("cancel", post(lambda url: f"/api/jobs/{scheduled_job(url)}/cancel"), ADMINS),
    Endpoint("pause schedule", post(lambda url: f"/api/schedules/{schedule(url)}/pause"),
             ADMINS),
    Endpoint("delete schedule", lambda url, h: httpx.delete(
        f"{url}/api/schedules/{schedule(url)}", headers=h, timeout=10), ADMINS),
    Endpoint("list sessions", get("/api/sessions"), ADMINS),
    # the worker API
    Endpoint("register", post("/api/workers/register", {
        "workerId": WORKER_ID, "hostname": "h", "pid": 1, "capacity": 1}), WORKERS, (201,)),
    Endpoint("heartbeat", as_registered("/api/workers/heartbeat", {}), WORKERS),
    Endpoint("claim", as_registered("/api/workers/claim", {
        "max": 1, "queues": ["auth-nothing"], "waitSeconds": 0}), WORKERS),
    # the dashboard
    Endpoint("dashboard page", get("/"), READERS),
    Endpoint("dashboard overview", get("/api/dashboard/overview"), READERS),
    Endpoint("dashboard events", sse, READERS),
    # operations: public by default
    Endpoint("health", get("/health"), PUBLIC),
    Endpoint("readiness", get("/health/ready"), PUBLIC),
    Endpoint("metrics", get("/metrics"), PUBLIC),
    Endpoint("login page", get("/login"), PUBLIC),
    Endpoint("static file", get("/dashboard/static/app.js"), PUBLIC),
]


def expected_statuses(endpoint: Endpoint, who: str) -> tuple[int, ...]:
    if "public" in endpoint.roles or who in endpoint.roles:
        return endpoint.ok
    return (401,) if who in ("none", "unknown") else (403,)


@pytest.mark.parametrize("who", list(CREDENTIALS))
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
def test_a_role_gets_what_the_table_says(api: Coordinator, endpoint: Endpoint,
                                         who: str) -> None:
    resp = endpoint.call(api.url, bearer(CREDENTIALS[who]))
    assert resp.status_code in expected_statuses(endpoint, who), resp.text
    if resp.status_code == 401:
        assert ("unauthorized", True) == (resp.json()["error"],
                                          resp.headers["WWW-Authenticate"].startswith("Bearer"))
    if resp.status_code == 403:
        assert "forbidden" == resp.json()["error"]


def test_a_malformed_authorization_header_is_a_401(api: Coordinator) -> None:
    resp = httpx.get(api.url + "/api/jobs", headers={"Authorization": f"Token {ADMIN}"})
    assert (401, "unauthorized") == (resp.status_code, resp.json()["error"])


def test_a_rotated_out_admin_token_is_still_accepted_until_removed(api: Coordinator) -> None:
    old = TOKENS["SCHEDULER_ADMIN_TOKEN"].split(",")[0]
    assert 200 == httpx.get(api.url + "/api/jobs", headers=bearer(old)).status_code


# -- workers ---------------------------------------------------------------------------


def job_status(url: str, job_id: str) -> str:
    return str(httpx.get(f"{url}/api/jobs/{job_id}", headers=bearer(READ),
                         timeout=10).json()["status"])


def test_a_worker_with_the_worker_token_runs_a_job(
        api: Coordinator, start_worker: Callable[..., Worker]) -> None:
    start_worker(api.url, env={"SCHEDULER_WORKER_TOKEN": WORKER,
                               "SCHEDULER_HEARTBEAT_SECONDS": "0.2"},
                 extra=["--queues", "auth-ok"])
    job = submit(api.url, headers=bearer(ADMIN), queue="auth-ok")
    wait_until(lambda: job_status(api.url, job["id"]) == "Succeeded", timeout=30,
               what="the job to succeed")


def test_a_worker_with_a_wrong_token_cannot_register_and_claims_nothing(
        api: Coordinator, start_worker: Callable[..., Worker]) -> None:
    worker = start_worker(api.url, env={"SCHEDULER_WORKER_TOKEN": UNKNOWN},
                          extra=["--queues", "auth-denied"])
    job = submit(api.url, headers=bearer(ADMIN), queue="auth-denied")
    wait_until(lambda: "register_failed" in worker.output() and "HTTP 401" in worker.output(),
               timeout=20, what="the worker's refused registration")
    assert "Pending" == job_status(api.url, job["id"])
    assert worker.popen.poll() is None  # it keeps trying


# -- the dashboard's cookie login --------------------------------------------------------


def set_cookie_headers(resp: httpx.Response) -> dict[str, str]:
    return {h.split("=", 1)[0]: h for h in resp.headers.get_list("set-cookie")}


def test_the_dashboard_login_sets_a_strict_httponly_cookie_that_authenticates(
        api: Coordinator) -> None:
    resp = httpx.post(api.url + "/login", data={"token": READ})
    assert (303, "/") == (resp.status_code, resp.headers["location"])
    assert READ not in resp.cookies["scheduler_session"]  # a session id, not the token
    session = set_cookie_headers(resp)["scheduler_session"]
    assert ["HttpOnly", "SameSite=Strict", "Path=/"] == [
        flag for flag in ("HttpOnly", "SameSite=Strict", "Path=/") if flag in session]
    with httpx.Client(base_url=api.url, cookies=resp.cookies) as browser:
        assert 200 == browser.get("/api/jobs").status_code
        assert 200 == browser.get("/").status_code


def test_a_cookie_authenticated_write_needs_the_csrf_header(api: Coordinator) -> None:
    login = httpx.post(api.url + "/login", data={"token": ADMIN})
    csrf = login.cookies["scheduler_csrf"]
    with httpx.Client(base_url=api.url, cookies=login.cookies) as browser:
        job = submit(api.url, headers=bearer(ADMIN), runAt=FUTURE)
        refused = browser.post(f"/api/jobs/{job['id']}/cancel")
        assert (403, "forbidden") == (refused.status_code, refused.json()["error"])
        assert "Scheduled" == job_status(api.url, job["id"])
        done = browser.post(f"/api/jobs/{job['id']}/cancel", headers={"X-CSRF-Token": csrf})
        assert (200, "Cancelled") == (done.status_code, done.json()["status"])


def test_login_over_https_sets_secure_cookies(api: Coordinator) -> None:
    resp = httpx.post(api.url + "/login", data={"token": READ},
                      headers={"X-Forwarded-Proto": "https"})
    assert {"scheduler_session", "scheduler_csrf"} == set(set_cookie_headers(resp))
    assert all("Secure" in c for c in set_cookie_headers(resp).values())


def test_a_bearer_write_needs_no_csrf_header_even_beside_a_cookie(api: Coordinator) -> None:
    login = httpx.post(api.url + "/login", data={"token": READ})
    job = submit(api.url, headers=bearer(ADMIN), runAt=FUTURE)
    with httpx.Client(base_url=api.url, cookies=login.cookies) as browser:
        resp = browser.post(f"/api/jobs/{job['id']}/cancel", headers=bearer(ADMIN))
        assert (200, "Cancelled") == (resp.status_code, resp.json()["status"])


def test_the_login_refuses_a_wrong_token_and_a_worker_token(api: Coordinator) -> None:
    wrong = httpx.post(api.url + "/login", data={"token": UNKNOWN})
    worker = httpx.post(api.url + "/login", data={"token": WORKER})
    assert (401, 403) == (wrong.status_code, worker.status_code)
    assert "scheduler_session" not in wrong.headers.get("set-cookie", "")


# -- without tokens ----------------------------------------------------------------------


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SCHEDULER_")}


def test_binding_every_interface_without_tokens_exits_1_before_binding() -> None:
    port = free_port()
    proc = subprocess.run(
        [sys.executable, "-m", "scheduler_core.command.cli", "coordinator", "--host", "0.0.0.0",
         "--port", str(port)], env={**clean_env(), "DATABASE_URL": "postgresql://unused/"},
        cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert 1 == proc.returncode
    assert "refusing to bind '0.0.0.0' without authentication" in proc.stderr
    assert "--insecure-no-auth" in proc.stderr


def test_a_coordinator_without_tokens_says_so_at_start(coordinator: Coordinator) -> None:
    out = coordinator.output()
    assert "auth_disabled" in out
    assert "WARNING: authentication is off" in out
    assert 200 == httpx.get(coordinator.url + "/api/jobs").status_code
