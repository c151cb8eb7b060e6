"""handlers/http_policy.py: which addresses http_get may reach.

The classification is a pure function, tested on a table of addresses (nothing is
contacted). The transport tests connect only to a server on loopback; the names they
use are resolved by a stand-in resolver, never by DNS.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest

from scheduler_core.handlers import REGISTRY, PermanentError, RunContext, http_policy
from scheduler_core.handlers.http_policy import (
    ALLOW_PRIVATE_ENV,
    AddressRefused,
    private_allowed,
    refusal,
    vet,
)
from scheduler_core.runtime.config import load_config

# (address, why it is refused: a fragment of the reason, or None for a public one)
ADDRESSES: list[tuple[str, str | None]] = [
    ("127.0.0.1", "loopback"),
    ("127.255.0.9", "loopback"),
    ("::1", "loopback"),
    ("10.0.0.1", "private"),
    ("10.255.255.255", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.254", "private"),
    ("192.168.1.1", "private"),
    ("169.254.169.254", "link-local"),  # cloud metadata services
    ("169.254.0.1", "link-local"),
    ("fe80::1", "link-local"),
    ("fe80::1%1", "link-local"),
    ("fc00::1", "private"),
    ("fd12:3456::1", "private"),
    ("0.0.0.0", "unspecified"),
    ("::", "unspecified"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("ff02::1", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),  # broadcast
    ("100.64.0.1", "not globally routable"),  # carrier-grade NAT
    ("192.0.2.10", "documentation"),  # TEST-NET-1
    ("198.51.100.7", "documentation"),
    ("203.0.113.7", "documentation"),
    ("0.1.2.3", "this network"),
    ("192.0.0.1", "IETF protocol assignment"),  # 192.0.0.0/24, beyond Python's /29
    ("192.0.0.9", "IETF protocol assignment"),
    ("192.0.0.200", "IETF protocol assignment"),
    ("192.88.99.1", "6to4 relay"),
    ("198.18.0.1", "benchmarking"),
    ("198.19.255.254", "benchmarking"),
    ("100.127.255.254", "not globally routable"),
    # IPv6 forms carrying an IPv4 address: judged by the address they carry
    ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
    ("::ffff:10.1.2.3", "private"),
    ("::ffff:169.254.169.254", "link-local"),
    ("2002:7f00:1::", "6to4 address carrying 127.0.0.1, a loopback"),
    ("2002:a9fe:a9fe::", "6to4 address carrying 169.254.169.254, a link-local"),
    ("2002:a00:1::1", "6to4 address carrying 10.0.0.1, a private"),
    ("2002:c0a8:101:1::1", "6to4 address carrying 192.168.1.1"),
    ("2002:6440:1::", "carrying 100.64.0.1"),
    ("2002::", "carrying 0.0.0.0"),
    ("64:ff9b::7f00:1", "NAT64 address carrying 127.0.0.1, a loopback"),
    ("64:ff9b::a9fe:a9fe", "NAT64 address carrying 169.254.169.254"),
    ("64:ff9b::10.0.0.1", "NAT64 address carrying 10.0.0.1, a private"),
    ("64:ff9b::192.0.0.170", "carrying 192.0.0.170"),
    ("64:ff9b:1::a00:1", "local-use NAT64"),  # RFC 8215: where the IPv4 sits varies
    ("64:ff9b:1::808:808", "local-use NAT64"),
    ("::127.0.0.1", "IPv4-compatible address carrying 127.0.0.1"),
    ("::10.0.0.1", "IPv4-compatible address carrying 10.0.0.1"),
    ("::8.8.8.8", "IPv4-compatible"),  # deprecated: refused whatever it carries
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),  # its client is obfuscated
    ("2001::1", "Teredo"),
    # other IPv6 ranges that are not public
    ("fec0::1", "site-local"),
    ("feff::1", "site-local"),
    ("fe80::abcd", "link-local"),
    ("100::1", "discard-only"),
    ("2001:db8::1", "documentation"),
    ("3fff::1", "documentation"),
    ("2001:2::1", "IETF protocol assignment"),
    ("2001:10::1", "IETF protocol assignment"),
    ("ff0e::1", "multicast"),
    ("5f00::1", "reserved"),  # SRv6 segment identifiers
    ("::ffff:0:7f00:1", "reserved"),  # SIIT, outside 2000::/3
    ("4000::1", "reserved"),
    ("8.8.8.8", None),
    ("1.1.1.1", None),
    ("93.184.215.14", None),
    ("172.32.0.1", None),  # just past 172.16.0.0/12
    ("2606:4700:4700::1111", None),
    ("::ffff:8.8.8.8", None),
    ("2002:808:808::1", None),  # 6to4 carrying 8.8.8.8
    ("64:ff9b::8.8.8.8", None),  # NAT64 (DNS64 networks) carrying 8.8.8.8
    ("192.0.1.1", None),  # just past 192.0.0.0/24
    ("198.20.0.1", None),  # just past 198.18.0.0/15
    ("2a00:1450:4001::1", None),
]


@pytest.mark.parametrize(("address", "reason"), ADDRESSES, ids=[a for a, _ in ADDRESSES])
def test_an_address_is_refused_only_when_not_public(address: str, reason: str | None) -> None:
    found = refusal(address)
    if reason is None:
        assert found is None
    else:
        assert found is not None and reason in found


def test_vet_refuses_a_name_when_any_of_its_addresses_is_private() -> None:
    with pytest.raises(AddressRefused, match=r"'mixed.example'.*10\.0\.0\.7, a private"):
        vet("mixed.example", ["93.184.215.14", "10.0.0.7"], allow_private=False)


def test_vet_keeps_public_addresses_in_order_without_duplicates() -> None:
    assert ["8.8.8.8", "1.1.1.1"] == vet("x", ["8.8.8.8", "1.1.1.1", "8.8.8.8"],
                                         allow_private=False)


def test_vet_lets_everything_through_when_private_is_allowed() -> None:
    assert ["127.0.0.1", "10.0.0.1"] == vet("x", ["127.0.0.1", "10.0.0.1"],
                                           allow_private=True)


def test_a_refusal_is_permanent() -> None:
    assert AddressRefused("h", "127.0.0.1", "a loopback address").permanent


@pytest.mark.parametrize(("value", "allowed"), [
    ("true", True), ("TRUE", True), (" true ", True), ("false", False), ("auto", False),
    ("", False), ("1", False), (None, False),
])
def test_only_true_allows_private_addresses_in_a_job_process(value: str | None,
                                                            allowed: bool) -> None:
    env = {} if value is None else {ALLOW_PRIVATE_ENV: value}
    assert allowed == private_allowed(env)


# -- the worker's setting, decided (runtime/config.py) -----------------------------------

@pytest.mark.parametrize(("setting", "coordinator_url", "allowed"), [
    ("auto", "http://127.0.0.1:5000", True),
    ("auto", "http://localhost:5000", True),
    ("auto", "http://[::1]:5000", True),
    ("auto", "http://127.0.0.2:5000", True),
    ("auto", "http://coordinator:5000", False),
    ("auto", "http://10.0.0.5:5000", False),
    ("auto", "https://scheduler.example.com", False),
    ("auto", "not a url", False),
    ("true", "http://coordinator:5000", True),
    ("false", "http://127.0.0.1:5000", False),
])
def test_auto_allows_private_addresses_only_with_a_loopback_coordinator(
        setting: str, coordinator_url: str, allowed: bool) -> None:
    config = load_config({"SCHEDULER_HTTP_ALLOW_PRIVATE": setting,
                          "COORDINATOR_URL": coordinator_url})
    assert allowed == config.http_private_allowed


# -- the transport: resolve once, vet, connect to the vetted address ----------------------

class _Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = self.headers.get("Host", "").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def loopback_port() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Names the tests use, resolved by this table instead of DNS."""
    table: dict[str, list[str]] = {}

    def resolve(host: str, port: int) -> list[str]:
        return table[host]

    monkeypatch.setattr(http_policy, "resolve", resolve)
    return table


def get(url: str) -> object:
    return REGISTRY.run("http_get", {"url": url}, RunContext("job-1", 1, "/nonexistent"))


def test_http_get_refuses_loopback_when_private_is_not_allowed(
        monkeypatch: pytest.MonkeyPatch, loopback_port: int) -> None:
    monkeypatch.setenv(ALLOW_PRIVATE_ENV, "false")
    with pytest.raises(PermanentError, match=r"resolves to 127\.0\.0\.1, a loopback address"):
        get(f"http://127.0.0.1:{loopback_port}/")


def test_a_name_is_judged_by_the_address_it_resolves_to(
        monkeypatch: pytest.MonkeyPatch, resolver: dict[str, list[str]],
        loopback_port: int) -> None:
    """A public-looking name whose DNS answer is loopback (rebinding) is refused."""
    monkeypatch.setenv(ALLOW_PRIVATE_ENV, "false")
    resolver["rebound.example"] = ["127.0.0.1"]
    with pytest.raises(PermanentError, match=r"'rebound\.example'.*127\.0\.0\.1"):
        get(f"http://rebound.example:{loopback_port}/")


def test_the_connection_goes_to_the_vetted_address_with_the_name_as_host(
        monkeypatch: pytest.MonkeyPatch, resolver: dict[str, list[str]],
        loopback_port: int) -> None:
    """The name exists only in the stand-in resolver: reaching the server proves the
    connection went to the address that was vetted, not to a second lookup."""
    monkeypatch.setenv(ALLOW_PRIVATE_ENV, "true")
    resolver["pinned.example"] = ["127.0.0.1"]
    assert {"statusCode": 200, "bytes": len(f"pinned.example:{loopback_port}")} == get(
        f"http://pinned.example:{loopback_port}/")
