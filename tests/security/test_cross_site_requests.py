"""Issue 12, item 4: other sites' requests to a coordinator without tokens (the
`just up` default), over real HTTP against a real coordinator (web/crosssite.py).

A body must be JSON (415 otherwise; no body is fine, the login form is fine at
/login); a write whose Origin is another site's gets 403; a Host that is not a loopback
name gets 421 (DNS rebinding). Same-origin requests and requests with no Origin (curl,
the CLI, workers) pass. The real browser's view of the same is in
tests/browser/test_cross_site.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support import Coordinator, query, running_coordinator, submit

FUTURE = "2999-01-01T00:00:00Z"
JOB = b'{"type": "noop", "runAt": "2999-01-01T00:00:00Z"}'
EVIL = "http://evil.example"
ALLOWED_ORIGIN = "https://ops.example.com"
ALLOWED_HOST = "scheduler.internal"


@pytest.fixture(scope="module")
def api(module_dsn: str) -> Iterator[Coordinator]:
    with running_coordinator(module_dsn, env={"SCHEDULER_ALLOWED_ORIGINS": ALLOWED_ORIGIN,
                                              "SCHEDULER_ALLOWED_HOSTS": ALLOWED_HOST}) as c:
        yield c


def job_count(dsn: str) -> int:
    return int(query(dsn, "SELECT count(*) AS n FROM jobs")[0]["n"])


def assert_refused(resp: httpx.Response, status: int, error: str, field: str) -> None:
    assert (status, error, field) == (resp.status_code, resp.json()["error"],
                                      resp.json()["field"]), resp.text
    assert resp.headers["content-type"] == "application/json"


# -- 415: a body must be JSON -----------------------------------------------------------

@pytest.mark.parametrize("content_type", [
    "text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x", None])
def test_a_body_that_is_not_json_is_a_415_and_creates_nothing(
        http: httpx.Client, module_dsn: str, content_type: str | None) -> None:
    before = job_count(module_dsn)
    headers = {"Content-Type": content_type} if content_type else {}
    resp = http.post("/api/jobs", content=JOB, headers=headers)
    assert_refused(resp, 415, "unsupported_media_type", "Content-Type")
    assert before == job_count(module_dsn)


def test_a_json_body_with_a_charset_is_accepted(http: httpx.Client) -> None:
    resp = http.post("/api/jobs", content=JOB,
                     headers={"Content-Type": "application/json; charset=utf-8"})
    assert 201 == resp.status_code, resp.text


def test_a_post_without_a_body_needs_no_content_type(http: httpx.Client) -> None:
    job = submit(http, runAt=FUTURE)
    resp = http.post(f"/api/jobs/{job['id']}/cancel")  # as `curl -X POST` sends it
    assert (200, "Cancelled") == (resp.status_code, resp.json()["status"]), resp.text


def test_the_worker_api_takes_json_only(http: httpx.Client) -> None:
    resp = http.post("/api/workers/register", content=b'{"workerId": "w", "hostname": "h", '
                     b'"pid": 1, "capacity": 1}', headers={"Content-Type": "text/plain"})
    assert_refused(resp, 415, "unsupported_media_type", "Content-Type")


def test_the_login_form_is_accepted_at_login_only(http: httpx.Client) -> None:
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    assert 303 == http.post("/login", content=b"token=x", headers=form).status_code
    assert_refused(http.post("/login", content=b'{"token": "x"}',
                             headers={"Content-Type": "text/plain"}),
                   415, "unsupported_media_type", "Content-Type")


# -- 403: writes from another site ------------------------------------------------------

@pytest.mark.parametrize("origin", [EVIL, "null", "http://127.0.0.1:1", "https://127.0.0.1"])
def test_a_write_from_another_origin_is_a_403_and_creates_nothing(
        http: httpx.Client, module_dsn: str, origin: str) -> None:
    before = job_count(module_dsn)
    resp = http.post("/api/jobs", content=JOB,
                     headers={"Content-Type": "application/json", "Origin": origin})
    assert_refused(resp, 403, "forbidden", "Origin")
    assert before == job_count(module_dsn)


def test_a_cross_site_queue_pause_is_refused(http: httpx.Client, module_dsn: str) -> None:
    for method, path in (("POST", "/api/queues/xsite/pause"), ("PATCH", "/api/queues/xsite")):
        resp = http.request(method, path, headers={"Origin": EVIL},
                            json={"paused": True} if method == "PATCH" else None)
        assert_refused(resp, 403, "forbidden", "Origin")
    assert [] == query(module_dsn, "SELECT * FROM queues WHERE name = 'xsite'")


def test_a_cross_site_delete_and_login_and_logout_are_refused(http: httpx.Client) -> None:
    job = submit(http, runAt=FUTURE)
    for method, path in (("DELETE", f"/api/schedules/{job['id']}"), ("POST", "/login"),
                         ("POST", "/logout"), ("POST", f"/api/jobs/{job['id']}/cancel")):
        assert_refused(http.request(method, path, headers={"Origin": EVIL}),
                       403, "forbidden", "Origin")
    assert "Scheduled" == http.get(f"/api/jobs/{job['id']}").json()["status"]


def test_a_write_from_the_coordinators_own_origin_passes(api: Coordinator,
                                                        http: httpx.Client) -> None:
    for origin in (api.url, f"http://localhost:{api.port}"):
        host = origin.removeprefix("http://")
        resp = http.post("/api/jobs", json={"type": "noop", "runAt": FUTURE},
                         headers={"Origin": origin, "Host": host})
        assert 201 == resp.status_code, resp.text


def test_a_write_from_an_allowed_origin_passes(http: httpx.Client) -> None:
    resp = http.post("/api/jobs", json={"type": "noop", "runAt": FUTURE},
                     headers={"Origin": ALLOWED_ORIGIN})
    assert 201 == resp.status_code, resp.text


def test_a_read_from_another_origin_is_answered(http: httpx.Client) -> None:
    # A browser does not let the other site read the answer (no CORS headers).
    resp = http.get("/api/jobs", headers={"Origin": EVIL})
    assert (200, None) == (resp.status_code, resp.headers.get("access-control-allow-origin"))


# -- 421: other host names (DNS rebinding) -----------------------------------------------

@pytest.mark.parametrize("path", ["/health", "/api/jobs", "/", "/dashboard/static/app.js"])
def test_a_foreign_host_name_is_a_421_on_every_route(http: httpx.Client, path: str) -> None:
    resp = http.get(path, headers={"Host": "evil.example:5000"})
    assert_refused(resp, 421, "misdirected_request", "Host")


def test_a_write_to_a_foreign_host_name_is_a_421_and_creates_nothing(
        http: httpx.Client, module_dsn: str) -> None:
    before = job_count(module_dsn)
    resp = http.post("/api/jobs", json={"type": "noop"}, headers={"Host": "evil.example"})
    assert_refused(resp, 421, "misdirected_request", "Host")
    assert before == job_count(module_dsn)


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST:5000", "127.0.0.1", "127.9.8.7:80",
                                  "[::1]:5000", "[::1]", ALLOWED_HOST, ALLOWED_HOST + ":8080"])
def test_a_loopback_or_allowed_host_name_is_served(http: httpx.Client, host: str) -> None:
    assert 200 == http.get("/health", headers={"Host": host}).status_code


@pytest.mark.parametrize("host", ["127.0.0.1.evil.example", "localhost.evil.example",
                                  "10.0.0.1", "[::2]", "0.0.0.0"])
def test_a_name_that_only_looks_local_is_a_421(http: httpx.Client, host: str) -> None:
    assert 421 == http.get("/health", headers={"Host": host}).status_code
