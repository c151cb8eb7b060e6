"""Job types for the dependency tests, loaded with ``--handlers tests.dep_handlers``.

``emit``: returns ``{"value": payload.value}``. ``report``: a batch callback's members
(``ctx.parent_ids``, ``ctx.parent_counts``). ``gather`` (in a job process) and
``gather_inline`` (in the worker): return the ``ctx.parent_results`` they were given.
"""

from __future__ import annotations

from typing import Any

import msgspec

from scheduler_core.handlers import REGISTRY, RunContext


class EmitPayload(msgspec.Struct, forbid_unknown_fields=True):
    value: Any = None


class NoPayload(msgspec.Struct, forbid_unknown_fields=True):
    pass


@REGISTRY.handler("emit", payload=EmitPayload)
def emit(payload: EmitPayload, ctx: RunContext) -> dict[str, Any]:
    return {"value": payload.value}


@REGISTRY.handler("gather", payload=NoPayload)
def gather(payload: NoPayload, ctx: RunContext) -> dict[str, Any]:
    return {"parents": dict(ctx.parent_results)}


@REGISTRY.handler("gather_inline", payload=NoPayload, inline=True)
async def gather_inline(payload: NoPayload, ctx: RunContext) -> dict[str, Any]:
    return {"parents": dict(ctx.parent_results)}


@REGISTRY.handler("report", payload=NoPayload, inline=True)
async def report(payload: NoPayload, ctx: RunContext) -> dict[str, Any]:
    """A batch callback's view of its members."""
    return {"ids": list(ctx.parent_ids), "counts": dict(ctx.parent_counts)}
