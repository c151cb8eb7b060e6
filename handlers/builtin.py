"""The built-in job types, registered on ``REGISTRY`` when this module is imported.

Their names are a stable API: ``http_get``, ``cpu``, ``file_write``, ``noop``, ``sleep``
and ``fail``, and the inline ``noop_inline`` and ``sleep_inline`` (run in the worker
process, see ``Registry.handler``). Each payload is a Struct with camelCase field names
that refuses unknown fields; checks that a type and msgspec.Meta cannot express live in ``__post_init__``
and raise PayloadError naming the field.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
import time
import unicodedata
from pathlib import Path, PurePosixPath
from typing import Annotated
from urllib.parse import urlsplit

import anyio
import httpx
import msgspec

from scheduler_core.handlers import http_policy
from scheduler_core.handlers.registry import (
    REGISTRY,
    HandlerError,
    PayloadError,
    PermanentError,
    RunContext,
)

__all__ = [
    "CpuPayload",
    "FailPayload",
    "FileWritePayload",
    "HttpGetPayload",
    "NoopPayload",
    "SleepPayload",
]

MIB = 1024 * 1024
MAX_DURATION_SECONDS = 86_400.0
HTTP_MAX_BODY_BYTES = MIB
HTTP_MAX_REDIRECTS = 5
HTTP_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
FILE_MAX_BYTES = MIB
FILE_NAME_MAX_BYTES = 255  # NAME_MAX: the longest file or folder name a file system takes


class _Payload(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    """Base of the built-in payloads."""


# -- http_get ---------------------------------------------------------------------------


class HttpGetPayload(_Payload):
    url: Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]

    def __post_init__(self) -> None:
        try:
            parts = urlsplit(self.url)
            host = parts.hostname
        except ValueError:
            raise PayloadError(
                "payload.url", f"expected an http(s) URL, found {self.url!r}"
            ) from None
        if parts.scheme not in ("http", "https") or not host:
            raise PayloadError(
                "payload.url", f"expected an http(s) URL with a host, found {self.url!r}"
            )
        try:
            port = parts.port
        except ValueError:  # not a number, or past 65535
            port = 0
        if port == 0:
            raise PayloadError(
                "payload.url", f"expected a port of 1 to 65535 (or none), found {self.url!r}"
            )


@REGISTRY.handler("http_get", payload=HttpGetPayload)
def http_get(payload: HttpGetPayload, ctx: RunContext) -> dict[str, int]:
    """GET the URL. A non-2xx status is a failure.

    Limits: 5 s to connect and 30 s per read; at most 5 redirects; at most 1 MiB of
    the body is read (as sent: nothing is decompressed), then the connection is
    closed. Only public addresses, unless private ones are allowed
    (handlers/http_policy.py): a refused address is a PermanentError.
    """
    try:
        with (
            http_policy.open_client(
                allow_private=http_policy.private_allowed(),
                timeout=HTTP_TIMEOUT,
                max_redirects=HTTP_MAX_REDIRECTS,
            ) as client,
            client.stream("GET", payload.url) as response,
        ):
            if not response.is_success:
                raise HandlerError(
                    f"GET {payload.url}: expected a 2xx status, found {response.status_code}"
                )
            received = 0
            for chunk in response.iter_raw():
                received += len(chunk)
                if received >= HTTP_MAX_BODY_BYTES:
                    break  # leaving the block closes the connection unread
            return {"statusCode": response.status_code, "bytes": min(received, HTTP_MAX_BODY_BYTES)}
    except http_policy.AddressRefused as exc:
        raise PermanentError(f"GET {payload.url}: {exc}") from exc
    except httpx.InvalidURL as exc:
        raise PermanentError(f"GET {payload.url}: invalid URL: {exc}") from exc
    except httpx.HTTPError as exc:
        raise HandlerError(f"GET {payload.url}: {type(exc).__name__}: {exc}") from exc


# -- cpu --------------------------------------------------------------------------------


class CpuPayload(_Payload):
    duration_seconds: Annotated[float, msgspec.Meta(gt=0, le=MAX_DURATION_SECONDS)]


@REGISTRY.handler("cpu", payload=CpuPayload)
def cpu(payload: CpuPayload, ctx: RunContext) -> dict[str, int]:
    """Busy-loop on pure Python arithmetic for ``durationSeconds``."""
    deadline = time.perf_counter() + payload.duration_seconds
    iterations = 0
    x = 1
    while time.perf_counter() < deadline:
        for _ in range(1000):
            x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        iterations += 1000
    return {"iterations": iterations}


# -- file_write -------------------------------------------------------------------------


# Unicode categories a file name may not hold: control (Cc), format (Cf: the
# bidirectional controls, which make "txt.exe" display as "exe.txt", and zero-width
# characters), surrogates (Cs), line and paragraph separators (Zl, Zp).
_ODD_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def _file_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a path relative to the data folder, or None if it can."""
    if "\0" in name:
        return "a relative path without NUL bytes"
    if any(unicodedata.category(c) in _ODD_CATEGORIES for c in name):
        return ("a name without control, format or separator characters (bidirectional "
                "overrides such as U+202E, zero-width characters, line breaks)")
    if not unicodedata.is_normalized("NFC", name):
        return "a name in Unicode normalization form NFC"
    path = PurePosixPath(name)
    if path.is_absolute():
        return "a relative path, not an absolute one"
    if ".." in path.parts:
        return "a path without '..' components"
    if not path.parts or name.endswith("/") or path.name in ("", "."):
        return "a path naming a file"
    longest = max(len(part.encode("utf-8", "surrogatepass")) for part in path.parts)
    if longest > FILE_NAME_MAX_BYTES:
        return f"names of at most {FILE_NAME_MAX_BYTES} bytes (UTF-8) between slashes"
    return None


class FileWritePayload(_Payload):
    file_name: Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
    content: Annotated[str, msgspec.Meta(max_length=FILE_MAX_BYTES)]

    def __post_init__(self) -> None:
        if problem := _file_name_problem(self.file_name):
            raise PayloadError("payload.fileName", f"expected {problem}, found {self.file_name!r}")
        size = len(self.content.encode())
        if size > FILE_MAX_BYTES:
            raise PayloadError(
                "payload.content", f"expected at most {FILE_MAX_BYTES} bytes of UTF-8, found {size}"
            )


@REGISTRY.handler("file_write", payload=FileWritePayload)
def file_write(payload: FileWritePayload, ctx: RunContext) -> dict[str, object]:
    """Write ``content`` to ``fileName`` under the worker's data folder, and nowhere else.

    The target is resolved (symlinks followed) and must lie inside the resolved data
    folder. The folders are then opened one by one without following symlinks, so a
    symlink swapped in between the check and the write is refused too. The content
    goes to a new file beside the target, which then replaces it (rename): an existing
    file is never opened, so a planted hard link keeps its old content (the name in
    the data folder becomes a new file) and a planted FIFO cannot block the job. A
    target that exists and is not a regular file (a folder, FIFO, socket or device)
    is a PermanentError.
    """
    if problem := _file_name_problem(payload.file_name):
        raise PermanentError(f"fileName: expected {problem}, found {payload.file_name!r}")
    root = Path(ctx.data_dir)
    root.mkdir(parents=True, exist_ok=True)
    root = root.resolve(strict=True)
    target = (root / payload.file_name).resolve()
    if not target.is_relative_to(root) or target == root:
        raise PermanentError(
            f"fileName: expected a path inside the data folder, found {payload.file_name!r}"
            f" resolving to {str(target)!r}"
        )
    relative = target.relative_to(root)
    data = payload.content.encode()
    _write_without_following(root, relative, data)
    return {"path": relative.as_posix(), "bytes": len(data)}


_FILE_KINDS = (
    (stat.S_ISLNK, "a symlink"),
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _kind(mode: int) -> str:
    return next((name for test, name in _FILE_KINDS if test(mode)), "not a regular file")


def _write_without_following(root: Path, relative: PurePosixPath | Path, data: bytes) -> None:
    *folders, name = relative.parts
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(root, flags)
    try:
        for folder in folders:
            try:
                os.mkdir(folder, mode=0o755, dir_fd=fd)
            except FileExistsError:
                pass
            try:
                next_fd = os.open(folder, flags, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise PermanentError(
                        f"fileName: expected {folder!r} to be a folder, found a symlink or file"
                    ) from exc
                raise
            os.close(fd)
            fd = next_fd
        _check_regular(fd, name)
        _replace(fd, name, data)
    finally:
        os.close(fd)


def _check_regular(folder_fd: int, name: str) -> None:
    """PermanentError unless ``name`` in the folder is missing or a regular file (not
    followed: a symlink there appeared after the target was resolved)."""
    try:
        mode = os.stat(name, dir_fd=folder_fd, follow_symlinks=False).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode):
        raise PermanentError(f"fileName: expected a regular file, found {_kind(mode)} at {name!r}")


def _replace(folder_fd: int, name: str, data: bytes) -> None:
    """Write ``data`` to a new file in the folder, then rename it to ``name``.

    The new file is created exclusively (O_EXCL, O_NOFOLLOW) under a random name, so
    nothing planted can be written through; readers see the old content or the new,
    never a part. A failure leaves no temporary file behind.
    """
    temp = f".file_write-{secrets.token_hex(8)}.tmp"
    out = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                  0o644, dir_fd=folder_fd)
    try:
        with os.fdopen(out, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        try:
            os.rename(temp, name, src_dir_fd=folder_fd, dst_dir_fd=folder_fd)
        except OSError as exc:  # a folder swapped in after the check
            if exc.errno in (errno.EISDIR, errno.ENOTEMPTY, errno.EEXIST):
                raise PermanentError(
                    f"fileName: expected a regular file, found a folder at {name!r}") from exc
            raise
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp, dir_fd=folder_fd)
        raise


# -- noop, sleep, fail ------------------------------------------------------------------


class NoopPayload(_Payload):
    pass


@REGISTRY.handler("noop", payload=NoopPayload)
def noop(payload: NoopPayload, ctx: RunContext) -> None:
    """Do nothing; the measure of the executor's own overhead."""
    return None


class SleepPayload(_Payload):
    seconds: Annotated[float, msgspec.Meta(ge=0, le=MAX_DURATION_SECONDS)]


@REGISTRY.handler("sleep", payload=SleepPayload)
def sleep(payload: SleepPayload, ctx: RunContext) -> None:
    """Block for ``seconds`` without using the CPU."""
    time.sleep(payload.seconds)


class FailPayload(_Payload):
    message: str = "failed on purpose"
    permanent: bool = False


@REGISTRY.handler("fail", payload=FailPayload)
def fail(payload: FailPayload, ctx: RunContext) -> None:
    """Raise HandlerError (retryable) or PermanentError; for tests and demos."""
    if payload.permanent:
        raise PermanentError(payload.message)
    raise HandlerError(payload.message)


# -- noop_inline, sleep_inline ------------------------------------------------------------
# Run in the worker process (inline): no child process, no isolation, timeout by
# cancellation only (see Registry.handler). For measuring the scheduler without the
# process round trip, and as examples of inline handlers.


@REGISTRY.handler("noop_inline", payload=NoopPayload, inline=True)
async def noop_inline(payload: NoopPayload, ctx: RunContext) -> None:
    """Do nothing, in the worker process."""
    return None


@REGISTRY.handler("sleep_inline", payload=SleepPayload, inline=True)
async def sleep_inline(payload: SleepPayload, ctx: RunContext) -> None:
    """Wait ``seconds`` in the worker's event loop (cancellable: its timeout works)."""
    await anyio.sleep(payload.seconds)
