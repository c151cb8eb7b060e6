"""web/openapi.py: the generated OpenAPI document is valid OpenAPI 3.1 and describes
exactly the routes the app has."""

from __future__ import annotations

import re
from typing import Any

import pytest
from openapi_spec_validator import validate

from scheduler_core.handlers import REGISTRY
from scheduler_core.runtime.config import Config
from scheduler_core.schema import wire
from scheduler_core.schema.store import Store
from scheduler_core.web.app import AppContext, create_app
from scheduler_core.web.openapi import build_document, openapi_path
from scheduler_core.web.routes import ROUTES

# Methods every rule gets from Quart itself.
AUTOMATIC = {"HEAD", "OPTIONS"}


class _NoPool:
    """Stands in for the database pool: building the app opens no connection."""


def app_routes() -> set[tuple[str, str]]:
    """(method, path with every parameter as {}) of each route of the real app."""
    store = Store(_NoPool())  # type: ignore[arg-type]
    app = create_app(AppContext(store=store, registry=REGISTRY, config=Config()))
    return {(method, re.sub(r"<[^>]+>", "{}", rule.rule))
            for rule in app.url_map.iter_rules()
            for method in (rule.methods or set()) - AUTOMATIC}


def documented_routes(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method.upper(), re.sub(r"\{[^}]+\}", "{}", path))
            for path, operations in document["paths"].items() for method in operations}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return build_document(REGISTRY, ROUTES, version="1.2.3")


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert "3.1.0" == document["openapi"]
    validate(document)


def test_the_document_lists_exactly_the_routes_of_the_app(document: dict[str, Any]) -> None:
    assert app_routes() == documented_routes(document)


def test_operation_ids_are_unique() -> None:
    ids = [route.operation_id for route in ROUTES]
    assert sorted(set(ids)) == sorted(ids)


def test_every_path_parameter_is_declared(document: dict[str, Any]) -> None:
    for path, operations in document["paths"].items():
        names = set(re.findall(r"\{([^}]+)\}", path))
        for method, op in operations.items():
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert names == declared, f"{method.upper()} {path}"


def test_every_error_status_is_an_error_body(document: dict[str, Any]) -> None:
    for route in ROUTES:
        responses = document["paths"][openapi_path(route)][route.method]["responses"]
        for status in route.errors:
            ref = responses[str(status)]["content"]["application/json"]["schema"]["$ref"]
            expected = "ConflictBody" if status == 409 else "ErrorBody"
            assert expected == ref.rsplit("/", 1)[1], f"{route.method} {route.path} {status}"


def test_every_route_with_a_body_documents_413(document: dict[str, Any]) -> None:
    for route in ROUTES:
        if route.body is not None:
            assert "413" in document["paths"][openapi_path(route)][route.method]["responses"]


def test_a_submission_is_one_variant_per_job_type_with_its_payload(
        document: dict[str, Any]) -> None:
    body = document["paths"]["/api/jobs"]["post"]["requestBody"]["content"]
    assert ({"$ref": "#/components/schemas/Submission"}
            == body["application/json"]["schema"])
    schemas = document["components"]["schemas"]
    assert [{"$ref": "#/components/schemas/JobSubmission"},
            {"$ref": "#/components/schemas/ScheduledWorkflowSubmission"}] == \
        schemas["Submission"]["oneOf"]
    refs = [v["$ref"].rsplit("/", 1)[1] for v in schemas["JobSubmission"]["oneOf"]]
    assert [f"SubmitJob_{name}" for name in REGISTRY.names()] == refs
    http_get = schemas["SubmitJob_http_get"]
    assert {"const": "http_get"} == http_get["properties"]["type"]
    assert "#/components/schemas/HttpGetPayload" == http_get["properties"]["payload"]["$ref"]
    assert {"type", "payload"} <= set(http_get["required"])
    assert "payload" not in schemas["SubmitJob_noop"]["required"]
    assert "workflow" not in http_get["properties"]


def test_a_scheduled_workflow_takes_cron_and_a_workflow_of_job_submissions(
        document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    scheduled = schemas["ScheduledWorkflowSubmission"]
    assert ["cron", "workflow"] == scheduled["required"]
    assert "type" not in scheduled["properties"]
    assert {"$ref": "#/components/schemas/JobSubmission"} == \
        schemas["SubmitWorkflow"]["properties"]["steps"]["additionalProperties"]


def test_a_batch_holds_job_submissions(document: dict[str, Any]) -> None:
    batch = document["components"]["schemas"]["SubmitBatch"]
    assert {"$ref": "#/components/schemas/JobSubmission"} == batch["properties"]["jobs"]["items"]
    assert "SubmitJob" not in document["components"]["schemas"]


def test_struct_constraints_reach_the_document(document: dict[str, Any]) -> None:
    """The schemas are msgspec's: a Meta constraint in schema/wire.py shows up here."""
    claim = document["components"]["schemas"]["Claim"]
    assert {"type": "number", "minimum": 0, "maximum": 60, "default": 0.0} == \
        claim["properties"]["waitSeconds"]
    assert set(wire.Claim.__struct_encode_fields__) == set(claim["properties"])


def test_metrics_are_documented_as_text(document: dict[str, Any]) -> None:
    assert ["text/plain"] == list(
        document["paths"]["/metrics"]["get"]["responses"]["200"]["content"])
