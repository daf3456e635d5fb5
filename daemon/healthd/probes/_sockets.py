"""Platform and privilege details of TCP probe sockets: open, bind, connect, linger, TCP_INFO.

Probes call these helpers and never test the platform themselves. (ICMP
sockets have theirs in `_icmp_open`.)
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from healthd.config import HostPortCheck
from healthd.errors import ProbeFailure, from_connect_error, from_os_error
from healthd.probes._interfaces import interface_problem
from healthd.probes._resolve import Resolver, SockAddr, format_sockaddr
from healthd.probes.base import Done
from healthd.results import ErrorKind, ProbeOutcome

# Linux values; the socket module does not export all of them everywhere.
SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)
TCP_QUICKACK = getattr(socket, "TCP_QUICKACK", None)
TCP_INFO = getattr(socket, "TCP_INFO", None)
IP_RECVERR = getattr(socket, "IP_RECVERR", 11)
IPV6_RECVERR = getattr(socket, "IPV6_RECVERR", 25)

# struct tcp_info (include/uapi/linux/tcp.h): eight one-byte fields, then u32s and u64s.
# Byte offsets of the fields read here, and the length that covers them (Linux >= 4.2).
_TCPI_LAST_DATA_RECV = 52  # u32 tcpi_last_data_recv: ms since data last arrived, counted in jiffies
_TCPI_RTT = 68  # u32 tcpi_rtt, smoothed RTT in microseconds
_TCPI_TOTAL_RETRANS = 100  # u32 tcpi_total_retrans
_TCPI_SEGS_OUT = 136  # u32 tcpi_segs_out, segments this socket has sent
_TCPI_LENGTH = 144
# the kernel's tick (1/HZ), which the coarse clock's resolution is; tcpi_last_data_recv counts in it
_CLOCK_MONOTONIC_COARSE = getattr(time, "CLOCK_MONOTONIC_COARSE", 6)
try:
    _JIFFY = time.clock_getres(_CLOCK_MONOTONIC_COARSE)
except OSError:
    _JIFFY = 0.01  # HZ=100, the coarsest tick Linux builds with


def open_socket(
    family: socket.AddressFamily,
    kind: socket.SocketKind,
    proto: int = 0,
    *,
    source_ip: IPv4Address | IPv6Address | None = None,
    interface: str | None = None,
) -> socket.socket:
    """A non-blocking socket bound as the check asks; closed again if binding fails."""
    try:
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise from_os_error(exc, "cannot open socket") from exc
    try:
        sock.setblocking(False)
        report_icmp_errors(sock, family)
        bind_source(sock, source_ip, interface)
    except BaseException:
        sock.close()
        raise
    return sock


async def open_stream_for(check: HostPortCheck, resolver: Resolver) -> tuple[socket.socket, SockAddr, float]:
    """Resolve a check's HOST:PORT and open a bound, non-blocking TCP socket for it.

    Returns the socket (the caller closes it), the address to connect to, and the
    seconds the resolution took (the probe's `resolve` phase).
    """
    started = time.perf_counter()
    family, addr = await resolver.resolve(check.host, check.port, check.ip_family, check.source_ip)
    resolving = time.perf_counter() - started
    sock = open_socket(family, socket.SOCK_STREAM, source_ip=check.source_ip, interface=check.interface)
    return sock, addr, resolving


def report_icmp_errors(sock: socket.socket, family: socket.AddressFamily) -> None:
    """Let an ICMP error about our SYN fail connect() at once (`unreachable`, not a timeout).

    Without IPV6_RECVERR, Linux 6.x takes the first ICMPv6 Destination Unreachable in
    SYN_SENT as a soft error and retries the SYN a second later: a probe's timeout
    usually ends first. (IPv4 fails at once already; the option costs nothing there.)
    """
    # `family` is passed in: `sock.family` builds an IntEnum in Python on every read
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVERR, 1)
    elif family == socket.AF_INET:
        sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)


def bind_source(
    sock: socket.socket,
    source_ip: IPv4Address | IPv6Address | None,
    interface: str | None,
) -> None:
    """Pin the probe to an egress interface (SO_BINDTODEVICE) and/or a source address."""
    if interface:
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, interface.encode())
        except OSError as exc:
            if exc.errno in (errno.EPERM, errno.EACCES):
                raise ProbeFailure(
                    ErrorKind.PERMISSION, f"binding to interface {interface} needs CAP_NET_RAW on this kernel"
                ) from exc
            if exc.errno == errno.ENODEV:
                raise ProbeFailure(ErrorKind.ERROR, f"no interface named {interface!r}") from exc
            raise from_os_error(exc, f"cannot bind to interface {interface}") from exc
        # down, or (with no source_ip) without an address of the family: say so, not a timeout
        problem = interface_problem(interface, sock.family if source_ip is None else None)
        if problem is not None:
            raise ProbeFailure(ErrorKind.ERROR, problem)
    if source_ip is not None:
        if (source_ip.version == 6) != (sock.family == socket.AF_INET6):
            raise ProbeFailure(
                ErrorKind.ERROR,
                f"source_ip {source_ip} cannot reach an IPv{4 if source_ip.version == 6 else 6} target",
            )
        try:
            sock.bind((str(source_ip), 0))
        except OSError as exc:
            if exc.errno == errno.EADDRNOTAVAIL:
                message = f"source_ip {source_ip} is not an address of this host"
                raise ProbeFailure(ErrorKind.ERROR, message) from exc
            raise from_os_error(exc, f"cannot bind source_ip {source_ip}") from exc


def set_zero_linger(sock: socket.socket) -> None:
    """Make close() send RST at once instead of FIN (and leave no TIME_WAIT)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def disable_quickack(sock: socket.socket) -> bool:
    """Ask the kernel to hold back the handshake's final ACK; False where unsupported."""
    if TCP_QUICKACK is None:
        return False
    try:
        sock.setsockopt(socket.IPPROTO_TCP, TCP_QUICKACK, 0)
    except OSError:
        return False
    return True


async def connect(sock: socket.socket, addr: SockAddr) -> None:
    """Connect a non-blocking stream socket, waiting on the event loop's own selector.

    `addr` is already resolved. One writer registration per call, and no more:
    asyncio's `sock_connect` would also re-check the address, raise and catch
    EINPROGRESS and chain two callbacks, about a sixth of a TCP probe's CPU.
    OS errors come out translated (refused, unreachable, permission, ...).
    """
    code = _connect_ex(sock, addr)
    if code == errno.EINPROGRESS:
        loop = asyncio.get_running_loop()
        writable = loop.create_future()
        loop.add_writer(sock.fileno(), _set_done, writable)
        try:
            await writable
        finally:  # also on cancellation: the fd must leave the selector before it closes
            loop.remove_writer(sock.fileno())
        code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    _raise_for(code, addr)


Connected = Callable[[socket.socket, SockAddr, float], ProbeOutcome]


class Connecting:
    """`connect` for the scheduler's fast path: one writer callback, no future, no task.

    Takes ownership of `sock` and connects it to `addr`. When the connect succeeds,
    `connected(sock, addr, seconds)` reads what it needs from the still open socket
    (seconds: connect() to writable) and returns the outcome; then the socket is
    closed and `done(outcome)` called. A failed connect (translated as in `connect`)
    or an exception from `connected` closes it too and calls `done(exception)`.
    An error of connect() itself raises, with the socket closed. `cancel()` closes it
    and no `done` follows.
    """

    __slots__ = ("_addr", "_connected", "_done", "_fd", "_loop", "_sock", "_started", "_watching")

    def __init__(self, sock: socket.socket, addr: SockAddr, connected: Connected, done: Done) -> None:
        self._sock, self._addr, self._connected, self._done = sock, addr, connected, done
        self._watching = False
        try:
            self._loop = asyncio.get_running_loop()
            self._fd = sock.fileno()
            self._started = time.perf_counter()
            code = _connect_ex(sock, addr)
            if code == errno.EINPROGRESS:
                self._loop.add_writer(self._fd, self._writable)
                self._watching = True
        except BaseException:
            sock.close()
            raise
        if not self._watching:
            self._complete(code)

    def cancel(self) -> ProbeOutcome | Exception:
        self._unwatch()
        self._sock.close()
        return ProbeOutcome()  # as the coroutine: a connect cut off by the deadline measured nothing

    def _writable(self) -> None:
        self._unwatch()
        self._complete(self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))

    def _unwatch(self) -> None:
        if self._watching:
            self._watching = False
            self._loop.remove_writer(self._fd)

    def _complete(self, code: int) -> None:
        seconds = time.perf_counter() - self._started
        result: ProbeOutcome | Exception
        try:
            with self._sock:
                _raise_for(code, self._addr)
                result = self._connected(self._sock, self._addr, seconds)
        except Exception as exc:  # the scheduler turns it into a result, as run_probe does
            result = exc
        self._done(result)


def _connect_ex(sock: socket.socket, addr: SockAddr) -> int:
    try:
        return sock.connect_ex(addr)
    except OSError as exc:  # e.g. an address the socket's family cannot take
        raise from_os_error(exc, f"connect to {format_sockaddr(addr)}") from exc


def _raise_for(code: int, addr: SockAddr) -> None:
    if code:
        error = OSError(code, os.strerror(code))
        raise from_connect_error(error, f"connect to {format_sockaddr(addr)}") from error


def _set_done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


@dataclass(frozen=True, slots=True)
class Handshake:
    """What the kernel knows about a handshake that just completed (from TCP_INFO)."""

    rtt: float | None  # seconds, SYN sent -> SYN-ACK received; None if unknown
    ack_sent: bool | None  # did we already send the ACK that completes it? None if unknown


def handshake_info(sock: socket.socket) -> Handshake:
    """Read TCP_INFO right after connect: the handshake RTT and whether our ACK went out.

    Right after the handshake `tcpi_rtt` holds the one sample the kernel has, taken from
    its own timestamps of the SYN and the SYN-ACK. `tcpi_segs_out` counts our SYN (and
    its retransmissions): anything beyond those is the ACK. The kernel fills TCP_INFO
    under the socket lock, after it has finished processing the SYN-ACK, so no ACK it
    sends for it can be missed.
    """
    if TCP_INFO is None:
        return Handshake(None, None)
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, TCP_INFO, _TCPI_LENGTH)
    except OSError:
        return Handshake(None, None)
    rtt: float | None = None
    if len(info) >= _TCPI_RTT + 4:
        rtt_us: int = struct.unpack_from("I", info, _TCPI_RTT)[0]
        # 0: no sample (only a retransmitted SYN was answered, and TCP timestamps are off)
        rtt = rtt_us / 1e6 if rtt_us else None
    ack_sent: bool | None = None
    if len(info) >= _TCPI_SEGS_OUT + 4:
        retransmits: int = struct.unpack_from("I", info, _TCPI_TOTAL_RETRANS)[0]
        segs_out: int = struct.unpack_from("I", info, _TCPI_SEGS_OUT)[0]
        ack_sent = segs_out > 1 + retransmits
    return Handshake(rtt, ack_sent)


def data_arrived(sock: Any, now: float) -> float:
    """When, on `now`'s clock, data last arrived on this connection: at most `now`.

    On a busy loop the data is read some time after the kernel queued it; TCP_INFO's
    `tcpi_last_data_recv` says how long ago that was, in whole jiffies. One jiffy is
    taken off, so the time given is never before the true arrival (on an idle loop it is
    `now`). `sock` is a transport's socket (`get_extra_info("socket")`), open.
    """
    if TCP_INFO is None or sock is None:
        return now
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, TCP_INFO, _TCPI_LENGTH)
    except OSError:
        return now
    if len(info) < _TCPI_LAST_DATA_RECV + 4:
        return now
    age_ms: int = struct.unpack_from("I", info, _TCPI_LAST_DATA_RECV)[0]
    return now - max(age_ms / 1000 - _JIFFY, 0.0)
