"""Connections of the HTTP probe: sockets bound as the check asks, and a phase clock.

aiohttp owns the connection; these pieces plug into it (the sessions that
hold them are in `_http_sessions`).

Names are resolved by the probes' own resolver (bounded pool, `ip_family`,
`source_ip`), one address per attempt, no happy eyeballs: a check measures
exactly one path. The connector and resolver serve concurrent probes, so
each finds the clock of the probe it works for in a context variable.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from types import MappingProxyType
from typing import Any, cast

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.client_proto import ResponseHandler
from aiohttp.client_reqrep import ClientRequest
from aiohttp.connector import Connection
from aiohttp.tracing import Trace

from healthd.errors import ProbeFailure
from healthd.probes._http_tls import TlsInfo, describe
from healthd.probes._resolve import Resolver, format_sockaddr
from healthd.probes._sockets import data_arrived, open_socket
from healthd.results import ErrorKind

PHASES = ("resolve", "connect", "tls", "processing", "transfer")
_FAMILIES = MappingProxyType({"ipv4": socket.AF_INET, "ipv6": socket.AF_INET6})
# where a failure's time goes: the stage the exchange was in -> its phase
_STAGE_PHASE = MappingProxyType(
    {
        "resolve": "resolve",
        "connect": "connect",
        "tls": "tls",
        "request": "processing",
        "response": "transfer",
    }
)


class PhaseClock:
    """Charges the time between the exchange's events to the five phases.

    The events come from our connector and resolver (connection wanted,
    name resolved, TCP handshake done, connection ready) and from the probe
    (response headers in, body read). aiohttp's tracing hooks would tell
    most of them too, but with any trace config set aiohttp builds and
    awaits an event object at every step of every request.
    """

    def __init__(self) -> None:
        self.phases: dict[str, float] = dict.fromkeys(PHASES, 0.0)
        self.tls: TlsInfo | None = None
        self.address: str | None = None
        self._mark = time.perf_counter()
        self._tcp_done: float | None = None
        self._protocol: TimedHandler | None = None  # the connection's, which notes arrivals
        self.stage = "connect"  # or resolve, tls, request (being sent or answered), response

    def _charge(self, phase: str) -> None:
        now = time.perf_counter()
        self.phases[phase] += now - self._mark
        self._mark = now

    def connecting(self) -> None:
        """aiohttp wants a connection: for the first request, or for the next after a redirect."""
        if self.stage == "request":
            # the previous request was answered with a redirect: its wait was processing
            self._charge("processing")
        else:
            self._mark = time.perf_counter()
        self.stage = "connect"

    def resolving(self) -> None:
        self._mark = time.perf_counter()
        self.stage = "resolve"

    def resolved(self) -> None:
        self._charge("resolve")
        self.stage = "connect"

    def tcp_connected(self) -> None:
        self._tcp_done = time.perf_counter()
        self.stage = "tls"  # for http the connection is ready a moment later

    def connected(self, transport: asyncio.Transport | None, protocol: ResponseHandler | None) -> None:
        """A connection is ready (new or reused): split connect/TLS and note the peer."""
        self._protocol = protocol if isinstance(protocol, TimedHandler) else None
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

    def answered(self) -> None:
        """The final response's headers are in."""
        self._charge_until_arrival("processing")
        self.stage = "response"

    def body_read(self) -> None:
        self._charge_until_arrival("transfer")

    def _charge_until_arrival(self, phase: str) -> None:
        """Charge up to when the data reached the kernel, not to now: on a busy loop the
        task runs late, and that wait is ours, not the server's or the network's."""
        now = time.perf_counter()
        arrived = self._protocol.arrived if self._protocol is not None else None
        end = now if arrived is None else min(max(arrived, self._mark), now)
        self.phases[phase] += end - self._mark
        self._mark = end

    def so_far(self) -> dict[str, float]:
        """The phases with the running one charged up to now (the clock is left as it is)."""
        phases = dict(self.phases)
        phases[_STAGE_PHASE[self.stage]] += time.perf_counter() - self._mark
        return phases

    def interrupted(self) -> None:
        """The exchange failed: the time since the last event goes to the phase it failed in."""
        self._charge(_STAGE_PHASE[self.stage])


_running_clock: ContextVar[PhaseClock] = ContextVar("http_probe_clock")


@contextmanager
def timing(clock: PhaseClock) -> Iterator[None]:
    """Within this block, the connector and resolver report to `clock` (this task's probe)."""
    token = _running_clock.set(clock)
    try:
        yield
    finally:
        _running_clock.reset(token)


class TimedHandler(ResponseHandler):
    """aiohttp's response protocol, noting when the latest data reached the kernel.

    `data_received` runs when the loop reads the socket, which on a busy loop is later
    than the data came: TCP_INFO says how much later (`_sockets.data_arrived`), read here
    while the connection is surely open (a `Connection: close` answer's FIN may close it
    before the probe's task runs).
    """

    arrived: float | None = None  # on the perf_counter clock

    def data_received(self, data: bytes) -> None:
        if data and self.transport is not None:
            self.arrived = data_arrived(self.transport.get_extra_info("socket"), time.perf_counter())
        super().data_received(data)


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
class Route:
    """How the check's sockets go out. A copy, not the check: a session must not keep its check alive."""

    ip_family: str
    source_ip: IPv4Address | IPv6Address | None
    interface: str | None


class _Resolver(AbstractResolver):
    """Names go through the probes' own resolver: bounded pool, `ip_family`, `source_ip`."""

    def __init__(self, route: Route, resolver: Resolver) -> None:
        self._route = route
        self._resolver = resolver

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        clock = _running_clock.get()
        clock.resolving()
        found, addr = await self._resolver.resolve(host, port, self._route.ip_family, self._route.source_ip)
        clock.resolved()
        flags = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV
        return [ResolveResult(hostname=host, host=addr[0], port=addr[1], family=found, proto=0, flags=flags)]

    async def close(self) -> None:
        return None


class ProbeConnector(aiohttp.TCPConnector):
    """One address per attempt (no happy eyeballs), sockets bound as the route asks.

    Without a `keepalive_timeout`, every connection is closed after its response.
    """

    def __init__(self, route: Route, resolver: Resolver, keepalive_timeout: float | None) -> None:
        self._route = route
        reuse: dict[str, Any] = {"force_close": True}
        if keepalive_timeout is not None:
            reuse = {"keepalive_timeout": keepalive_timeout}
        super().__init__(
            resolver=_Resolver(route, resolver),
            use_dns_cache=False,
            happy_eyeballs_delay=None,
            socket_factory=self._open_socket,
            limit=0,
            **reuse,
        )
        # aiohttp builds each connection's protocol from this factory (the TLS path too)
        timed = functools.partial(TimedHandler, loop=self._loop)
        self._factory = cast("functools.partial[ResponseHandler]", timed)

    def _open_socket(self, addr_info: Any) -> socket.socket:
        family, kind, proto, _, address = addr_info
        route = self._route
        wanted = _FAMILIES.get(route.ip_family)
        if wanted is not None and family != wanted:
            raise ProbeFailure(
                ErrorKind.ERROR,
                f"{address[0]} is IPv{6 if family == socket.AF_INET6 else 4}, "
                f"but the check asks for {route.ip_family}",
            )
        plain = open_socket(family, kind, proto, source_ip=route.source_ip, interface=route.interface)
        timed = _TimedSocket(plain.family, plain.type, plain.proto, fileno=plain.detach())
        timed.setblocking(False)
        timed.clock = _running_clock.get()
        return timed

    async def connect(
        self, req: ClientRequest, traces: list[Trace], timeout: aiohttp.ClientTimeout
    ) -> Connection:
        clock = _running_clock.get()
        clock.connecting()
        connection = await super().connect(req, traces, timeout)
        clock.connected(connection.transport, connection.protocol)
        return connection
