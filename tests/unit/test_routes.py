"""web/routes.py: the one route table is what the app serves, what web/auth.py checks
and what /openapi.json documents, route for route."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from quart import Response
from quart_trio import QuartTrio
from werkzeug.routing import Rule

from scheduler_core.handlers import REGISTRY
from scheduler_core.runtime.config import load_config
from scheduler_core.schema import wire
from scheduler_core.schema.store import Store
from scheduler_core.web import auth
from scheduler_core.web.app import AppContext, create_app
from scheduler_core.web.openapi import ID, Route, build_document, openapi_path
from scheduler_core.web.routes import BLUEPRINTS, ROUTES, check_table

AUTOMATIC = {"HEAD", "OPTIONS"}
TOKENS = {"SCHEDULER_ADMIN_TOKEN": "admin-token-000000000000",
          "SCHEDULER_READ_TOKEN": "read-token-0000000000000",
          "SCHEDULER_WORKER_TOKEN": "worker-token-00000000000"}


class _NoPool:
    """Stands in for the database pool: building the app opens no connection."""


@pytest.fixture(scope="module")
def app() -> QuartTrio:
    return create_app(AppContext(store=Store(_NoPool()),  # type: ignore[arg-type]
                                 registry=REGISTRY, config=load_config(TOKENS)))


def served(app: QuartTrio) -> list[tuple[str, Rule]]:
    """(method, rule) of every route of the app, without Quart's HEAD and OPTIONS."""
    return [(method, rule) for rule in app.url_map.iter_rules()
            for method in sorted((rule.methods or set()) - AUTOMATIC)]


def entry(method: str, rule: Rule) -> Route:
    (found,) = [r for r in ROUTES if (r.method.upper(), r.path) == (method, rule.rule)]
    return found


def test_the_app_serves_each_entry_with_its_view(app: QuartTrio) -> None:
    expected = sorted((r.method.upper(), r.path, r.view.__qualname__) for r in ROUTES)
    assert expected == sorted((method, rule.rule, app.view_functions[rule.endpoint].__qualname__)
                              for method, rule in served(app))


def test_the_hook_requires_the_role_of_each_entry(app: QuartTrio) -> None:
    roles = app.extensions["auth_roles"]
    for method, rule in served(app):
        assert {entry(method, rule).role} == auth.required_roles(method, rule, roles), \
            f"{method} {rule.rule}"


def test_the_document_has_each_rule_of_the_app_once(app: QuartTrio) -> None:
    document = build_document(REGISTRY, ROUTES, version="1")
    documented = sorted((method.upper(), path, op["operationId"])
                        for path, ops in document["paths"].items()
                        for method, op in ops.items())
    assert documented == sorted(
        (method, openapi_path(entry(method, rule)), entry(method, rule).operation_id)
        for method, rule in served(app))


async def test_the_served_document_is_the_table_s(app: QuartTrio) -> None:
    resp = await app.test_client().get(
        "/openapi.json", headers={"Authorization": f"Bearer {TOKENS['SCHEDULER_READ_TOKEN']}"})
    assert 200 == resp.status_code
    expected = json.loads(json.dumps(build_document(REGISTRY, ROUTES)))
    assert expected == json.loads(await resp.get_data())


def test_a_method_and_rule_listed_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="twice"):
        check_table((*ROUTES, ROUTES[0]), BLUEPRINTS)


def test_a_view_outside_the_blueprints_modules_is_refused() -> None:
    stray = dataclasses.replace(ROUTES[0], path="/api/stray", view=stray_view)
    with pytest.raises(ValueError, match="module of BLUEPRINTS"):
        check_table((*ROUTES, stray), BLUEPRINTS)


def test_the_table_itself_passes_the_check() -> None:
    check_table(ROUTES, BLUEPRINTS)


async def stray_view() -> Response:  # a view in a module no blueprint belongs to
    return Response("")


@pytest.mark.parametrize(("rule", "params", "expected"), [
    ("/api/jobs", (), "/api/jobs"),
    ("/api/jobs/<job_id>/cancel", (ID,), "/api/jobs/{id}/cancel"),
    ("/dashboard/static/<path:filename>", (ID,), "/dashboard/static/{id}"),
])
def test_a_rule_is_written_with_its_path_parameters_names(
        rule: str, params: tuple[Any, ...], expected: str) -> None:
    assert expected == openapi_path(_route(rule, params))


async def _view() -> Response:
    return Response("")


def _route(rule: str, params: tuple[Any, ...]) -> Route:
    return Route("get", rule, "read", _view, "op", "A route", "tests", {200: wire.JobOut},
                 params=params)


def test_a_rule_variable_without_its_path_parameter_is_refused() -> None:
    with pytest.raises(ValueError, match=r"one path parameter per variable of "
                                         r"'/api/jobs/<job_id>' \(1\), found 0"):
        _route("/api/jobs/<job_id>", ())
