"""The handler registry and the built-in job types, run in-process (no child, no trio)."""

from __future__ import annotations

import http.server
import os
import socket
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import msgspec
import pytest

from scheduler_core.handlers import (
    REGISTRY,
    HandlerError,
    PayloadError,
    PermanentError,
    Registry,
    RunContext,
    UnknownHandler,
)
from scheduler_core.handlers.builtin import FILE_MAX_BYTES, HTTP_MAX_BODY_BYTES, NoopPayload
from scheduler_core.handlers.http_policy import ALLOW_PRIVATE_ENV

MIB = 1024 * 1024


def context(data_dir: Path | str = "/nonexistent") -> RunContext:
    return RunContext(job_id="job-1", attempt=1, data_dir=str(data_dir))


# -- validation -------------------------------------------------------------------------

GOOD_PAYLOADS: list[tuple[str, Any]] = [
    ("http_get", {"url": "http://example.com/path?q=1"}),
    ("http_get", {"url": "https://127.0.0.1:8443"}),
    ("cpu", {"durationSeconds": 0.05}),
    ("cpu", {"durationSeconds": 1}),
    ("cpu", {"durationSeconds": 86400}),
    ("file_write", {"fileName": "out.txt", "content": ""}),
    ("file_write", {"fileName": "sub/dir/out.txt", "content": "hello"}),
    ("file_write", {"fileName": "a" * 255, "content": "x" * FILE_MAX_BYTES}),
    ("file_write", {"fileName": "é" * 127 + "a", "content": ""}),  # 255 bytes
    ("file_write", {"fileName": "caf\u00e9/\u05e9\u05dc\u05d5\u05dd.txt", "content": ""}),  # NFC
    ("http_get", {"url": "http://example.com:65535/"}),
    ("http_get", {"url": "http://example.com:1/"}),
    ("noop", {}),
    ("noop", None),
    ("sleep", {"seconds": 0}),
    ("sleep", {"seconds": 1.5}),
    ("fail", {}),
    ("fail", {"message": "boom", "permanent": True}),
]


@pytest.mark.parametrize(("name", "payload"), GOOD_PAYLOADS)
def test_good_payload_validates(name: str, payload: Any) -> None:
    value = REGISTRY.validate(name, payload)
    assert REGISTRY.get(name).payload_type is type(value)


BAD_PAYLOADS: list[tuple[str, Any, str, str]] = [
    # (type, payload, field, a fragment of the message)
    ("http_get", {}, "payload.url", "missing"),
    ("http_get", {"url": 5}, "payload.url", "expected a string, found int"),
    ("http_get", {"url": "ftp://example.com/"}, "payload.url", "expected an http(s) URL"),
    ("http_get", {"url": "http://"}, "payload.url", "with a host"),
    ("http_get", {"url": "example.com"}, "payload.url", "expected an http(s) URL"),
    ("http_get", {"url": "http://[::1"}, "payload.url", "expected an http(s) URL"),
    ("http_get", {"url": "http://x", "method": "POST"}, "payload.method", "only the fields url"),
    ("http_get", {"url": "http://example.com:99999/"}, "payload.url", "port of 1 to 65535"),
    ("http_get", {"url": "https://example.com:65536"}, "payload.url", "port of 1 to 65535"),
    ("http_get", {"url": "http://example.com:0/"}, "payload.url", "port of 1 to 65535"),
    ("http_get", {"url": "http://example.com:8o/"}, "payload.url", "port of 1 to 65535"),
    ("http_get", {"url": "http://[::1]:70000/"}, "payload.url", "port of 1 to 65535"),
    ("cpu", {"durationSeconds": "1"}, "payload.durationSeconds", "expected a number, found str"),
    ("cpu", {"durationSeconds": 0}, "payload.durationSeconds", "> 0.0, found 0"),
    ("cpu", {"durationSeconds": -1}, "payload.durationSeconds", "> 0.0, found -1"),
    ("cpu", {"durationSeconds": 86401}, "payload.durationSeconds", "<= 86400.0, found 86401"),
    ("cpu", {"durationSeconds": True}, "payload.durationSeconds", "found bool"),
    ("cpu", {}, "payload.durationSeconds", "missing"),
    ("file_write", {"fileName": "", "content": ""}, "payload.fileName", "length >= 1"),
    ("file_write", {"fileName": "a" * 256, "content": ""}, "payload.fileName", "length <= 255"),
    ("file_write", {"fileName": "/etc/passwd", "content": ""}, "payload.fileName", "absolute"),
    ("file_write", {"fileName": "../up.txt", "content": ""}, "payload.fileName", "'..'"),
    ("file_write", {"fileName": "a/../../b", "content": ""}, "payload.fileName", "'..'"),
    ("file_write", {"fileName": "a\0b", "content": ""}, "payload.fileName", "NUL"),
    ("file_write", {"fileName": "dir/", "content": ""}, "payload.fileName", "naming a file"),
    ("file_write", {"fileName": ".", "content": ""}, "payload.fileName", "naming a file"),
    ("file_write", {"fileName": "é" * 128, "content": ""}, "payload.fileName", "255 bytes"),
    ("file_write", {"fileName": "d/" + "€" * 86, "content": ""}, "payload.fileName",
     "255 bytes"),
    ("file_write", {"fileName": "report\u202etxt.exe", "content": ""}, "payload.fileName",
     "bidirectional"),  # right-to-left override: shows as "reportexe.txt"
    ("file_write", {"fileName": "a\u2066b\u2069", "content": ""}, "payload.fileName",
     "format"),  # isolates
    ("file_write", {"fileName": "a\u200fb", "content": ""}, "payload.fileName", "format"),
    ("file_write", {"fileName": "zero\u200bwidth", "content": ""}, "payload.fileName",
     "zero-width"),
    ("file_write", {"fileName": "bom\ufeff", "content": ""}, "payload.fileName", "format"),
    ("file_write", {"fileName": "line\nbreak", "content": ""}, "payload.fileName", "control"),
    ("file_write", {"fileName": "esc\x1b[31m", "content": ""}, "payload.fileName", "control"),
    ("file_write", {"fileName": "sep\u2028", "content": ""}, "payload.fileName", "separator"),
    ("file_write", {"fileName": "dir\u202e/a.txt", "content": ""}, "payload.fileName",
     "bidirectional"),
    ("file_write", {"fileName": "cafe\u0301.txt", "content": ""}, "payload.fileName",
     "NFC"),  # e + combining acute: the NFC form is "café.txt"
    ("file_write", {"fileName": "\u212b", "content": ""}, "payload.fileName", "NFC"),  # Angstrom
    ("file_write", {"fileName": "a.txt"}, "payload.content", "missing"),
    ("file_write", {"fileName": "a", "content": "x" * (MIB + 1)}, "payload.content", "length"),
    ("file_write", {"fileName": "a", "content": "é" * (MIB // 2 + 1)}, "payload.content", "bytes"),
    ("noop", {"x": 1}, "payload.x", "expected no fields"),
    ("noop", [], "payload", "expected an object, found array"),
    ("sleep", {"seconds": -0.1}, "payload.seconds", ">= 0.0"),
    ("sleep", {"seconds": 86401}, "payload.seconds", "<= 86400.0"),
    ("sleep", {"seconds": None}, "payload.seconds", "found null"),
    ("fail", {"permanent": "yes"}, "payload.permanent", "expected a boolean, found str"),
    ("fail", {"permanent": 1}, "payload.permanent", "expected a boolean, found int"),
    ("fail", {"message": 3}, "payload.message", "expected a string, found int"),
]


@pytest.mark.parametrize(("name", "payload", "field", "fragment"), BAD_PAYLOADS)
def test_bad_payload_names_its_field(name: str, payload: Any, field: str, fragment: str) -> None:
    with pytest.raises(PayloadError) as caught:
        REGISTRY.validate(name, payload)
    assert field == caught.value.field
    assert str(caught.value).startswith(f"{field}: expected ")
    assert fragment in str(caught.value)


def test_payload_error_says_expected_and_found() -> None:
    with pytest.raises(PayloadError) as caught:
        REGISTRY.validate("cpu", {"durationSeconds": "soon"})
    assert "payload.durationSeconds: expected a number, found str" == str(caught.value)


def test_validation_error_is_permanent() -> None:
    assert PayloadError.permanent
    assert PermanentError.permanent
    assert UnknownHandler.permanent
    assert not HandlerError.permanent


def test_run_validates_before_calling() -> None:
    with pytest.raises(PayloadError):
        REGISTRY.run("sleep", {"seconds": "forever"}, context())


# -- the registry -----------------------------------------------------------------------


def test_builtin_names_are_registered() -> None:
    assert ["cpu", "fail", "file_write", "http_get", "noop", "noop_inline", "sleep",
            "sleep_inline"] == REGISTRY.names()


def test_only_the_inline_built_ins_are_inline() -> None:
    assert ["noop_inline", "sleep_inline"] == [
        n for n in REGISTRY.names() if REGISTRY.get(n).inline]


def test_an_inline_handler_must_be_async() -> None:
    registry = Registry()

    class Empty(msgspec.Struct):
        pass

    def blocking(payload: Empty, ctx: RunContext) -> None:
        return None

    with pytest.raises(TypeError, match="inline=True expects an async function"):
        registry.handler("blocking", payload=Empty, inline=True)(blocking)
    assert [] == registry.names()


def test_unknown_handler_lists_known_names() -> None:
    with pytest.raises(UnknownHandler) as caught:
        REGISTRY.get("nope")
    assert "cpu, fail, file_write, http_get, noop, noop_inline, sleep, sleep_inline" in str(
        caught.value)
    assert "'nope'" in str(caught.value)


def test_registering_a_name_twice_is_refused() -> None:
    registry = Registry()
    registry.handler("x", payload=NoopPayload)(lambda payload, ctx: None)
    with pytest.raises(ValueError, match="already registered"):
        registry.handler("x", payload=NoopPayload)


def test_payload_must_be_a_struct() -> None:
    with pytest.raises(TypeError, match=r"msgspec\.Struct"):
        Registry().handler("x", payload=dict)  # type: ignore[arg-type]


def test_spec_keeps_the_declared_defaults() -> None:
    registry = Registry()

    @registry.handler("report", payload=NoopPayload, timeout_seconds=60, max_attempts=2, queue="q")
    def report(payload: NoopPayload, ctx: RunContext) -> None:
        return None

    spec = registry.get("report")
    assert (60, 2, "q", False) == (
        spec.timeout_seconds,
        spec.max_attempts,
        spec.queue,
        spec.is_async,
    )
    assert report is spec.fn


def test_async_handler_runs_under_its_own_trio_run() -> None:
    registry = Registry()

    @registry.handler("async_job", payload=NoopPayload)
    async def async_job(payload: NoopPayload, ctx: RunContext) -> dict[str, object]:
        import trio

        await trio.lowlevel.checkpoint()
        return {"jobId": ctx.job_id, "attempt": ctx.attempt}

    assert registry.get("async_job").is_async
    assert {"jobId": "job-1", "attempt": 1} == registry.run("async_job", {}, context())


def test_handlers_package_does_not_import_trio() -> None:
    import subprocess
    import sys

    code = "import sys, handlers; sys.exit(1 if 'trio' in sys.modules else 0)"
    assert 0 == subprocess.run([sys.executable, "-c", code], check=False).returncode


# -- noop, sleep, fail, cpu -------------------------------------------------------------


def test_noop_returns_none() -> None:
    assert REGISTRY.run("noop", None, context()) is None


def test_sleep_returns_none() -> None:
    assert REGISTRY.run("sleep", {"seconds": 0}, context()) is None


def test_fail_raises_a_retryable_error() -> None:
    with pytest.raises(HandlerError, match="failed on purpose") as caught:
        REGISTRY.run("fail", {}, context())
    assert not isinstance(caught.value, PermanentError)


def test_fail_permanent_raises_permanent_error() -> None:
    with pytest.raises(PermanentError, match="no retry"):
        REGISTRY.run("fail", {"message": "no retry", "permanent": True}, context())


def test_cpu_runs_for_its_duration() -> None:
    # At least its duration; it ends by itself (a loaded machine only makes it later).
    started = time.perf_counter()
    result = REGISTRY.run("cpu", {"durationSeconds": 0.05}, context())
    elapsed = time.perf_counter() - started
    assert 0.05 <= elapsed, elapsed
    assert isinstance(result, dict)
    assert result["iterations"] > 0


# -- file_write -------------------------------------------------------------------------


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    path = tmp_path / "outside"
    path.mkdir()
    return path


def write(data_dir: Path, name: str, content: str = "hello") -> object:
    return REGISTRY.run("file_write", {"fileName": name, "content": content}, context(data_dir))


def test_file_write_creates_folders_and_writes(data_dir: Path) -> None:
    result = write(data_dir, "a/b/out.txt", "héllo")
    assert {"path": "a/b/out.txt", "bytes": 6} == result
    assert "héllo" == (data_dir / "a" / "b" / "out.txt").read_text()


def test_file_write_overwrites(data_dir: Path) -> None:
    write(data_dir, "out.txt", "first, longer")
    write(data_dir, "out.txt", "second")
    assert "second" == (data_dir / "out.txt").read_text()


@pytest.mark.parametrize("name", ["/tmp/escape.txt", "../escape.txt", "a/../../escape.txt"])
def test_file_write_rejects_escaping_names(data_dir: Path, outside: Path, name: str) -> None:
    with pytest.raises(PayloadError):
        write(data_dir, name)
    assert [] == list(outside.iterdir())
    assert not (data_dir.parent / "escape.txt").exists()


def test_file_write_rejects_a_long_name(data_dir: Path) -> None:
    with pytest.raises(PayloadError, match=r"payload\.fileName"):
        write(data_dir, "x" * 256)
    assert not data_dir.exists()


def test_file_write_refuses_a_folder_symlink_pointing_outside(
    data_dir: Path, outside: Path
) -> None:
    data_dir.mkdir()
    (data_dir / "link").symlink_to(outside)
    with pytest.raises(PermanentError, match="inside the data folder"):
        write(data_dir, "link/escape.txt")
    assert [] == list(outside.iterdir())


def test_file_write_refuses_a_file_symlink_pointing_outside(data_dir: Path, outside: Path) -> None:
    data_dir.mkdir()
    (data_dir / "out.txt").symlink_to(outside / "target.txt")
    with pytest.raises(PermanentError):
        write(data_dir, "out.txt")
    assert [] == list(outside.iterdir())


def test_file_write_follows_a_symlink_that_stays_inside(data_dir: Path) -> None:
    (data_dir / "real").mkdir(parents=True)
    (data_dir / "alias").symlink_to(data_dir / "real")
    assert {"path": "real/out.txt", "bytes": 5} == write(data_dir, "alias/out.txt")
    assert "hello" == (data_dir / "real" / "out.txt").read_text()


def test_file_write_accepts_a_data_dir_behind_a_symlink(tmp_path: Path, outside: Path) -> None:
    (tmp_path / "data").symlink_to(outside)
    assert {"path": "out.txt", "bytes": 5} == write(tmp_path / "data", "out.txt")
    assert "hello" == (outside / "out.txt").read_text()


def test_file_write_refuses_a_write_through_a_racing_symlink(data_dir: Path, outside: Path) -> None:
    """A symlink that appears after the path was checked is still not followed."""
    from scheduler_core.handlers.builtin import _write_without_following

    data_dir.mkdir()
    (data_dir / "sub").symlink_to(outside)
    with pytest.raises(PermanentError, match="found a symlink"):
        _write_without_following(data_dir, Path("sub/out.txt"), b"x")
    assert [] == list(outside.iterdir())


def test_file_write_replaces_a_planted_hard_link_and_leaves_its_other_name_alone(
    data_dir: Path, outside: Path
) -> None:
    """The name in the data folder becomes a new file; the inode it shared with a
    file outside is never opened."""
    secret = outside / "secret.txt"
    secret.write_text("keep me")
    data_dir.mkdir()
    os.link(secret, data_dir / "out.txt")
    assert {"path": "out.txt", "bytes": 5} == write(data_dir, "out.txt")
    assert "keep me" == secret.read_text()
    assert "hello" == (data_dir / "out.txt").read_text()
    assert 1 == (data_dir / "out.txt").stat().st_nlink
    assert 1 == secret.stat().st_nlink


def test_file_write_keeps_a_name_s_other_links_when_it_overwrites(data_dir: Path) -> None:
    data_dir.mkdir()
    (data_dir / "a.txt").write_text("old")
    os.link(data_dir / "a.txt", data_dir / "b.txt")
    write(data_dir, "a.txt", "new")
    assert ("new", "old") == ((data_dir / "a.txt").read_text(), (data_dir / "b.txt").read_text())


def _make_socket(path: Path) -> None:
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))


PLANTED = [
    ("a FIFO", os.mkfifo),
    ("a folder", os.mkdir),
    ("a socket", _make_socket),
]


@pytest.mark.parametrize(("kind", "plant"), PLANTED, ids=[k for k, _ in PLANTED])
def test_file_write_refuses_a_target_that_is_not_a_regular_file(
    data_dir: Path, kind: str, plant: Any
) -> None:
    """Refused at once, never opened: opening a FIFO for writing would block until
    a reader came (the job's timeout). The write runs in a thread so that the old
    behaviour fails this test instead of hanging it."""
    data_dir.mkdir()
    plant(data_dir / "out")
    errors: list[BaseException] = []

    def run() -> None:
        try:
            write(data_dir, "out")
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=10)  # a stall detector, not a bound on how long a write takes
    if thread.is_alive():  # blocked on the FIFO: let it go before failing
        os.close(os.open(data_dir / "out", os.O_RDONLY | os.O_NONBLOCK))
        thread.join(timeout=10)
        pytest.fail("file_write blocked on the planted FIFO")
    assert 1 == len(errors) and isinstance(errors[0], PermanentError), errors
    assert f"expected a regular file, found {kind} at 'out'" in str(errors[0])
    assert ["out"] == sorted(p.name for p in data_dir.iterdir())  # no temporary file left


def test_file_write_refuses_a_fifo_as_a_folder(data_dir: Path) -> None:
    data_dir.mkdir()
    os.mkfifo(data_dir / "sub")
    with pytest.raises(PermanentError, match="expected 'sub' to be a folder"):
        write(data_dir, "sub/out.txt")


def test_file_write_refuses_a_symlink_swapped_in_as_the_file(data_dir: Path, outside: Path) -> None:
    """A symlink that appears at the target after it was resolved is not replaced or
    followed: the write is refused and the symlink's target is untouched."""
    from scheduler_core.handlers.builtin import _write_without_following

    data_dir.mkdir()
    (outside / "target.txt").write_text("keep me")
    (data_dir / "out.txt").symlink_to(outside / "target.txt")
    with pytest.raises(PermanentError, match="expected a regular file, found a symlink"):
        _write_without_following(data_dir, Path("out.txt"), b"x")
    assert "keep me" == (outside / "target.txt").read_text()
    assert (data_dir / "out.txt").is_symlink()


def test_file_write_leaves_no_temporary_file(data_dir: Path) -> None:
    write(data_dir, "a/out.txt")
    write(data_dir, "a/out.txt", "again")
    assert ["out.txt"] == [p.name for p in (data_dir / "a").iterdir()]


def test_file_write_creates_a_file_readable_by_others(data_dir: Path) -> None:
    """The new file gets mode 0o644 (less the umask), as before the rename."""
    umask = os.umask(0o022)
    try:
        write(data_dir, "out.txt")
    finally:
        os.umask(umask)
    assert 0o644 == stat.S_IMODE((data_dir / "out.txt").stat().st_mode)


# -- http_get (a local server on loopback only) -----------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: ClassVar[dict[str, tuple[int, dict[str, str], bytes]]] = {
        "/ok": (200, {}, b"hello"),
        "/missing": (404, {}, b"not here"),
        "/redirect": (302, {"Location": "/ok"}, b""),
        "/loop": (302, {"Location": "/loop"}, b""),
        "/big": (200, {}, b"x" * (2 * MIB)),
    }

    def do_GET(self) -> None:
        status, headers, body = self.routes.get(self.path, (500, {}, b""))
        try:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped reading: /big

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loopback only: a proxy from the environment must not route the test requests."""
    for name in (
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def _loopback_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test servers are on loopback, which http_get refuses unless allowed
    (tests/unit/test_http_policy.py covers the refusals)."""
    monkeypatch.setenv(ALLOW_PRIVATE_ENV, "true")


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def get(url: str) -> object:
    return REGISTRY.run("http_get", {"url": url}, context())


def test_http_get_returns_status_and_size(server_url: str) -> None:
    assert {"statusCode": 200, "bytes": 5} == get(f"{server_url}/ok")


def test_http_get_follows_redirects(server_url: str) -> None:
    assert {"statusCode": 200, "bytes": 5} == get(f"{server_url}/redirect")


def test_http_get_gives_up_after_five_redirects(server_url: str) -> None:
    with pytest.raises(HandlerError, match="TooManyRedirects"):
        get(f"{server_url}/loop")


def test_http_get_reads_at_most_one_mib(server_url: str) -> None:
    assert {"statusCode": 200, "bytes": HTTP_MAX_BODY_BYTES} == get(f"{server_url}/big")


def test_http_get_stops_reading_an_endless_body_at_one_mib() -> None:
    """The server never stops sending: only closing the connection ends the call."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            chunk = b"%x\r\n%s\r\n" % (65536, b"x" * 65536)
            try:
                while True:
                    conn.sendall(chunk)
            except OSError:
                pass  # the client closed the connection, as it should

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    try:
        assert {"statusCode": 200, "bytes": HTTP_MAX_BODY_BYTES} == get(
            f"http://127.0.0.1:{port}/")
        server.join(timeout=10)
        assert not server.is_alive()
    finally:
        listener.close()


def test_http_get_fails_on_404(server_url: str) -> None:
    with pytest.raises(HandlerError, match="expected a 2xx status, found 404") as caught:
        get(f"{server_url}/missing")
    assert not caught.value.permanent


def test_http_get_fails_when_the_connection_is_refused() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(HandlerError, match="ConnectError") as caught:
        get(f"http://127.0.0.1:{port}/")
    assert not caught.value.permanent
