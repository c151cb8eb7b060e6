"""Limits that keep jobs safe, end to end: the http_get address policy as a worker
applies it (SCHEDULER_HTTP_ALLOW_PRIVATE), the payload size cap and file names too
long for a file system, refused at submission.

The only server http_get reaches here is the test's own, on loopback.
"""

from __future__ import annotations

import http.server
import json
import select
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.support import Coordinator, Worker, wait_until

TERMINAL = ("Succeeded", "DeadLetter", "Cancelled")


class _Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def loopback_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def run_http_get(coordinator: Coordinator, start_worker: Callable[..., Worker], url: str,
                 policy: str) -> dict[str, Any]:
    start_worker(coordinator.url, slots=1, env={"SCHEDULER_HTTP_ALLOW_PRIVATE": policy})
    resp = httpx.post(coordinator.url + "/api/jobs", timeout=10, json={
        "type": "http_get", "payload": {"url": url}, "maxAttempts": 3})
    assert 201 == resp.status_code, resp.text
    job_url = f"{coordinator.url}/api/jobs/{resp.json()['id']}"

    def finished() -> dict[str, Any] | None:
        job: dict[str, Any] = httpx.get(job_url, timeout=5).json()
        return job if job["status"] in TERMINAL else None

    return wait_until(finished, timeout=30, what="the http_get job to finish")


def test_http_get_to_loopback_is_dead_lettered_at_once_when_private_is_refused(
        coordinator: Coordinator, start_worker: Callable[..., Worker],
        loopback_url: str) -> None:
    job = run_http_get(coordinator, start_worker, loopback_url, "false")

    assert ("DeadLetter", 1) == (job["status"], job["attempts"])  # permanent: no retry
    assert "resolves to 127.0.0.1, a loopback address" in job["lastError"]
    assert "SCHEDULER_HTTP_ALLOW_PRIVATE=true" in job["lastError"]


def test_http_get_to_loopback_succeeds_when_private_is_allowed(
        coordinator: Coordinator, start_worker: Callable[..., Worker],
        loopback_url: str) -> None:
    job = run_http_get(coordinator, start_worker, loopback_url, "true")

    assert ("Succeeded", {"statusCode": 200, "bytes": 2}) == (job["status"], job["result"])


def test_auto_allows_loopback_for_a_worker_whose_coordinator_is_on_loopback(
        coordinator: Coordinator, start_worker: Callable[..., Worker],
        loopback_url: str) -> None:
    """Development (`scheduler up`, the seed demo): everything on one machine."""
    job = run_http_get(coordinator, start_worker, loopback_url, "auto")

    assert "Succeeded" == job["status"], job["lastError"]


# -- refused at submission ----------------------------------------------------------------

def test_a_payload_over_the_limit_is_413_naming_the_payload(
        start_coordinator: Callable[..., Coordinator]) -> None:
    coordinator = start_coordinator(env={"SCHEDULER_MAX_PAYLOAD_BYTES": "1000"})
    message = "x" * 1000  # {"message": "..."} is 1000 + 14 bytes of JSON

    resp = httpx.post(coordinator.url + "/api/jobs", timeout=10,
                      json={"type": "fail", "payload": {"message": message}})

    assert 413 == resp.status_code, resp.text
    body = resp.json()
    assert ("payload_too_large", "payload") == (body["error"], body["field"])
    assert "at most 1000 bytes" in body["message"] and "found 1014" in body["message"]
    assert [] == httpx.get(coordinator.url + "/api/jobs", timeout=10).json()["items"]


def test_a_payload_at_the_limit_is_accepted(
        start_coordinator: Callable[..., Coordinator]) -> None:
    coordinator = start_coordinator(env={"SCHEDULER_MAX_PAYLOAD_BYTES": "1000"})
    payload = {"message": "x" * (1000 - 14)}
    assert 1000 == len(json.dumps(payload, separators=(",", ":")))

    resp = httpx.post(coordinator.url + "/api/jobs", timeout=10,
                      json={"type": "fail", "payload": payload})

    assert 201 == resp.status_code, resp.text


def test_a_batch_item_over_the_payload_limit_is_413_naming_the_item(
        start_coordinator: Callable[..., Coordinator]) -> None:
    coordinator = start_coordinator(env={"SCHEDULER_MAX_PAYLOAD_BYTES": "1000"})

    resp = httpx.post(coordinator.url + "/api/jobs/batch", timeout=10, json={"jobs": [
        {"type": "noop"}, {"type": "fail", "payload": {"message": "x" * 1000}}]})

    assert (413, "jobs[1].payload") == (resp.status_code, resp.json()["field"])


def test_a_file_name_longer_than_255_bytes_is_400_at_submission(
        coordinator: Coordinator) -> None:
    name = "é" * 128  # 128 characters, 256 bytes of UTF-8

    resp = httpx.post(coordinator.url + "/api/jobs", timeout=10, json={
        "type": "file_write", "payload": {"fileName": name, "content": "x"}})

    assert 400 == resp.status_code, resp.text
    assert ("invalid_payload", "payload.fileName") == (resp.json()["error"],
                                                       resp.json()["field"])
    assert "255 bytes" in resp.json()["message"]


# -- keep-alive: an answer before the body was read --------------------------------------

def _read_response(sock: socket.socket) -> bytes:
    """One HTTP/1.1 response with a Content-Length body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed mid-body"
        body += chunk
    return head.split(b"\r\n")[0]


@pytest.mark.parametrize(("method", "path"), [("PUT", "/api/workers/claim"),
                                              ("POST", "/api/jobs/not-a-uuid/retry")])
def test_the_connection_still_serves_after_an_answer_that_did_not_read_the_body(
        coordinator: Coordinator, method: str, path: str) -> None:
    """A slow client: the body comes a moment after the head, and the route answers
    without reading it (405, a malformed id). The next request on the same
    connection must be answered, not left hanging."""
    body = b'{"reason": "x"}'
    with socket.create_connection(("127.0.0.1", coordinator.port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
                     f"\r\nContent-Length: {len(body)}\r\n\r\n".encode())
        # The slow client's pause. A server that answers without the body answers now
        # (and then, before the fix, left the connection hanging); this one waits.
        answered_early, _, _ = select.select([sock], [], [], 1.0)
        if answered_early:
            status = _read_response(sock)
            sock.sendall(body)
        else:
            sock.sendall(body)
            status = _read_response(sock)
        assert status.split()[1] in (b"400", b"405")
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert b"HTTP/1.1 200 " == _read_response(sock)[:13]
