"""The audit trail (issue 18) against a real coordinator started with named tokens:
every call of every audited route of the route table writes exactly one row naming it
(and the submits and the worker protocol none), sign-ins, sign-outs and session
revocations with who made them, ``GET /api/audit`` with its filters and pages, no
secret in a row or a log line, and retention."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import httpx
import psycopg
import pytest

from scheduler_core.actors.coordinator import pruner
from scheduler_core.runtime import db
from scheduler_core.schema.retention_store import RetentionPolicy, RetentionStore
from scheduler_core.web import routes
from scheduler_core.web.auth import CSRF_COOKIE, CSRF_HEADER, SESSION_COOKIE
from tests.support import Coordinator, query, running_coordinator, scalar, submit

ADMIN_SECRET = "audit-admin-" + "a" * 24
READ_SECRET = "audit-read-" + "r" * 24  # bare: named by its hash
WORKER_SECRET = "audit-worker-" + "w" * 24
TOKENS = {"SCHEDULER_ADMIN_TOKEN": f"ops:{ADMIN_SECRET}",
          "SCHEDULER_READ_TOKEN": READ_SECRET,
          "SCHEDULER_WORKER_TOKEN": f"fleet:{WORKER_SECRET}",
          # Wrong tokens are sent on purpose; the throttle has its own tests.
          "SCHEDULER_AUTH_THROTTLE_FAILURES": "0"}
SECRETS = (ADMIN_SECRET, READ_SECRET, WORKER_SECRET)
READ_NAME = "token-" + hashlib.sha256(READ_SECRET.encode()).hexdigest()[:8]
ADMIN = {"Authorization": f"Bearer {ADMIN_SECRET}"}
READ = {"Authorization": f"Bearer {READ_SECRET}"}
SUBMITS = {("POST", "/api/jobs"), ("POST", "/api/jobs/batch"), ("POST", "/api/workflows")}


@pytest.fixture(scope="module")
def api(module_dsn: str) -> Iterator[Coordinator]:
    with running_coordinator(module_dsn, env=TOKENS) as c:
        yield c


def last_id(dsn: str) -> int:
    return int(scalar(dsn, "SELECT coalesce(max(id), 0) FROM audit"))


def rows_since(dsn: str, after: int) -> list[dict[str, Any]]:
    return query(dsn, "SELECT * FROM audit WHERE id > %s ORDER BY id", after)


def path_of(rule: str) -> str:
    """The rule with each variable filled: a queue name, else a fresh UUID."""
    out = rule
    while "<" in out:
        start, end = out.index("<"), out.index(">")
        variable = out[start + 1:end]
        out = out[:start] + ("audit-q" if variable == "name" else str(uuid.uuid4())) + out[end + 1:]
    return out


def call(url: str, method: str, path: str) -> httpx.Response:
    """One real call of a route as the admin: a login with a wrong token, the rest with
    an empty JSON object (valid or a 4xx: both are audited)."""
    if path == "/login":
        return httpx.post(url + path, data={"token": "not-a-token-" + "x" * 20}, timeout=10)
    return httpx.request(method, url + path, headers=ADMIN,
                         json=None if method == "DELETE" else {}, timeout=10)


def outcome_of(response: httpx.Response) -> str:
    if response.status_code < 400:
        return "ok"
    return str(response.json()["error"]) if response.headers.get(
        "content-type", "").startswith("application/json") else "invalid_token"


def login(url: str, token: str = ADMIN_SECRET) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=10)
    reply = client.post("/login", data={"token": token})
    assert 303 == reply.status_code
    client.headers[CSRF_HEADER] = client.cookies[CSRF_COOKIE]
    return client


# -- the route table walked ------------------------------------------------------------------

def test_the_audited_routes_are_every_write_but_the_submits_and_the_worker_protocol() -> None:
    writes = {(r.method.upper(), r.path) for r in routes.ROUTES if r.method != "get"}
    expected = {w for w in writes if w not in SUBMITS and not w[1].startswith("/api/workers/")}
    assert expected == routes.AUDITED
    assert {("POST", "/login"), ("POST", "/logout"), ("POST", "/api/jobs/<job_id>/cancel"),
            ("DELETE", "/api/sessions/<session_id>")} <= routes.AUDITED


def test_every_call_of_every_audited_route_writes_exactly_one_row_naming_it(
        api: Coordinator, module_dsn: str) -> None:
    walked = 0
    for route in routes.ROUTES:
        method = route.method.upper()
        if method == "GET":
            continue
        before = last_id(module_dsn)
        path = path_of(route.path)
        response = call(api.url, method, path)
        assert response.status_code < 500, (method, route.path, response.text)
        rows = rows_since(module_dsn, before)
        if (method, route.path) not in routes.AUDITED:
            assert [] == rows, (method, route.path)
            continue
        walked += 1
        assert 1 == len(rows), (method, route.path, rows)
        row = rows[0]
        assert (method, route.path, response.status_code, outcome_of(response)) == (
            row["method"], row["route"], row["status"], row["outcome"])
        if route.path == "/login":  # a wrong token: nobody
            assert ("anonymous", "none") == (row["actor"], row["role"])
        elif route.role != "public":
            assert ("ops", "admin") == (row["actor"], row["role"])
        if "<" in route.path:
            assert path.rsplit("/", 1)[-1] == row["target"] or (
                f"/{row['target']}/" in path)
    assert len(routes.AUDITED) == walked


def test_a_call_refused_by_its_role_is_audited_under_the_token_name(
        api: Coordinator, module_dsn: str) -> None:
    before = last_id(module_dsn)
    job = uuid.uuid4()
    assert 403 == httpx.post(f"{api.url}/api/jobs/{job}/cancel", headers=READ,
                             timeout=10).status_code
    [row] = rows_since(module_dsn, before)
    assert (READ_NAME, "read", 403, "forbidden", str(job)) == (
        row["actor"], row["role"], row["status"], row["outcome"], row["target"])


def test_a_call_without_a_token_is_audited_as_anonymous(
        api: Coordinator, module_dsn: str) -> None:
    before = last_id(module_dsn)
    assert 401 == httpx.post(f"{api.url}/api/queues/audit-q/pause", timeout=10).status_code
    [row] = rows_since(module_dsn, before)
    assert ("anonymous", "none", 401, "unauthorized", "audit-q") == (
        row["actor"], row["role"], row["status"], row["outcome"], row["target"])


def test_a_successful_cancel_is_audited_as_ok_with_its_job(
        api: Coordinator, module_dsn: str) -> None:
    job = str(submit(api.url, headers=ADMIN, runAt="2999-01-01T00:00:00Z")["id"])
    before = last_id(module_dsn)
    assert 200 == httpx.post(f"{api.url}/api/jobs/{job}/cancel", headers=ADMIN,
                             timeout=10).status_code
    [row] = rows_since(module_dsn, before)
    assert ("ops", "/api/jobs/<job_id>/cancel", job, 200, "ok") == (
        row["actor"], row["route"], row["target"], row["status"], row["outcome"])
    assert row["remote_addr"] == "127.0.0.1"


def test_the_fields_of_a_body_are_kept_and_its_secrets_are_not(
        api: Coordinator, module_dsn: str) -> None:
    before = last_id(module_dsn)
    reply = httpx.patch(f"{api.url}/api/queues/audit-body", headers=ADMIN, timeout=10,
                        json={"paused": True, "apiToken": "hunter2-is-long-enough",
                              "note": ADMIN_SECRET, "long": "y" * 1000})
    assert 400 == reply.status_code  # unknown fields: still audited
    [row] = rows_since(module_dsn, before)
    body = row["details"]["body"]
    assert (True, "[redacted]", "[redacted]") == (
        body["paused"], body["apiToken"], body["note"])
    assert len(body["long"]) <= 201
    assert "validation_error" == row["outcome"]


# -- sign-in, sign-out, sessions ---------------------------------------------------------------

def test_a_sign_in_is_audited_with_its_token_name_and_session(
        api: Coordinator, module_dsn: str) -> None:
    before = last_id(module_dsn)
    client = login(api.url)
    [row] = rows_since(module_dsn, before)
    assert ("ops", "admin", "POST", "/login", 303, "ok") == (
        row["actor"], row["role"], row["method"], row["route"], row["status"], row["outcome"])
    sessions = httpx.get(f"{api.url}/api/sessions", headers=ADMIN, timeout=10).json()["items"]
    assert str(row["session_id"]) in {s["id"] for s in sessions}
    client.close()


def test_a_failed_sign_in_is_audited_without_the_token_presented(
        api: Coordinator, module_dsn: str) -> None:
    presented = "guess-" + "g" * 30
    before = last_id(module_dsn)
    assert 401 == httpx.post(f"{api.url}/login", data={"token": presented},
                             timeout=10).status_code
    [row] = rows_since(module_dsn, before)
    assert ("anonymous", "none", 401, "invalid_token", None) == (
        row["actor"], row["role"], row["status"], row["outcome"], row["session_id"])
    assert 0 == scalar(module_dsn, "SELECT count(*) FROM audit WHERE audit::text LIKE %s",
                       f"%{presented}%")


def test_a_worker_token_at_the_sign_in_is_audited_under_its_name(
        api: Coordinator, module_dsn: str) -> None:
    before = last_id(module_dsn)
    assert 403 == httpx.post(f"{api.url}/login", data={"token": WORKER_SECRET},
                             timeout=10).status_code
    [row] = rows_since(module_dsn, before)
    assert ("fleet", "worker", "worker_token") == (row["actor"], row["role"], row["outcome"])


def test_a_write_through_the_dashboard_names_the_session_and_its_token(
        api: Coordinator, module_dsn: str) -> None:
    with closing(login(api.url)) as client:
        session = str(rows_since(module_dsn, last_id(module_dsn) - 1)[0]["session_id"])
        before = last_id(module_dsn)
        assert 200 == client.post("/api/queues/audit-dash/pause").status_code
        [row] = rows_since(module_dsn, before)
    assert ("ops", "admin", session, "ok") == (
        row["actor"], row["role"], str(row["session_id"]), row["outcome"])


def test_revoking_a_session_and_all_sessions_and_signing_out_are_audited(
        api: Coordinator, module_dsn: str) -> None:
    first = login(api.url)
    session = str(rows_since(module_dsn, last_id(module_dsn) - 1)[0]["session_id"])
    before = last_id(module_dsn)
    assert 200 == httpx.delete(f"{api.url}/api/sessions/{session}", headers=ADMIN,
                               timeout=10).status_code
    [revoked] = rows_since(module_dsn, before)
    assert ("ops", "DELETE", "/api/sessions/<session_id>", session, "ok") == (
        revoked["actor"], revoked["method"], revoked["route"], revoked["target"],
        revoked["outcome"])
    first.close()

    second = login(api.url)
    before = last_id(module_dsn)
    assert 303 == second.post("/logout").status_code
    [out] = rows_since(module_dsn, before)
    assert ("ops", "admin", "/logout", "ok") == (
        out["actor"], out["role"], out["route"], out["outcome"])
    assert out["session_id"] is not None
    second.close()

    login(api.url).close()
    before = last_id(module_dsn)
    reply = httpx.post(f"{api.url}/api/sessions/revoke-all", headers=ADMIN, timeout=10)
    [everyone] = rows_since(module_dsn, before)
    assert reply.json()["revoked"] >= 1
    assert (reply.json()["revoked"], "ok") == (
        everyone["details"]["revoked"], everyone["outcome"])


def test_a_session_cookie_is_never_stored(api: Coordinator, module_dsn: str) -> None:
    with closing(login(api.url)) as client:
        cookie = client.cookies[SESSION_COOKIE]
        client.post("/api/queues/audit-cookie/resume")
        client.post("/logout")
    assert 0 == scalar(module_dsn, "SELECT count(*) FROM audit WHERE audit::text LIKE %s",
                       f"%{cookie}%")


# -- no secret anywhere, names in the logs -----------------------------------------------------

def test_no_token_reaches_the_table_or_the_log_and_the_names_do(
        api: Coordinator, module_dsn: str) -> None:
    login(api.url).close()
    httpx.post(f"{api.url}/login", data={"token": WORKER_SECRET}, timeout=10)
    httpx.post(f"{api.url}/api/sessions/revoke-all", headers=ADMIN, timeout=10)
    httpx.post(f"{api.url}/api/queues/x/pause", headers=ADMIN, timeout=10,
               json={"token": ADMIN_SECRET})
    for secret in SECRETS:
        assert 0 == scalar(module_dsn, "SELECT count(*) FROM audit WHERE audit::text LIKE %s",
                           f"%{secret}%"), secret
    log = api.output()
    for secret in SECRETS:
        assert secret not in log
    assert '"event":"login_succeeded"' in log and '"token_name":"ops"' in log
    assert '"token_name":"fleet"' in log


# -- GET /api/audit ----------------------------------------------------------------------------

def test_the_list_filters_by_actor_route_and_status_and_pages_newest_first(
        api: Coordinator, module_dsn: str) -> None:
    queue = f"audit-list-{uuid.uuid4().hex[:8]}"
    for _ in range(3):
        httpx.post(f"{api.url}/api/queues/{queue}/pause", headers=ADMIN, timeout=10)
    httpx.post(f"{api.url}/api/queues/{queue}/pause", headers=READ, timeout=10)
    mine = [r for r in query(module_dsn, "SELECT id FROM audit WHERE target = %s ORDER BY id DESC",
                             queue)]

    def page(**params: str) -> dict[str, Any]:
        reply = httpx.get(f"{api.url}/api/audit", headers=ADMIN, params=params, timeout=10)
        assert 200 == reply.status_code, reply.text
        result: dict[str, Any] = reply.json()
        return result

    rule = "/api/queues/<name>/pause"
    first = page(actor="ops", route=rule, status="200", take="2")
    ids = [item["id"] for item in first["items"]]
    assert [r["id"] for r in mine[1:3]] == ids  # newest first, the read token's left out
    assert first["nextCursor"] == str(ids[-1])
    second = page(actor="ops", route=rule, status="200", take="2", cursor=first["nextCursor"])
    assert mine[3]["id"] == second["items"][0]["id"]
    forbidden = page(actor=READ_NAME, status="403")["items"]
    assert mine[0]["id"] == forbidden[0]["id"]
    assert {"actor", "role", "sessionId", "method", "route", "target", "status", "outcome",
            "remoteAddr", "details", "at", "id"} == set(first["items"][0])


def test_the_list_filters_by_time(api: Coordinator, module_dsn: str) -> None:
    httpx.post(f"{api.url}/api/queues/audit-time/pause", headers=ADMIN, timeout=10)
    at = query(module_dsn, "SELECT id, at FROM audit WHERE target = 'audit-time' "
                           "ORDER BY id DESC LIMIT 1")[0]
    stamp = at["at"].isoformat()

    def ids(**params: str) -> list[int]:
        reply = httpx.get(f"{api.url}/api/audit", headers=ADMIN, timeout=10,
                          params={"route": "/api/queues/<name>/pause", **params})
        return [item["id"] for item in reply.json()["items"]]

    assert at["id"] in ids(after=stamp)
    assert at["id"] not in ids(before=stamp)


@pytest.mark.parametrize(("params", "field"), [
    ({"status": "abc"}, "status"), ({"status": "99"}, "status"),
    ({"after": "yesterday"}, "after"), ({"before": "2026-01-01T00:00:00"}, "before"),
    ({"cursor": "-1"}, "cursor"), ({"take": "0"}, "take"), ({"actor": "x" * 101}, "actor"),
    ({"actor": "a\x00b"}, "actor"), ({"who": "ops"}, "who")])
def test_bad_filters_are_a_400_naming_the_field(api: Coordinator, params: dict[str, str],
                                                field: str) -> None:
    reply = httpx.get(f"{api.url}/api/audit", headers=ADMIN, params=params, timeout=10)
    assert (400, field) == (reply.status_code, reply.json()["field"])


def test_the_list_is_for_the_admin_only(api: Coordinator) -> None:
    assert 403 == httpx.get(f"{api.url}/api/audit", headers=READ, timeout=10).status_code


# -- retention -------------------------------------------------------------------------------

def insert_row(dsn: str, days_ago: float) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            """INSERT INTO audit (at, actor, role, method, route, status, outcome)
               VALUES (now() - make_interval(secs => %s::float8 * 86400), 'ops', 'admin',
                       'POST', '/api/jobs/<job_id>/cancel', 200, 'ok')
               RETURNING id""", (days_ago,)).fetchone()
    assert row is not None
    return int(row[0])


async def test_the_pruner_deletes_rows_past_their_retention_and_keeps_the_rest(
        db_dsn: str) -> None:
    old = [insert_row(db_dsn, 91) for _ in range(5)]
    kept = insert_row(db_dsn, 89)
    async with db.open_pool(db_dsn, max_size=1) as pool:
        result = await pruner.prune_once(RetentionStore(pool), RetentionPolicy(audit_days=90),
                                         batch=2)
    assert (5, [kept]) == (result.audit_rows,
                           [r["id"] for r in query(db_dsn, "SELECT id FROM audit")])
    assert old[0] < kept


async def test_zero_days_keeps_the_audit_forever(db_dsn: str) -> None:
    ancient = insert_row(db_dsn, 10_000)
    async with db.open_pool(db_dsn, max_size=1) as pool:
        result = await pruner.prune_once(RetentionStore(pool), RetentionPolicy(audit_days=0),
                                         batch=10)
    assert (0, [ancient]) == (result.audit_rows,
                              [r["id"] for r in query(db_dsn, "SELECT id FROM audit")])
