"""The job-process protocol: what a worker and its job processes say to each other.

Both sides of the pipe import this module: the warm pool (:mod:`runtime.procpool`)
and the executor that talk to a job process, and the job process itself
(:mod:`command.child`). It lives in the runtime floor because the pool needs its
framing; it knows nothing of handlers, and it imports neither trio nor structlog, so a
job process that imports it still starts fast.

Framing (both directions): a 4-byte big-endian length, then that many bytes. A job
process first writes one empty frame when it is ready to serve, then answers each
request frame with exactly one reply frame, and exits at end of file on its stdin.
While a request runs the job process may also send *note* frames (:class:`Note`: the
run's newest progress and meta), each marked by its first byte :data:`NOTE_MARK`
(0xC1, the one byte msgpack never uses, so a note is never mistaken for a reply); all
of a request's notes come before its reply.

Messages (msgpack): a :class:`Request` (``{"type", "payload", "jobId", "attempt"}``)
and a :class:`Reply` (``{"ok", "result", "error", "permanent", "retry_after",
"snooze"}``; ``retry_after`` and ``snooze`` only when the handler asked to be run
again later, so a reply from an older job process, without them, still decodes).

A job's result is stored exactly as it will be read: :func:`normalise_result` passes
it through JSON and refuses one larger than :data:`MAX_RESULT_BYTES` or nested deeper
than ``jsonlimits.MAX_RESULT_DEPTH`` (the coordinator would refuse that completion and
it would be resent forever). A job's meta is bounded the same way, tighter
(:func:`meta_refusal`: :data:`MAX_META_BYTES`, :data:`MAX_META_DEPTH`).

The job process is told its parent's pid in :data:`PARENT_PID_ENV`.

Errors::

    RuntimeCoreError            (runtime.errors)
     └─ FrameTooLarge           a frame's header announces more than MAX_FRAME_BYTES
"""

from __future__ import annotations

from typing import Any, BinaryIO

import msgspec

from scheduler_core.runtime import jsonlimits
from scheduler_core.runtime.errors import RuntimeCoreError

__all__ = [
    "HEADER_BYTES",
    "MAX_FRAME_BYTES",
    "MAX_META_BYTES",
    "MAX_META_DEPTH",
    "MAX_RESULT_BYTES",
    "NOTE_MARK",
    "PARENT_PID_ENV",
    "FrameTooLarge",
    "Note",
    "Reply",
    "Request",
    "check_result",
    "decode_note",
    "decode_reply",
    "decode_request",
    "encode_frame",
    "encode_note",
    "encode_reply",
    "encode_request",
    "is_note",
    "meta_refusal",
    "normalise_meta",
    "normalise_result",
    "read_frame",
    "result_refusal",
    "split_frame",
    "write_frame",
]

PARENT_PID_ENV = "SCHEDULER_PARENT_PID"
HEADER_BYTES = 4
MAX_FRAME_BYTES = 256 * 1024 * 1024
MAX_RESULT_BYTES = 64 * 1024
MAX_META_BYTES = 16 * 1024
# A heartbeat carries a meta 4 levels down ({"runs": [{"report": {"meta": ...}}]}),
# within the least body depth a coordinator may be set to (jsonlimits).
MAX_META_DEPTH = 16
NOTE_MARK = b"\xc1"


class FrameTooLarge(RuntimeCoreError):
    """A frame's header announces more than :data:`MAX_FRAME_BYTES`."""

    def __init__(self, length: int) -> None:
        super().__init__(f"expected a frame of at most {MAX_FRAME_BYTES} bytes, found {length}")
        self.length = length


# -- framing ------------------------------------------------------------------------------


def encode_frame(payload: bytes) -> bytes:
    """``payload`` with its length header, ready to write."""
    return len(payload).to_bytes(HEADER_BYTES, "big") + payload


def split_frame(buffer: bytearray) -> bytes | None:
    """Take the first whole frame's payload out of ``buffer``; None if it holds none yet.

    For a reader that gathers bytes as they arrive (the pool, on a job process's
    stdout). Raises FrameTooLarge as soon as the header is in, before the bytes are.
    """
    if len(buffer) < HEADER_BYTES:
        return None
    length = int.from_bytes(buffer[:HEADER_BYTES], "big")
    if length > MAX_FRAME_BYTES:
        raise FrameTooLarge(length)
    end = HEADER_BYTES + length
    if len(buffer) < end:
        return None
    frame = bytes(buffer[HEADER_BYTES:end])
    del buffer[:end]
    return frame


def read_frame(stream: BinaryIO) -> bytes | None:
    """Read one frame's payload from a blocking stream; None at end of file.

    A stream that ends mid-frame counts as ended. For the job process, which reads its
    trusted parent: it does not bound the length.
    """
    header = stream.read(HEADER_BYTES)
    if len(header) < HEADER_BYTES:
        return None
    length = int.from_bytes(header, "big")
    body = stream.read(length)
    if len(body) < length:
        return None
    return body


def write_frame(stream: BinaryIO, payload: bytes) -> None:
    """Write one frame to a blocking stream and flush it."""
    stream.write(encode_frame(payload))
    stream.flush()


# -- messages -----------------------------------------------------------------------------


class Request(msgspec.Struct, rename="camel", omit_defaults=True):
    """One job for a job process to run."""

    type: str
    payload: Any = None
    job_id: str = ""
    attempt: int = 1
    parent_results: dict[str, Any] | None = None
    parent_ids: list[str] | None = None
    parent_counts: dict[str, int] | None = None
    # The W3C trace context of the run's span, when tracing is on: the job process
    # makes it current while the handler runs, so the handler's spans nest under it.
    traceparent: str | None = None


class Reply(msgspec.Struct, omit_defaults=True):
    """A job process's answer to one :class:`Request`.

    ``ok``: the handler returned, and ``result`` is its normalised result. Otherwise
    ``error`` says why (``"ExcType: message"``) and ``permanent`` whether a retry is
    pointless.

    ``retry_after`` (with ``ok`` false): the handler was rate limited (it raised
    ``handlers.RateLimited``, or called ``ctx.backoff``): not a failure, the job waits
    that many seconds again; ``error`` is then the handler's message alone (may be
    empty). Unset (None) in every other reply.
    """

    ok: bool
    result: Any = None
    error: str | None = None
    permanent: bool = False
    retry_after: float | None = None
    snooze: float | None = None


class Note(msgspec.Struct, omit_defaults=True):
    """What a running job said of itself since its previous note: ``progress`` (0..1)
    with ``message`` (None: none), and ``meta`` (an object); a field left None did not
    change. Sent as ``NOTE_MARK`` followed by the msgpack message."""

    progress: float | None = None
    message: str | None = None
    meta: dict[str, Any] | None = None


_request_decoder = msgspec.msgpack.Decoder(Request)
_reply_decoder = msgspec.msgpack.Decoder(Reply)
_note_decoder = msgspec.msgpack.Decoder(Note)
_encoder = msgspec.msgpack.Encoder()
_json = msgspec.json.Encoder()


def encode_request(request: Request) -> bytes:
    return _encoder.encode(request)


def decode_request(raw: bytes) -> Request:
    """Raises msgspec.DecodeError (a ValidationError too) on a malformed request."""
    return _request_decoder.decode(raw)


def encode_reply(reply: Reply) -> bytes:
    return _encoder.encode(reply)


def decode_reply(raw: bytes) -> Reply:
    """Raises msgspec.DecodeError (a ValidationError too) on a malformed reply."""
    return _reply_decoder.decode(raw)


def is_note(frame: bytes) -> bool:
    """Whether a frame from a job process is a :class:`Note` rather than its reply."""
    return frame[:1] == NOTE_MARK


def encode_note(note: Note) -> bytes:
    return NOTE_MARK + _encoder.encode(note)


def decode_note(frame: bytes) -> Note:
    """A note frame's :class:`Note` (``is_note(frame)`` holds). Raises
    msgspec.DecodeError (a ValidationError too) on a malformed note."""
    return _note_decoder.decode(frame[len(NOTE_MARK):])


# -- results ------------------------------------------------------------------------------


def result_refusal(raw: bytes) -> str | None:
    """Why a result, as JSON bytes, may not be stored; None if it may."""
    if len(raw) > MAX_RESULT_BYTES:
        return f"result larger than {MAX_RESULT_BYTES} bytes"
    if jsonlimits.depth(raw) > jsonlimits.MAX_RESULT_DEPTH:
        return f"result nested deeper than {jsonlimits.MAX_RESULT_DEPTH} levels"
    return None


def meta_refusal(meta: object) -> str | None:
    """Why a job's meta may not be stored; None if it may (a JSON object of at most
    :data:`MAX_META_BYTES`, nested at most :data:`MAX_META_DEPTH` levels)."""
    if not isinstance(meta, dict):
        return f"meta: expected an object, found {type(meta).__name__}"
    try:
        raw = _json.encode(meta)
    except (TypeError, ValueError, RecursionError, msgspec.EncodeError) as exc:
        return f"meta: expected JSON-able values, found {exc}"
    if len(raw) > MAX_META_BYTES:
        return f"meta: expected at most {MAX_META_BYTES} bytes as JSON, found {len(raw)}"
    if jsonlimits.depth(raw) > MAX_META_DEPTH:
        return f"meta: expected nesting of at most {MAX_META_DEPTH} levels, found deeper"
    if b"\\u0000" in raw:  # PostgreSQL's jsonb refuses NUL
        return "meta: expected text without NUL (\\u0000) characters, found one"
    return None


def normalise_meta(meta: object) -> dict[str, Any]:
    """``meta`` as it will be read back (through JSON); raises ValueError saying why
    it may not be stored (:func:`meta_refusal`)."""
    refusal = meta_refusal(meta)
    if refusal is not None:
        raise ValueError(refusal)
    plain: dict[str, Any] = msgspec.json.decode(_json.encode(meta))
    return plain


def _encode_result(result: object) -> tuple[bytes, str | None]:
    """``(the result as JSON, why it may not be stored or None)``."""
    try:
        raw = _json.encode(result)
    except (TypeError, ValueError, msgspec.EncodeError) as exc:
        return b"", (f"TypeError: expected a JSON-able result, found "
                     f"{type(result).__name__}: {exc}")
    return raw, result_refusal(raw)


def check_result(result: object) -> str | None:
    """Why a result a job process sent may not be stored; None if it may. (It came
    through the protocol's msgpack, so it is plain data already: not decoded again.)"""
    if result is None:
        return None
    return _encode_result(result)[1]


def normalise_result(result: object) -> tuple[object, str | None]:
    """``(the result as it will be read back, None)``, or ``(None, why it is refused)``.

    The result goes through JSON, so it is stored exactly as it will be read. A refusal
    (not JSON-able, too large, too deep) makes the run fail permanently.
    """
    if result is None:
        return None, None
    raw, refusal = _encode_result(result)
    if refusal is not None:
        return None, refusal
    return msgspec.json.decode(raw), None
