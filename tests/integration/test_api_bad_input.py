"""Bad input to the public API: every case is a 4xx whose JSON body names the culprit
field, and nothing is written.

One module-scoped coordinator serves every case; it runs with a small
SCHEDULER_MAX_BODY_BYTES so the 413 case needs no megabyte bodies.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from tests.support import Coordinator, running_coordinator

MAX_BODY_BYTES = 4096


@pytest.fixture(scope="module")
def api(module_dsn: str) -> Iterator[Coordinator]:
    with running_coordinator(module_dsn, env={"SCHEDULER_MAX_BODY_BYTES": str(MAX_BODY_BYTES)}) as c:
        yield c


@pytest.fixture(scope="module")
def job_id(api: Coordinator) -> str:
    """A real Pending job, for the cases that need an existing id."""
    resp = httpx.post(api.url + "/api/jobs", json={"type": "noop"})
    assert 201 == resp.status_code
    return str(resp.json()["id"])


def snapshot(dsn: str) -> tuple[Any, ...]:
    """Everything a bad request could have written: jobs and schedules, every column."""
    with psycopg.connect(dsn) as conn:
        jobs = conn.execute("SELECT count(*), COALESCE(jsonb_agg(to_jsonb(j) ORDER BY id), "
                            "'[]') FROM jobs j").fetchone()
        schedules = conn.execute("SELECT count(*) FROM schedules").fetchone()
    return (jobs, schedules)


def assert_error(resp: httpx.Response, status: int, field: str | None,
                 error: str | None = None) -> None:
    assert status == resp.status_code, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert {"error", "message", "field"} <= set(body)
    assert field == body["field"], body
    if error is not None:
        assert error == body["error"], body
    assert isinstance(body["message"], str) and body["message"], body


# -- POST /api/jobs: the body ------------------------------------------------------------

# (case id, raw body, field, error code or None for "any")
RAW_BODIES: list[tuple[str, bytes, str, str | None]] = [
    ("malformed_json", b'{"type": "noop",', "body", "malformed_json"),
    ("not_json_at_all", b"hello", "body", "malformed_json"),
    ("empty_body", b"", "body", "malformed_json"),
    ("whitespace_body", b"  \n", "body", "malformed_json"),
    ("array_body", b"[1, 2]", "body", "validation_error"),
    ("string_body", b'"noop"', "body", "validation_error"),
    ("null_body", b"null", "body", "validation_error"),
    ("trailing_garbage", b'{"type": "noop"} x', "body", "malformed_json"),
]

# (case id, JSON body, field, error code or None)
JSON_BODIES: list[tuple[str, dict[str, Any], str, str | None]] = [
    ("type_missing", {"payload": {}}, "type", "validation_error"),
    ("type_not_a_string", {"type": 7}, "type", "validation_error"),
    ("type_empty", {"type": ""}, "type", "validation_error"),
    ("type_unknown", {"type": "launch_rockets"}, "type", "unknown_type"),
    ("unknown_field", {"type": "noop", "maxAttemps": 3}, "maxAttemps", "validation_error"),
    ("unknown_field_with_a_dash", {"type": "noop", "max-attempts": 3}, "max-attempts",
     "validation_error"),
    ("max_attempts_string", {"type": "noop", "maxAttempts": "x"}, "maxAttempts", None),
    ("max_attempts_float", {"type": "noop", "maxAttempts": 1.5}, "maxAttempts", None),
    ("max_attempts_bool", {"type": "noop", "maxAttempts": True}, "maxAttempts", None),
    ("max_attempts_zero", {"type": "noop", "maxAttempts": 0}, "maxAttempts", None),
    ("max_attempts_101", {"type": "noop", "maxAttempts": 101}, "maxAttempts", None),
    ("max_attempts_huge", {"type": "noop", "maxAttempts": 10**30}, "maxAttempts", None),
    ("timeout_zero", {"type": "noop", "timeoutSeconds": 0}, "timeoutSeconds", None),
    ("timeout_86401", {"type": "noop", "timeoutSeconds": 86401}, "timeoutSeconds", None),
    ("timeout_string", {"type": "noop", "timeoutSeconds": "30"}, "timeoutSeconds", None),
    ("priority_101", {"type": "noop", "priority": 101}, "priority", None),
    ("priority_minus_101", {"type": "noop", "priority": -101}, "priority", None),
    ("queue_with_a_space", {"type": "noop", "queue": "my queue"}, "queue", None),
    ("idempotency_key_empty", {"type": "noop", "idempotencyKey": ""}, "idempotencyKey", None),
    ("idempotency_key_number", {"type": "noop", "idempotencyKey": 5}, "idempotencyKey", None),
    ("idempotency_key_with_nul", {"type": "noop", "idempotencyKey": "a\x00b"},
     "idempotencyKey", "validation_error"),
    ("payload_not_an_object", {"type": "noop", "payload": [1]}, "payload", None),
    ("payload_unknown_field", {"type": "noop", "payload": {"x": 1}}, "payload.x",
     "invalid_payload"),
    ("http_get_url_missing", {"type": "http_get", "payload": {}}, "payload.url",
     "invalid_payload"),
    ("http_get_url_not_http", {"type": "http_get", "payload": {"url": "ftp://example.com"}},
     "payload.url", "invalid_payload"),
    ("http_get_url_without_host", {"type": "http_get", "payload": {"url": "http://"}},
     "payload.url", "invalid_payload"),
    ("http_get_url_not_a_string", {"type": "http_get", "payload": {"url": 5}},
     "payload.url", "invalid_payload"),
    ("http_get_url_with_nul", {"type": "http_get", "payload": {"url": "http://x/\x00"}},
     "payload.url", "validation_error"),
    ("cpu_duration_negative", {"type": "cpu", "payload": {"durationSeconds": -1}},
     "payload.durationSeconds", "invalid_payload"),
    ("cpu_duration_string", {"type": "cpu", "payload": {"durationSeconds": "2"}},
     "payload.durationSeconds", "invalid_payload"),
    ("cpu_payload_missing", {"type": "cpu"}, "payload.durationSeconds", "invalid_payload"),
    ("file_write_parent_path", {"type": "file_write",
                                "payload": {"fileName": "../x", "content": "a"}},
     "payload.fileName", "invalid_payload"),
    ("file_write_absolute_path", {"type": "file_write",
                                  "payload": {"fileName": "/etc/passwd", "content": "a"}},
     "payload.fileName", "invalid_payload"),
    ("file_write_content_with_nul", {"type": "file_write",
                                     "payload": {"fileName": "a.txt", "content": "\x00"}},
     "payload.content", "validation_error"),
    ("payload_key_with_nul", {"type": "fail", "payload": {"message": "m", "a\x00": 1}},
     "payload", None),
    ("run_at_without_zone", {"type": "noop", "runAt": "2030-01-01T00:00:00"}, "runAt",
     "validation_error"),
    ("run_at_date_only", {"type": "noop", "runAt": "2030-01-01"}, "runAt",
     "validation_error"),
    ("run_at_garbage", {"type": "noop", "runAt": "next tuesday"}, "runAt",
     "validation_error"),
    ("run_at_number", {"type": "noop", "runAt": 1700000000}, "runAt", "validation_error"),
    ("run_at_before_year_1_in_utc", {"type": "noop", "runAt": "0001-01-01T00:00:00+14:00"},
     "runAt", "validation_error"),
    ("run_at_after_year_9999_in_utc", {"type": "noop", "runAt": "9999-12-31T23:59:59-14:00"},
     "runAt", "validation_error"),
    ("run_at_with_cron", {"type": "noop", "cron": "* * * * *",
                          "runAt": "2030-01-01T00:00:00Z"}, "runAt", "validation_error"),
    ("cron_garbage", {"type": "noop", "cron": "every day"}, "cron", "validation_error"),
    ("cron_minute_60", {"type": "noop", "cron": "60 * * * *"}, "cron", "validation_error"),
    ("cron_seven_fields", {"type": "noop", "cron": "* * * * * * *"}, "cron",
     "validation_error"),
    ("cron_unknown_shorthand", {"type": "noop", "cron": "@reboot"}, "cron",
     "validation_error"),
    ("cron_that_never_fires", {"type": "noop", "cron": "0 0 31 2 *"}, "cron",
     "validation_error"),
    ("timezone_unknown", {"type": "noop", "cron": "* * * * *", "timezone": "Mars/Olympus"},
     "timezone", "validation_error"),
    ("timezone_a_path", {"type": "noop", "cron": "* * * * *",
                         "timezone": "../../etc/passwd"}, "timezone", "validation_error"),
    ("timezone_without_cron", {"type": "noop", "timezone": "UTC"}, "timezone",
     "validation_error"),
    ("misfire_policy_without_cron", {"type": "noop", "misfirePolicy": "skip"},
     "misfirePolicy", "validation_error"),
    ("misfire_policy_unknown", {"type": "noop", "cron": "* * * * *", "misfirePolicy": "later"},
     "misfirePolicy", "validation_error"),
    ("cron_with_a_bad_payload", {"type": "cpu", "cron": "* * * * *", "payload": {}},
     "payload.durationSeconds", "invalid_payload"),
]


@pytest.mark.parametrize(("raw", "field", "error"),
                         [c[1:] for c in RAW_BODIES], ids=[c[0] for c in RAW_BODIES])
def test_a_bad_raw_body_is_400_naming_the_body_and_writes_nothing(
        http: httpx.Client, module_dsn: str, raw: bytes, field: str, error: str | None) -> None:
    before = snapshot(module_dsn)
    resp = http.post("/api/jobs", content=raw, headers={"content-type": "application/json"})
    assert_error(resp, 400, field, error)
    assert before == snapshot(module_dsn)


@pytest.mark.parametrize(("body", "field", "error"),
                         [c[1:] for c in JSON_BODIES], ids=[c[0] for c in JSON_BODIES])
def test_a_bad_submission_is_400_naming_the_field_and_writes_nothing(
        http: httpx.Client, module_dsn: str, body: dict[str, Any], field: str,
        error: str | None) -> None:
    before = snapshot(module_dsn)
    resp = http.post("/api/jobs", content=json.dumps(body),
                     headers={"content-type": "application/json"})
    assert_error(resp, 400, field, error)
    assert before == snapshot(module_dsn)


def test_a_body_over_the_limit_is_413_and_writes_nothing(
        http: httpx.Client, module_dsn: str) -> None:
    before = snapshot(module_dsn)
    big = json.dumps({"type": "fail", "payload": {"message": "x" * MAX_BODY_BYTES}})
    resp = http.post("/api/jobs", content=big, headers={"content-type": "application/json"})
    assert_error(resp, 413, "body", "body_too_large")
    assert before == snapshot(module_dsn)


def test_a_chunked_body_over_the_limit_is_413_and_writes_nothing(
        http: httpx.Client, module_dsn: str) -> None:
    before = snapshot(module_dsn)
    head = b'{"type": "fail", "payload": {"message": "'

    def chunks() -> Iterator[bytes]:  # no Content-Length: the server must count
        yield head
        for _ in range(2 * MAX_BODY_BYTES // 512):
            yield b"x" * 512
        yield b'"}}'

    resp = http.post("/api/jobs", content=chunks(), headers={"content-type": "application/json"})
    assert_error(resp, 413, "body", "body_too_large")
    assert before == snapshot(module_dsn)


def test_a_body_just_under_the_limit_is_accepted(http: httpx.Client) -> None:
    prefix = json.dumps({"type": "fail", "payload": {"message": ""}})
    body = json.dumps({"type": "fail", "payload": {"message": "x" * (MAX_BODY_BYTES
                                                                     - len(prefix))}})
    resp = http.post("/api/jobs", content=body, headers={"content-type": "application/json"})
    assert (MAX_BODY_BYTES, 201) == (len(body), resp.status_code)


# -- GET /api/jobs: query parameters -----------------------------------------------------

QUERIES: list[tuple[str, dict[str, str], str]] = [
    ("take_zero", {"take": "0"}, "take"),
    ("take_501", {"take": "501"}, "take"),
    ("take_negative", {"take": "-1"}, "take"),
    ("take_abc", {"take": "abc"}, "take"),
    ("take_empty", {"take": ""}, "take"),
    ("take_float", {"take": "2.5"}, "take"),
    ("take_with_underscore", {"take": "1_0"}, "take"),
    ("take_non_ascii_digit", {"take": "\u0663"}, "take"),
    ("take_huge", {"take": "9" * 5000}, "take"),
    ("status_unknown", {"status": "Bogus"}, "status"),
    ("status_lowercase", {"status": "running"}, "status"),
    ("unknown_parameter", {"sort": "asc"}, "sort"),
    ("cursor_not_a_uuid", {"cursor": "page-2"}, "cursor"),
    ("type_too_long", {"type": "x" * 101}, "type"),
    ("type_with_nul", {"type": "no\x00op"}, "type"),
    ("queue_with_nul", {"queue": "\x00"}, "queue"),
]


@pytest.mark.parametrize(("params", "field"), [c[1:] for c in QUERIES],
                         ids=[c[0] for c in QUERIES])
def test_a_bad_query_parameter_is_400_naming_it(
        http: httpx.Client, params: dict[str, str], field: str) -> None:
    assert_error(http.get("/api/jobs", params=params), 400, field)


# -- ids in the path ---------------------------------------------------------------------

MALFORMED_IDS = ["abc", "123", "not-a-uuid-at-all-but-36-characters", "%20", "%00",
                 "01a221e8-2f83-763c-a309-b7ffdced999"]
ROUTES = [("GET", "/api/jobs/{}"), ("POST", "/api/jobs/{}/cancel"),
          ("POST", "/api/jobs/{}/retry")]


@pytest.mark.parametrize(("method", "route"), ROUTES, ids=["get", "cancel", "retry"])
@pytest.mark.parametrize("bad_id", MALFORMED_IDS)
def test_a_malformed_id_is_400_naming_the_id_and_writes_nothing(
        http: httpx.Client, module_dsn: str, method: str, route: str, bad_id: str) -> None:
    before = snapshot(module_dsn)
    resp = http.request(method, route.format(bad_id))
    assert_error(resp, 400, "id", "invalid_id")
    assert before == snapshot(module_dsn)


@pytest.mark.parametrize(("method", "route"), ROUTES, ids=["get", "cancel", "retry"])
def test_an_unknown_id_is_404_naming_the_id(
        http: httpx.Client, method: str, route: str) -> None:
    assert_error(http.request(method, route.format(uuid.uuid4())), 404, "id", "not_found")


# -- retry bodies ------------------------------------------------------------------------

RETRY_BODIES: list[tuple[str, bytes, str]] = [
    ("malformed_json", b"{bad", "body"),
    ("array_body", b"[]", "body"),
    ("unknown_field", b'{"reason": "x", "force": true}', "force"),
    ("reason_not_a_string", b'{"reason": 5}', "reason"),
    ("reason_too_long", json.dumps({"reason": "x" * 1001}).encode(), "reason"),
    ("reason_with_nul", b'{"reason": "a\\u0000"}', "reason"),
]


@pytest.mark.parametrize(("raw", "field"), [c[1:] for c in RETRY_BODIES],
                         ids=[c[0] for c in RETRY_BODIES])
def test_a_bad_retry_body_is_400_naming_the_field_and_writes_nothing(
        http: httpx.Client, module_dsn: str, job_id: str, raw: bytes, field: str) -> None:
    before = snapshot(module_dsn)
    resp = http.post(f"/api/jobs/{job_id}/retry", content=raw,
                     headers={"content-type": "application/json"})
    assert_error(resp, 400, field)
    assert before == snapshot(module_dsn)


# -- methods -----------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), [("DELETE", "/api/jobs"), ("PUT", "/api/jobs"),
                                              ("GET", "/api/jobs/{}/cancel")])
def test_a_wrong_method_is_405_as_json(http: httpx.Client, job_id: str, method: str,
                                       path: str) -> None:
    assert_error(http.request(method, path.format(job_id)), 405, None, "method_not_allowed")


# -- the dashboard's files ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["x" * 300, "a/" + "b" * 300, "nope.js", "../app.py"])
def test_a_static_file_that_cannot_exist_is_404_as_json(http: httpx.Client, name: str) -> None:
    assert_error(http.get(f"/dashboard/static/{name}"), 404, None, "not_found")
