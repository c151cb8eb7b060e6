"""Job types for the SQL-enqueue tests, loaded with ``--handlers tests.sql_handlers``.

``tally``: an inline handler that appends its payload as one JSON line to the file
its payload names (every call it ever had, so a test can show which payloads reached
it). ``slow_default``: a type with its own defaults (queue ``sqlq``, 7 attempts, a
42 s timeout), for the defaults the validator fills.
"""

from __future__ import annotations

import msgspec
import trio

from scheduler_core.handlers import REGISTRY, RunContext


class TallyPayload(msgspec.Struct, forbid_unknown_fields=True):
    n: int
    path: str


class NoPayload(msgspec.Struct, forbid_unknown_fields=True):
    pass


@REGISTRY.handler("tally", payload=TallyPayload, inline=True)
async def tally(payload: TallyPayload, ctx: RunContext) -> dict[str, int]:
    async with await trio.open_file(payload.path, "a", encoding="utf-8") as out:
        await out.write(msgspec.json.encode(payload).decode() + "\n")
    return {"n": payload.n}


@REGISTRY.handler("slow_default", payload=NoPayload, queue="sqlq", max_attempts=7,
                  timeout_seconds=42, inline=True)
async def slow_default(payload: NoPayload, ctx: RunContext) -> None:
    return None
