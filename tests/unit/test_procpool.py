"""The warm process pool and the child, with real processes.

Most tests use ``command.child``; the ones about the pool's own mechanics use a small
fake child (``FAKE_CHILD``) that speaks the framing, since the pool is generic.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio
import trio.testing

from scheduler_core.command.child import handle
from scheduler_core.handlers import REGISTRY, Registry
from scheduler_core.handlers.builtin import NoopPayload
from scheduler_core.runtime.job_protocol import PARENT_PID_ENV, Reply, decode_reply
from scheduler_core.runtime.procpool import (
    CallTimeout,
    ChildDied,
    PoolStatistics,
    ProtocolViolation,
    SpawnFailed,
    open_pool,
)

CHILD = [sys.executable, "-m", "scheduler_core.command.child"]

GRANDCHILD = """\
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
while True:
    time.sleep(60)
"""

FAKE_CHILD_SOURCE = f"""\
import os, signal, subprocess, sys, time
from scheduler_core.runtime.job_protocol import read_frame, write_frame
read, write = sys.stdin.buffer, sys.stdout.buffer

def send(data):
    write_frame(write, data)

send(b"")
stubborn = False
while True:
    request = read_frame(read)
    if request is None:
        while stubborn:
            time.sleep(60)
        break
    command, _, argument = request.partition(b":")
    if command == b"echo":
        send(str(os.getpid()).encode() + b":" + argument)
    elif command == b"exit":
        os._exit(3)
    elif command == b"garbage":
        write.write(b"\\xff\\xff\\xff\\xff")
        write.flush()
    elif command == b"stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stubborn = True
        send(b"ok")
    elif command == b"grandchild":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        grandchild = subprocess.Popen(
            [sys.executable, "-c", {GRANDCHILD!r}],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        path = argument.decode()
        with open(path + ".tmp", "w") as f:
            f.write(str(grandchild.pid))
        os.rename(path + ".tmp", path)
        while True:
            pass
"""
FAKE_CHILD = [sys.executable, "-c", FAKE_CHILD_SOURCE]

PARENT = """\
import sys, trio
from scheduler_core.runtime.procpool import open_pool

async def main():
    async with open_pool([sys.executable, "-m", "scheduler_core.command.child"], 2) as pool:
        print(*pool.statistics().pids, flush=True)
        await trio.sleep_forever()

trio.run(main)
"""


def job(type_: str, payload: Any = None) -> bytes:
    """A request as plain msgpack, so these tests also pin the request's wire keys."""
    return msgspec.msgpack.encode({"type": type_, "payload": payload, "jobId": "j", "attempt": 1})


def decode(response: bytes) -> Reply:
    return decode_reply(response)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie waiting for init to reap it counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


async def wait_until(predicate: Callable[[], bool]) -> None:
    """Poll ``predicate``; callers bound it with ``trio.fail_after``."""
    while not predicate():  # noqa: ASYNC110 - no event tells that a file appeared
        await trio.sleep(0.01)


async def wait_gone(pids: Iterable[int]) -> None:
    """Wait for each process to exit (a pidfd turns readable); bound it with fail_after."""
    for pid in pids:
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            await trio.lowlevel.wait_readable(pidfd)
        finally:
            os.close(pidfd)


# -- calls ------------------------------------------------------------------------------


async def test_noop_call_round_trips() -> None:
    async with open_pool(CHILD, 2) as pool:
        response = await pool.call(job("noop", {}), timeout=5)
        assert Reply(ok=True, result=None) == decode(response)
        stats = pool.statistics()
    assert (2, 2, 0, 2, 0) == (stats.size, stats.idle, stats.busy, stats.spawned, stats.killed)


async def test_child_reports_a_permanent_failure() -> None:
    async with open_pool(CHILD, 1) as pool:
        response = await pool.call(job("fail", {"message": "no", "permanent": True}), timeout=5)
    assert Reply(ok=False, error="PermanentError: no", permanent=True) == decode(response)


async def test_handler_output_does_not_corrupt_the_protocol(
    capfd: pytest.CaptureFixture[str],
) -> None:
    argv = [
        sys.executable,
        "-c",
        "import sys, scheduler_core.command.child\n"
        "from scheduler_core.handlers import REGISTRY\n"
        "from scheduler_core.handlers.builtin import NoopPayload\n"
        "REGISTRY.handler('shout', payload=NoopPayload)(lambda p, c: print('LOUD') or 'done')\n"
        "sys.exit(scheduler_core.command.child.main([]))\n",
    ]
    async with open_pool(argv, 1) as pool:
        response = await pool.call(job("shout"), timeout=5)
    assert Reply(ok=True, result="done") == decode(response)
    assert "LOUD" in capfd.readouterr().err


async def test_concurrent_calls_share_two_children() -> None:
    async with open_pool(FAKE_CHILD, 2) as pool:
        initial = set(pool.statistics().pids)
        used: set[int] = set()

        async def caller(i: int) -> None:
            for j in range(20):
                pid, _, text = (await pool.call(f"echo:{i}-{j}".encode(), timeout=5)).partition(
                    b":"
                )
                assert f"{i}-{j}".encode() == text
                used.add(int(pid))

        async with trio.open_nursery() as nursery:
            for i in range(10):
                nursery.start_soon(caller, i)
        assert initial == used
        assert PoolStatistics(2, 2, 0, 2, 0, tuple(sorted(initial))) == pool.statistics()


async def test_call_refuses_a_timeout_that_is_not_positive() -> None:
    async with open_pool(FAKE_CHILD, 1) as pool:
        with pytest.raises(ValueError, match="timeout"):
            await pool.call(b"echo:x", timeout=0)


# -- timeouts, cancellation, deaths -----------------------------------------------------


async def test_busy_loop_is_killed_at_its_timeout() -> None:
    async with open_pool(CHILD, 1, kill_grace=0.2) as pool:
        [pid] = pool.statistics().pids
        started = trio.current_time()
        # Far short of the job's 30 s: the timeout ended the call, the loop did not.
        with trio.fail_after(15), pytest.raises(CallTimeout) as caught:
            await pool.call(job("cpu", {"durationSeconds": 30}), timeout=0.5)
        assert 0.5 == caught.value.seconds
        assert 0.5 <= trio.current_time() - started  # not before its timeout
        assert not alive(pid)
        assert Reply(ok=True, result=None) == decode(await pool.call(job("noop"), timeout=5))
        stats = pool.statistics()
        assert (2, 1) == (stats.spawned, stats.killed)
        assert pid not in stats.pids


async def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    """A child and its grandchild that both ignore SIGTERM are gone after the timeout."""
    pid_file = tmp_path / "grandchild.pid"
    async with open_pool(FAKE_CHILD, 1, kill_grace=0.2) as pool:
        [pid] = pool.statistics().pids
        async with trio.open_nursery() as nursery:

            async def call() -> None:
                with pytest.raises(CallTimeout):
                    await pool.call(f"grandchild:{pid_file}".encode(), timeout=1.0)
                nursery.cancel_scope.cancel()

            started = trio.current_time()
            nursery.start_soon(call)
            with trio.fail_after(5):
                await wait_until(pid_file.exists)
            grandchild = int(pid_file.read_text())
            assert alive(grandchild)
            await trio.sleep_forever()  # until the call's timeout ends it
        assert 1.0 <= trio.current_time() - started  # not before its timeout
        assert not alive(pid)
        with trio.fail_after(1):
            await wait_gone([grandchild])


async def test_cancelled_call_kills_the_child_and_the_pool_keeps_serving() -> None:
    async with open_pool(CHILD, 1) as pool:
        [pid] = pool.statistics().pids
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                functools.partial(pool.call, job("sleep", {"seconds": 30}), timeout=60)
            )
            await trio.testing.wait_all_tasks_blocked()  # the request is in the child
            assert 1 == pool.statistics().busy
            nursery.cancel_scope.cancel()
        # Killed: a child left to finish its 30 s sleep would still be alive, and idle.
        assert not alive(pid)
        assert Reply(ok=True, result=None) == decode(await pool.call(job("noop"), timeout=5))
        stats = pool.statistics()
        assert (0, 1) == (stats.busy, stats.killed)
        assert pid not in stats.pids


async def test_child_exiting_mid_call_raises_child_died_and_is_replaced() -> None:
    async with open_pool(FAKE_CHILD, 1) as pool:
        [pid] = pool.statistics().pids
        with pytest.raises(ChildDied) as caught:
            await pool.call(b"exit", timeout=5)
        assert 3 == caught.value.returncode
        new_pid, _, _ = (await pool.call(b"echo:again", timeout=5)).partition(b":")
        assert pid != int(new_pid)
        assert 1 == pool.statistics().killed


async def test_malformed_frame_raises_protocol_violation_and_is_replaced() -> None:
    async with open_pool(FAKE_CHILD, 1) as pool:
        [pid] = pool.statistics().pids
        with pytest.raises(ProtocolViolation):
            await pool.call(b"garbage", timeout=5)
        assert not alive(pid)
        assert (await pool.call(b"echo:x", timeout=5)).endswith(b":x")


async def test_child_killed_while_idle_is_replaced_before_the_call() -> None:
    async with open_pool(FAKE_CHILD, 1) as pool:
        [pid] = pool.statistics().pids
        os.kill(pid, signal.SIGKILL)
        with trio.fail_after(5):
            await wait_gone([pid])
        new_pid, _, _ = (await pool.call(b"echo:x", timeout=5)).partition(b":")
        assert pid != int(new_pid)


async def test_pool_refuses_a_child_that_never_gets_ready() -> None:
    with pytest.raises(SpawnFailed, match="exited with 5"):
        async with open_pool([sys.executable, "-c", "raise SystemExit(5)"], 2):
            pass  # pragma: no cover


# -- shutdown ---------------------------------------------------------------------------


async def test_no_child_survives_the_pool(tmp_path: Path) -> None:
    """Idle, stubborn (ignores EOF and SIGTERM) and busy children with a grandchild."""
    pid_file = tmp_path / "grandchild.pid"
    caught: list[BaseException] = []
    async with trio.open_nursery() as nursery:
        # Without the kill after the grace, closing would wait for the stubborn child
        # forever: the deadline says it ends.
        with trio.fail_after(20):
            async with open_pool(FAKE_CHILD, 3, kill_grace=0.2) as pool:
                pids = pool.statistics().pids
                assert b"ok" == await pool.call(b"stubborn", timeout=5)

                async def busy() -> None:
                    try:
                        await pool.call(f"grandchild:{pid_file}".encode(), timeout=60)
                    except ChildDied as exc:
                        caught.append(exc)

                nursery.start_soon(busy)
                with trio.fail_after(5):
                    await wait_until(pid_file.exists)
                grandchild = int(pid_file.read_text())
        assert [] == [pid for pid in pids if alive(pid)]
    assert [ChildDied] == [type(exc) for exc in caught]
    with trio.fail_after(1):
        await wait_gone([grandchild])


async def test_kill_9_of_the_parent_leaves_no_orphan() -> None:
    parent = await trio.lowlevel.open_process(
        [sys.executable, "-c", PARENT], stdout=subprocess.PIPE
    )
    try:
        assert parent.stdout is not None
        line = b""
        with trio.fail_after(10):
            while not line.endswith(b"\n"):
                chunk = await parent.stdout.receive_some()
                assert chunk, "the parent exited before printing its children"
                line += chunk
        pids = [int(pid) for pid in line.split()]
        assert 2 == len(pids)
        assert all(alive(pid) for pid in pids)
    finally:
        parent.kill()
        await parent.wait()
        if parent.stdout is not None:
            await parent.stdout.aclose()
    assert -signal.SIGKILL == parent.returncode
    with trio.fail_after(5):
        await wait_gone(pids)


async def test_children_are_forked_by_one_thread_that_outlives_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """PR_SET_PDEATHSIG fires when the forking *thread* exits, so that thread must last.

    trio.lowlevel.open_process forks from a worker thread that trio retires when idle.
    """
    threads: list[int] = []
    third_fork = threading.Event()

    class RecordingPopen(subprocess.Popen[bytes]):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            threads.append(threading.get_ident())
            if len(threads) == 3:
                third_fork.set()
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", RecordingPopen)
    async with open_pool(FAKE_CHILD, 2) as pool:
        with pytest.raises(ChildDied):
            await pool.call(b"exit", timeout=5)
        assert (await pool.call(b"echo:x", timeout=5)).endswith(b":x")
        # The other child may answer before the dead one's replacement is forked.
        assert await trio.to_thread.run_sync(third_fork.wait, 10)
        assert 3 == len(threads)
        assert 1 == len(set(threads))
        assert threads[0] != threading.get_ident()
        assert threads[0] in {thread.ident for thread in threading.enumerate()}


async def test_child_exits_when_its_parent_is_not_the_expected_one() -> None:
    env = {**os.environ, PARENT_PID_ENV: "1"}
    result = await trio.run_process(CHILD, env=env, stdin=subprocess.DEVNULL, check=False)
    assert 70 == result.returncode


# -- the child's request handling, in-process -------------------------------------------


def test_child_refuses_a_result_that_is_not_json(tmp_path: Path) -> None:
    registry = Registry()
    registry.handler("obj", payload=NoopPayload)(lambda payload, ctx: object())
    response = decode(handle(job("obj"), registry, str(tmp_path)))
    assert (False, True) == (response.ok, response.permanent)
    assert response.error is not None
    assert response.error.startswith("TypeError: expected a JSON-able result")


def test_child_reports_a_bug_in_a_handler_as_retryable(tmp_path: Path) -> None:
    registry = Registry()
    registry.handler("bug", payload=NoopPayload)(lambda payload, ctx: 1 // 0)
    response = decode(handle(job("bug"), registry, str(tmp_path)))
    assert Reply(
        ok=False, error="ZeroDivisionError: integer division or modulo by zero", permanent=False
    ) == response


def test_child_reports_an_unknown_type_as_permanent(tmp_path: Path) -> None:
    response = decode(handle(job("nope"), REGISTRY, str(tmp_path)))
    assert (False, True) == (response.ok, response.permanent)
    assert response.error is not None
    assert response.error.startswith("UnknownHandler: ")


def test_child_reports_a_malformed_request_as_permanent(tmp_path: Path) -> None:
    response = decode(handle(b"\xc1", REGISTRY, str(tmp_path)))
    assert (False, True) == (response.ok, response.permanent)


def test_child_passes_job_id_and_attempt_and_data_dir(tmp_path: Path) -> None:
    registry = Registry()
    registry.handler("ctx", payload=NoopPayload)(
        lambda payload, ctx: [ctx.job_id, ctx.attempt, ctx.data_dir]
    )
    request = msgspec.msgpack.encode({"type": "ctx", "jobId": "job-9", "attempt": 3})
    response = decode(handle(request, registry, str(tmp_path)))
    assert Reply(ok=True, result=["job-9", 3, str(tmp_path)]) == response


def test_child_refuses_a_result_larger_than_the_limit(tmp_path: Path) -> None:
    registry = Registry()
    registry.handler("big", payload=NoopPayload)(lambda payload, ctx: "x" * 70_000)
    response = decode(handle(job("big"), registry, str(tmp_path)))
    assert Reply(ok=False, error="result larger than 65536 bytes", permanent=True) == response
