"""Connections of the HTTP probe: sockets bound as the check asks, a phase clock, pools.

aiohttp owns the connection; these pieces plug into it. A connector per probe
(force-closed) gives one fresh TCP connection per probe; with `keepalive` the
check keeps one connector across probes. Names are resolved by the probes'
own resolver (bounded pool, `ip_family`, `source_ip`), one address per
attempt, no happy eyeballs: a check measures exactly one path.
"""

from __future__ import annotations

import asyncio
import socket
import time
import weakref
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.client_reqrep import ClientRequest
from aiohttp.connector import Connection
from aiohttp.tracing import Trace

from daemon.config import HttpCheck
from daemon.errors import ProbeError
from daemon.probes._http_tls import TlsInfo, describe
from daemon.probes._resolve import format_sockaddr, resolve
from daemon.probes._sockets import open_socket

PHASES = ("resolve", "connect", "tls", "processing", "transfer")
_FAMILIES = {"ipv4": socket.AF_INET, "ipv6": socket.AF_INET6}
# where a failure's time goes: the stage the exchange was in -> its phase
_STAGE_PHASE = {
    "resolve": "resolve",
    "connect": "connect",
    "tls": "tls",
    "request": "processing",
    "response": "transfer",
}


class PhaseClock:
    """Charges the time between aiohttp's trace events to the five phases."""

    def __init__(self) -> None:
        self.phases: dict[str, float] = dict.fromkeys(PHASES, 0.0)
        self.tls: TlsInfo | None = None
        self.address: str | None = None
        self._mark = time.perf_counter()
        self._tcp_done: float | None = None
        self.stage = "connect"  # or resolve, tls, request (being sent or answered), response

    def trace_config(self) -> aiohttp.TraceConfig:
        config = aiohttp.TraceConfig()
        config.on_connection_create_start.append(self._restart)
        config.on_dns_resolvehost_start.append(self._resolving)
        config.on_dns_resolvehost_end.append(self._resolved)
        config.on_request_redirect.append(self._headers)
        config.on_request_end.append(self._headers)
        return config

    def _charge(self, phase: str) -> None:
        now = time.perf_counter()
        self.phases[phase] += now - self._mark
        self._mark = now

    async def _restart(self, *_: object) -> None:
        self._mark = time.perf_counter()
        self.stage = "connect"

    async def _resolving(self, *_: object) -> None:
        self._mark = time.perf_counter()
        self.stage = "resolve"

    async def _resolved(self, *_: object) -> None:
        self._charge("resolve")
        self.stage = "connect"

    async def _headers(self, *_: object) -> None:
        self._charge("processing")
        self.stage = "response"

    def tcp_connected(self) -> None:
        self._tcp_done = time.perf_counter()
        self.stage = "tls"  # for http the connection is ready a moment later

    def connected(self, transport: asyncio.Transport | None) -> None:
        """A connection is ready (new or reused): split connect/TLS and note the peer."""
        ssl_object = transport.get_extra_info("ssl_object") if transport else None
        tcp_done, self._tcp_done = self._tcp_done, None
        if tcp_done is not None:  # a new connection
            now = time.perf_counter()
            self.phases["connect"] += tcp_done - self._mark
            self.phases["tls" if ssl_object is not None else "connect"] += now - tcp_done
            self._mark = now
        else:
            self._mark = time.perf_counter()
        self.tls = describe(ssl_object)
        self.stage = "request"
        peer = transport.get_extra_info("peername") if transport else None
        self.address = format_sockaddr(peer) if peer else None

    def body_read(self) -> None:
        self._charge("transfer")

    def interrupted(self) -> None:
        """The exchange failed: the time since the last event goes to the phase it failed in."""
        self._charge(_STAGE_PHASE[self.stage])


class _TimedSocket(socket.socket):
    """A TCP socket that tells the clock when the kernel reports the handshake done.

    asyncio's `sock_connect` calls `connect()` (which completes at once or raises
    EINPROGRESS) and, once the socket is writable, reads SO_ERROR: either is
    the moment the handshake ended.
    """

    clock: PhaseClock | None = None

    def connect(self, address: Any, /) -> None:
        super().connect(address)
        self._done()

    def getsockopt(self, level: int, option: int, buflen: int | None = None, /) -> Any:
        if buflen is not None:
            return super().getsockopt(level, option, buflen)
        value = super().getsockopt(level, option)
        if level == socket.SOL_SOCKET and option == socket.SO_ERROR and value == 0:
            self._done()
        return value

    def _done(self) -> None:
        if self.clock is not None:
            self.clock.tcp_connected()
            self.clock = None


@dataclass(frozen=True, slots=True)
class _Route:
    """How the check's sockets go out. A copy, not the check: a pool must not keep its check alive."""

    ip_family: str
    source_ip: IPv4Address | IPv6Address | None
    interface: str | None


class _Resolver(AbstractResolver):
    """Names go through the probes' own resolver: bounded pool, `ip_family`, `source_ip`."""

    def __init__(self, route: _Route) -> None:
        self._route = route

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found, addr = await resolve(host, port, self._route.ip_family, self._route.source_ip)
        flags = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV
        return [ResolveResult(hostname=host, host=addr[0], port=addr[1], family=found, proto=0, flags=flags)]

    async def close(self) -> None:
        return None


class ProbeConnector(aiohttp.TCPConnector):
    """One address per attempt (no happy eyeballs), sockets bound as the check asks."""

    def __init__(self, check: HttpCheck, clock: PhaseClock) -> None:
        self.clock = clock
        self.loop = asyncio.get_running_loop()
        self._route = _Route(check.ip_family, check.source_ip, check.interface)
        reuse: dict[str, Any] = {"force_close": True}
        if check.keepalive:
            # idle longer than a probe cycle means the check is gone: let the pool close it
            reuse = {"keepalive_timeout": check.interval + check.timeout + 1.0}
        super().__init__(
            resolver=_Resolver(self._route),
            use_dns_cache=False,
            happy_eyeballs_delay=None,
            socket_factory=self._open_socket,
            limit=0,
            **reuse,
        )

    def _open_socket(self, addr_info: Any) -> socket.socket:
        family, kind, proto, _, address = addr_info
        route = self._route
        wanted = _FAMILIES.get(route.ip_family)
        if wanted is not None and family != wanted:
            raise ProbeError(
                f"{address[0]} is IPv{6 if family == socket.AF_INET6 else 4}, "
                f"but the check asks for {route.ip_family}"
            )
        plain = open_socket(family, kind, proto, source_ip=route.source_ip, interface=route.interface)
        timed = _TimedSocket(plain.family, plain.type, plain.proto, fileno=plain.detach())
        timed.setblocking(False)
        timed.clock = self.clock
        return timed

    async def connect(
        self, req: ClientRequest, traces: list[Trace], timeout: aiohttp.ClientTimeout
    ) -> Connection:
        connection = await super().connect(req, traces, timeout)
        self.clock.connected(connection.transport)
        return connection


# keepalive: one connector per check object, closed when the check is dropped (e.g. at reload)
_pools: dict[int, ProbeConnector] = {}
_closing: set[asyncio.Future[None]] = set()


def connector_for(check: HttpCheck, clock: PhaseClock) -> tuple[ProbeConnector, bool]:
    """A fresh connector owned by this probe, or the check's pooled one (not owned)."""
    if not check.keepalive:
        return ProbeConnector(check, clock), True
    pooled = _pools.get(id(check))
    if pooled is None or pooled.closed or pooled.loop is not asyncio.get_running_loop():
        if pooled is None:
            weakref.finalize(check, _drop_pool, id(check))
        pooled = _pools[id(check)] = ProbeConnector(check, clock)
    pooled.clock = clock
    return pooled, False


def _drop_pool(key: int) -> None:
    connector = _pools.pop(key, None)
    if connector is None or connector.closed or connector.loop.is_closed():
        return
    closing = asyncio.ensure_future(connector.close(), loop=connector.loop)
    _closing.add(closing)
    closing.add_done_callback(_closing.discard)


async def close_pools() -> None:
    """Close every keepalive pool of the running loop (at shutdown)."""
    loop = asyncio.get_running_loop()
    for key, connector in list(_pools.items()):
        if connector.loop is loop:
            del _pools[key]
            if not connector.closed:
                await connector.close()
