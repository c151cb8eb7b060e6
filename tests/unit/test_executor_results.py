"""The worker checks a job process's result again: it does not trust what the process
sends. A result the coordinator would refuse (too large, too deep) fails the run for
good instead of being resent forever."""

from __future__ import annotations

import math
from typing import Any

import pytest
import trio

from scheduler_core.actors.worker.executor import Executors
from scheduler_core.actors.worker.worker_state import OwnedRun, WorkerState
from scheduler_core.runtime.job_protocol import MAX_RESULT_BYTES, Reply, encode_reply
from scheduler_core.schema import wire
from tests.unit.test_worker_state import job


class ProcessSays:
    """A pool whose job process answers ``reply`` (whatever the request)."""

    killed = 0

    def __init__(self, reply: Reply) -> None:
        self.reply = encode_reply(reply)

    async def call(self, request: bytes, *, timeout: float,  # noqa: ASYNC109 (the pool's signature)
                   on_note: object = None) -> bytes:
        return self.reply


class Recorder:
    def __init__(self) -> None:
        self.completions: list[wire.Completion] = []

    def submit(self, completion: wire.Completion) -> None:
        self.completions.append(completion)


def nested(levels: int) -> Any:
    value: Any = []
    for _ in range(levels - 1):
        value = [value]
    return value


async def outcome_of(result: Any) -> wire.Completion:
    state = WorkerState("w", 1)
    recorder = Recorder()
    _, runs = trio.open_memory_channel[OwnedRun](math.inf)
    executors = Executors(ProcessSays(Reply(ok=True, result=result)), state,
                          recorder, runs)  # type: ignore[arg-type]
    run = state.add(job())
    state.begin(run)
    await executors.execute(run)
    [completion] = recorder.completions
    return completion


async def test_a_plain_result_is_passed_on_as_sent() -> None:
    completion = await outcome_of({"rows": [1, 2, 3]})
    assert ("Succeeded", {"rows": [1, 2, 3]}, None) == (
        completion.outcome, completion.result, completion.error)


@pytest.mark.parametrize(("result", "error"), [
    ("x" * (MAX_RESULT_BYTES + 1), f"result larger than {MAX_RESULT_BYTES} bytes"),
    (nested(40), "result nested deeper than 32 levels"),
])
async def test_a_result_the_coordinator_would_refuse_fails_the_run_for_good(
        result: Any, error: str) -> None:
    completion = await outcome_of(result)
    assert ("Failed", None, error, True) == (
        completion.outcome, completion.result, completion.error, completion.permanent)
