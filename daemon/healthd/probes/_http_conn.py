"""Connections of the HTTP probe: kept sessions, sockets bound as the check asks, a phase clock.

aiohttp owns the connection; these pieces plug into it. A ClientSession and
connector built for every probe, with aiohttp's trace hooks, took over a
fifth of the probe's CPU (bench/http_cpu.py). So sessions are kept: one per
route (`ip_family`, `source_ip`, `interface`), shared by the checks that take
it, whose connector force-closes every connection after its response, so
each probe still opens a fresh TCP connection and does a fresh TLS
handshake; and, with `keepalive`, one per check, whose connector keeps its
connection between probes. Sessions live on the loop that made them until
`close_pools()` (at shutdown) or, for a keepalive check, until the check is
dropped. Per route rather than per check: a session and its connector take
~5 KB, which 10,000 checks would multiply.

Names are resolved by the probes' own resolver (bounded pool, `ip_family`,
`source_ip`), one address per attempt, no happy eyeballs: a check measures
exactly one path. The connector and resolver serve concurrent probes, so
each finds the clock of the probe it works for in a context variable.
"""

from __future__ import annotations

import asyncio
import atexit
import socket
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.client_reqrep import ClientRequest
from aiohttp.connector import Connection
from aiohttp.tracing import Trace

from healthd.config import HttpCheck
from healthd.errors import ProbeError
from healthd.probes._http_tls import TlsInfo, describe
from healthd.probes._resolve import format_sockaddr, resolve
from healthd.probes._sockets import open_socket

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

    def answered(self) -> None:
        """The final response's headers are in."""
        self._charge("processing")
        self.stage = "response"

    def body_read(self) -> None:
        self._charge("transfer")

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
    """How the check's sockets go out. A copy, not the check: a session must not keep its check alive."""

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
        clock = _running_clock.get()
        clock.resolving()
        found, addr = await resolve(host, port, self._route.ip_family, self._route.source_ip)
        clock.resolved()
        flags = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV
        return [ResolveResult(hostname=host, host=addr[0], port=addr[1], family=found, proto=0, flags=flags)]

    async def close(self) -> None:
        return None


class ProbeConnector(aiohttp.TCPConnector):
    """One address per attempt (no happy eyeballs), sockets bound as the route asks.

    Without a `keepalive_timeout`, every connection is closed after its response.
    """

    def __init__(self, route: _Route, keepalive_timeout: float | None) -> None:
        self._route = route
        reuse: dict[str, Any] = {"force_close": True}
        if keepalive_timeout is not None:
            reuse = {"keepalive_timeout": keepalive_timeout}
        super().__init__(
            resolver=_Resolver(route),
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
        timed.clock = _running_clock.get()
        return timed

    async def connect(
        self, req: ClientRequest, traces: list[Trace], timeout: aiohttp.ClientTimeout
    ) -> Connection:
        clock = _running_clock.get()
        clock.connecting()
        connection = await super().connect(req, traces, timeout)
        clock.connected(connection.transport)
        return connection


# ---- sessions kept between probes --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Kept:
    session: aiohttp.ClientSession
    loop: asyncio.AbstractEventLoop


# by route (fresh connections: shared by the route's checks) or by check id (keepalive)
_kept: dict[_Route | int, _Kept] = {}
_closing: set[asyncio.Future[None]] = set()


def session_for(check: HttpCheck) -> aiohttp.ClientSession:
    """The session the check's probes go through, made on first use on the running loop."""
    route = _Route(check.ip_family, check.source_ip, check.interface)
    key: _Route | int = id(check) if check.keepalive else route
    loop = asyncio.get_running_loop()
    kept = _kept.get(key)
    if kept is not None and kept.loop is loop and not kept.session.closed:
        return kept.session
    if kept is not None:
        _retire(kept)
    elif check.keepalive:
        # a keepalive pool goes with its check (e.g. when a reload replaces the check)
        weakref.finalize(check, _drop, key)
    # idle longer than a probe cycle means the check is gone: let the pool close it
    idle = check.interval + check.timeout + 1.0 if check.keepalive else None
    session = aiohttp.ClientSession(
        connector=ProbeConnector(route, idle),
        cookie_jar=aiohttp.DummyCookieJar(),  # no cookie of one probe reaches the next
    )
    _kept[key] = _Kept(session, loop)
    return session


def _drop(key: _Route | int) -> None:
    kept = _kept.pop(key, None)
    if kept is not None:
        _retire(kept)


def _retire(kept: _Kept) -> None:
    """Close a session no longer used: on its loop, or at once if that loop has ended."""
    if kept.session.closed:
        return
    if kept.loop.is_closed():
        # nothing can run there any more; a force-closing connector holds no connection
        # then, and detaching marks the session closed so that it does not warn when collected
        kept.session.detach()
        return
    closing = asyncio.ensure_future(kept.session.close(), loop=kept.loop)
    _closing.add(closing)
    closing.add_done_callback(_closing.discard)


async def close_pools() -> None:
    """Close every kept session: those of the running loop now (at shutdown), others on theirs."""
    loop = asyncio.get_running_loop()
    for key, kept in list(_kept.items()):
        del _kept[key]
        if kept.loop is loop:
            await kept.session.close()
        else:
            _retire(kept)


@atexit.register
def _forget_ended_loops() -> None:
    # a one-shot run (the CLI's `asyncio.run`) ends its loop without close_pools
    for key, kept in list(_kept.items()):
        if kept.loop.is_closed():
            del _kept[key]
            _retire(kept)
