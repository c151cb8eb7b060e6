"""``consistency`` in the Python clients and the CLI (client/, ``--consistency``): on a
real streaming standby whose replay is paused (tests/pg_cluster.py), a strong read sees
a job just submitted and an eventual one does not, so the parameter did reach the
coordinator; on a coordinator without a replica, both values are accepted by every read
command and anything else is refused before any request."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator

import pytest
import trio

from scheduler_core.client import ApiFailure, AsyncClient, Client
from tests.integration.test_read_replica import DB, nodes, start_coordinator  # noqa: F401
from tests.pg_cluster import PgNode, wait_replayed
from tests.support import CliRun, Coordinator, run_cli, submit, wait_until

Run = CliRun


Scheduler = Callable[..., Run]


def cli(url: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> Scheduler:
    """Run ``scheduler ARGS`` in this process against the coordinator at ``url``."""
    def run(*args: str) -> Run:
        return run_cli(args, url, capsys, monkeypatch)
    return run


def new_queue() -> str:
    return f"q-{uuid.uuid4().hex[:10]}"


# -- on a standby whose replay is paused -------------------------------------------------


@pytest.fixture(scope="module")
def replicated(nodes: tuple[PgNode, PgNode]) -> Iterator[Coordinator]:  # noqa: F811
    primary, standby = nodes
    c = start_coordinator(primary, standby)
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
def paused(nodes: tuple[PgNode, PgNode], replicated: Coordinator) -> Iterator[None]:  # noqa: F811
    primary, standby = nodes
    wait_replayed(primary, standby)
    standby.scalar("SELECT pg_wal_replay_pause()", DB)
    wait_until(lambda: standby.scalar("SELECT pg_get_wal_replay_pause_state()", DB)
               == "paused", what="replay paused")
    try:
        yield
    finally:
        standby.scalar("SELECT pg_wal_replay_resume()", DB)


def test_the_client_reads_a_job_just_submitted_only_with_consistency_strong(
        replicated: Coordinator, paused: None) -> None:
    queue = new_queue()
    job = submit(replicated.url, "noop", {}, queue=queue)
    with Client(replicated.url) as client:
        assert [] == client.list(queue=queue)["items"]
        assert [] == client.list(queue=queue, consistency="eventual")["items"]
        assert [job["id"]] == [j["id"] for j in
                               client.list(queue=queue, consistency="strong")["items"]]
        assert [job["id"]] == [j["id"] for j in
                               client.iter_jobs(queue=queue, consistency="strong")]
        with pytest.raises(ApiFailure) as missing:
            client.get(job["id"])
        assert 404 == missing.value.status
        assert job["id"] == client.get(job["id"], consistency="strong")["id"]


def test_the_async_client_reads_a_job_just_submitted_only_with_consistency_strong(
        replicated: Coordinator, paused: None) -> None:
    queue = new_queue()
    job = submit(replicated.url, "noop", {}, queue=queue)

    async def main() -> None:
        async with AsyncClient(replicated.url) as client:
            assert [] == (await client.list(queue=queue))["items"]
            strong = await client.list(queue=queue, consistency="strong")
            assert [job["id"]] == [j["id"] for j in strong["items"]]
            assert [job["id"]] == [j["id"] async for j in
                                   client.iter_jobs(queue=queue, consistency="strong")]
            with pytest.raises(ApiFailure) as missing:
                await client.get(job["id"], consistency="eventual")
            assert 404 == missing.value.status
            assert job["id"] == (await client.get(job["id"], consistency="strong"))["id"]

    trio.run(main)


def test_wait_reads_strong_by_default_so_it_finds_a_job_just_submitted(
        replicated: Coordinator, paused: None) -> None:
    with Client(replicated.url) as client:
        job = client.submit("noop", {}, queue=new_queue())
        client.cancel(job)
        assert "Cancelled" == client.wait(job, timeout=60)["status"]
        with pytest.raises(ApiFailure) as missing:
            client.wait(job, timeout=60, consistency="eventual")
        assert 404 == missing.value.status


def test_a_schedule_and_a_queue_just_changed_show_only_with_consistency_strong(
        replicated: Coordinator, paused: None) -> None:
    with Client(replicated.url) as client:
        schedule = client.submit("noop", {}, cron="0 0 1 1 *", queue=new_queue())
        assert schedule["id"] not in [s["id"] for s in client.list_schedules()]
        assert schedule["id"] in [s["id"] for s in client.list_schedules(consistency="strong")]
        assert schedule["id"] == client.get_schedule(schedule, consistency="strong")["id"]
        queue = new_queue()
        client.pause_queue(queue)
        try:
            assert False is client.get_queue(queue)["paused"]
            assert True is client.get_queue(queue, consistency="strong")["paused"]
            strong = {q["name"]: q["paused"] for q in client.list_queues(consistency="strong")}
            assert True is strong[queue]
        finally:
            client.resume_queue(queue)
            client.delete_schedule(schedule)


def test_scheduler_jobs_list_and_show_with_consistency_strong_see_a_job_just_submitted(
        replicated: Coordinator, paused: None, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    scheduler = cli(replicated.url, capsys, monkeypatch)
    queue = new_queue()
    job = submit(replicated.url, "noop", {}, queue=queue)
    eventual = scheduler("jobs", "list", "--queue", queue, "--json")
    assert (0, []) == (eventual.returncode, json.loads(eventual.stdout)["items"])
    strong = scheduler("jobs", "list", "--queue", queue, "--json", "--consistency", "strong")
    assert 0 == strong.returncode, strong.stderr
    assert [job["id"]] == [j["id"] for j in json.loads(strong.stdout)["items"]]
    shown = scheduler("jobs", "show", job["id"], "--consistency", "strong")
    assert 0 == shown.returncode, shown.stderr
    assert job["id"] in shown.stdout
    missing = scheduler("jobs", "show", job["id"])
    assert 1 == missing.returncode
    assert "404" in missing.stderr


# -- on a coordinator without a replica --------------------------------------------------


@pytest.mark.parametrize("command", [("jobs", "list"), ("jobs", "show", "{job}"),
                                     ("schedules", "list"), ("queues", "list"),
                                     ("queues", "show", "default")])
@pytest.mark.parametrize("consistency", ["strong", "eventual"])
def test_each_read_command_takes_either_consistency(
        api: Coordinator, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch, command: tuple[str, ...], consistency: str) -> None:
    scheduler = cli(api.url, capsys, monkeypatch)
    job = submit(api.url, "noop", {}, queue="default")
    args = [a.replace("{job}", job["id"]) for a in command]
    done = scheduler(*args, "--json", "--consistency", consistency)
    assert 0 == done.returncode, done.stderr
    json.loads(done.stdout)


@pytest.mark.parametrize("command", [("jobs", "list"), ("jobs", "show", "{job}"),
                                     ("schedules", "list"), ("queues", "show", "default")])
def test_a_consistency_other_than_strong_or_eventual_is_refused_by_the_cli(
        api: Coordinator, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch, command: tuple[str, ...]) -> None:
    scheduler = cli(api.url, capsys, monkeypatch)
    args = [a.replace("{job}", str(uuid.uuid4())) for a in command]
    done = scheduler(*args, "--consistency", "Strong")
    assert 2 == done.returncode
    assert ("scheduler: error: argument --consistency: expected strong or eventual, "
            "found 'Strong'") in done.stderr
    assert "" == done.stdout


def test_a_consistency_other_than_strong_or_eventual_is_a_value_error_of_the_client(
        api: Coordinator) -> None:
    with Client(api.url) as client:
        for read in (lambda: client.list(consistency="bogus"),  # type: ignore[arg-type]
                     lambda: client.get(str(uuid.uuid4()), consistency="bogus"),  # type: ignore[arg-type]
                     lambda: client.list_queues(consistency="bogus")):  # type: ignore[arg-type]
            with pytest.raises(ValueError, match="expected consistency strong or eventual, "
                               "found 'bogus'"):
                read()
