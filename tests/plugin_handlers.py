"""Job types loaded with ``--handlers tests.plugin_handlers`` (no package installed).

The module form: importing it registers its handlers on ``handlers.REGISTRY``.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from scheduler_core.handlers import REGISTRY, RunContext


class ShoutPayload(msgspec.Struct, forbid_unknown_fields=True):
    text: Annotated[str, msgspec.Meta(min_length=1)]


@REGISTRY.handler("shout", payload=ShoutPayload, max_attempts=1, timeout_seconds=5)
def shout(payload: ShoutPayload, ctx: RunContext) -> dict[str, object]:
    return {"text": payload.text.upper(), "attempt": ctx.attempt}
