"""schema.wire.CompletionResult: ``duplicate`` is optional on the wire both ways."""

from __future__ import annotations

import uuid

import msgspec

from scheduler_core.schema import wire

RUN = uuid.UUID("01900000-0000-7000-8000-000000000001")


def test_a_reply_from_an_older_coordinator_without_duplicate_decodes_as_not_duplicate() -> None:
    raw = (b'{"results": [{"runId": "%s", "accepted": true, "status": "Succeeded"}]}'
           % str(RUN).encode())

    reply = msgspec.json.decode(raw, type=wire.CompleteReply)

    assert [wire.CompletionResult(run_id=RUN, accepted=True, status="Succeeded",
                                  duplicate=False)] == reply.results


def test_a_duplicate_is_sent_as_camel_case_duplicate() -> None:
    result = wire.CompletionResult(run_id=RUN, accepted=True, status="Failed", duplicate=True)

    assert {"runId": str(RUN), "accepted": True, "status": "Failed", "duplicate": True} == \
        msgspec.json.decode(msgspec.json.encode(result))


def test_an_older_worker_ignores_the_duplicate_field() -> None:
    class OldCompletionResult(msgspec.Struct, rename="camel", kw_only=True):
        run_id: uuid.UUID
        accepted: bool
        status: str | None = None

    raw = msgspec.json.encode(wire.CompletionResult(run_id=RUN, accepted=True, duplicate=True))

    assert OldCompletionResult(run_id=RUN, accepted=True) == \
        msgspec.json.decode(raw, type=OldCompletionResult)
