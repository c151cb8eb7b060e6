"""The child process that runs job bodies:
``python -m scheduler_core.command.child [--data-dir DIR] [--handlers MODULE[,MODULE]]``.

It speaks :mod:`runtime.job_protocol` on its stdin/stdout: one empty frame once it is
ready, then one ``Reply`` per ``Request``, until end of file on stdin. A result is
normalised (through JSON, size and depth checked) here, before it is sent. A handler
that raised ``RateLimited`` (or called ``ctx.backoff``) is answered with its
``retry_after`` and its message, not as a failure; one that returned or raised
``Snooze`` with its ``snooze`` seconds.

A handler's ``ctx.progress`` and ``ctx.set_meta`` never wait on the pipe: the newest
values are kept, and one thread (started by the first of them) writes them as note
frames, at most one every :data:`NOTE_GAP_SECONDS`; what is still unsent when the
handler ends is written just before its reply, so no note ever follows a reply.

Before anything else it asks the kernel to SIGKILL it when its parent dies
(``PR_SET_PDEATHSIG``), so a worker killed with ``kill -9`` leaves no child running a
job, and exits if its parent already died before that (``SCHEDULER_PARENT_PID``).
The protocol runs on private duplicates of fds 0 and 1; fd 1 then points at stderr and
fd 0 at /dev/null, so a handler's ``print()`` cannot corrupt a frame.

Its job types are the built-ins, the ``scheduler_core.handlers`` entry points and the
``--handlers`` modules (``handlers.load_plugins``), the same the coordinator validates
against. A plug-in that does not load is reported on stderr and the child exits 1
before it says it is ready.

Its environment is the worker's scrubbed one (runtime/child_env.py): the ordinary
variables and those SCHEDULER_JOB_ENV names, never a token nor DATABASE_URL.

Of the runtime it imports only ``job_protocol`` (which imports neither trio nor
structlog) and ``tracing`` (which imports OpenTelemetry only when the ``OTEL_*``
variables ask for tracing): starting fast is the point. With tracing on, the run's span
(the request's ``traceparent``) is current while the handler runs, so its spans nest
under the run.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, BinaryIO

import msgspec

from scheduler_core.runtime import tracing
from scheduler_core.runtime.job_protocol import (
    PARENT_PID_ENV,
    Note,
    Reply,
    decode_request,
    encode_note,
    encode_reply,
    normalise_meta,
    normalise_result,
    read_frame,
    write_frame,
)

if TYPE_CHECKING:
    from scheduler_core.handlers.registry import Registry

__all__ = ["handle", "main"]

DEFAULT_DATA_DIR = ".scheduler/data"
_PR_SET_PDEATHSIG = 1
_EXIT_ORPHANED = 70
_EXIT_PLUGIN_FAILED = 1
NOTE_GAP_SECONDS = 0.05
"""Least time between two notes the thread writes (the newest wins meanwhile)."""


class Notes:
    """The job process's reporter (``handlers.RunReporter``): keeps the newest
    progress and meta of the request being served, and has one thread write them.

    ``write`` writes one frame. The thread writes only between :meth:`begin` and
    :meth:`end` (checked under ``_send``), so a note never follows its request's reply.
    """

    def __init__(self, write: Callable[[bytes], None]) -> None:
        self._write = write
        self._lock = threading.Lock()  # _pending
        self._send = threading.Lock()  # _serving, and the thread's writes
        self._pending: Note | None = None
        self._serving = False
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def begin(self) -> None:
        with self._send:
            self._serving = True

    def end(self) -> bytes | None:
        """The request's handler ended: no more notes from the thread; the unsent
        one, encoded, for the caller to write before the reply (None: nothing)."""
        with self._send:
            self._serving = False
        with self._lock:
            note, self._pending = self._pending, None
        return None if note is None else encode_note(note)

    def progress(self, fraction: float, message: str | None) -> None:
        with self._lock:
            note = self._pending = self._pending or Note()
            note.progress, note.message = fraction, message
        self._ring()

    def meta(self, meta: dict[str, Any]) -> None:
        plain = normalise_meta(meta)  # ValueError to the handler, at the call
        with self._lock:
            note = self._pending = self._pending or Note()
            note.meta = plain
        self._ring()

    def _ring(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="job-notes",
                                             daemon=True)
            self._thread.start()
        self._wake.set()

    def _serve(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            with self._send:
                if self._serving:
                    with self._lock:
                        note, self._pending = self._pending, None
                    if note is not None:
                        self._write(encode_note(note))
            time.sleep(NOTE_GAP_SECONDS)


def die_with_parent() -> None:
    """Get SIGKILL when the parent dies; exit now if it already has.

    The pid check closes the race between the fork and the prctl call: a parent that
    died in between has already left us to init, and no signal will ever come.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl(PR_SET_PDEATHSIG): {os.strerror(errno)}")
    expected = os.environ.get(PARENT_PID_ENV)
    if expected is not None and os.getppid() != int(expected):
        os._exit(_EXIT_ORPHANED)


def handle(request: bytes, registry: Registry, data_dir: str,
           notes: Notes | None = None) -> bytes:
    """Run one request and return its encoded response; never raises on a job's failure.
    ``notes``: where the handler's progress and meta go (None: nowhere)."""
    from scheduler_core.handlers.registry import HandlerError, RateLimited, RunContext, Snooze

    try:
        job = decode_request(request)
        ctx = RunContext(job_id=job.job_id, attempt=job.attempt, data_dir=data_dir,
                         parent_results=job.parent_results or {},
                         parent_ids=job.parent_ids or (),
                         parent_counts=job.parent_counts or {},
                         reporter=notes)
        with tracing.attached(job.traceparent):
            result = registry.run(job.type, job.payload, ctx)
    except msgspec.DecodeError as exc:
        return _failure(exc, permanent=True)
    except RateLimited as exc:  # not a failure: the job waits retry_after seconds again
        return encode_reply(Reply(ok=False, error=exc.reason, retry_after=exc.retry_after))
    except Snooze as exc:  # not a failure: the job runs again in exc.seconds
        return encode_reply(Reply(ok=False, snooze=exc.seconds))
    except HandlerError as exc:
        return _failure(exc, permanent=exc.permanent)
    except Exception as exc:
        return _failure(exc, permanent=False)
    if isinstance(result, Snooze):
        return encode_reply(Reply(ok=False, snooze=result.seconds))
    plain, refusal = normalise_result(result)
    if refusal is not None:
        return encode_reply(Reply(ok=False, error=refusal, permanent=True))
    return encode_reply(Reply(ok=True, result=plain))


def _failure(exc: BaseException, *, permanent: bool) -> bytes:
    error = f"{type(exc).__name__}: {exc}"
    return encode_reply(Reply(ok=False, error=error, permanent=permanent))


def _take_protocol_fds() -> tuple[BinaryIO, BinaryIO]:
    """Move the protocol to private fds; point fd 0 at /dev/null and fd 1 at stderr."""
    protocol_in = os.dup(0)  # dup'd fds are close-on-exec: grandchildren do not get them
    protocol_out = os.dup(1)
    sys.stdout.flush()
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    return os.fdopen(protocol_in, "rb"), os.fdopen(protocol_out, "wb")


def main(argv: list[str] | None = None) -> int:
    """Serve requests until end of file on stdin; return the exit status."""
    die_with_parent()
    parser = argparse.ArgumentParser(prog="python -m scheduler_core.command.child")
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--handlers", default="",
                        help="comma-separated modules (or module:function) with job types")
    args = parser.parse_args(argv)
    data_dir = os.path.abspath(args.data_dir)
    receive, send = _take_protocol_fds()
    refusal = tracing.configure("scheduler-job")
    if refusal is not None:
        print(f"command.child: tracing is off: {refusal}", file=sys.stderr, flush=True)

    from scheduler_core.handlers import REGISTRY, PluginError, load_plugins

    try:
        load_plugins(REGISTRY, [m for m in args.handlers.split(",") if m.strip()])
    except PluginError as exc:
        print(f"command.child: {exc}", file=sys.stderr, flush=True)
        return _EXIT_PLUGIN_FAILED

    write_frame(send, b"")  # ready
    notes = Notes(lambda frame: write_frame(send, frame))
    while (request := read_frame(receive)) is not None:
        notes.begin()
        try:
            reply = handle(request, REGISTRY, data_dir, notes)
        finally:
            unsent = notes.end()
        if unsent is not None:
            write_frame(send, unsent)
        write_frame(send, reply)
    return 0


if __name__ == "__main__":
    sys.exit(main())
