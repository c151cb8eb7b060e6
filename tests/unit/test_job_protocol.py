"""runtime/job_protocol.py: the framing, the messages and the result rule, in-process.

The pool and the child speak it over real pipes in test_procpool.py.
"""

from __future__ import annotations

import io

import msgspec
import pytest

from scheduler_core.runtime.job_protocol import (
    MAX_FRAME_BYTES,
    FrameTooLarge,
    Reply,
    Request,
    decode_reply,
    decode_request,
    encode_frame,
    encode_reply,
    encode_request,
    normalise_result,
    read_frame,
    split_frame,
    write_frame,
)

# -- framing ------------------------------------------------------------------------------


def test_a_frame_is_a_big_endian_length_then_the_bytes() -> None:
    assert b"\x00\x00\x00\x03abc" == encode_frame(b"abc")


def test_split_frame_waits_for_the_whole_frame_then_takes_it() -> None:
    wire = encode_frame(b"first") + encode_frame(b"") + encode_frame(b"third")
    buffer = bytearray()
    frames: list[bytes] = []
    for byte in wire:
        buffer.append(byte)
        while (frame := split_frame(buffer)) is not None:
            frames.append(frame)
    assert [b"first", b"", b"third"] == frames
    assert bytearray() == buffer


def test_split_frame_refuses_a_header_over_the_limit_before_its_bytes_arrive() -> None:
    buffer = bytearray((MAX_FRAME_BYTES + 1).to_bytes(4, "big"))
    with pytest.raises(FrameTooLarge) as caught:
        split_frame(buffer)
    assert MAX_FRAME_BYTES + 1 == caught.value.length


def test_read_frame_reads_what_write_frame_wrote_then_end_of_file() -> None:
    stream = io.BytesIO()
    write_frame(stream, b"one")
    write_frame(stream, b"")
    stream.seek(0)
    assert [b"one", b"", None] == [read_frame(stream) for _ in range(3)]


def test_read_frame_treats_a_truncated_frame_as_end_of_file() -> None:
    assert None is read_frame(io.BytesIO(encode_frame(b"abcdef")[:-1]))


# -- messages -----------------------------------------------------------------------------


def test_a_request_encodes_as_the_map_the_child_has_always_read() -> None:
    request = Request(type="noop", payload={"a": 1}, job_id="j", attempt=2)
    expected = msgspec.msgpack.encode({"type": "noop", "payload": {"a": 1}, "jobId": "j",
                                       "attempt": 2})
    assert expected == encode_request(request)
    assert request == decode_request(expected)


def test_a_reply_leaves_out_what_its_outcome_does_not_use() -> None:
    assert {"ok": True, "result": [1]} == msgspec.msgpack.decode(
        encode_reply(Reply(ok=True, result=[1])))
    assert {"ok": False, "error": "E: x", "permanent": True} == msgspec.msgpack.decode(
        encode_reply(Reply(ok=False, error="E: x", permanent=True)))


def test_a_reply_decodes_the_maps_a_child_sends() -> None:
    raw = msgspec.msgpack.encode({"ok": True, "result": None})
    assert Reply(ok=True, result=None, error=None, permanent=False) == decode_reply(raw)


def test_a_reply_without_ok_is_refused() -> None:
    with pytest.raises(msgspec.ValidationError):
        decode_reply(msgspec.msgpack.encode({"result": 1}))


# -- results ------------------------------------------------------------------------------


def nested(levels: int) -> list[object]:
    """A list ``levels`` deep: ``nested(2) == [[]]``."""
    value: list[object] = []
    for _ in range(levels - 1):
        value = [value]
    return value



@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (None, (None, None)),
        ({"n": 1, "t": (1, 2)}, ({"n": 1, "t": [1, 2]}, None)),
        ("x" * (64 * 1024 - 2), ("x" * (64 * 1024 - 2), None)),
        ("x" * (64 * 1024 - 1), (None, "result larger than 65536 bytes")),
        (nested(32), (nested(32), None)),
        (nested(33), (None, "result nested deeper than 32 levels")),
    ],
)
def test_normalise_result(result: object, expected: tuple[object, str | None]) -> None:
    assert expected == normalise_result(result)


def test_normalise_result_refuses_what_json_cannot_hold() -> None:
    plain, refusal = normalise_result(object())
    assert None is plain
    assert refusal is not None
    assert refusal.startswith("TypeError: expected a JSON-able result, found object: ")
