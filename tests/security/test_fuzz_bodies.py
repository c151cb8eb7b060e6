"""Hostile bodies for every route that takes one (issue 12, Acceptance): hypothesis
generates deep nesting, huge numbers (1e400, 400 digits), NaN and Infinity literals,
duplicate keys, invalid UTF-8, odd Unicode (escaped lone surrogates, U+202E, NUL) and
wrong types, in the fields of each route's own body Struct and as whole bodies, and
sends them with the right token to one real coordinator.

Every answer must arrive (a 5 s client timeout is the stall detector) and be no 5xx,
and /health must answer 200 after every example. Seeded (derandomize) and bounded.
The routes come from web/routes.py ROUTES, so a new route is fuzzed by itself; the
largest latency seen is written to test-output/security/fuzz_bodies.json.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import msgspec
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from scheduler_core.web.openapi import JSON
from scheduler_core.web.routes import ROUTES
from tests.security.body_routes import (
    BodyRoute,
    body_routes,
    log_events,
    record_figures,
    secured_coordinator,
)
from tests.support import Coordinator

MAX_EXAMPLES = 30  # per route, besides known_cases
TIMEOUT = 5.0
BODY_ROUTES = body_routes(media=None)
LATENCIES: dict[str, float] = {}
STATUSES: dict[int, int] = {}


def _fields(operation_id: str) -> list[str]:
    """The JSON names of the fields of a route's body Struct."""
    route = next(r for r in ROUTES if r.operation_id == operation_id)
    return [f.encode_name for f in msgspec.structs.fields(route.body)]


def _deep(n: int, opener: bytes, closer: bytes) -> bytes:
    return opener * n + b"1" + closer * n


ODD = [b"1e400", b"-1e400", b"1" + b"0" * 400, b"-" + b"9" * 400, b"1e-400", b"NaN",
       b"Infinity", b"-Infinity", b"-0", b"1.5", b"-1", b"9223372036854775808",
       b'"\\ud800"', b'"\\udfff\\ud800"', b'"\\u202e"', '"\u202etxt.exe"'.encode(),
       b'"\\u0000"', b'"a\\u0000b"', b'"\x00"', b'"\xff"', b'"\xc3"', b'"\xed\xa0\x80"',
       b"null", b"true", b"[]", b"{}", b'""', b'"' + b"x" * 5000 + b'"',
       b'{"a": 1, "a": 2}', b"[1, 2", b"{", b"]"]

VALUES = st.one_of(
    st.sampled_from(ODD),
    st.builds(_deep, st.integers(30, 3000), st.sampled_from([b"[", b'{"a": ']),
              st.just(b"]")).map(lambda b: b.replace(b'{"a": 1]', b'{"a": 1}')),
    st.integers(30, 3000).map(lambda n: b'{"a": ' * n + b"1" + b"}" * n),
    st.text(max_size=20).map(lambda t: json.dumps(t).encode()),
    st.integers().map(lambda i: str(i).encode()),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda f: repr(f).encode()),
    st.binary(max_size=16).map(lambda b: b'"' + b.replace(b'"', b"").replace(b"\\", b"")
                               + b'"'),
)


def _object(pairs: list[tuple[bytes, bytes]]) -> bytes:
    return b"{" + b", ".join(k + b": " + v for k, v in pairs) + b"}"


ODD_KEYS = [b'"unknown"', '"\u202e"'.encode(), b'"a\\u0000"', b'"\xff"', b'"\\ud800"', b'""']
# A value that is itself an object of hostile values (a payload, a result).
NESTED = st.lists(st.tuples(st.sampled_from([b'"a"', *ODD_KEYS]), VALUES),
                  max_size=3).map(_object)


def _keys(route: BodyRoute) -> list[bytes]:
    return [json.dumps(name).encode() for name in _fields(route.operation_id)]


def bodies(route: BodyRoute) -> st.SearchStrategy[bytes]:
    """Mostly objects whose keys are the route's own fields (duplicated at times, with
    some foreign ones) holding hostile values; hostile whole bodies; raw bytes."""
    if route.media != JSON:  # the login form
        return st.one_of(st.binary(max_size=200),
                         st.binary(max_size=200).map(lambda b: b"token=" + b),
                         st.sampled_from(ODD))
    keys = st.sampled_from([*_keys(route), *ODD_KEYS])
    pairs = st.lists(st.tuples(keys, VALUES | NESTED), min_size=1, max_size=6)
    return st.one_of(pairs.map(_object), pairs.map(_object), VALUES, st.binary(max_size=64))


def known_cases(route: BodyRoute) -> list[bytes]:
    """Each of the route's fields holding what broke the API before (issue 12): the
    fuzzing always tries these, whatever it generates besides."""
    if route.media != JSON:
        return [b"token=\xff", b"token=%ff%fe"]
    deep = b"[" * 2000 + b"1" + b"]" * 2000
    return [_object([(key, value)]) for key in _keys(route)
            for value in (b'"\xff"', b'{"a": ' + deep + b"}", deep, b"1e400")]


@pytest.fixture(scope="module")
def api(module_dsn: str) -> Iterator[Coordinator]:
    yield from secured_coordinator(module_dsn)


@pytest.fixture(scope="module")
def client(api: Coordinator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api.url, timeout=TIMEOUT) as c:
        yield c


@pytest.mark.parametrize("route", BODY_ROUTES, ids=str)
def test_hostile_bodies_get_an_answer_and_never_a_5xx(
        route: BodyRoute, client: httpx.Client) -> None:
    @settings(max_examples=MAX_EXAMPLES, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(bodies(route))
    def check(body: bytes) -> None:
        started = time.perf_counter()
        resp = client.request(route.method, route.path, content=body, headers=route.headers)
        took = time.perf_counter() - started
        LATENCIES[str(route)] = max(took, LATENCIES.get(str(route), 0.0))
        STATUSES[resp.status_code] = STATUSES.get(resp.status_code, 0) + 1
        assert resp.status_code < 500, (body[:300], resp.text[:500])
        health = client.get("/health")
        assert 200 == health.status_code, health.text

    for body in known_cases(route):
        check = example(body)(check)
    check()


def test_no_request_failed_and_the_figures_are_recorded(api: Coordinator) -> None:
    """Runs after the fuzzing (file order): no internal error was logged."""
    assert [] == log_events(api, "request_failed")
    record_figures("fuzz_bodies", {
        "routes": len(BODY_ROUTES), "examples_per_route": MAX_EXAMPLES,
        "max_latency_ms": {k: round(v * 1000, 1) for k, v in LATENCIES.items()},
        "statuses": {str(k): v for k, v in sorted(STATUSES.items())},
    })
