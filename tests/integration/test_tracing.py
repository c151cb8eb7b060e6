"""Tracing across real processes: a coordinator, a worker and its job processes, each
exporting its spans as JSON lines into one folder (OTEL_TRACES_EXPORTER=scheduler_jsonl,
a file per process), read back here (docs/decisions/0025-tracing.md)."""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from scheduler_core.actors.worker.tracing import span_id_of
from tests.support import Coordinator, Worker, job_row, wait_until

HANDLERS = {"SCHEDULER_HANDLERS": "tests.trace_handlers",
            "SCHEDULER_RETRY_BASE_SECONDS": "0.05", "SCHEDULER_RETRY_CAP_SECONDS": "0.1"}


def traced_env(folder: Path) -> dict[str, str]:
    return {**HANDLERS, "OTEL_TRACES_EXPORTER": "scheduler_jsonl",
            "OTEL_EXPORTER_JSONL_DIR": str(folder), "OTEL_BSP_SCHEDULE_DELAY": "50",
            "OTEL_TRACES_SAMPLER": "parentbased_always_on"}


def spans_in(folder: Path) -> list[dict[str, Any]]:
    spans = []
    for path in sorted(folder.glob("*.jsonl")):
        spans += [json.loads(line) for line in path.read_text().splitlines() if line]
    return spans


def wait_finished(url: str, job_id: str) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        job: dict[str, Any] = httpx.get(f"{url}/api/jobs/{job_id}", timeout=5).json()
        return job if job["status"] in ("Succeeded", "DeadLetter", "Cancelled") else None
    return wait_until(finished, timeout=30, what=f"job {job_id} to finish")


def client_traceparent() -> tuple[str, str, str]:
    """(traceparent header, trace id, span id) of a calling application's span."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


@pytest.mark.parametrize("job_type", ["flaky_traced", "flaky_traced_inline"])
def test_one_trace_runs_from_the_submit_through_both_attempts_and_the_handlers_spans(
        job_type: str, tmp_path: Path, db_dsn: str,
        start_coordinator: Callable[..., Coordinator],
        start_worker: Callable[..., Worker]) -> None:
    coordinator = start_coordinator(env=traced_env(tmp_path))
    start_worker(coordinator.url, env=traced_env(tmp_path))
    header, trace_id, caller_span = client_traceparent()

    answer = httpx.post(f"{coordinator.url}/api/jobs", json={"type": job_type, "payload": {}},
                        headers={"traceparent": header}, timeout=10)
    assert 201 == answer.status_code, answer.text
    job_id = answer.json()["id"]
    job = wait_finished(coordinator.url, job_id)
    assert ("Succeeded", {"attempt": 2}) == (job["status"], job["result"])
    run_ids = [r["id"] for r in sorted(job["runs"], key=lambda r: r["attempt"])]

    def five_spans() -> list[dict[str, Any]] | None:
        spans = spans_in(tmp_path)
        return spans if len(spans) >= 5 else None
    spans = wait_until(five_spans, timeout=30, what="the submit, two runs, two handler spans")
    by_name: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        by_name.setdefault(span["name"], []).append(span)
    [submit] = by_name["scheduler.submit"]
    runs = sorted(by_name[f"scheduler.run {job_type}"],
                  key=lambda s: s["attributes"]["job.attempt"])
    work = sorted(by_name["handler.work"], key=lambda s: s["attributes"]["attempt"])

    assert 5 == len(spans)
    assert {trace_id} == {s["trace_id"] for s in spans}
    # The submit: a child of the caller's span; the job stores its context.
    assert (caller_span, "SERVER", 201, job_id) == (
        submit["parent_span_id"], submit["kind"],
        submit["attributes"]["http.response.status_code"], submit["attributes"]["job.id"])
    assert f"00-{trace_id}-{submit['span_id']}-01" == job_row(db_dsn, job_id)["traceparent"]
    # Each run: a child of the submit, never of the run before; the second links the first.
    assert [submit["span_id"]] * 2 == [r["parent_span_id"] for r in runs]
    assert [f"{span_id_of(uuid.UUID(r)):016x}" for r in run_ids] == [
        r["span_id"] for r in runs]
    assert [] == runs[0]["links"]
    assert [{"trace_id": trace_id, "span_id": runs[0]["span_id"],
             "attributes": {"scheduler.link": "previous_run", "run.id": run_ids[0]}}] == (
        runs[1]["links"])
    assert [(job_id, job_type, "default", n, run_ids[n - 1], outcome) for n, outcome in
            ((1, "Failed"), (2, "Succeeded"))] == [
        (r["attributes"]["job.id"], r["attributes"]["job.type"],
         r["attributes"]["job.queue"], r["attributes"]["job.attempt"],
         r["attributes"]["run.id"], r["attributes"]["outcome"]) for r in runs]
    assert ["ERROR", "UNSET"] == [r["status"] for r in runs]
    # The handler's own spans nest under their run, in the job process or the worker.
    assert [r["span_id"] for r in runs] == [w["parent_span_id"] for w in work]
    where = "scheduler-worker" if job_type.endswith("_inline") else "scheduler-job"
    assert [where, where] == [w["service"] for w in work]
    assert ["scheduler-worker"] * 2 == [r["service"] for r in runs]


def test_a_batch_s_jobs_store_the_batch_request_s_span(
        tmp_path: Path, db_dsn: str, start_coordinator: Callable[..., Coordinator]) -> None:
    coordinator = start_coordinator(env=traced_env(tmp_path))

    answer = httpx.post(f"{coordinator.url}/api/jobs/batch", timeout=10, json={
        "jobs": [{"type": "noop", "payload": {}}, {"type": "noop", "payload": {}}]})
    assert 201 == answer.status_code, answer.text

    [submit] = wait_until(lambda: spans_in(tmp_path), timeout=30, what="the batch's span")
    assert ("scheduler.submit", None, "/api/jobs/batch") == (
        submit["name"], submit["parent_span_id"], submit["attributes"]["url.path"])
    stored = {job_row(db_dsn, item["id"])["traceparent"] for item in answer.json()["items"]}
    # (A new trace's flags also say its id is random: 03, sampled and random.)
    assert {f"00-{submit['trace_id']}-{submit['span_id']}"} == {t[:-3] for t in stored}
    assert {1} == {int(t[-2:], 16) & 1 for t in stored}


def test_with_tracing_off_nothing_is_stored_nor_exported_and_the_job_still_runs(
        tmp_path: Path, db_dsn: str, start_coordinator: Callable[..., Coordinator],
        start_worker: Callable[..., Worker]) -> None:
    # The folder is named, but no exporter is: tracing stays off.
    off = {**HANDLERS, "OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_JSONL_DIR": str(tmp_path)}
    coordinator = start_coordinator(env=off)
    start_worker(coordinator.url, env=off)
    header, _, _ = client_traceparent()

    answer = httpx.post(f"{coordinator.url}/api/jobs", timeout=10,
                        json={"type": "flaky_traced", "payload": {}},
                        headers={"traceparent": header})
    assert 201 == answer.status_code, answer.text
    job_id = answer.json()["id"]

    assert ("Succeeded", {"attempt": 2}) == (
        lambda j: (j["status"], j["result"]))(wait_finished(coordinator.url, job_id))
    assert job_row(db_dsn, job_id)["traceparent"] is None
    assert [] == list(tmp_path.iterdir())
