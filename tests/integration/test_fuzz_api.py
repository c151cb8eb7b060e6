"""Fuzzing the live coordinator from its own OpenAPI document (schemathesis).

Every operation of web/openapi.py gets generated requests, valid ones and invalid ones
(a bounded, derandomized number: the same examples on every run), sent to a real
coordinator on a real database. Each answer must be no 5xx, have a documented status
and content type, and match the documented schema.

The coordinator runs with a 0.05 s claim long-poll so ``POST /api/workers/claim``
answers at once; the dashboard's event stream, which never ends, is left out.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from scheduler_core.handlers import REGISTRY
from scheduler_core.web.openapi import build_document
from scheduler_core.web.routes import ROUTES
from tests.support import Coordinator, running_coordinator

MAX_EXAMPLES = 20
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]

# The document as the coordinator builds it for the built-in job types. (A lazy
# schema read from the live coordinator, schemathesis.pytest.from_fixture, does not
# run under this pytest; the last test checks the served document's operations.)
schema = schemathesis.openapi.from_dict(build_document(REGISTRY, ROUTES)).exclude(
    operation_id="dashboardEvents")


@pytest.fixture(scope="module")
def api(module_dsn: str) -> Iterator[Coordinator]:
    with running_coordinator(module_dsn, env={"SCHEDULER_CLAIM_WAIT_SECONDS": "0.05"}) as c:
        yield c


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        s.trust_env = False  # loopback only: no proxy from the environment
        yield s


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, derandomize=True, database=None, deadline=None,
          suppress_health_check=list(HealthCheck))
def test_the_api_answers_as_documented(case: schemathesis.Case, api: Coordinator,
                                       session: requests.Session) -> None:
    case.call_and_validate(base_url=api.url, session=session, checks=CHECKS, timeout=10)


def test_the_served_document_is_generated_from_the_route_table(
        api: Coordinator, session: requests.Session) -> None:
    resp = session.get(api.url + "/openapi.json", timeout=10)
    assert (200, "application/json") == (resp.status_code, resp.headers["content-type"])
    assert {r.operation_id for r in ROUTES} == {
        op["operationId"] for ops in resp.json()["paths"].values() for op in ops.values()}
