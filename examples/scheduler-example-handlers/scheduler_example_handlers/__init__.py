"""Example job types for scheduler-core: ``greet`` (sync) and ``greet_later`` (async).

A handler is a plain function ``fn(payload, ctx)``: ``payload`` is an instance of its
msgspec Struct (validated when the job is submitted, so a bad payload is a 400 naming
the field), ``ctx`` a ``handlers.RunContext`` (job id, attempt, data folder). What it
returns (JSON-able) is stored as the job's result; what it raises fails the run (and
is retried, unless it is a ``handlers.PermanentError``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import msgspec
import trio

if TYPE_CHECKING:
    from scheduler_core.handlers import Registry, RunContext

__all__ = ["GreetLaterPayload", "GreetPayload", "greet", "greet_later", "register"]


class GreetPayload(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class GreetLaterPayload(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    delay_seconds: Annotated[float, msgspec.Meta(ge=0, le=60)] = 0.0


def greet(payload: GreetPayload, ctx: RunContext) -> dict[str, str]:
    return {"greeting": f"hello, {payload.name}"}


async def greet_later(payload: GreetLaterPayload, ctx: RunContext) -> dict[str, str]:
    # An async handler runs under trio in the job's own process.
    await trio.sleep(payload.delay_seconds)
    return {"greeting": f"hello, {payload.name}"}


def register(registry: Registry) -> None:
    """Called once per process with the registry (the entry point names it)."""
    registry.handler("greet", payload=GreetPayload, timeout_seconds=10, max_attempts=2)(greet)
    registry.handler("greet_later", payload=GreetLaterPayload, timeout_seconds=70)(greet_later)
