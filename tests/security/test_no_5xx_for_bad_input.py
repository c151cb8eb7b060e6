"""Bad input is a 4xx, and a 5xx never shows an exception's text (issue 12, item 3).

Invalid UTF-8 inside a JSON string is a 400 naming ``body`` on every route that takes
a JSON body (it was a 500 ``UnicodeDecodeError``). A real internal error, forced in a
real coordinator by a trigger in the test's own database, is a 500 whose body has an
``errorId`` and none of the exception's text; the log line with the details carries
the same id. /health, /health/ready and a 503 of the API against an unreachable
database answer the same way.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import httpx
import psycopg
import pytest

from tests.security.body_routes import (
    ADMIN,
    BodyRoute,
    body_routes,
    log_events,
    secured_coordinator,
)
from tests.support import Coordinator, free_port, query, wait_until

ROUTES = body_routes()

# The issue's four cases: the invalid byte in a field each route knows.
ISSUE_CASES = {
    "submitJob": b'{"type": "no\xffop"}',
    "submitBatch": b'{"jobs": [{"type": "\xff"}]}',
    "retryJob": b'{"reason": "\xff"}',
    "registerWorker": b'{"workerId": "w\xff", "hostname": "h", "pid": 1, "capacity": 1}',
}
# Any other route: the invalid byte in a key (decoded before the key is looked up).
GENERIC = b'{"\xffkey": "\xff"}'


@pytest.fixture(scope="module")
def api(module_dsn: str) -> Iterator[Coordinator]:
    yield from secured_coordinator(module_dsn)


@pytest.mark.parametrize("route", ROUTES, ids=str)
def test_invalid_utf8_in_a_string_is_a_400_naming_the_body(api: Coordinator,
                                                           route: BodyRoute) -> None:
    with httpx.Client(base_url=api.url, timeout=5) as client:
        for body in (ISSUE_CASES.get(route.operation_id, GENERIC), GENERIC):
            resp = client.request(route.method, route.path, content=body,
                                  headers=route.headers)
            assert 400 == resp.status_code, resp.text[:500]
            answer = resp.json()
            assert ("malformed_json", "body") == (answer["error"], answer["field"])
            assert "UTF-8" in answer["message"] and "0xff" in answer["message"]
    assert [] == log_events(api, "request_failed")


def test_nothing_is_written_by_invalid_utf8(api: Coordinator, module_dsn: str) -> None:
    with httpx.Client(base_url=api.url, timeout=5) as client:
        for route in ROUTES:
            client.request(route.method, route.path, content=GENERIC, headers=route.headers)
    assert [] == query(module_dsn, "SELECT id FROM jobs")
    assert [] == query(module_dsn, "SELECT id FROM workers")


# -- internal errors -------------------------------------------------------------------

def force_insert_failure(dsn: str, marker: str) -> None:
    """Every INSERT into jobs raises an exception whose text holds ``marker``."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(b"CREATE FUNCTION sec_forced_failure() RETURNS trigger "
                     b"LANGUAGE plpgsql AS $$ BEGIN "
                     b"RAISE EXCEPTION 'forced failure: %', TG_ARGV[0]; END $$")
        conn.execute(b"CREATE TRIGGER sec_forced_failure BEFORE INSERT ON jobs "
                     b"FOR EACH ROW EXECUTE FUNCTION sec_forced_failure('"
                     + marker.encode() + b"')")


def test_an_internal_error_answers_an_error_id_and_logs_the_details_under_it(
        start_coordinator: Callable[..., Coordinator], db_dsn: str) -> None:
    marker = f"marker-{uuid.uuid4().hex}"
    force_insert_failure(db_dsn, marker)
    c = start_coordinator(env={"SCHEDULER_ADMIN_TOKEN": ADMIN})
    resp = httpx.post(c.url + "/api/jobs", json={"type": "noop"}, timeout=5,
                      headers={"Authorization": f"Bearer {ADMIN}"})
    assert 500 == resp.status_code, resp.text
    body = resp.json()
    error_id = body.pop("errorId")
    assert {"error": "internal_error", "message": "internal error", "field": None} == body
    assert marker not in resp.text and "forced failure" not in resp.text
    assert isinstance(error_id, str) and len(error_id) >= 16
    logged = wait_until(lambda: [e for e in log_events(c, "request_failed")
                                 if e.get("error_id") == error_id],
                        timeout=10, what="the request_failed line with the error id")
    assert 1 == len(logged)
    assert marker in str(logged[0])
    # Another failure gets another id.
    again = httpx.post(c.url + "/api/jobs", json={"type": "noop"}, timeout=5,
                       headers={"Authorization": f"Bearer {ADMIN}"})
    assert error_id != again.json()["errorId"]


@pytest.fixture
def unreachable(processes: list[Coordinator]) -> tuple[Coordinator, int]:
    """A coordinator whose database is a closed port (the port is what its error says)."""
    port = free_port()
    c = Coordinator(f"postgresql://nobody@127.0.0.1:{port}/nothing?connect_timeout=1",
                    extra=["--no-migrate"])
    processes.append(c)
    return c, port


def assert_error_id_logged(c: Coordinator, event: str, error_id: str, port: int) -> None:
    logged = wait_until(lambda: [e for e in log_events(c, event)
                                 if e.get("error_id") == error_id],
                        timeout=10, what=f"the {event} line with the error id")
    assert str(port) in str(logged[0])  # the details are in the log


def test_health_is_503_with_an_error_id_and_no_exception_text(
        unreachable: tuple[Coordinator, int]) -> None:
    c, port = unreachable
    resp = wait_until(lambda: httpx.get(c.url + "/health", timeout=5), timeout=20,
                      what="a /health answer")
    body = resp.json()
    error_id = body.pop("errorId")
    assert (503, {"status": "unavailable", "database": "unreachable",
                  "reason": "the database did not answer"}) == (resp.status_code, body)
    assert str(port) not in resp.text.replace(error_id, "")
    assert_error_id_logged(c, "health_check_failed", error_id, port)


def test_readiness_is_503_with_an_error_id_and_no_exception_text(
        unreachable: tuple[Coordinator, int]) -> None:
    c, port = unreachable
    resp = wait_until(lambda: httpx.get(c.url + "/health/ready", timeout=5), timeout=20,
                      what="a /health/ready answer")
    database = resp.json()["checks"]["database"]
    error_id = database.pop("errorId")
    assert (503, {"ok": False, "reason": "the database did not answer"}) == (
        resp.status_code, database)
    assert str(port) not in resp.text.replace(error_id, "")
    assert_error_id_logged(c, "readiness_check_failed", error_id, port)


def test_an_api_503_has_an_error_id_and_no_exception_text(
        unreachable: tuple[Coordinator, int]) -> None:
    c, port = unreachable
    resp = wait_until(lambda: httpx.get(c.url + "/api/jobs", timeout=5), timeout=20,
                      what="an /api/jobs answer")
    body = resp.json()
    error_id = body.pop("errorId")
    assert (503, "database_unavailable", None) == (resp.status_code, body["error"],
                                                   body["field"])
    assert str(port) not in resp.text.replace(error_id, "")
    assert "PostgreSQL" not in body["message"]
    assert_error_id_logged(c, "database_unreached", error_id, port)
