"""Job types for the fault tests, loaded with SCHEDULER_HANDLERS=tests.faults.fault_handlers
(coordinator and workers both: the coordinator validates submissions by type).

``gate`` lets a test decide when a job body ends: it waits until a file exists. A test
can then freeze a worker and only afterwards let its job finish, with no race
against the machine's load. ``flaky`` fails (retryably) until a given attempt, then
succeeds: a job that needs its retries.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import msgspec

from scheduler_core.handlers import REGISTRY, HandlerError, RunContext


class GatePayload(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    path: Annotated[str, msgspec.Meta(min_length=1)]
    max_seconds: Annotated[float, msgspec.Meta(gt=0, le=300)] = 60.0


@REGISTRY.handler("gate", payload=GatePayload)
def gate(payload: GatePayload, ctx: RunContext) -> dict[str, object]:
    """Wait until the file ``path`` exists (polled every 20 ms), at most ``maxSeconds``."""
    deadline = time.monotonic() + payload.max_seconds
    target = Path(payload.path)
    while not target.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{payload.path} did not appear within {payload.max_seconds}s")
        time.sleep(0.02)
    return {"attempt": ctx.attempt}


class FlakyPayload(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    succeed_on_attempt: Annotated[int, msgspec.Meta(ge=1, le=20)] = 2


@REGISTRY.handler("flaky", payload=FlakyPayload)
def flaky(payload: FlakyPayload, ctx: RunContext) -> dict[str, object]:
    """Fail (retryably) on every attempt before ``succeedOnAttempt``, then succeed."""
    if ctx.attempt < payload.succeed_on_attempt:
        raise HandlerError(f"flaky: attempt {ctx.attempt}, succeeds on "
                           f"{payload.succeed_on_attempt}")
    return {"attempt": ctx.attempt}
