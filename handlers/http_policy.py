"""Which addresses ``http_get`` may connect to, and the transport that holds it to that.

A job's URL is input: without a rule, whoever may submit jobs could make a worker
fetch its cloud metadata service (169.254.169.254), the database port on loopback or
anything else on the private network behind it (server-side request forgery).

The rule: an address that is not public (loopback, private, link-local, multicast,
unspecified, reserved or otherwise not globally routable) is refused unless private
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

from handlers.registry import PermanentError

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


def refusal(address: str | IPAddress) -> str | None:
    """Why ``address`` is not a public one (``"a loopback address"``), or None if it is.

    An IPv4 address mapped into IPv6 (``::ffff:127.0.0.1``) is judged as the IPv4
    address it carries.
    """
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_unspecified:
        return "the unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_reserved:
        return "a reserved address"
    if ip.is_private:
        return "a private address"
    if not ip.is_global:
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
