"""Job types for the progress and snooze tests, loaded with
``--handlers tests.progress_handlers`` (coordinator and workers).

``progress`` (a job process) and ``progress_inline`` (inline, in the worker) report
``updates`` progress values up to ``upTo``, the last one with the message
``"step <updates> of <updates>"``, set ``meta`` if given, then wait until the file
``gate`` exists: the test reads the job while it runs, then lets it end.

``snooze`` snoozes ``times`` runs (counted as files in the folder ``counter``) by
``seconds``, returning or raising ``Snooze`` (``raise``), then succeeds; ``times`` -1
snoozes every run. ``snooze_inline`` is the same, inline. ``progress_steps`` reports
step i once the test creates the file ``step-<i>``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import msgspec
import trio

from scheduler_core.handlers import REGISTRY, RunContext, Snooze


class ProgressPayload(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    gate: Annotated[str, msgspec.Meta(min_length=1)]
    updates: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 1
    up_to: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.4
    meta: dict[str, Any] | None = None
    max_seconds: Annotated[float, msgspec.Meta(gt=0, le=300)] = 60.0


def _report(payload: ProgressPayload, ctx: RunContext) -> None:
    n = payload.updates
    for i in range(1, n + 1):
        ctx.progress(payload.up_to * i / n, f"step {i} of {n}")
    if payload.meta is not None:
        ctx.set_meta(payload.meta)


@REGISTRY.handler("progress", payload=ProgressPayload, max_attempts=1)
def progress(payload: ProgressPayload, ctx: RunContext) -> dict[str, object]:
    _report(payload, ctx)
    deadline = time.monotonic() + payload.max_seconds
    while not Path(payload.gate).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{payload.gate} did not appear within {payload.max_seconds}s")
        time.sleep(0.02)
    return {"done": True}


@REGISTRY.handler("progress_inline", payload=ProgressPayload, max_attempts=1, inline=True)
async def progress_inline(payload: ProgressPayload, ctx: RunContext) -> dict[str, object]:
    _report(payload, ctx)
    with trio.fail_after(payload.max_seconds):
        while not await trio.Path(payload.gate).exists():  # noqa: ASYNC110 (a file, no event)
            await trio.sleep(0.02)
    return {"done": True}


class SnoozePayload(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    counter: Annotated[str, msgspec.Meta(min_length=1)]
    times: Annotated[int, msgspec.Meta(ge=-1)] = 1
    seconds: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    raise_: bool = msgspec.field(default=False, name="raise")


def _snooze_or_not(payload: SnoozePayload) -> Snooze | dict[str, object]:
    folder = Path(payload.counter)
    folder.mkdir(parents=True, exist_ok=True)
    runs = len(list(folder.iterdir()))
    (folder / f"run-{runs}").touch()
    if payload.times == -1 or runs < payload.times:
        if payload.raise_:
            raise Snooze(payload.seconds)
        return Snooze(payload.seconds)
    return {"runs": runs + 1}


@REGISTRY.handler("snooze", payload=SnoozePayload, max_attempts=2)
def snooze(payload: SnoozePayload, ctx: RunContext) -> object:
    return _snooze_or_not(payload)


@REGISTRY.handler("snooze_inline", payload=SnoozePayload, max_attempts=2, inline=True)
async def snooze_inline(payload: SnoozePayload, ctx: RunContext) -> object:
    return _snooze_or_not(payload)


class StepsPayload(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    folder: Annotated[str, msgspec.Meta(min_length=1)]
    steps: Annotated[int, msgspec.Meta(ge=1, le=100)] = 2
    max_seconds: Annotated[float, msgspec.Meta(gt=0, le=300)] = 60.0


def _wait_for(path: Path, deadline: float) -> None:
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear")
        time.sleep(0.02)


@REGISTRY.handler("progress_steps", payload=StepsPayload, max_attempts=1)
def progress_steps(payload: StepsPayload, ctx: RunContext) -> dict[str, object]:
    """Report step i of ``steps`` once the file ``step-<i>`` exists in ``folder``; end
    once ``done`` does: the test moves the job on, one step at a time."""
    deadline = time.monotonic() + payload.max_seconds
    folder = Path(payload.folder)
    for i in range(1, payload.steps + 1):
        _wait_for(folder / f"step-{i}", deadline)
        ctx.progress(i / payload.steps, f"step {i} of {payload.steps}")
    _wait_for(folder / "done", deadline)
    return {"steps": payload.steps}
