"""Job types for the tracing test, loaded with ``--handlers tests.trace_handlers``.

``flaky_traced`` (in a job process) and ``flaky_traced_inline`` (in the worker): open a
span of their own, ``handler.work`` with the attempt, then fail on attempt 1 and
succeed on attempt 2 and later. They use the OpenTelemetry API only, as an
application's handler would: the scheduler makes the run's span current around them.
"""

from __future__ import annotations

from typing import Any

import msgspec
from opentelemetry import trace

from scheduler_core.handlers import REGISTRY, RunContext

_tracer = trace.get_tracer("tests.trace_handlers")


class NoPayload(msgspec.Struct, forbid_unknown_fields=True):
    pass


def _work(ctx: RunContext) -> dict[str, Any]:
    with _tracer.start_as_current_span("handler.work", attributes={"attempt": ctx.attempt}):
        if ctx.attempt == 1:
            raise RuntimeError("the first attempt fails")
        return {"attempt": ctx.attempt}


@REGISTRY.handler("flaky_traced", payload=NoPayload, max_attempts=3)
def flaky_traced(payload: NoPayload, ctx: RunContext) -> dict[str, Any]:
    return _work(ctx)


@REGISTRY.handler("flaky_traced_inline", payload=NoPayload, max_attempts=3, inline=True)
async def flaky_traced_inline(payload: NoPayload, ctx: RunContext) -> dict[str, Any]:
    return _work(ctx)
