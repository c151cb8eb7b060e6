"""web/auth.py and its settings: the route table covers the app, tokens are compared in
constant time, roles permit what they should, the loopback rule, and the hook's
answers (401/403, cookie and CSRF) on the app itself, without a database."""

from __future__ import annotations

import hmac
from typing import Any

import pytest
from quart_trio import QuartTrio

from scheduler_core.command.cli import main
from scheduler_core.handlers import REGISTRY
from scheduler_core.runtime.config import Config, bind_refusal, is_loopback_host, load_config
from scheduler_core.runtime.errors import ConfigError
from scheduler_core.schema.store import Store
from scheduler_core.web import auth
from scheduler_core.web.app import AppContext, create_app
from scheduler_core.web.routes import ROUTE_ROLES

ADMIN = "admin-token-000000000000"
ADMIN_NEXT = "admin-token-111111111111"
READ = "read-token-0000000000000"
WORKER = "worker-token-00000000000"
TOKENS = {"SCHEDULER_ADMIN_TOKEN": f"{ADMIN},{ADMIN_NEXT}", "SCHEDULER_READ_TOKEN": READ,
          "SCHEDULER_WORKER_TOKEN": WORKER}
AUTOMATIC = {"HEAD", "OPTIONS"}


class _NoPool:
    """Stands in for the database pool: building the app opens no connection."""


def make_app(env: dict[str, str] | None = None) -> QuartTrio:
    config = load_config(TOKENS if env is None else env)
    return create_app(AppContext(store=Store(_NoPool()),  # type: ignore[arg-type]
                                 registry=REGISTRY, config=config))


# -- the route table ---------------------------------------------------------------------


def app_routes() -> set[tuple[str, str]]:
    return {(method, rule.rule) for rule in make_app().url_map.iter_rules()
            for method in (rule.methods or set()) - AUTOMATIC}


def test_every_route_of_the_app_has_a_role() -> None:
    assert set() == app_routes() - set(ROUTE_ROLES)


def test_the_worker_api_is_for_the_worker_role_only() -> None:
    roles = {role for (_, rule), role in ROUTE_ROLES.items()
             if rule.startswith("/api/workers/")}
    assert {"worker"} == roles


def test_every_write_of_the_public_api_needs_the_admin_role() -> None:
    roles = {role for (method, rule), role in ROUTE_ROLES.items()
             if method != "GET" and rule.startswith("/api/")
             and not rule.startswith("/api/workers/")}
    assert {"admin"} == roles


# -- tokens ------------------------------------------------------------------------------


def tokens(**env: str) -> auth.Tokens:
    return auth.Tokens(load_config(env))


@pytest.mark.parametrize(("presented", "expected"), [
    (ADMIN, "admin"),
    (ADMIN_NEXT, "admin"),  # rotation: every listed token is accepted
    (READ, "read"),
    (WORKER, "worker"),
    (ADMIN + "x", None),
    (ADMIN[:-1], None),
    ("", None),
    ("Bearer " + ADMIN, None),
    ("ädmin-token-000000000000", None),  # not ASCII: no TypeError, just no match
])
def test_a_token_is_identified_by_its_role(presented: str, expected: str | None) -> None:
    assert expected == auth.Tokens(load_config(TOKENS)).identify(presented)


def test_every_configured_token_is_compared_even_after_a_match(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    compare = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return compare(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    assert "admin" == auth.Tokens(load_config(TOKENS)).identify(ADMIN)  # the first one
    assert 4 == len(calls)
    assert {32} == {len(a) for a, _ in calls} | {len(b) for _, b in calls}  # digests


def test_no_token_configured_means_no_authentication() -> None:
    assert (False, False) == (bool(tokens()), Config().auth_enabled)


@pytest.mark.parametrize(("role", "needed", "expected"), [
    ("admin", "admin", True), ("admin", "read", True), ("admin", "worker", False),
    ("read", "read", True), ("read", "admin", False), ("read", "worker", False),
    ("worker", "worker", True), ("worker", "read", False), ("worker", "admin", False),
    ("read", "public", True), ("worker", "public", True),
])
def test_a_role_permits(role: auth.Role, needed: auth.Role, expected: bool) -> None:
    assert expected == auth.permits(role, needed)


@pytest.mark.parametrize(("header", "expected"), [
    (f"Bearer {ADMIN}", ADMIN),
    (f"bearer {ADMIN}", ADMIN),
    ("Bearer abc+/=", "abc+/="),
    ("Bearer", None),
    ("Bearer ", None),
    (f"Basic {ADMIN}", None),
    (f"Bearer {ADMIN} extra", None),
    (ADMIN, None),
    ("Bearer a,b", None),
])
def test_a_bearer_header_is_parsed(header: str, expected: str | None) -> None:
    assert expected == auth.parse_bearer(header)


def test_head_needs_what_get_needs_and_options_any_method_of_the_rule() -> None:
    rules = {rule.endpoint: rule for rule in make_app().url_map.iter_rules()}
    assert {"read"} == auth.required_roles("HEAD", rules["api.get_job"], ROUTE_ROLES)
    assert {"admin"} == auth.required_roles("OPTIONS", rules["api.submit_job"], ROUTE_ROLES)
    assert {"worker"} == auth.required_roles("OPTIONS", rules["worker_api.claim"],
                                             ROUTE_ROLES)
    assert {"read", "admin", "worker"} == auth.required_roles("GET", None, ROUTE_ROLES)


# -- settings ----------------------------------------------------------------------------


@pytest.mark.parametrize(("env", "message"), [
    ({"SCHEDULER_ADMIN_TOKEN": "short"}, r"SCHEDULER_ADMIN_TOKEN \(token 1 of 1\) must be at "
                                         r"least 16 characters, found 5"),
    ({"SCHEDULER_READ_TOKEN": f"{READ},has space in it!!"},
     r"SCHEDULER_READ_TOKEN \(token 2 of 2\) must use only"),
    ({"SCHEDULER_ADMIN_TOKEN": ADMIN, "SCHEDULER_READ_TOKEN": ADMIN},
     "SCHEDULER_READ_TOKEN .* is also in SCHEDULER_ADMIN_TOKEN"),
    ({"SCHEDULER_PUBLIC_PATHS": "/health,metrics"}, "SCHEDULER_PUBLIC_PATHS must be"),
    ({"SCHEDULER_ALLOW_NO_AUTH": "yes"}, "SCHEDULER_ALLOW_NO_AUTH must be true or false"),
])
def test_a_bad_auth_setting_is_a_config_error_naming_it(env: dict[str, str],
                                                       message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load_config(env)
    assert READ not in str(info.value) and ADMIN not in str(info.value)


@pytest.mark.parametrize(("value", "expected"), [
    ("", {"/health", "/health/ready", "/metrics"}),  # the default
    ("/health, /metrics", {"/health", "/metrics"}),
    ("none", set()),
])
def test_the_public_paths(value: str, expected: set[str]) -> None:
    assert expected == load_config({"SCHEDULER_PUBLIC_PATHS": value}).public_path_set


async def test_with_no_public_path_health_needs_a_token() -> None:
    client = make_app({**TOKENS, "SCHEDULER_PUBLIC_PATHS": "none"}).test_client()
    assert 401 == (await client.get("/metrics")).status_code
    assert 200 == (await client.get("/metrics", headers=bearer(READ))).status_code


def test_tokens_are_split_on_commas_and_blanks_dropped() -> None:
    config = load_config({"SCHEDULER_ADMIN_TOKEN": f" {ADMIN} ,, {ADMIN_NEXT} "})
    assert (ADMIN, ADMIN_NEXT) == config.admin_tokens


@pytest.mark.parametrize(("env", "expected"), [
    ({}, ""),
    ({"SCHEDULER_ADMIN_TOKEN": f"{ADMIN},{ADMIN_NEXT}"}, ADMIN),
    ({"SCHEDULER_ADMIN_TOKEN": ADMIN, "SCHEDULER_TOKEN": READ}, READ),
])
def test_the_client_token_falls_back_to_the_first_admin_token(env: dict[str, str],
                                                               expected: str) -> None:
    assert expected == load_config(env).client_token


def test_the_tokens_are_masked_in_the_config_repr() -> None:
    shown = repr(load_config(TOKENS))
    assert (False, True) == (ADMIN in shown or READ in shown or WORKER in shown,
                             "admin_token=***" in shown)


@pytest.mark.parametrize(("host", "expected"), [
    ("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("[::1]", True),
    ("localhost", True), ("LOCALHOST", True),
    ("0.0.0.0", False), ("::", False), ("", False), ("10.0.0.5", False),
    ("example.com", False),
])
def test_loopback_hosts(host: str, expected: bool) -> None:
    assert expected == is_loopback_host(host)


@pytest.mark.parametrize(("env", "refused"), [
    ({}, False),
    ({"SCHEDULER_HOST": "::1"}, False),
    ({"SCHEDULER_HOST": "0.0.0.0"}, True),
    ({"SCHEDULER_HOST": "10.0.0.5"}, True),
    ({"SCHEDULER_HOST": "0.0.0.0", "SCHEDULER_ALLOW_NO_AUTH": "true"}, False),
    ({"SCHEDULER_HOST": "0.0.0.0", "SCHEDULER_READ_TOKEN": READ}, False),
    ({"SCHEDULER_HOST": "0.0.0.0", "SCHEDULER_WORKER_TOKEN": WORKER}, False),
])
def test_without_tokens_the_coordinator_binds_loopback_only(env: dict[str, str],
                                                            refused: bool) -> None:
    assert refused == (bind_refusal(load_config(env)) is not None)


def test_the_coordinator_command_refuses_a_public_address_without_tokens(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("SCHEDULER_ADMIN_TOKEN", "SCHEDULER_READ_TOKEN", "SCHEDULER_WORKER_TOKEN",
                 "SCHEDULER_ALLOW_NO_AUTH", "SCHEDULER_HOST"):
        monkeypatch.delenv(name, raising=False)
    # structlog would keep printing to this test's captured (then closed) stderr.
    monkeypatch.setattr("scheduler_core.runtime.logs.configure", lambda *args, **kw: None)
    assert 1 == main(["coordinator", "--host", "0.0.0.0", "--port", "1"])
    assert "refusing to bind '0.0.0.0' without authentication" in capsys.readouterr().err


# -- the hook, on the app (no database needed for these routes) --------------------------

Client = Any


@pytest.fixture
def client() -> Client:
    return make_app().test_client()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_no_credentials_is_a_401_with_a_bearer_challenge(client: Client) -> None:
    resp = await client.get("/api/dashboard/meta")
    body = await resp.get_json()
    assert (401, "unauthorized") == (resp.status_code, body["error"])
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("header", [f"Bearer {ADMIN}x", f"Basic {ADMIN}", "Bearer"])
async def test_a_wrong_or_malformed_token_is_a_401(client: Client, header: str) -> None:
    resp = await client.get("/api/dashboard/meta", headers={"Authorization": header})
    assert 401 == resp.status_code
    assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]


@pytest.mark.parametrize(("token", "status"), [(READ, 200), (ADMIN, 200), (WORKER, 403)])
async def test_a_read_route_takes_the_read_and_admin_tokens(client: Client, token: str,
                                                             status: int) -> None:
    resp = await client.get("/api/dashboard/meta", headers=bearer(token))
    assert status == resp.status_code


async def test_a_wrong_role_is_a_403_that_names_the_roles(client: Client) -> None:
    resp = await client.post("/api/seed", headers=bearer(READ))
    body = await resp.get_json()
    assert (403, "forbidden") == (resp.status_code, body["error"])
    assert "needs the admin role; the token given is a read token" in body["message"]


async def test_an_unknown_route_needs_a_token_before_it_is_a_404(client: Client) -> None:
    assert 401 == (await client.get("/nothing-here")).status_code
    assert 404 == (await client.get("/nothing-here", headers=bearer(WORKER))).status_code


async def test_the_static_files_and_the_login_page_are_public(client: Client) -> None:
    assert 200 == (await client.get("/dashboard/static/app.css")).status_code
    assert 200 == (await client.get("/login")).status_code


async def test_a_browser_opening_the_dashboard_is_sent_to_the_login_page(
        client: Client) -> None:
    resp = await client.get("/", headers={"Accept": "text/html,*/*"})
    assert (303, "/login") == (resp.status_code, resp.headers["Location"])


async def test_a_public_path_is_public_for_reads_only() -> None:
    app = make_app({**TOKENS, "SCHEDULER_PUBLIC_PATHS": "/api/dashboard/meta,/api/seed"})
    client = app.test_client()
    assert 200 == (await client.get("/api/dashboard/meta")).status_code
    assert 401 == (await client.post("/api/seed")).status_code


async def login(client: Client, token: str) -> Any:
    return await client.post("/login", form={"token": token})


def cookies(resp: Any) -> dict[str, str]:
    """Set-Cookie headers by cookie name."""
    return {h.split("=", 1)[0]: h for h in resp.headers.getlist("Set-Cookie")}


# Sign-in itself, sessions and the CSRF header need the database: they are tested in
# tests/integration/test_auth.py and tests/security/test_dashboard_sessions.py.


@pytest.mark.parametrize(("token", "status"), [("not-a-token-at-all-!", 401),
                                               (ADMIN + "0", 401), (WORKER, 403)])
async def test_login_refuses_other_tokens(client: Client, token: str, status: int) -> None:
    resp = await login(client, token)
    assert (status, {}) == (resp.status_code, cookies(resp))


async def test_logout_without_a_session_clears_the_cookies(client: Client) -> None:
    resp = await client.post("/logout")
    assert (303, "/login") == (resp.status_code, resp.headers["Location"])
    assert {auth.SESSION_COOKIE, auth.CSRF_COOKIE} == set(cookies(resp))
    assert all("Max-Age=0" in c or "expires=Thu, 01 Jan 1970" in c
               for c in cookies(resp).values())


@pytest.mark.parametrize("env", [TOKENS, {}], ids=["tokens", "no tokens"])
async def test_logout_is_post_only(env: dict[str, str]) -> None:
    client = make_app(env).test_client()
    assert 405 == (await client.get("/logout")).status_code


def test_the_csrf_token_is_bound_to_its_session() -> None:
    first, second = "session-one-" + "1" * 30, "session-two-" + "2" * 30
    assert auth.csrf_token(first) == auth.csrf_token(first)
    assert auth.csrf_token(first) != auth.csrf_token(second)
    assert first not in auth.csrf_token(first)


def test_a_session_fingerprint_is_not_the_token_digest() -> None:
    assert auth.fingerprint(ADMIN) != auth._digest(ADMIN)
    assert auth.fingerprint(ADMIN) != auth.fingerprint(ADMIN_NEXT)


async def test_without_tokens_nothing_is_checked() -> None:
    client = make_app({}).test_client()
    assert 200 == (await client.get("/api/dashboard/meta")).status_code
    assert 303 == (await client.get("/login")).status_code
