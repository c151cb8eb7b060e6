"""Which addresses ``http_get`` may connect to, and the transport that holds it to that.

A job's URL is input: without a rule, whoever may submit jobs could make a worker
fetch its cloud metadata service (169.254.169.254), the database port on loopback or
anything else on the private network behind it (server-side request forgery).

The rule: an address that is not public (loopback, private, link-local, multicast,
unspecified, reserved or otherwise not globally routable; an IPv6 address carrying
such an IPv4 one, as NAT64 and 6to4 do, see :func:`refusal`) is refused unless private
addresses are allowed. It is applied AFTER name resolution, to every address the host
name resolves to (one refused address refuses the name), and the connection then goes
to a vetted address itself: the name is not resolved a second time, so a DNS answer
that changes between the check and the connection (rebinding) cannot slip through.
TLS still checks the certificate against the URL's host (SNI and the Host header are
the name, not the address), and every redirect is a new connection, vetted the same
way.

Whether private addresses are allowed comes from the environment variable
``SCHEDULER_HTTP_ALLOW_PRIVATE`` of the process that runs the job: ``true`` allows
them, anything else (``false``, unset) refuses them. A worker sets it for its job
processes from its own setting, where ``auto`` has already been decided
(runtime/config.py: allowed when the worker's coordinator is on loopback).

Errors: :class:`AddressRefused` (a PermanentError: retrying cannot help) names the
host, the address and why it was refused.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, cast

import httpx

from scheduler_core.handlers.registry import PermanentError

if TYPE_CHECKING:  # importing httpcore imports trio (when installed): only when used
    import httpcore

__all__ = [
    "ALLOW_PRIVATE_ENV",
    "AddressRefused",
    "PinnedBackend",
    "open_client",
    "private_allowed",
    "refusal",
    "vet",
]

ALLOW_PRIVATE_ENV = "SCHEDULER_HTTP_ALLOW_PRIVATE"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class AddressRefused(PermanentError):
    """The host resolves to an address the policy refuses."""

    def __init__(self, host: str, address: str, reason: str) -> None:
        super().__init__(
            f"refused to connect to {host!r}: it resolves to {address}, {reason}; "
            f"only public addresses are allowed ({ALLOW_PRIVATE_ENV}=true allows others)"
        )
        self.host = host
        self.address = address
        self.reason = reason


# The ranges that are not public, by name (IANA's special-purpose registries; read
# in order, the first match names the reason). Written out rather than taken from
# ipaddress's is_private / is_global, whose answers differ between Python versions
# and miss several of these (3.11: 192.0.0.0/24 beyond /29, fec0::/10, 3fff::/20).
_IPV4_REFUSED = tuple((ipaddress.IPv4Network(net), reason) for net, reason in (
    ("0.0.0.0/8", "a 'this network' address (0.0.0.0/8)"),
    ("10.0.0.0/8", "a private address (10.0.0.0/8)"),
    ("100.64.0.0/10", "a shared (carrier-grade NAT) address, not globally routable"),
    ("127.0.0.0/8", "a loopback address"),
    ("169.254.0.0/16", "a link-local address"),
    ("172.16.0.0/12", "a private address (172.16.0.0/12)"),
    ("192.0.0.0/24", "an IETF protocol assignment (192.0.0.0/24), not globally routable"),
    ("192.0.2.0/24", "a documentation address (192.0.2.0/24)"),
    ("192.88.99.0/24", "a deprecated 6to4 relay address (192.88.99.0/24)"),
    ("192.168.0.0/16", "a private address (192.168.0.0/16)"),
    ("198.18.0.0/15", "a benchmarking address (198.18.0.0/15)"),
    ("198.51.100.0/24", "a documentation address (198.51.100.0/24)"),
    ("203.0.113.0/24", "a documentation address (203.0.113.0/24)"),
    ("224.0.0.0/4", "a multicast address"),
    ("240.0.0.0/4", "a reserved address (240.0.0.0/4, with the broadcast address)"),
))
_IPV6_REFUSED = tuple((ipaddress.IPv6Network(net), reason) for net, reason in (
    ("64:ff9b:1::/48", "a local-use NAT64 address (64:ff9b:1::/48)"),
    ("100::/64", "a discard-only address (100::/64)"),
    ("2001::/32", "a Teredo tunnel address (2001::/32)"),
    ("2001:db8::/32", "a documentation address (2001:db8::/32)"),
    ("2001::/23", "an IETF protocol assignment (2001::/23), not globally routable"),
    ("3fff::/20", "a documentation address (3fff::/20)"),
    ("fc00::/7", "a private (unique local) address"),
    ("fe80::/10", "a link-local address"),
    ("fec0::/10", "a site-local address (deprecated, fec0::/10)"),
    ("ff00::/8", "a multicast address"),
))
_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
# IPv6 forms that carry an IPv4 address, judged by that address (a NAT64 gateway or a
# 6to4 relay delivers the connection to it).
_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_COMPATIBLE = ipaddress.IPv6Network("::/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_SIXTOFOUR = ipaddress.IPv6Network("2002::/16")


def refusal(address: str | IPAddress) -> str | None:
    """Why ``address`` is not a public one (``"a loopback address"``), or None if it is.

    An IPv6 address that carries an IPv4 one is judged by it: IPv4-mapped
    (``::ffff:127.0.0.1``), NAT64 (``64:ff9b::/96``), 6to4 (``2002::/16``) and the
    deprecated IPv4-compatible form (``::/96``, refused even with a public address
    inside: nothing routes it). Teredo (``2001::/32``) is refused outright: its
    client address is obfuscated and the tunnel leads through a NAT. Other IPv6
    addresses must be global unicast (``2000::/3``) outside the ranges above.
    """
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv4Address):
        return _ipv4_refusal(ip)
    if ip.is_unspecified:
        return "the unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    for network, form in ((_MAPPED, "an IPv4-mapped address"), (_NAT64, "a NAT64 address"),
                          (_SIXTOFOUR, "a 6to4 address"),
                          (_COMPATIBLE, "an IPv4-compatible address")):
        if ip in network:
            inner = (ip.sixtofour if network is _SIXTOFOUR
                     else ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF))
            assert inner is not None
            if (reason := _ipv4_refusal(inner)) is not None:
                return f"{form} carrying {inner}, {reason}"
            if network is _COMPATIBLE:
                return f"{form} (deprecated, ::/96), not globally routable"
            return None
    for network, reason in _IPV6_REFUSED:
        if ip in network:
            return reason
    if ip not in _GLOBAL_UNICAST:
        return "a reserved address (outside 2000::/3, the global unicast range)"
    return None


def _ipv4_refusal(ip: ipaddress.IPv4Address) -> str | None:
    if ip.is_unspecified:
        return "the unspecified address"
    for network, reason in _IPV4_REFUSED:
        if ip in network:
            return reason
    if not ip.is_global:  # a range this table lacks and a newer Python knows
        return "an address that is not globally routable"
    return None


def private_allowed(env: Mapping[str, str] | None = None) -> bool:
    """True only when ``SCHEDULER_HTTP_ALLOW_PRIVATE`` is ``true`` in ``env``
    (default ``os.environ``)."""
    env = os.environ if env is None else env
    return env.get(ALLOW_PRIVATE_ENV, "").strip().lower() == "true"


def vet(host: str, addresses: Iterable[str], *, allow_private: bool) -> list[str]:
    """``addresses`` (the resolution of ``host``) if every one may be connected to;
    raises AddressRefused naming the first that may not."""
    vetted = list(dict.fromkeys(addresses))
    if not allow_private:
        for address in vetted:
            reason = refusal(address)
            if reason is not None:
                raise AddressRefused(host, address, reason)
    return vetted


def resolve(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to for TCP, in the resolver's order."""
    import httpcore

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise httpcore.ConnectError(f"cannot resolve {host!r}: {exc}") from exc
    return [str(info[4][0]) for info in infos]


class PinnedBackend:
    """httpcore's synchronous backend, connecting only to vetted addresses (an
    ``httpcore.NetworkBackend`` by its methods).

    ``connect_tcp`` resolves the host once, vets every address, then connects to the
    vetted addresses in turn (the first that answers wins).
    """

    def __init__(self, *, allow_private: bool) -> None:
        import httpcore

        self.allow_private = allow_private
        self._inner = httpcore.SyncBackend()

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        import httpcore

        addresses = vet(host, resolve(host, port), allow_private=self.allow_private)
        last: Exception | None = None
        for address in addresses:
            try:
                return self._inner.connect_tcp(address, port, timeout=timeout,
                                               local_address=local_address,
                                               socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None  # getaddrinfo answers at least one address or raises
        raise last

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[Any] | None = None
                            ) -> httpcore.NetworkStream:
        import httpcore

        raise httpcore.ConnectError("unix sockets are not allowed")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _PinnedTransport(httpx.HTTPTransport):
    """httpx's transport on a pool whose connections go through PinnedBackend. It
    reads no proxy settings from the environment: a proxy would connect for us,
    to addresses this policy never sees."""

    def __init__(self, *, allow_private: bool) -> None:
        import httpcore

        super().__init__(trust_env=False)
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=10,
            max_keepalive_connections=0,
            network_backend=cast("httpcore.NetworkBackend",
                                 PinnedBackend(allow_private=allow_private)),
        )


def open_client(*, allow_private: bool, timeout: httpx.Timeout,
                max_redirects: int) -> httpx.Client:
    """An httpx.Client that follows at most ``max_redirects`` redirects and connects
    only to addresses the policy allows."""
    return httpx.Client(transport=_PinnedTransport(allow_private=allow_private),
                        timeout=timeout, follow_redirects=True,
                        max_redirects=max_redirects, trust_env=False)
