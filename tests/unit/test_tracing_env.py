"""Which environments turn tracing on, and which OTEL_* variables reach a job process
or a worker started by ``scheduler up`` (runtime/tracing.py, runtime/child_env.py)."""

from __future__ import annotations

import pytest

from scheduler_core.runtime import child_env, tracing

HEADERS = "OTEL_EXPORTER_OTLP_HEADERS"


@pytest.mark.parametrize(("environ", "expected"), [
    ({}, False),
    ({"OTEL_TRACES_EXPORTER": "none"}, False),
    ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}, False),
    ({"OTEL_TRACES_EXPORTER": "console"}, True),
    ({"OTEL_TRACES_EXPORTER": "none, console"}, True),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}, True),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, True),
    ({"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"}, False),
    ({"OTEL_SERVICE_NAME": "billing"}, False),
])
def test_tracing_is_wanted_only_when_an_exporter_or_endpoint_is_named(
        environ: dict[str, str], expected: bool) -> None:
    assert expected == tracing.wanted(environ)


def test_nothing_asked_leaves_tracing_off_without_a_reason() -> None:
    assert (None, False) == (tracing.configure("t", {}), tracing.ENABLED)


ENVIRON = {"PATH": "/bin", "OTEL_SERVICE_NAME": "billing",
           "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", HEADERS: "authorization=secret",
           "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "authorization=secret"}


def test_a_job_process_gets_the_otel_variables_but_not_the_exporter_headers() -> None:
    assert {"PATH": "/bin", "OTEL_SERVICE_NAME": "billing",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"} == child_env.job_env(ENVIRON)


def test_a_job_process_gets_the_exporter_headers_the_operator_names() -> None:
    assert "authorization=secret" == child_env.job_env(ENVIRON, [HEADERS])[HEADERS]


def test_a_worker_started_by_up_gets_every_otel_variable() -> None:
    env = child_env.worker_env(ENVIRON, coordinator_url="http://127.0.0.1:5000",
                               worker_token="")
    assert {k: v for k, v in ENVIRON.items() if k.startswith("OTEL_")} == {
        k: v for k, v in env.items() if k.startswith("OTEL_")}
