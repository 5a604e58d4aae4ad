"""Where Web Push may send: public push services only, so that a registered endpoint is never a way into the
server's own network (cloud metadata at 169.254.169.254, 10/8, 192.168/16, loopback, link-local, ...).

Checked twice, because a name can change its address after it was registered:
- at registration (`check_endpoint`): https only; an address, or a name that resolves now, must be public; names
  that only exist inside networks (`localhost`, `*.internal`, `*.local`, ...) are refused outright;
- at send time (`PublicOnlyResolver`): the resolver aiohttp connects through keeps only public addresses, so the
  check applies to the very address connected to (no window between checking a name and connecting to it).

`WEB_PUSH_ALLOW_LOOPBACK_HTTP` remains the one way to reach a loopback stand-in (tests, local development), and
`WEB_PUSH_ALLOWED_HOSTS` optionally narrows push to named services (a host, or `*.` a domain).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from base.errors import InvalidInput

INTERNAL_SUFFIXES = (".localhost", ".internal", ".local", ".localdomain", ".home.arpa", ".intranet", ".lan")
RESOLVE_TIMEOUT_S = 3.0

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class PushTargets:
    """The operator's push policy (from settings)."""

    loopback_http: bool = False  # WEB_PUSH_ALLOW_LOOPBACK_HTTP
    allowed_hosts: tuple[str, ...] = ()  # WEB_PUSH_ALLOWED_HOSTS; empty: any public host

    def allows_address(self, address: IpAddress) -> bool:
        if self.loopback_http and address.is_loopback:
            return True
        return is_public(address)

    def allows_host(self, host: str) -> bool:
        if not self.allowed_hosts:
            return True
        return any(host == h or (h.startswith("*.") and host.endswith(h[1:])) for h in self.allowed_hosts)


def is_public(address: IpAddress) -> bool:
    """Globally routable unicast: not private, loopback, link-local, reserved, multicast or unspecified (an
    IPv4-mapped IPv6 address is judged as the IPv4 address it carries)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


async def check_endpoint(endpoint: str, targets: PushTargets) -> None:
    """InvalidInput unless `endpoint` may receive pushes (see the module's docstring)."""
    parts = urlsplit(endpoint)
    host = (parts.hostname or "").lower().rstrip(".")
    try:
        port = parts.port
    except ValueError:
        raise InvalidInput("endpoint has an invalid port.") from None
    if parts.scheme == "http" and targets.loopback_http and _is_loopback_name(host):
        return
    if parts.scheme != "https" or not host:
        raise InvalidInput("endpoint must be an https: URL of a push service.")
    if not targets.allows_host(host):
        raise InvalidInput(f"endpoint's host {host} is not one of WEB_PUSH_ALLOWED_HOSTS.")
    refused = InvalidInput("endpoint must be a push service on the public internet.")
    if host == "localhost" or host.endswith(INTERNAL_SUFFIXES) or "." not in host.strip("[]"):
        raise refused
    for address in await _addresses(host, port or 443):
        if not targets.allows_address(address):
            raise refused


def _is_loopback_name(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


async def _addresses(host: str, port: int) -> list[IpAddress]:
    """The host's addresses: itself if it is one, else what it resolves to now (none if it does not resolve:
    the send-time check still guards it)."""
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT_S):
            found = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError):
        return []
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in found]


class PublicOnlyResolver(AbstractResolver):
    """aiohttp's resolver, keeping only the addresses the policy allows; none left is a connection error."""

    def __init__(self, targets: PushTargets) -> None:
        self._targets = targets
        self._resolver = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._resolver.resolve(host, port, family)
        allowed = [r for r in results if self._targets.allows_address(ipaddress.ip_address(r["host"].split("%")[0]))]
        if not allowed or not self._targets.allows_host(host.lower().rstrip(".")):
            raise OSError(f"push to {host} refused: it is not a public push service")
        return allowed

    async def close(self) -> None:
        await self._resolver.close()


def host_list(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(v.strip().lower().rstrip(".") for v in values if v.strip())
