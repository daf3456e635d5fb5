"""Name resolution for probes: IP literals skip the resolver; names go to a bounded pool.

A dedicated executor keeps a burst of slow lookups from starving the loop's
default pool (which would turn into fake DNS timeouts elsewhere). It belongs
to the probes' resources (`Resolver`), so it ends with them.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
from concurrent.futures import ThreadPoolExecutor
from ipaddress import IPv4Address, IPv6Address
from types import MappingProxyType

from healthd.errors import ProbeFailure
from healthd.probes.base import ProbeResources, SharedResource
from healthd.results import ErrorKind

SockAddr = tuple[str, int] | tuple[str, int, int, int]

RESOLVER_THREADS = 8
_FAMILIES = MappingProxyType({"auto": socket.AF_UNSPEC, "ipv4": socket.AF_INET, "ipv6": socket.AF_INET6})


class Resolver(SharedResource):
    """The probes' name lookups, on a pool of their own."""

    def __init__(self, resources: ProbeResources) -> None:
        super().__init__(resources)
        self._executor: ThreadPoolExecutor | None = None  # started by the first name (not literal)

    async def resolve(
        self,
        host: str,
        port: int,
        ip_family: str = "auto",
        source_ip: IPv4Address | IPv6Address | None = None,
    ) -> tuple[socket.AddressFamily, SockAddr]:
        """Return (family, sockaddr) of the address to probe.

        With `ip_family: auto` the resolver's order is kept (RFC 6724), except that
        a configured `source_ip` picks the family it can reach.
        """
        literal = self.literal(host, port, ip_family, source_ip)
        if literal is not None:
            return literal
        wanted = _wanted(ip_family, source_ip)
        if self._executor is None:
            self._executor = ThreadPoolExecutor(RESOLVER_THREADS, thread_name_prefix="healthd-dns")
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.run_in_executor(
                self._executor, socket.getaddrinfo, host, port, wanted, socket.SOCK_STREAM
            )
        except socket.gaierror as exc:
            raise ProbeFailure(ErrorKind.DNS, f"cannot resolve {host!r}: {exc.strerror}") from exc
        if not infos:
            raise ProbeFailure(ErrorKind.DNS, f"{host!r} has no {ip_family} address")
        family, _, _, _, sockaddr = infos[0]
        return socket.AddressFamily(family), sockaddr  # type: ignore[return-value]

    def literal(
        self,
        host: str,
        port: int,
        ip_family: str = "auto",
        source_ip: IPv4Address | IPv6Address | None = None,
    ) -> tuple[socket.AddressFamily, SockAddr] | None:
        """`resolve` without awaiting, for an address literal; None for a name (that needs the pool)."""
        literal = _literal(host)
        if literal is None:
            return None
        family = socket.AF_INET6 if literal.version == 6 else socket.AF_INET
        if _wanted(ip_family, source_ip) not in (socket.AF_UNSPEC, family):
            raise ProbeFailure(
                ErrorKind.ERROR,
                f"{host} is IPv{literal.version}, but the check asks for {ip_family}"
                + (f" (source_ip {source_ip})" if source_ip else ""),
            )
        return family, _sockaddr(family, host, port)

    async def aclose(self) -> None:
        if self._executor is not None:
            # lookups still running finish in their threads; nobody waits for them
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


def _wanted(ip_family: str, source_ip: IPv4Address | IPv6Address | None) -> socket.AddressFamily:
    wanted = _FAMILIES[ip_family]
    if wanted == socket.AF_UNSPEC and source_ip is not None:
        wanted = socket.AF_INET6 if source_ip.version == 6 else socket.AF_INET
    return wanted


@functools.lru_cache(maxsize=4096)  # parsing is slow pure Python; checks reuse their targets
def _literal(host: str) -> IPv4Address | IPv6Address | None:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None


def _sockaddr(family: socket.AddressFamily, host: str, port: int) -> SockAddr:
    if family == socket.AF_INET6 and "%" in host:
        # a scoped link-local literal needs the resolver to fill in the scope id
        info = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST)
        return info[0][4]  # type: ignore[return-value]
    return (host, port)


def format_sockaddr(addr: SockAddr) -> str:
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


#: blackbox_exporter's gauge of the address family probed, with its meaning
IP_PROTOCOL = "probe_ip_protocol"
IP_PROTOCOL_HELP = "IP protocol of the address the last probe used (4 or 6)"


def ip_protocol(host: str) -> float:
    """4.0 or 6.0 for an address literal (an IPv6 one, bracketed or not, has a colon)."""
    return 6.0 if ":" in host else 4.0
