"""Issue 12, item 7: the dashboard's sessions live on the server (web/auth.py,
schema/session_store.py), against a real coordinator with tokens on a real database.

The cookie holds a random id whose SHA-256 alone is stored; sign-out (POST only) ends
the session on the server; an admin lists and revokes sessions; an expired session or
one whose token was rotated out is refused; the CSRF header must be the one bound to
the session. Other sites' writes get 403 whatever the credentials (web/crosssite.py),
and with tokens the Host header is not checked.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import httpx
import pytest

from tests.support import Coordinator, query, running_coordinator, submit

ADMIN = "sess-admin-" + "a" * 24
OLD_ADMIN = "sess-old-admin-" + "o" * 20
READ = "sess-read-" + "r" * 24
WORKER = "sess-worker-" + "w" * 24
TOKENS = {"SCHEDULER_ADMIN_TOKEN": f"{OLD_ADMIN},{ADMIN}", "SCHEDULER_READ_TOKEN": READ,
          "SCHEDULER_WORKER_TOKEN": WORKER, "SCHEDULER_SESSION_HOURS": "2"}
FUTURE = "2999-01-01T00:00:00Z"
SESSION, CSRF = "scheduler_session", "scheduler_csrf"


@pytest.fixture(scope="module")
def api(module_dsn: str) -> Iterator[Coordinator]:
    with running_coordinator(module_dsn, env=TOKENS) as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def sign_in(url: str, token: str = ADMIN) -> httpx.Client:
    """A client holding the cookies of a fresh sign-in (close it after use)."""
    resp = httpx.post(url + "/login", data={"token": token})
    assert 303 == resp.status_code, resp.text
    return httpx.Client(base_url=url, cookies=resp.cookies, timeout=10)


def session_row(dsn: str, cookie: str) -> dict[str, object]:
    rows = query(dsn, "SELECT * FROM sessions WHERE token_hash = %s",
                 hashlib.sha256(cookie.encode()).digest())
    assert 1 == len(rows), rows
    return rows[0]


def status_of(url: str, job_id: str) -> str:
    return str(httpx.get(f"{url}/api/jobs/{job_id}", headers=bearer(READ)).json()["status"])


def test_sign_in_stores_a_hashed_random_id_not_the_token(api: Coordinator,
                                                          module_dsn: str) -> None:
    with sign_in(api.url) as browser:
        cookie = browser.cookies[SESSION]
        assert ADMIN not in cookie and len(cookie) >= 43
        row = session_row(module_dsn, cookie)
        dump = repr(query(module_dsn, "SELECT * FROM sessions"))
        assert (cookie in dump, ADMIN in dump) == (False, False)
        assert "admin" == row["role"] and row["revoked_at"] is None
        hours = query(module_dsn, "SELECT extract(epoch FROM expires_at - created_at) / 3600 "
                      "AS h FROM sessions WHERE id = %s", row["id"])[0]["h"]
        assert 2 == round(float(hours), 3)
        assert 200 == browser.get("/api/jobs").status_code


def test_the_session_cookie_is_httponly_strict_and_lasts_the_session_hours(
        api: Coordinator) -> None:
    resp = httpx.post(api.url + "/login", data={"token": READ})
    cookies = {h.split("=", 1)[0]: h for h in resp.headers.get_list("set-cookie")}
    session, csrf = cookies[SESSION], cookies[CSRF]
    assert (True, True, True, True) == ("HttpOnly" in session, "SameSite=Strict" in session,
                                        "Path=/" in session, "Max-Age=7200" in session)
    assert ("HttpOnly" in csrf, "Max-Age=7200" in csrf) == (False, True)


def test_sign_out_revokes_the_session_on_the_server(api: Coordinator,
                                                    module_dsn: str) -> None:
    with sign_in(api.url) as browser:
        cookie, csrf = browser.cookies[SESSION], browser.cookies[CSRF]
        out = browser.post("/logout", headers={"X-CSRF-Token": csrf})
        assert (303, "/login") == (out.status_code, out.headers["location"])
        assert session_row(module_dsn, cookie)["revoked_at"] is not None
    # The old cookie, replayed (as a copy of it stolen earlier would be):
    with httpx.Client(base_url=api.url, cookies={SESSION: cookie, CSRF: csrf}) as replay:
        assert 401 == replay.get("/api/jobs").status_code
        page = replay.get("/", headers={"Accept": "text/html"})
        assert (303, "/login") == (page.status_code, page.headers["location"])


def test_sign_out_without_the_csrf_header_is_refused_and_ends_nothing(
        api: Coordinator, module_dsn: str) -> None:
    with sign_in(api.url) as browser:
        assert 403 == browser.post("/logout").status_code
        assert 403 == browser.post("/logout", headers={"X-CSRF-Token": "x"}).status_code
        assert session_row(module_dsn, browser.cookies[SESSION])["revoked_at"] is None
        assert 200 == browser.get("/api/jobs").status_code


@pytest.mark.parametrize("who", ["anonymous", "signed in", "bearer"])
def test_sign_out_is_post_only(api: Coordinator, who: str) -> None:
    if who == "signed in":
        with sign_in(api.url) as browser:
            assert 405 == browser.get("/logout").status_code
            assert 200 == browser.get("/api/jobs").status_code  # still signed in
        return
    headers = bearer(ADMIN) if who == "bearer" else {}
    assert 405 == httpx.get(api.url + "/logout", headers=headers).status_code


def test_the_csrf_token_of_another_session_is_refused(api: Coordinator) -> None:
    """Even as a matching cookie and header pair (a cookie planted by a sibling
    subdomain, say), which the old double-submit check let through."""
    job = submit(api.url, headers=bearer(ADMIN), runAt=FUTURE)["id"]
    with sign_in(api.url) as mine, sign_in(api.url) as other:
        stolen = other.cookies[CSRF]
        planted = {SESSION: mine.cookies[SESSION], CSRF: stolen}
        with httpx.Client(base_url=api.url, cookies=planted) as browser:
            refused = browser.post(f"/api/jobs/{job}/cancel", headers={"X-CSRF-Token": stolen})
        assert (403, "forbidden") == (refused.status_code, refused.json()["error"])
        assert "Scheduled" == status_of(api.url, job)
        done = mine.post(f"/api/jobs/{job}/cancel",
                         headers={"X-CSRF-Token": mine.cookies[CSRF]})
        assert (200, "Cancelled") == (done.status_code, done.json()["status"])


def test_a_made_up_csrf_cookie_and_header_pair_is_refused(api: Coordinator) -> None:
    job = submit(api.url, headers=bearer(ADMIN), runAt=FUTURE)["id"]
    with sign_in(api.url) as signed_in:
        made_up = {SESSION: signed_in.cookies[SESSION], CSRF: "x"}
        with httpx.Client(base_url=api.url, cookies=made_up) as browser:
            resp = browser.post(f"/api/jobs/{job}/cancel", headers={"X-CSRF-Token": "x"})
        assert 403 == resp.status_code
        assert "Scheduled" == status_of(api.url, job)


def test_a_session_expired_in_the_database_is_refused(api: Coordinator,
                                                      module_dsn: str) -> None:
    with sign_in(api.url) as browser:
        query(module_dsn, "UPDATE sessions SET expires_at = now() - interval '1 second' "
              "WHERE token_hash = %s RETURNING id",
              hashlib.sha256(browser.cookies[SESSION].encode()).digest())
        assert 401 == browser.get("/api/jobs").status_code


def test_an_admin_lists_sessions_without_their_secrets_and_revokes_one(
        api: Coordinator) -> None:
    with sign_in(api.url, READ) as viewer:
        listed = httpx.get(api.url + "/api/sessions", headers=bearer(ADMIN))
        assert 200 == listed.status_code, listed.text
        assert viewer.cookies[SESSION] not in listed.text
        assert 403 == viewer.get("/api/sessions").status_code  # a read session may not
        mine = next(s for s in listed.json()["items"] if s["role"] == "read")
        assert {"id", "role", "remoteAddr", "createdAt", "expiresAt", "lastSeenAt"} <= set(mine)
        gone = httpx.delete(f"{api.url}/api/sessions/{mine['id']}", headers=bearer(ADMIN))
        assert (200, True) == (gone.status_code, gone.json()["revokedAt"] is not None)
        assert 401 == viewer.get("/api/jobs").status_code


def test_revoking_an_unknown_or_malformed_session_id_is_a_4xx(api: Coordinator) -> None:
    unknown = httpx.delete(f"{api.url}/api/sessions/00000000-0000-0000-0000-000000000000",
                           headers=bearer(ADMIN))
    malformed = httpx.delete(f"{api.url}/api/sessions/not-an-id", headers=bearer(ADMIN))
    assert (404, 400) == (unknown.status_code, malformed.status_code)
    assert ("id", "id") == (unknown.json()["field"], malformed.json()["field"])


def test_an_admin_revokes_every_session_at_once(api: Coordinator) -> None:
    with sign_in(api.url) as first, sign_in(api.url, READ) as second:
        resp = httpx.post(api.url + "/api/sessions/revoke-all", headers=bearer(ADMIN))
        assert 200 == resp.status_code and resp.json()["revoked"] >= 2
        assert (401, 401) == (first.get("/api/jobs").status_code,
                              second.get("/api/jobs").status_code)


def test_a_read_session_cannot_write_even_with_its_csrf_token(api: Coordinator) -> None:
    job = submit(api.url, headers=bearer(ADMIN), runAt=FUTURE)["id"]
    with sign_in(api.url, READ) as viewer:
        resp = viewer.post(f"/api/jobs/{job}/cancel", headers={"X-CSRF-Token":
                                                               viewer.cookies[CSRF]})
        assert 403 == resp.status_code
        assert "Scheduled" == status_of(api.url, job)


def test_a_cross_site_write_is_refused_even_with_a_valid_session(api: Coordinator) -> None:
    job = submit(api.url, headers=bearer(ADMIN), runAt=FUTURE)["id"]
    with sign_in(api.url) as browser:
        resp = browser.post(f"/api/jobs/{job}/cancel", headers={
            "X-CSRF-Token": browser.cookies[CSRF], "Origin": "http://evil.example"})
        assert (403, "Origin") == (resp.status_code, resp.json()["field"])
        assert "Scheduled" == status_of(api.url, job)


def test_with_tokens_the_host_name_is_not_checked(api: Coordinator) -> None:
    resp = httpx.get(api.url + "/api/jobs", headers={**bearer(READ), "Host": "sched.example"})
    assert 200 == resp.status_code


def test_rotating_the_token_out_ends_its_sessions(module_dsn: str) -> None:
    with running_coordinator(module_dsn, env=TOKENS) as before:
        with sign_in(before.url, OLD_ADMIN) as old, sign_in(before.url, ADMIN) as new:
            cookies = (dict(old.cookies), dict(new.cookies))
    rotated = {**TOKENS, "SCHEDULER_ADMIN_TOKEN": ADMIN}
    with running_coordinator(module_dsn, env=rotated) as after:
        with httpx.Client(base_url=after.url, cookies=cookies[0]) as old:
            assert 401 == old.get("/api/jobs").status_code
        with httpx.Client(base_url=after.url, cookies=cookies[1]) as new:
            assert 200 == new.get("/api/jobs").status_code
