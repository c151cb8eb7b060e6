"""Unique jobs (issue 17; migration 0017, docs/decisions/0024-unique-jobs.md): at most
one job per key among the jobs in the listed statuses and within the window's bucket,
through POST /api/jobs, batch items and scheduler.enqueue, on a real coordinator and
real connections. Every wait is a poll with a deadline."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.support import Coordinator, HandWorker, query, scalar, wait_until


def new_key() -> str:
    return f"k-{uuid.uuid4().hex[:12]}"


def new_queue() -> str:
    return f"q-{uuid.uuid4().hex[:12]}"


def post(http: httpx.Client, unique: dict[str, Any], **fields: Any) -> httpx.Response:
    return http.post("/api/jobs", json={"type": "noop", "payload": {}, "unique": unique,
                                        **fields})


def jobs_with_key(dsn: str, key: str) -> int:
    """Jobs stored with ``key`` (with a window: any of its buckets)."""
    return int(scalar(dsn, "SELECT count(*) FROM jobs WHERE unique_key = %s "
                           "OR unique_key LIKE %s", key, key + "@%"))


def test_a_second_submit_with_the_key_is_200_not_created_naming_the_first(
        http: httpx.Client, module_dsn: str) -> None:
    key = new_key()
    first = post(http, {"key": key}, queue=new_queue())
    second = post(http, {"key": key}, queue=new_queue())
    assert (201, True) == (first.status_code, first.json()["created"])
    assert (200, False) == (second.status_code, second.json()["created"])
    assert first.json()["id"] == second.json()["id"]
    assert f"/api/jobs/{first.json()['id']}" == second.headers["location"]
    assert 1 == jobs_with_key(module_dsn, key)


def test_the_key_is_free_again_once_its_job_succeeded(
        api: Coordinator, http: httpx.Client, module_dsn: str) -> None:
    key, queue = new_key(), new_queue()
    first = post(http, {"key": key}, queue=queue).json()
    worker = HandWorker(api.url).register()
    try:
        [claimed] = worker.claim_some(1, wait=5, queues=[queue])
        assert 200 == post(http, {"key": key}, queue=queue).status_code  # Running holds it
        assert 200 == worker.finish(claimed).status_code
    finally:
        worker.close()
    again = post(http, {"key": key}, queue=queue)
    assert 201 == again.status_code
    assert first["id"] != again.json()["id"]


def test_the_key_is_free_again_once_its_job_is_cancelled(
        http: httpx.Client, module_dsn: str) -> None:
    key = new_key()
    first = post(http, {"key": key}, runAt="2100-01-01T00:00:00Z").json()
    assert 200 == http.post(f"/api/jobs/{first['id']}/cancel").status_code
    assert 201 == post(http, {"key": key}).status_code


def test_a_listed_terminal_status_keeps_the_key_where_the_default_frees_it(
        api: Coordinator, http: httpx.Client) -> None:
    key, free, queue = new_key(), new_key(), new_queue()
    states = ["Waiting", "Scheduled", "Pending", "Running", "Failed", "Succeeded"]
    held = post(http, {"key": key, "states": states}, queue=queue).json()
    post(http, {"key": free}, queue=queue)
    worker = HandWorker(api.url).register(capacity=2)
    try:
        claimed = worker.claim_some(2, wait=5, queues=[queue])
        assert 2 == len(claimed)
        for job in claimed:
            assert 200 == worker.finish(job).status_code
    finally:
        worker.close()
    again = post(http, {"key": key, "states": states}, queue=queue)
    assert (200, held["id"], "Succeeded") == (again.status_code, again.json()["id"],
                                              again.json()["status"])
    assert 201 == post(http, {"key": free}, queue=queue).status_code


def test_the_key_is_free_again_in_the_next_bucket_of_its_window(
        http: httpx.Client, module_dsn: str) -> None:
    key = new_key()
    first = post(http, {"key": key, "window": "1s"}, runAt="2100-01-01T00:00:00Z").json()
    bucket = str(scalar(module_dsn, "SELECT unique_key FROM jobs WHERE id = %s", first["id"]))

    def next_bucket() -> dict[str, Any] | None:
        resp = post(http, {"key": key, "window": "1s"}, runAt="2100-01-01T00:00:00Z")
        return dict(resp.json()) if resp.status_code == 201 else None

    second = wait_until(next_bucket, timeout=10, what="a new bucket")
    assert first["id"] != second["id"]
    stored = scalar(module_dsn, "SELECT unique_key FROM jobs WHERE id = %s", second["id"])
    assert bucket != stored
    assert key == stored.rpartition("@")[0] == bucket.rpartition("@")[0]


def test_batch_items_with_one_key_get_the_first_items_job(
        http: httpx.Client, module_dsn: str) -> None:
    key = new_key()
    resp = http.post("/api/jobs/batch", json={"jobs": [
        {"type": "noop", "unique": {"key": key}},
        {"type": "noop"},
        {"type": "noop", "unique": {"key": key}}]})
    assert 201 == resp.status_code, resp.text
    a, b, c = resp.json()["items"]
    assert (True, True, False) == (a["created"], b["created"], c["created"])
    assert a["id"] == c["id"]
    again = http.post("/api/jobs/batch", json={"jobs": [
        {"type": "noop", "unique": {"key": key}}]})
    assert (200, a["id"], False) == (again.status_code, again.json()["items"][0]["id"],
                                     again.json()["items"][0]["created"])
    assert 1 == jobs_with_key(module_dsn, key)


def test_a_dependent_item_with_a_held_key_is_its_holder(http: httpx.Client) -> None:
    key = new_key()
    holder = post(http, {"key": key}, runAt="2100-01-01T00:00:00Z").json()
    resp = http.post("/api/jobs/batch", json={"jobs": [
        {"type": "noop", "ref": "a"},
        {"type": "noop", "dependsOn": ["a"], "unique": {"key": key}}]})
    assert 201 == resp.status_code, resp.text
    assert (holder["id"], False) == (resp.json()["items"][1]["id"],
                                     resp.json()["items"][1]["created"])


def test_replace_gives_a_pending_holder_the_new_payload_and_run_time(
        http: httpx.Client) -> None:
    key = new_key()
    first = http.post("/api/jobs", json={"type": "sleep", "payload": {"seconds": 1},
                                         "queue": new_queue(),
                                         "unique": {"key": key}}).json()
    later = "2100-01-01T00:00:00Z"
    resp = http.post("/api/jobs", json={"type": "sleep", "payload": {"seconds": 2},
                                        "runAt": later,
                                        "unique": {"key": key, "onConflict": "replace"}})
    assert 200 == resp.status_code, resp.text
    job = resp.json()
    assert (first["id"], False, {"seconds": 2}, "Scheduled") == (
        job["id"], job["created"], job["payload"], job["status"])
    assert dt.datetime(2100, 1, 1, tzinfo=dt.UTC) == dt.datetime.fromisoformat(job["runAt"])
    kept = http.post("/api/jobs", json={"type": "sleep", "payload": {"seconds": 3},
                                        "unique": {"key": key}}).json()
    assert {"seconds": 2} == kept["payload"]  # keep (the default): the first wins


def test_replace_leaves_a_running_holder_as_it_is(
        api: Coordinator, http: httpx.Client) -> None:
    key, queue = new_key(), new_queue()
    http.post("/api/jobs", json={"type": "sleep", "payload": {"seconds": 1}, "queue": queue,
                                 "unique": {"key": key}})
    worker = HandWorker(api.url).register()
    try:
        [claimed] = worker.claim_some(1, wait=5, queues=[queue])
        resp = http.post("/api/jobs", json={"type": "sleep", "payload": {"seconds": 2},
                                            "queue": queue,
                                            "unique": {"key": key, "onConflict": "replace"}})
        assert (200, claimed["jobId"], "Running") == (resp.status_code, resp.json()["id"],
                                                      resp.json()["status"])
        assert {"seconds": 1} == resp.json()["payload"]
        worker.finish(claimed)
    finally:
        worker.close()


def test_scheduler_enqueue_returns_the_holder_of_a_key_taken_over_http(
        http: httpx.Client, module_dsn: str) -> None:
    key = new_key()
    first = post(http, {"key": key}, runAt="2100-01-01T00:00:00Z").json()
    with psycopg.connect(module_dsn, autocommit=True) as conn:
        row = conn.execute("SELECT scheduler.enqueue('noop', '{}', unique_key => %s)",
                           (key,)).fetchone()
    assert row is not None and first["id"] == str(row[0])


def test_twenty_concurrent_submissions_over_http_and_sql_create_one_job(
        api: Coordinator, module_dsn: str) -> None:
    key = new_key()
    start = threading.Barrier(20)
    ids: list[str] = []
    errors: list[BaseException] = []

    def over_http() -> None:
        try:
            with httpx.Client(base_url=api.url, timeout=30) as client:
                start.wait()
                resp = client.post("/api/jobs", json={"type": "noop", "unique": {"key": key}})
            assert resp.status_code in (200, 201), resp.text
            ids.append(resp.json()["id"])
        except BaseException as exc:  # reported below
            errors.append(exc)

    def over_sql() -> None:
        try:
            with psycopg.connect(module_dsn) as conn:
                start.wait()
                row = conn.execute("SELECT scheduler.enqueue('noop', %s, unique_key => %s)",
                                   (Jsonb({}), key)).fetchone()
                conn.commit()
            assert row is not None
            ids.append(str(row[0]))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=over_http if n % 2 else over_sql) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert [] == errors
    assert 20 == len(ids)
    assert 1 == len(set(ids))
    assert 1 == jobs_with_key(module_dsn, key)


@pytest.mark.parametrize(("unique", "field"), [
    ({"key": ""}, "unique.key"),
    ({"key": "x" * 201}, "unique.key"),
    ({}, "unique.key"),
    ({"key": "a", "states": []}, "unique.states"),
    ({"key": "a", "states": ["Waiting", "Scheduled", "Bogus"]}, "unique.states[2]"),
    ({"key": "a", "states": ["Waiting", "Scheduled", "Pending", "Running", "Failed",
                             "Pending"]}, "unique.states[5]"),
    ({"key": "a", "states": ["Pending"]}, "unique.states"),
    ({"key": "a", "window": "10"}, "unique.window"),
    ({"key": "a", "window": "500ms"}, "unique.window"),
    ({"key": "a", "window": "367d"}, "unique.window"),
    ({"key": "a", "onConflict": "merge"}, "unique.onConflict"),
    ({"key": "a", "extra": 1}, "unique.extra"),
    ("a", "unique"),
])
def test_a_bad_unique_is_a_400_naming_the_field_and_writes_nothing(
        http: httpx.Client, module_dsn: str, unique: Any, field: str) -> None:
    before = scalar(module_dsn, "SELECT count(*) FROM jobs")
    resp = post(http, unique)
    assert (400, field) == (resp.status_code, resp.json()["field"]), resp.text
    batch = http.post("/api/jobs/batch", json={"jobs": [
        {"type": "noop"}, {"type": "noop", "unique": unique}]})
    assert (400, f"jobs[1].{field}") == (batch.status_code, batch.json()["field"])
    assert before == scalar(module_dsn, "SELECT count(*) FROM jobs")


def test_unique_with_cron_is_a_400_naming_unique(http: httpx.Client) -> None:
    resp = post(http, {"key": new_key()}, cron="* * * * *")
    assert (400, "unique") == (resp.status_code, resp.json()["field"])


@pytest.mark.parametrize(("call", "params", "needle"), [
    ("unique_key => %s", ("",), "unique_key"),
    ("unique_key => %s, unique_states => %s", ("a", ["Pending"]), "unique_states"),
    ("unique_key => %s, unique_states => %s", ("a", ["Waiting", "Nope"]),
     "unique_states[1]"),
    ("unique_key => %s, unique_window => %s", ("a", dt.timedelta(milliseconds=10)),
     "unique_window"),
    ("unique_states => %s", (["Pending"],), "unique_states"),
])
def test_scheduler_enqueue_refuses_bad_unique_settings_naming_them(
        module_dsn: str, call: str, params: tuple[Any, ...], needle: str) -> None:
    with psycopg.connect(module_dsn) as conn:
        with pytest.raises(psycopg.errors.InvalidParameterValue) as raised:
            conn.execute(f"SELECT scheduler.enqueue('noop', '{{}}', {call})".encode(), params)
    assert f"scheduler.enqueue: {needle}:" in str(raised.value)


def test_enqueue_many_items_take_unique_as_the_api_spells_it(module_dsn: str) -> None:
    key = new_key()
    items = [{"type": "noop", "unique": {"key": key, "window": "1h"}},
             {"type": "noop", "unique": {"key": key, "window": "1h", "onConflict": "keep"}},
             {"type": "noop"}]
    with psycopg.connect(module_dsn, autocommit=True) as conn:
        row = conn.execute("SELECT scheduler.enqueue_many(%s)", (Jsonb(items),)).fetchone()
        assert row is not None
        a, b, c = row[0]
        assert a == b != c
        with pytest.raises(psycopg.errors.InvalidParameterValue) as raised:
            conn.execute("SELECT scheduler.enqueue_many(%s)", (Jsonb(
                [{"type": "noop", "unique": {"key": key, "onConflict": "replace"}}]),))
    assert "jobs[0].unique.onConflict" in str(raised.value)
    assert 1 == len(query(module_dsn, "SELECT id FROM jobs WHERE unique_key LIKE %s",
                          key + "@%"))


def test_a_retry_of_a_job_whose_key_another_job_holds_is_a_409(http: httpx.Client) -> None:
    key = new_key()
    first = post(http, {"key": key}, runAt="2100-01-01T00:00:00Z").json()
    assert 200 == http.post(f"/api/jobs/{first['id']}/cancel").status_code
    second = post(http, {"key": key}, runAt="2100-01-01T00:00:00Z")
    assert 201 == second.status_code
    resp = http.post(f"/api/jobs/{first['id']}/retry", json={})
    assert (409, "id") == (resp.status_code, resp.json()["field"]), resp.text
    assert "unique key" in resp.json()["message"]
