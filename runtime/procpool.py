"""A warm pool of child processes that answer requests over pipes: bytes in, bytes out.

Starting a Python process per job costs 13-16 ms on a small machine; handing a request
to a pre-started child costs about a tenth of a millisecond. The pool keeps ``size``
children running ``argv``, each in its own process group, and gives each :meth:`call`
an idle one. It knows nothing of jobs or handlers.

Protocol: the framing of :mod:`runtime.job_protocol` (a 4-byte big-endian length, then
that many bytes, both directions). A child first writes one empty frame when it is
ready to serve (after its imports), then answers each request frame with exactly one
response frame, and exits when its stdin reaches end of file. Before its response a
child may send *notes*, frames marked as ``job_protocol.is_note`` says, which the
caller's ``on_note`` gets as they come. What the frames hold is the caller's business.

A child that overruns its timeout, whose caller is cancelled, or that dies mid-call is
killed with its whole process group ("SIGTERM -> ``kill_grace`` -> SIGKILL") and
replaced at once, so the replacement warms up in the background.

Children are forked by one thread that the pool owns and that lives exactly as long
as the pool, not by ``trio.lowlevel.open_process``: the parent-death signal a child
sets with ``prctl(PR_SET_PDEATHSIG)`` fires when the *thread* that forked it exits, and
trio forks from a cached worker thread that it retires after 10 idle seconds, which
would kill every warm child for nothing. Forking in that thread also keeps the event
loop free while ``Popen`` waits for the exec (1-10 ms). Each child is told its
parent's pid in ``SCHEDULER_PARENT_PID`` (``job_protocol.PARENT_PID_ENV``) so it can
check that its parent did not die before it set that signal.

Errors::

    RuntimeCoreError                (runtime.errors)
     └─ ProcPoolError               a call could not be answered
         ├─ CallTimeout             the child did not answer within ``seconds``
         ├─ ChildDied               the child exited mid-call (``returncode``)
         ├─ SpawnFailed             a child could not be started or never became ready
         ├─ ProtocolViolation       a child sent a malformed frame
         └─ PoolClosed              the pool is closed
"""

from __future__ import annotations

import math
import os
import queue
import signal
import subprocess
import threading
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import structlog
import trio

from scheduler_core.runtime.errors import RuntimeCoreError
from scheduler_core.runtime.job_protocol import (
    PARENT_PID_ENV,
    FrameTooLarge,
    encode_frame,
    is_note,
    split_frame,
)

__all__ = [
    "CallTimeout",
    "ChildDied",
    "PoolClosed",
    "PoolStatistics",
    "ProcPoolError",
    "ProtocolViolation",
    "SpawnFailed",
    "WarmPool",
    "open_pool",
]

_RECEIVE_BYTES = 64 * 1024
# After SIGKILL a process is reaped within milliseconds; this only bounds a wait on a
# process stuck in the kernel (uninterruptible sleep).
_REAP_SECONDS = 5.0
# Bounds the wait for forks in flight when the pool closes.
_SPAWN_SECONDS = 5.0

_log = structlog.get_logger("runtime.procpool")


class ProcPoolError(RuntimeCoreError):
    """Root of the errors of :mod:`runtime.procpool`."""


class CallTimeout(ProcPoolError):
    """The child did not answer within ``seconds``; it was killed and replaced."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"expected an answer within {seconds} s, found none; child killed")
        self.seconds = seconds


class ChildDied(ProcPoolError):
    """The child exited before answering; it was replaced.

    ``returncode`` is its exit status (negative: killed by that signal), or None if it
    could not be reaped in time.
    """

    def __init__(self, returncode: int | None) -> None:
        super().__init__(f"expected an answer, found the child exited with {returncode}")
        self.returncode = returncode


class SpawnFailed(ProcPoolError):
    """A child could not be started, or exited or stalled before it was ready."""


class ProtocolViolation(ProcPoolError):
    """A child sent a frame the protocol does not allow; it was killed and replaced."""


class PoolClosed(ProcPoolError):
    """The pool is closed and serves no more calls."""


@dataclass(frozen=True)
class PoolStatistics:
    """A snapshot of the pool.

    ``size``: the number of children the pool keeps. ``idle``/``busy``: children
    waiting for a call / serving one. ``spawned``: children started since the pool
    opened, replacements included. ``killed``: children killed (timeout, cancellation,
    protocol violation) or found dead, each of them replaced. ``pids``: the live
    children.
    """

    size: int
    idle: int
    busy: int
    spawned: int
    killed: int
    pids: tuple[int, ...]


class _ChildGone(Exception):
    """End of file or a broken pipe on a child's streams."""


class _Child:
    """One child process: its pipes, its pidfd, and the frame reader's buffer."""

    def __init__(self, popen: subprocess.Popen[bytes], stdin_fd: int, stdout_fd: int) -> None:
        self.popen = popen
        self.pid = popen.pid
        self.ready = False
        self._stdin = trio.lowlevel.FdStream(stdin_fd)
        self._stdout = trio.lowlevel.FdStream(stdout_fd)
        self._pidfd = os.pidfd_open(popen.pid)
        self._buffer = bytearray()
        self._wait_lock = trio.Lock()

    @property
    def returncode(self) -> int | None:
        return self.popen.returncode

    def exited(self) -> bool:
        return self.popen.poll() is not None

    async def send_frame(self, payload: bytes) -> None:
        try:
            await self._stdin.send_all(encode_frame(payload))
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise _ChildGone from exc

    async def receive_frame(self) -> bytes:
        buffer = self._buffer
        while True:
            try:
                frame = split_frame(buffer)
            except FrameTooLarge as exc:
                raise ProtocolViolation(str(exc)) from None
            if frame is not None:
                return frame
            try:
                chunk = await self._stdout.receive_some(_RECEIVE_BYTES)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise _ChildGone from exc
            if not chunk:
                raise _ChildGone
            buffer += chunk

    async def wait(self) -> int:
        """Wait for the child to exit, reap it and return its exit status."""
        async with self._wait_lock:
            while (returncode := self.popen.poll()) is None:
                await trio.lowlevel.wait_readable(self._pidfd)
            return returncode

    def signal_group(self, signum: int) -> None:
        """Send ``signum`` to the child's process group (it leads its own session)."""
        try:
            os.killpg(self.pid, signum)
        except ProcessLookupError:
            pass  # the whole group is gone already

    async def kill(self, grace: float) -> None:
        """SIGTERM the group, wait up to ``grace``, SIGKILL the group, reap the child.

        The group gets SIGKILL even when the child left in time, so a grandchild that
        ignored SIGTERM does not outlive it. Call it shielded, under a deadline.
        """
        self.signal_group(signal.SIGTERM)
        with trio.move_on_after(grace):
            await self.wait()
        self.signal_group(signal.SIGKILL)
        await self.wait()

    def close_stdin(self) -> None:
        self._stdin.close()

    def close(self) -> None:
        """Close the pipes and the pidfd; the child must be reaped (or abandoned)."""
        self._stdin.close()
        self._stdout.close()
        if self._pidfd >= 0:
            trio.lowlevel.notify_closing(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = -1


@dataclass(frozen=True)
class _Forked:
    """A process just forked by the spawner thread, with the parent's ends of its pipes."""

    popen: subprocess.Popen[bytes]
    stdin_fd: int
    stdout_fd: int

    def abandon(self) -> None:
        """Kill and reap it at once (blocking); for forks that land after the pool closed."""
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.popen.wait(timeout=_REAP_SECONDS)
        except subprocess.TimeoutExpired:
            pass
        os.close(self.stdin_fd)
        os.close(self.stdout_fd)


_Landed = Callable[["_Forked | OSError"], None]


class _Spawner:
    """The thread that forks a pool's children; it lives as long as the pool."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str]) -> None:
        self._argv = list(argv)
        self._env = dict(env)
        self._token = trio.lowlevel.current_trio_token()
        self._requests: queue.SimpleQueue[_Landed | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="procpool-spawner", daemon=True)
        self._thread.start()

    @property
    def ident(self) -> int | None:
        return self._thread.ident

    def submit(self, landed: _Landed) -> None:
        """Fork one child; ``landed`` gets it (or the OSError) in the trio thread."""
        self._requests.put(landed)

    def stop(self) -> None:
        self._requests.put(None)

    def _serve(self) -> None:
        while (landed := self._requests.get()) is not None:
            result = self._fork()
            try:
                self._token.run_sync_soon(landed, result)
            except trio.RunFinishedError:
                if isinstance(result, _Forked):
                    result.abandon()

    def _fork(self) -> _Forked | OSError:
        try:
            stdin_read, stdin_write = os.pipe()
        except OSError as exc:
            return exc
        try:
            stdout_read, stdout_write = os.pipe()
        except OSError as exc:
            os.close(stdin_read)
            os.close(stdin_write)
            return exc
        try:
            popen = subprocess.Popen(
                self._argv,
                stdin=stdin_read,
                stdout=stdout_write,
                env=self._env,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            os.close(stdin_write)
            os.close(stdout_read)
            return exc
        finally:
            os.close(stdin_read)
            os.close(stdout_write)
        return _Forked(popen, stdin_write, stdout_read)


class WarmPool:
    """Pre-started children serving :meth:`call`. Open one with :func:`open_pool`."""

    def __init__(
        self,
        argv: Sequence[str],
        size: int,
        *,
        kill_grace: float,
        start_timeout: float,
        env: Mapping[str, str] | None,
    ) -> None:
        self._argv = list(argv)
        self._size = size
        self._kill_grace = kill_grace
        self._start_timeout = start_timeout
        base_env = os.environ if env is None else env
        self._spawner = _Spawner(argv, {**base_env, PARENT_PID_ENV: str(os.getpid())})
        self._children: set[_Child] = set()
        # Idle children, and the spawn failures that a waiting caller must hear about.
        self._idle_send, self._idle_receive = trio.open_memory_channel[_Child | SpawnFailed](
            math.inf
        )
        self._busy = 0
        self._forking = 0
        self._forks_landed = trio.Event()
        self._forks_landed.set()
        self._spawned = 0
        self._killed = 0
        self._closed = False  # no more calls nor forks
        self._finished = False  # children stopped; a fork landing now is abandoned

    # The timeout is the child's kill deadline, not a cancel scope the caller could own.
    async def call(self, request: bytes, *, timeout: float,  # noqa: ASYNC109
                   on_note: Callable[[bytes], None] | None = None) -> bytes:
        """Send ``request`` to an idle child and return its response.

        Notes the child sends before its response go to ``on_note`` (synchronously,
        in the order sent; dropped without one). An exception out of ``on_note``
        kills the child like a protocol violation.

        Waits for an idle child first if all are busy; that wait is not part of
        ``timeout``, which bounds only the child's work (send to response).

        Cancellation: the child may be midway through the request, so it is killed and
        replaced (shielded, bounded by ``kill_grace``) before Cancelled propagates.

        Error handling: CallTimeout when the child has not answered within ``timeout``
        seconds (it is killed: a busy loop cannot hold on to it); ChildDied when it
        exits mid-call; ProtocolViolation on a malformed frame. Each kills and replaces
        the child, and the pool keeps serving. SpawnFailed when no child could be
        started for the call; PoolClosed after the pool closed.
        """
        if not timeout > 0:
            raise ValueError(f"timeout: expected a number of seconds > 0, found {timeout!r}")
        child = await self._checkout()
        response: bytes | None = None
        try:
            with trio.move_on_after(timeout):
                await child.send_frame(request)
                while is_note(frame := await child.receive_frame()):
                    if on_note is not None:
                        try:
                            on_note(frame)
                        except Exception as exc:
                            raise ProtocolViolation(f"a note was refused: {exc}") from exc
                response = frame
        except _ChildGone:
            await self._retire(child, "died")
            raise ChildDied(child.returncode) from None
        except ProtocolViolation:
            await self._retire(child, "protocol_violation")
            raise
        except BaseException:
            await self._retire(child, "cancelled")
            raise
        if response is None:
            await self._retire(child, "timeout")
            raise CallTimeout(timeout)
        self._checkin(child)
        return response

    @property
    def killed(self) -> int:
        """Children killed (or found dead) and replaced since the pool opened; the
        same as ``statistics().killed``, without building a snapshot."""
        return self._killed

    def statistics(self) -> PoolStatistics:
        """Return a snapshot of the pool's children and counters."""
        return PoolStatistics(
            size=self._size,
            idle=len(self._children) - self._busy,
            busy=self._busy,
            spawned=self._spawned,
            killed=self._killed,
            pids=tuple(sorted(child.pid for child in self._children)),
        )

    async def _checkout(self) -> _Child:
        while True:
            if self._closed:
                raise PoolClosed("expected an open pool, found it closed")
            self._top_up()
            try:
                item = await self._idle_receive.receive()
            except (trio.EndOfChannel, trio.ClosedResourceError):
                raise PoolClosed("expected an open pool, found it closed") from None
            if isinstance(item, SpawnFailed):
                raise item
            child = item
            self._busy += 1
            if child.ready and not child.exited():
                return child
            try:
                if not child.ready:
                    await self._wait_ready(child)
                    return child
            except SpawnFailed:
                await self._retire(child, "not_ready")
                raise
            except BaseException:
                # Cancelled while it boots: the child is fine, give it back.
                self._checkin(child)
                raise
            # An idle child died (killed from outside); the request was never sent.
            await self._retire(child, "died_idle")

    def _checkin(self, child: _Child) -> None:
        self._busy -= 1
        if not self._closed:
            self._idle_send.send_nowait(child)

    async def _wait_ready(self, child: _Child) -> None:
        try:
            with trio.fail_after(self._start_timeout):
                frame = await child.receive_frame()
        except trio.TooSlowError:
            raise SpawnFailed(
                f"expected a ready frame from {self._argv!r} within {self._start_timeout} s,"
                " found none"
            ) from None
        except _ChildGone:
            with trio.move_on_after(1.0):
                await child.wait()
            raise SpawnFailed(
                f"expected {self._argv!r} to start, found it exited with {child.returncode}"
            ) from None
        except ProtocolViolation as exc:
            raise SpawnFailed(f"expected a ready frame, found: {exc}") from None
        if frame:
            raise SpawnFailed(f"expected an empty ready frame, found {len(frame)} bytes")
        child.ready = True

    async def _retire(self, child: _Child, reason: str) -> None:
        """Kill a child and its group, shielded and bounded; start its replacement."""
        self._busy -= 1
        self._children.discard(child)
        with trio.move_on_after(self._kill_grace + _REAP_SECONDS, shield=True):
            await child.kill(self._kill_grace)
        child.close()
        self._killed += 1
        _log.info("pool_child_killed", pid=child.pid, reason=reason, returncode=child.returncode)
        self._top_up()

    def _top_up(self) -> None:
        """Ask the spawner for children until there are ``size``; does not wait."""
        while not self._closed and len(self._children) + self._forking < self._size:
            if self._forking == 0:
                self._forks_landed = trio.Event()
            self._forking += 1
            self._spawner.submit(self._landed)

    def _landed(self, result: _Forked | OSError) -> None:
        """Take in a fork (run by trio from the spawner thread; must not raise)."""
        self._forking -= 1
        if self._forking == 0:
            self._forks_landed.set()
        if isinstance(result, _Forked):
            if self._finished:
                result.abandon()
                return
            try:
                child = _Child(result.popen, result.stdin_fd, result.stdout_fd)
            except OSError as exc:
                result.abandon()
                result = exc
            else:
                self._children.add(child)
                self._spawned += 1
                self._idle_send.send_nowait(child)
                return
        if not self._closed:
            self._idle_send.send_nowait(
                SpawnFailed(f"expected to start {self._argv!r}, found {result}")
            )

    async def _start(self) -> None:
        """Start ``size`` children and wait until all are ready."""
        children: list[_Child] = []
        try:
            for _ in range(self._size):
                children.append(await self._checkout())
        finally:
            for child in children:
                self._checkin(child)

    async def _aclose(self) -> None:
        """Stop every child: EOF on stdin -> ``kill_grace`` -> SIGKILL to each group.

        Call it shielded; it bounds its own waits.
        """
        self._closed = True
        with trio.move_on_after(_SPAWN_SECONDS):
            await self._forks_landed.wait()
        self._finished = True
        self._idle_send.close()
        children = list(self._children)
        self._children.clear()
        for child in children:
            child.close_stdin()
        with trio.move_on_after(self._kill_grace):
            for child in children:
                await child.wait()
        for child in children:
            child.signal_group(signal.SIGKILL)
        with trio.move_on_after(_REAP_SECONDS):
            for child in children:
                await child.wait()
        for child in children:
            child.close()
        # Last: the children's parent-death signal fires when this thread exits.
        self._spawner.stop()


@asynccontextmanager
async def open_pool(
    argv: Sequence[str],
    size: int,
    *,
    kill_grace: float = 0.2,
    env: Mapping[str, str] | None = None,
    start_timeout: float = 30.0,
) -> AsyncIterator[WarmPool]:
    """Start ``size`` children running ``argv``; stop them all on exit.

    Returns once every child has sent its ready frame. ``env`` replaces the inherited
    environment (``None``: inherit); ``SCHEDULER_PARENT_PID`` is always added.
    ``kill_grace`` is how long a child gets between the polite request (SIGTERM, or
    end of file on its stdin when the pool closes) and SIGKILL. ``start_timeout``
    bounds how long a child may take to become ready.

    Cancellation: on exit, however it happens, the children are stopped shielded,
    within ``kill_grace`` plus a bounded reap; no child or grandchild in a child's
    process group survives the pool.

    Error handling: SpawnFailed if a child cannot be started or is not ready in time.
    """
    if size < 1:
        raise ValueError(f"size: expected at least 1 child, found {size}")
    if kill_grace < 0:
        raise ValueError(f"kill_grace: expected seconds >= 0, found {kill_grace}")
    pool = WarmPool(argv, size, kill_grace=kill_grace, start_timeout=start_timeout, env=env)
    try:
        await pool._start()
        yield pool
    finally:
        with trio.CancelScope(shield=True):
            await pool._aclose()
