"""Issue 12, item 8: the worker token does not make one worker another. Registration
answers a per-worker secret; without worker A's secret, another holder of the worker
token can neither deregister A, nor register A's id again (as ``hostname: evil,
capacity: 9999``), nor renew or complete A's runs, even with their lease tokens."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.support import (
    Coordinator,
    HandWorker,
    Worker,
    job_row,
    query,
    running_coordinator,
    runs_of,
    submit,
    wait_until,
)

ADMIN = "identity-admin-" + "a" * 24
ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN}"}
WORKER = "identity-worker-" + "w" * 24
ENV = {"SCHEDULER_ADMIN_TOKEN": ADMIN, "SCHEDULER_WORKER_TOKEN": WORKER,
       "SCHEDULER_AUTH_THROTTLE_FAILURES": "0"}
AUTH = {"Authorization": f"Bearer {WORKER}"}


@pytest.fixture(scope="module")
def api(module_dsn: str) -> Iterator[Coordinator]:
    with running_coordinator(module_dsn, env=ENV) as c:
        yield c


@pytest.fixture
def worker_a(api: Coordinator) -> Iterator[HandWorker]:
    w = HandWorker(api.url, headers=AUTH).register(capacity=2)
    yield w
    w.close()


@pytest.fixture
def attacker(api: Coordinator) -> Iterator[httpx.Client]:
    """The worker token, and no secret of A's (a secret of its own, as worker B)."""
    with httpx.Client(base_url=api.url, headers=AUTH, timeout=10) as c:
        yield c


@pytest.fixture
def worker_b(api: Coordinator) -> Iterator[HandWorker]:
    w = HandWorker(api.url, headers=AUTH).register()
    yield w
    w.close()


def worker_row(dsn: str, worker_id: str) -> dict[str, object]:
    return query(dsn, "SELECT * FROM workers WHERE id = %s", worker_id)[0]


def test_registration_answers_a_secret_and_keeps_only_its_hash(
        module_dsn: str, worker_a: HandWorker) -> None:
    assert 40 <= len(worker_a.secret)
    row = worker_row(module_dsn, worker_a.id)
    assert worker_a.secret.encode() not in bytes(row["secret_hash"])  # type: ignore[arg-type]
    assert 32 == len(bytes(row["secret_hash"]))  # type: ignore[arg-type]


def test_deregistering_another_worker_is_refused(
        module_dsn: str, worker_a: HandWorker, attacker: httpx.Client) -> None:
    resp = attacker.post("/api/workers/deregister", json={"workerId": worker_a.id})
    assert 403 == resp.status_code
    assert "X-Worker-Secret" == resp.json()["field"]
    assert "Active" == worker_row(module_dsn, worker_a.id)["state"]


def test_deregistering_another_worker_with_ones_own_secret_is_refused(
        module_dsn: str, worker_a: HandWorker, worker_b: HandWorker) -> None:
    resp = worker_b.http.post("/api/workers/deregister", json={"workerId": worker_a.id})
    assert 403 == resp.status_code
    assert "Active" == worker_row(module_dsn, worker_a.id)["state"]


def test_registering_a_live_workers_id_again_is_refused_and_changes_nothing(
        api: Coordinator, module_dsn: str, worker_a: HandWorker,
        attacker: httpx.Client) -> None:
    resp = attacker.post("/api/workers/register", json={
        "workerId": worker_a.id, "hostname": "evil", "pid": 1, "capacity": 9999})
    assert 409 == resp.status_code
    assert "workerId" == resp.json()["field"]
    row = worker_row(module_dsn, worker_a.id)
    assert (2, socket.gethostname()) == (row["capacity"], row["hostname"])
    overview = httpx.get(api.url + "/api/dashboard/overview",
                         headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10).json()
    shown = [w for w in overview["workers"] if w["id"] == worker_a.id]
    assert 2 == shown[0]["capacity"], shown
    # A still works with its secret.
    assert worker_a.heartbeat_raw().status_code == 200


def test_a_worker_with_its_current_secret_may_register_again(
        module_dsn: str, worker_a: HandWorker) -> None:
    old = worker_a.secret
    worker_a.register(capacity=3)  # sends the current secret in X-Worker-Secret
    assert old != worker_a.secret
    assert 3 == worker_row(module_dsn, worker_a.id)["capacity"]


def test_a_stopped_workers_id_may_be_registered_again(
        module_dsn: str, worker_a: HandWorker, attacker: httpx.Client) -> None:
    assert 200 == worker_a.http.post("/api/workers/deregister",
                                     json={"workerId": worker_a.id}).status_code
    resp = attacker.post("/api/workers/register", json={
        "workerId": worker_a.id, "hostname": "new", "pid": 2, "capacity": 1})
    assert 201 == resp.status_code
    # The old secret is no longer that id's.
    assert 403 == worker_a.heartbeat_raw().status_code


def test_renewing_another_workers_run_is_refused(
        api: Coordinator, module_dsn: str, worker_a: HandWorker,
        worker_b: HandWorker) -> None:
    job_id = submit(api.url, headers=ADMIN_HEADERS, queue="identity-renew")["id"]
    [claimed] = worker_a.claim_some(1, wait=5, queues=["identity-renew"])
    assert job_id == claimed["jobId"]
    before = runs_of(module_dsn, job_id)[0]["lease_expires_at"]
    # As B, with B's own secret and A's run and lease token: not renewed.
    resp = worker_b.http.post("/api/workers/heartbeat", json={
        "workerId": worker_b.id,
        "runs": [{"runId": claimed["runId"], "leaseToken": claimed["leaseToken"]}]})
    assert 200 == resp.status_code
    assert [claimed["runId"]] == resp.json()["lost"]
    assert [] == resp.json()["renewed"]
    assert before == runs_of(module_dsn, job_id)[0]["lease_expires_at"]
    # As A but with B's secret: refused outright.
    resp = worker_b.http.post("/api/workers/heartbeat", json={
        "workerId": worker_a.id,
        "runs": [{"runId": claimed["runId"], "leaseToken": claimed["leaseToken"]}]})
    assert 403 == resp.status_code
    assert before == runs_of(module_dsn, job_id)[0]["lease_expires_at"]
    # A itself renews it.
    assert [claimed["runId"]] == worker_a.heartbeat(claimed["runId"],
                                                    claimed["leaseToken"])["renewed"]


def test_completing_another_workers_run_is_refused_and_the_run_is_unchanged(
        api: Coordinator, module_dsn: str, worker_a: HandWorker,
        worker_b: HandWorker) -> None:
    job_id = submit(api.url, headers=ADMIN_HEADERS, queue="identity-complete")["id"]
    [claimed] = worker_a.claim_some(1, wait=5, queues=["identity-complete"])
    # As B (its own secret) with A's lease token: fenced off.
    resp = worker_b.finish(claimed, "Succeeded", result={"forged": True})
    assert 409 == resp.status_code
    assert [False] == [r["accepted"] for r in resp.json()["results"]]
    # As A's id with B's secret: refused before anything is looked at.
    forged = worker_b.http.post("/api/workers/complete", json={
        "workerId": worker_a.id, "completions": [{
            "runId": claimed["runId"], "leaseToken": claimed["leaseToken"],
            "outcome": "Failed", "error": "forged"}]})
    assert 403 == forged.status_code
    row = job_row(module_dsn, job_id)
    assert ("Running", None) == (row["status"], row["result"])
    [run] = runs_of(module_dsn, job_id)
    assert (None, None, worker_a.id) == (run["finished_at"], run["outcome"], run["worker_id"])
    # A completes it.
    assert 200 == worker_a.finish(claimed).status_code
    assert "Succeeded" == job_row(module_dsn, job_id)["status"]


def test_claiming_as_another_worker_is_refused(
        api: Coordinator, module_dsn: str, worker_a: HandWorker,
        attacker: httpx.Client) -> None:
    job_id = submit(api.url, headers=ADMIN_HEADERS, queue="identity-claim")["id"]
    resp = attacker.post("/api/workers/claim", json={
        "workerId": worker_a.id, "max": 1, "queues": ["identity-claim"]})
    assert 403 == resp.status_code
    assert "Pending" == job_row(module_dsn, job_id)["status"]


def test_the_secret_never_reaches_the_coordinators_log(
        api: Coordinator, worker_a: HandWorker) -> None:
    worker_a.heartbeat_raw()
    assert worker_a.id in api.output()
    assert worker_a.secret not in api.output()


def test_a_real_worker_whose_registration_vanished_registers_again_and_works(
        api: Coordinator, module_dsn: str,
        start_worker: Callable[..., Worker]) -> None:
    worker = start_worker(api.url, env={"SCHEDULER_WORKER_TOKEN": WORKER,
                                        "SCHEDULER_HEARTBEAT_SECONDS": "0.2"},
                          extra=["--worker-id", "identity-real", "--queues", "identity-real"])
    first = wait_until(lambda: query(module_dsn, "SELECT secret_hash FROM workers "
                                     "WHERE id = 'identity-real'"), what="registration")
    # As after a reset of the coordinator's database: the worker's row is gone.
    query(module_dsn, "DELETE FROM workers WHERE id = 'identity-real' RETURNING id")
    again = wait_until(lambda: query(module_dsn, "SELECT secret_hash FROM workers "
                                     "WHERE id = 'identity-real'"), timeout=30,
                       what="the worker to register again")
    assert first[0]["secret_hash"] != again[0]["secret_hash"]
    job_id = submit(api.url, headers=ADMIN_HEADERS, queue="identity-real")["id"]
    wait_until(lambda: job_row(module_dsn, job_id)["status"] == "Succeeded", timeout=30,
               what="the job to succeed")
    assert "registration_lost" in worker.output()
