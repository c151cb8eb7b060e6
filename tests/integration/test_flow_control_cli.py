"""Flow control from the client's side, against a real coordinator (one for the module):
the Python clients' ``set_queue_limit`` (rate windows, per-key limits) and
``concurrency_key``, and the ``scheduler queues set`` / ``show`` / ``list`` and
``submit --concurrency-key`` commands, each setting read back with GET.

Bad input to the CLI is refused before any request: those tests point the command at a
port nobody listens on, where a request would exit 1 ("cannot reach"), not 2. A few
tests run the command as a real process; the rest call ``command.cli.main`` in this
process, as tests/integration/test_cli.py does.

No real worker runs here: the worker protocol is spoken by hand (tests.support's
HandWorker, registered with the queues it serves) where a job must be Running.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import trio

from scheduler_core.client import ApiFailure, AsyncClient, Client
from scheduler_core.command import client_cli
from scheduler_core.command.cli import build_parser
from scheduler_core.runtime.config import load_config
from scheduler_core.schema.wire import RateLimit
from tests.support import ROOT, CliRun, Coordinator, HandWorker, free_port, run_cli

NOBODY = f"http://127.0.0.1:{free_port()}"  # a request here would exit 1, not 2


def new_queue() -> str:
    return f"fc-{uuid.uuid4().hex[:10]}"


def window(limit: int, per: str, burst: int = 1) -> dict[str, Any]:
    return {"limit": limit, "per": per, "burst": burst}


Run = CliRun


Scheduler = Callable[..., Run]


@pytest.fixture
def scheduler(capsys: pytest.CaptureFixture[str],
              monkeypatch: pytest.MonkeyPatch) -> Scheduler:
    """Run ``scheduler ARGS`` in this process against ``url``."""
    def run(*args: str, url: str) -> Run:
        return run_cli(args, url, capsys, monkeypatch)
    return run


def scheduler_process(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COORDINATOR_URL": url}
    env.pop("DATABASE_URL", None)
    return subprocess.run([sys.executable, "-m", "scheduler_core.command.cli", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=30,
                          check=False)


def queue_of(http: httpx.Client, name: str) -> dict[str, Any]:
    resp = http.get(f"/api/queues/{name}")
    assert 200 == resp.status_code, resp.text
    return dict(resp.json())


def settings(queue: dict[str, Any]) -> tuple[Any, ...]:
    """(concurrencyLimit, rateLimits, keyConcurrencyLimit, keyRateLimits)."""
    return (queue["concurrencyLimit"], queue["rateLimits"], queue.get("keyConcurrencyLimit"),
            queue.get("keyRateLimits"))


def row_of(stdout: str, name: str) -> str:
    [row] = [line for line in stdout.splitlines() if line.split()[:1] == [name]]
    return row


@pytest.fixture
def serving(api: Coordinator) -> Iterator[Callable[[str], HandWorker]]:
    """Hand workers registered as serving the queue named (so it has a live worker)."""
    made: list[HandWorker] = []

    def register(queue: str) -> HandWorker:
        w = HandWorker(api.url)
        resp = w.http.post("/api/workers/register", json={
            "workerId": w.id, "hostname": socket.gethostname(), "pid": 1, "capacity": 10,
            "queues": [queue]})
        assert 201 == resp.status_code, resp.text
        w.secret = str(resp.json()["workerSecret"])
        w.http.headers["X-Worker-Secret"] = w.secret
        made.append(w)
        return w
    yield register
    for w in made:
        w.close()


# -- the Python client: queue settings ----------------------------------------------------


def test_the_client_sets_windows_from_text_and_structs_and_removes_them(
        api: Coordinator, http: httpx.Client) -> None:
    name = new_queue()
    with Client(api.url) as client:
        set_ = client.set_queue_limit(name, rate_limits=[
            "100/1s", RateLimit(limit=1000, per="1h", burst=50), window(5, "500ms", 5)])
        assert [window(100, "1s"), window(1000, "1h", 50), window(5, "500ms", 5)] == (
            set_["rateLimits"])
        assert set_["rateLimits"] == queue_of(http, name)["rateLimits"]
        # What is not given stays as it is, both ways.
        limited = client.set_queue_limit(name, 3)
        assert (3, set_["rateLimits"]) == (limited["concurrencyLimit"], limited["rateLimits"])
        removed = client.set_queue_limit(name, rate_limits=None)
        assert (3, None) == (removed["concurrencyLimit"], removed["rateLimits"])
        assert (3, None) == settings(queue_of(http, name))[:2]
        assert [window(1, "1d")] == client.set_queue_limit(name, rate_limits=["1/1d"])[
            "rateLimits"]
        assert client.set_queue_limit(name, rate_limits=[])["rateLimits"] is None
        assert (3, None) == settings(queue_of(http, name))[:2]


def test_the_client_sets_and_removes_the_per_key_limits(
        api: Coordinator, http: httpx.Client) -> None:
    name = new_queue()
    with Client(api.url) as client:
        set_ = client.set_queue_limit(name, 10, rate_limits=["50/1s"],
                                      key_concurrency_limit=2,
                                      key_rate_limits=["5/1s:2", "100/1m"])
        expected = (10, [window(50, "1s")], 2, [window(5, "1s", 2), window(100, "1m")])
        assert expected == settings(set_)
        assert expected == settings(queue_of(http, name))
        # The queue-wide settings and the per-key ones leave each other alone.
        client.set_queue_limit(name, None, rate_limits=None)
        assert (None, None, *expected[2:]) == settings(queue_of(http, name))
        client.set_queue_limit(name, 10, rate_limits=["50/1s"])
        client.set_queue_limit(name, key_concurrency_limit=None)
        assert (*expected[:2], None, expected[3]) == settings(queue_of(http, name))
        client.set_queue_limit(name, key_rate_limits=None)
        assert (*expected[:2], None, None) == settings(queue_of(http, name))


def test_the_async_client_sets_and_removes_every_limit(
        api: Coordinator, http: httpx.Client) -> None:
    name = new_queue()

    async def run() -> None:
        async with AsyncClient(api.url) as client:
            got = await client.set_queue_limit(name, 4, rate_limits=["10/1s"],
                                               key_concurrency_limit=1,
                                               key_rate_limits=[RateLimit(limit=2, per="1s")])
            assert (4, [window(10, "1s")], 1, [window(2, "1s")]) == settings(got)
            await client.set_queue_limit(name, None, rate_limits=None,
                                         key_concurrency_limit=None, key_rate_limits=[])
            assert (None, None, None, None) == settings(await client.get_queue(name))

    trio.run(run)
    assert (None, None, None, None) == settings(queue_of(http, name))


@pytest.mark.parametrize(("change", "field"), [
    ({"rate_limits": [RateLimit(limit=10, per="1s", burst=11)]}, "rateLimits[0].burst"),
    ({"rate_limits": [RateLimit(limit=0, per="1s")]}, "rateLimits[0].limit"),
    ({"rate_limits": ["1/1s"] * 9}, "rateLimits"),
    ({"key_rate_limits": [RateLimit(limit=10, per="1s", burst=11)]},
     "keyRateLimits[0].burst"),
    ({"key_rate_limits": [{"limit": 1, "per": "2d"}]}, "keyRateLimits[0].per"),
    ({"key_concurrency_limit": 0}, "keyConcurrencyLimit"),
], ids=["burst_over_limit", "limit_zero", "nine_windows", "key_burst_over_limit",
        "key_window_over_a_day", "key_limit_zero"])
def test_a_setting_the_api_refuses_is_an_api_failure_naming_the_field(
        api: Coordinator, http: httpx.Client, change: dict[str, Any], field: str) -> None:
    name = new_queue()
    with Client(api.url) as client, pytest.raises(ApiFailure) as failure:
        client.set_queue_limit(name, **change)
    assert (400, field) == (failure.value.status, failure.value.field), failure.value.body
    assert queue_of(http, name)["updatedAt"] is None  # nothing written


# -- the Python client: concurrency keys -------------------------------------------------


def test_submit_and_submit_batch_send_the_concurrency_key(
        api: Coordinator, http: httpx.Client) -> None:
    name = new_queue()
    with Client(api.url) as client:
        one = client.submit("noop", queue=name, concurrency_key="tenant-1")
        batch = client.submit_batch([
            {"type": "noop", "queue": name, "concurrency_key": "tenant-2"},
            {"type": "noop", "payload": {}, "queue": name},
            {"type": "noop", "queue": name, "concurrency_key": "t" * 200}])
    assert (True, "tenant-1") == (one.created, one["concurrencyKey"])
    assert [True] * 3 == [j.created for j in batch]
    assert ["tenant-2", None, "t" * 200] == [j.get("concurrencyKey") for j in batch]
    for job in (one, *batch):
        assert job.get("concurrencyKey") == http.get(f"/api/jobs/{job['id']}").json().get(
            "concurrencyKey")


def test_the_async_client_submits_with_a_concurrency_key(
        api: Coordinator, http: httpx.Client) -> None:
    async def run() -> list[dict[str, Any]]:
        async with AsyncClient(api.url) as client:
            one = await client.submit("noop", queue=new_queue(), concurrency_key="a")
            two = await client.submit_batch([{"type": "noop", "concurrency_key": "b"}])
            return [one, *two]

    jobs = trio.run(run)
    assert ["a", "b"] == [http.get(f"/api/jobs/{j['id']}").json()["concurrencyKey"]
                          for j in jobs]


def test_a_concurrency_key_too_long_is_an_api_failure_naming_it(api: Coordinator) -> None:
    with Client(api.url) as client, pytest.raises(ApiFailure) as failure:
        client.submit("noop", concurrency_key="k" * 201)
    assert (400, "concurrencyKey") == (failure.value.status, failure.value.field)


def test_a_job_held_by_its_keys_limit_says_why_it_waits(
        api: Coordinator, http: httpx.Client, serving: Callable[[str], HandWorker],
        scheduler: Scheduler) -> None:
    name = new_queue()
    worker = serving(name)
    with Client(api.url) as client:
        client.set_queue_limit(name, key_concurrency_limit=1)
        first = client.submit("noop", queue=name, concurrency_key="tenant")
        second = client.submit("noop", queue=name, concurrency_key="tenant")
        [claimed] = worker.claim_some(5, queues=[name])
        assert first["id"] == claimed["jobId"]
        held = client.get(second)
    assert ("Pending", {"reason": "key_concurrency", "running": 1, "limit": 1}) == (
        held["status"], held["waiting"])
    shown = scheduler("jobs", "show", second["id"], url=api.url)
    assert 0 == shown.returncode, shown.stderr
    assert ["concurrency key: tenant", "waiting: key_concurrency (1 running, limit 1)"] == (
        shown.stdout.splitlines()[2:4])
    queue = queue_of(http, name)
    assert ([{"key": "tenant", "waiting": 1, "running": 1}], 1, None) == (
        queue["topKeys"], queue["workers"], queue["warning"])


# -- scheduler queues set / show / list ----------------------------------------------------


def test_queues_set_sets_the_limit_and_windows_then_removes_them(
        api: Coordinator, http: httpx.Client, scheduler: Scheduler) -> None:
    name = new_queue()
    done = scheduler("queues", "set", name, "--limit", "4", "--rate", "10/1s", "--rate",
                     "1000/1h:50", url=api.url)
    assert (0, "") == (done.returncode, done.stderr)
    assert ["QUEUE", "STATE", "LIMIT", "RUNNING", "WAITING", "RATE", "KEY", "LIMIT", "KEY",
            "RATE", "WARNING"] == done.stdout.splitlines()[0].split()
    assert re.fullmatch(rf"{name}\s+active\s+4\s+0\s+0\s+10/1s,1000/1h:50",
                        row_of(done.stdout, name)), done.stdout
    assert (4, [window(10, "1s"), window(1000, "1h", 50)]) == settings(
        queue_of(http, name))[:2]
    # `queues limit` (as before) leaves the windows alone; --no-rate leaves the limit.
    assert 0 == scheduler("queues", "limit", name, "6", url=api.url).returncode
    assert (6, [window(10, "1s"), window(1000, "1h", 50)]) == settings(
        queue_of(http, name))[:2]
    unrated = scheduler("queues", "set", name, "--no-rate", "--json", url=api.url)
    assert (6, None) == settings(json.loads(unrated.stdout))[:2]
    assert (6, None) == settings(queue_of(http, name))[:2]
    unlimited = scheduler("queues", "set", name, "--no-limit", url=api.url)
    assert re.fullmatch(rf"{name}\s+active\s+-\s+0\s+0", row_of(unlimited.stdout, name))
    assert (None, None) == settings(queue_of(http, name))[:2]


def test_queues_set_sets_the_per_key_limits_then_removes_them(
        api: Coordinator, http: httpx.Client, scheduler: Scheduler) -> None:
    name = new_queue()
    done = scheduler("queues", "set", name, "--key-limit", "2", "--key-rate", "5/1s",
                     "--key-rate", "100/1m:10", "--rate", "50/1s", url=api.url)
    assert (0, "") == (done.returncode, done.stderr)
    assert re.fullmatch(rf"{name}\s+active\s+-\s+0\s+0\s+50/1s\s+2\s+5/1s,100/1m:10",
                        row_of(done.stdout, name)), done.stdout
    assert (None, [window(50, "1s")], 2, [window(5, "1s"), window(100, "1m", 10)]) == (
        settings(queue_of(http, name)))
    scheduler("queues", "set", name, "--no-key-limit", url=api.url)
    assert (None, [window(50, "1s")], None, [window(5, "1s"), window(100, "1m", 10)]) == (
        settings(queue_of(http, name)))
    done = scheduler("queues", "set", name, "--no-key-rate", "--key-limit", "3", "--json",
                     url=api.url)
    assert (None, [window(50, "1s")], 3, None) == settings(json.loads(done.stdout))
    scheduler("queues", "set", name, "--no-key-limit", "--no-rate", url=api.url)
    assert (None, None, None, None) == settings(queue_of(http, name))


def test_queues_show_prints_the_limits_in_use_the_keys_and_the_workers(
        api: Coordinator, http: httpx.Client, serving: Callable[[str], HandWorker],
        scheduler: Scheduler) -> None:
    name = new_queue()
    worker = serving(name)
    with Client(api.url) as client:
        client.set_queue_limit(name, 5, rate_limits=["100/1s:10"], key_concurrency_limit=2)
        client.submit_batch([{"type": "noop", "queue": name, "concurrency_key": "acme"}] * 3)
    assert 2 == len(worker.claim_some(5, queues=[name]))  # the key's limit: 2
    done = scheduler("queues", "show", name, url=api.url)
    assert (0, "") == (done.returncode, done.stderr)
    lines = done.stdout.splitlines()
    assert re.fullmatch(rf"{name}\s+active\s+5\s+2\s+1\s+100/1s:10\s+2", lines[1]), lines
    assert ["LIMIT", "USED", "OF", "PER", "UNTIL"] == lines[3].split()
    uses = lines[4:lines.index("", 4)]
    assert 1 == len([u for u in uses if re.fullmatch(r"concurrency\s+2\s+5", u)]), lines
    assert 1 == len([u for u in uses if re.fullmatch(r"rate\s+\d+\s+100\s+1s(\s+\S+)?", u)]), (
        lines)
    keys = [i for i, line in enumerate(lines) if line.split() == ["KEY", "WAITING", "RUNNING"]]
    assert re.fullmatch(r"acme\s+1\s+2", lines[keys[0] + 1]), lines
    assert "workers: 1" == lines[-1]
    shown = json.loads(scheduler("queues", "show", name, "--json", url=api.url).stdout)
    assert shown == queue_of(http, name) | {"limits": shown["limits"]}  # used moves


def test_a_queue_with_waiting_jobs_and_no_worker_is_flagged_no_worker(
        api: Coordinator, http: httpx.Client, scheduler: Scheduler) -> None:
    name = new_queue()
    with Client(api.url) as client:
        client.submit("noop", queue=name)
    assert ("no_worker", 0) == (queue_of(http, name)["warning"], queue_of(http, name)["workers"])
    shown = scheduler("queues", "show", name, url=api.url)
    assert re.fullmatch(rf"{name}\s+active\s+-\s+0\s+1\s+no_worker",
                        row_of(shown.stdout, name)), shown.stdout
    assert shown.stdout.splitlines()[-1].startswith(
        f"warning: no_worker: no live worker takes jobs from queue {name} and 1 job(s) wait")
    listed = scheduler("queues", "list", url=api.url)
    assert re.fullmatch(rf"{name}\s+active\s+-\s+0\s+1\s+no_worker",
                        row_of(listed.stdout, name)), listed.stdout


def test_queues_list_shows_the_windows_and_key_limits(
        api: Coordinator, scheduler: Scheduler) -> None:
    rated, keyed = new_queue(), new_queue()
    scheduler("queues", "set", rated, "--rate", "7/1s", "--rate", "70/1m:7", url=api.url)
    scheduler("queues", "set", keyed, "--key-limit", "9", "--key-rate", "3/1s", url=api.url)
    done = scheduler("queues", "list", url=api.url)
    assert 0 == done.returncode, done.stderr
    assert re.fullmatch(rf"{rated}\s+active\s+-\s+0\s+0\s+7/1s,70/1m:7",
                        row_of(done.stdout, rated)), done.stdout
    assert re.fullmatch(rf"{keyed}\s+active\s+-\s+0\s+0\s+9\s+3/1s",
                        row_of(done.stdout, keyed)), done.stdout


# -- scheduler submit --concurrency-key ---------------------------------------------------


def test_submit_sends_the_concurrency_key(
        api: Coordinator, http: httpx.Client, scheduler: Scheduler) -> None:
    done = scheduler("submit", "noop", "--queue", new_queue(), "--concurrency-key",
                     "tenant-7", url=api.url)
    assert (0, "") == (done.returncode, done.stderr)
    lines = done.stdout.splitlines()
    assert "concurrency key: tenant-7" == lines[3]
    job_id = lines[2].split()[0]
    assert "tenant-7" == http.get(f"/api/jobs/{job_id}").json()["concurrencyKey"]
    as_json = scheduler("submit", "noop", "--concurrency-key", "k" * 200, "--json",
                        url=api.url)
    assert "k" * 200 == json.loads(as_json.stdout)["concurrencyKey"]


def test_submit_keeps_key_as_the_idempotency_key(
        api: Coordinator, scheduler: Scheduler) -> None:
    key = f"fc-{uuid.uuid4()}"
    done = scheduler("submit", "noop", "--key", key, "--concurrency-key", "t", "--json",
                     url=api.url)
    job = json.loads(done.stdout)
    assert (key, "t") == (job["idempotencyKey"], job["concurrencyKey"])


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "complaint"), [
    (["--rate", "0/1s"], "argument --rate: the limit must be 1 to 1000000000, found 0"),
    (["--rate", "10/2x"], "argument --rate: the window must be a whole number and ms, s, "
     "m, h or d"),
    (["--rate", "10/1s:11"], "argument --rate: the burst must be 1 to the limit (10), "
     "found 11"),
    (["--rate", "10/1s:0"], "argument --rate: the burst must be 1 to the limit (10)"),
    (["--rate", "10/2d"], "argument --rate: the window must be at most 1d, found 2d"),
    (["--rate", "10/86400001ms"], "argument --rate: the window must be at most 1d"),
    (["--rate", "10"], "argument --rate: expected LIMIT/PER[:BURST]"),
    (["--rate", "ten/1s"], "argument --rate: expected LIMIT/PER[:BURST]"),
    (["--rate", "10/1.5s"], "argument --rate: the window must be"),
    (["--rate", "10/1s:2:3"], "argument --rate: expected LIMIT/PER[:BURST]"),
    (["--rate", "1000000001/1s"], "argument --rate: the limit must be 1 to 1000000000"),
    (["--rate", "1/1s"] * 9, "argument --rate: at most 8 windows, found 9"),
    (["--key-rate", "0/1s"], "argument --key-rate: the limit must be"),
    (["--key-rate", "5/1w"], "argument --key-rate: the window must be"),
    (["--key-rate", "5/1s:6"], "argument --key-rate: the burst must be 1 to the limit (5)"),
    (["--rate", "10/1s", "--no-rate"], "argument --no-rate: not allowed with argument --rate"),
    (["--key-rate", "1/1s", "--no-key-rate"], "argument --no-key-rate: not allowed with"),
    (["--limit", "0"], "argument --limit: expected a number >= 1, found 0"),
    (["--limit", "100001"], "argument --limit: expected at most 100000"),
    (["--limit", "none"], "argument --limit: expected a whole number, found 'none'"),
    (["--limit", "3", "--no-limit"], "argument --no-limit: not allowed with argument --limit"),
    (["--key-limit", "0"], "argument --key-limit: expected a number >= 1"),
    (["--key-limit", "many"], "argument --key-limit: expected a whole number"),
    (["--key-limit", "2", "--no-key-limit"], "argument --no-key-limit: not allowed with"),
    ([], "queues set: nothing to set; give --limit, --rate, --key-limit or --key-rate"),
], ids=lambda v: ("_".join(v[:4]) or "nothing") if isinstance(v, list) else "")
def test_bad_queue_settings_exit_2_naming_the_option_before_any_request(
        scheduler: Scheduler, args: list[str], complaint: str) -> None:
    done = scheduler("queues", "set", "q1", *args, url=NOBODY)
    assert (2, "") == (done.returncode, done.stdout)
    last = done.stderr.splitlines()[-1]
    assert last.startswith("scheduler: error: "), done.stderr
    assert complaint in last, done.stderr


@pytest.mark.parametrize(("args", "complaint"), [
    (["queues", "set", "bad name", "--limit", "1"], "expected a queue name"),
    (["queues", "set", "--limit", "1"], "name"),
    (["submit", "noop", "--concurrency-key", "k" * 201],
     "argument --concurrency-key: expected 1 to 200 characters, found 201"),
    (["submit", "noop", "--concurrency-key", ""],
     "argument --concurrency-key: expected 1 to 200 characters, found 0"),
], ids=["bad_name", "no_name", "key_too_long", "key_empty"])
def test_other_bad_flow_control_arguments_exit_2(
        scheduler: Scheduler, args: list[str], complaint: str) -> None:
    done = scheduler(*args, url=NOBODY)
    assert (2, "") == (done.returncode, done.stdout)
    assert complaint in done.stderr.splitlines()[-1], done.stderr


def test_a_bad_window_as_a_process_is_one_line_and_exit_2() -> None:
    done = scheduler_process("queues", "set", "q1", "--rate", "10/2x", url=NOBODY)
    assert (2, "") == (done.returncode, done.stdout)
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines()[-1].startswith("scheduler: error: argument --rate: ")


def refused_by_the_server(api: Coordinator, argv: list[str], **bad: Any) -> Run:
    """``scheduler ARGV`` parsed as the CLI parses it, then given values the CLI's own
    checks would have stopped (``bad``), so the coordinator's 400 is what answers."""
    args = build_parser().parse_args(argv)
    for name, value in bad.items():
        setattr(args, name, value)
    config = load_config(coordinator_url=api.url)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = client_cli.run(args, config)
    return Run(code, out.getvalue(), err.getvalue())


@pytest.mark.parametrize(("option", "field"), [
    ("rate", "rateLimits[0].burst"),
    ("key_rate", "keyRateLimits[0].burst"),
])
def test_the_servers_400_is_one_line_naming_the_field(
        api: Coordinator, http: httpx.Client, option: str, field: str) -> None:
    name = new_queue()
    flag = "--" + option.replace("_", "-")
    done = refused_by_the_server(api, ["queues", "set", name, flag, "10/1s"],
                                 **{option: [RateLimit(limit=10, per="1s", burst=11)]})
    assert (1, "") == (done.returncode, done.stdout)
    assert [f"scheduler: HTTP 400: expected at most the window's limit (10), found 11 "
            f"(field: {field})"] == done.stderr.splitlines()
    assert queue_of(http, name)["updatedAt"] is None


def test_a_refused_concurrency_key_is_one_line_naming_the_field(api: Coordinator) -> None:
    done = refused_by_the_server(api, ["submit", "noop"], concurrency_key="k" * 201)
    assert (1, "") == (done.returncode, done.stdout)
    [line] = done.stderr.splitlines()
    assert line.startswith("scheduler: HTTP 400: ")
    assert line.endswith("(field: concurrencyKey)")
