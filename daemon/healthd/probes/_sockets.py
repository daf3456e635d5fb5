"""Platform and privilege details of probe sockets, in one place.

Probes call these helpers and never test the platform themselves.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from healthd.config import HostPortCheck
from healthd.errors import ProbeError, ProbePermissionError, from_os_error
from healthd.probes._resolve import SockAddr, format_sockaddr, resolve

# Linux values; the socket module does not export all of them everywhere.
SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)
TCP_QUICKACK = getattr(socket, "TCP_QUICKACK", None)
TCP_INFO = getattr(socket, "TCP_INFO", None)

# struct tcp_info (include/uapi/linux/tcp.h): eight one-byte fields, then u32s and u64s.
# Byte offsets of the fields read here, and the length that covers them (Linux >= 4.2).
_TCPI_RTT = 68  # u32 tcpi_rtt, smoothed RTT in microseconds
_TCPI_TOTAL_RETRANS = 100  # u32 tcpi_total_retrans
_TCPI_SEGS_OUT = 136  # u32 tcpi_segs_out, segments this socket has sent
_TCPI_LENGTH = 144


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
        bind_source(sock, source_ip, interface)
    except BaseException:
        sock.close()
        raise
    return sock


async def open_stream_for(check: HostPortCheck) -> tuple[socket.socket, SockAddr, float]:
    """Resolve a check's HOST:PORT and open a bound, non-blocking TCP socket for it.

    Returns the socket (the caller closes it), the address to connect to, and the
    seconds the resolution took (the probe's `resolve` phase).
    """
    started = time.perf_counter()
    family, addr = await resolve(check.host, check.port, check.ip_family, check.source_ip)
    resolving = time.perf_counter() - started
    sock = open_socket(family, socket.SOCK_STREAM, source_ip=check.source_ip, interface=check.interface)
    return sock, addr, resolving


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
                raise ProbePermissionError(
                    f"binding to interface {interface} needs CAP_NET_RAW on this kernel"
                ) from exc
            if exc.errno == errno.ENODEV:
                raise ProbeError(f"no interface named {interface!r}") from exc
            raise from_os_error(exc, f"cannot bind to interface {interface}") from exc
    if source_ip is not None:
        if (source_ip.version == 6) != (sock.family == socket.AF_INET6):
            raise ProbeError(
                f"source_ip {source_ip} cannot reach an IPv{4 if source_ip.version == 6 else 6} target"
            )
        try:
            sock.bind((str(source_ip), 0))
        except OSError as exc:
            if exc.errno == errno.EADDRNOTAVAIL:
                raise ProbeError(f"source_ip {source_ip} is not an address of this host") from exc
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


def socket_error(sock: socket.socket) -> OSError | None:
    """The pending error of a non-blocking connect (SO_ERROR), as an OSError."""
    code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    return OSError(code, os.strerror(code)) if code else None


async def connect(sock: socket.socket, addr: SockAddr) -> None:
    """Connect a non-blocking stream socket, waiting on the event loop's own selector.

    `addr` is already resolved. One writer registration per call, and no more:
    asyncio's `sock_connect` would also re-check the address, raise and catch
    EINPROGRESS and chain two callbacks, about a sixth of a TCP probe's CPU.
    OS errors come out translated (refused, unreachable, permission, ...).
    """
    try:
        code = sock.connect_ex(addr)
    except OSError as exc:  # e.g. an address the socket's family cannot take
        raise from_os_error(exc, f"connect to {format_sockaddr(addr)}") from None
    if code == errno.EINPROGRESS:
        loop = asyncio.get_running_loop()
        writable = loop.create_future()
        loop.add_writer(sock.fileno(), _set_done, writable)
        try:
            await writable
        finally:  # also on cancellation: the fd must leave the selector before it closes
            loop.remove_writer(sock.fileno())
        code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if code:
        raise from_os_error(OSError(code, os.strerror(code)), f"connect to {format_sockaddr(addr)}")


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


# ---- ICMP echo sockets -----------------------------------------------------------------
# Linux values from the uapi headers; Python's socket module lacks most of them.
SOL_RAW = getattr(socket, "SOL_RAW", 255)
ICMP_FILTER = 1  # <linux/icmp.h>, SOL_RAW: a u32 mask, a set bit drops that ICMP type (< 32)
ICMP6_FILTER = 1  # <linux/icmpv6.h>, IPPROTO_ICMPV6: a 256-bit mask, a set bit drops that type
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
IP_MTU_DISCOVER = getattr(socket, "IP_MTU_DISCOVER", 10)
IP_PMTUDISC_DONT, IP_PMTUDISC_DO = 0, 2
IP_RECVERR = getattr(socket, "IP_RECVERR", 11)
IPV6_RECVERR = getattr(socket, "IPV6_RECVERR", 25)
IPV6_PKTINFO = getattr(socket, "IPV6_PKTINFO", 50)
IPV6_HOPLIMIT = getattr(socket, "IPV6_HOPLIMIT", 52)
IPV6_DONTFRAG = getattr(socket, "IPV6_DONTFRAG", 62)
PING_GROUP_RANGE = "/proc/sys/net/ipv4/ping_group_range"  # gates ICMPv6 datagram sockets too

ICMP_DATAGRAM, ICMP_RAW = "datagram", "raw"
#: a burst of replies (1000 loopback targets at once) must fit before the loop reads them
ICMP_RCVBUF = 4 * 1024 * 1024

Ancillary = Sequence[tuple[int, int, bytes]]  # sendmsg() control messages: (level, type, data)


def open_icmp_socket(family: socket.AddressFamily, wanted: tuple[int, ...]) -> tuple[socket.socket, str]:
    """A non-blocking ICMP socket for echo requests, and its mode: `datagram` or `raw`.

    Datagram ("ping") sockets need no privilege when `net.ipv4.ping_group_range`
    admits the process's group; the kernel then assigns the echo identifier (the
    socket's port) and delivers only replies to it. Raw sockets need CAP_NET_RAW
    and see every ICMP packet of the host, so the kernel filter keeps only
    `wanted` types. With neither, the probe fails with kind `permission`.
    """
    proto = socket.IPPROTO_ICMPV6 if family == socket.AF_INET6 else socket.IPPROTO_ICMP
    for kind, mode in ((socket.SOCK_DGRAM, ICMP_DATAGRAM), (socket.SOCK_RAW, ICMP_RAW)):
        try:
            sock = socket.socket(family, kind, proto)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EPERM):
                continue
            raise from_os_error(exc, "cannot open an ICMP socket") from exc
        try:
            _setup_icmp_socket(sock, mode, wanted)
        except OSError as exc:
            sock.close()
            raise from_os_error(exc, "cannot set up the ICMP socket") from exc
        except BaseException:
            sock.close()
            raise
        return sock, mode
    raise ProbePermissionError(icmp_permission_advice())


def _setup_icmp_socket(sock: socket.socket, mode: str, wanted: tuple[int, ...]) -> None:
    sock.setblocking(False)
    v6 = sock.family == socket.AF_INET6
    # the kernel's receive time of each reply comes with it: RTTs do not wait for the loop
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    try:  # beyond net.core.rmem_max needs CAP_NET_ADMIN; without it the kernel caps the size
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, ICMP_RCVBUF)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, ICMP_RCVBUF)
    if not v6:
        # a known starting point: no DF unless a check asks (see set_dont_fragment)
        sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DONT)
    if mode == ICMP_DATAGRAM:
        # bind now so the kernel picks the echo identifier (the local "port") before any send
        sock.bind(("::" if v6 else "0.0.0.0", 0))
        # ICMP errors about our requests reach a datagram socket only through its error queue
        if v6:
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVERR, 1)
        else:
            sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
    elif v6:
        blocked = [0xFFFFFFFF] * 8
        for kind in wanted:
            blocked[kind >> 5] &= ~(1 << (kind & 31))
        sock.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, struct.pack("8I", *blocked))
    else:
        passed = sum(1 << kind for kind in wanted if kind < 32)
        sock.setsockopt(SOL_RAW, ICMP_FILTER, struct.pack("I", ~passed & 0xFFFFFFFF))


def ping_group_range() -> str | None:
    """`net.ipv4.ping_group_range` of this network namespace, e.g. "1 0" (nobody), or None."""
    try:
        with open(PING_GROUP_RANGE) as file:
            return " ".join(file.read().split())
    except OSError:
        return None


def icmp_permission_advice() -> str:
    """Why no ICMP socket could be opened, and the two ways to fix it."""
    span = ping_group_range()
    where = f'net.ipv4.ping_group_range is "{span}", which' if span else "net.ipv4.ping_group_range"
    return (
        f"no ICMP socket: {where} does not admit group {os.getegid()} for unprivileged ICMP, "
        "and raw ICMP needs CAP_NET_RAW; fix either: add AmbientCapabilities=CAP_NET_RAW to the "
        "systemd unit (or run as root), or allow the group with "
        'sysctl -w net.ipv4.ping_group_range="0 2147483647" (persist it in /etc/sysctl.d/)'
    )


def interface_index(name: str) -> int:
    """The index of interface `name`, for per-packet egress selection (IP_PKTINFO)."""
    try:
        return socket.if_nametoindex(name)
    except OSError:
        raise ProbeError(f"no interface named {name!r}") from None


def echo_ancillary(
    family: socket.AddressFamily,
    *,
    ttl: int | None,
    source: IPv4Address | IPv6Address | None,
    ifindex: int,
    dont_fragment: bool,
) -> Ancillary:
    """Per-packet options of a shared ICMP socket, as sendmsg() control messages.

    A socket shared by every check cannot be bound to one check's source address
    or interface, nor carry one check's TTL: each request says so itself.
    (IPv4's DF bit has no control message: see `set_dont_fragment`.)
    """
    messages: list[tuple[int, int, bytes]] = []
    if family == socket.AF_INET6:
        if ttl is not None:
            messages.append((socket.IPPROTO_IPV6, IPV6_HOPLIMIT, struct.pack("i", ttl)))
        if source is not None or ifindex:
            address = source.packed if source is not None else bytes(16)
            messages.append((socket.IPPROTO_IPV6, IPV6_PKTINFO, address + struct.pack("I", ifindex)))
        if dont_fragment:
            messages.append((socket.IPPROTO_IPV6, IPV6_DONTFRAG, struct.pack("i", 1)))
        return messages
    if ttl is not None:
        messages.append((socket.IPPROTO_IP, socket.IP_TTL, struct.pack("i", ttl)))
    if source is not None or ifindex:
        # struct in_pktinfo: ifindex, spec_dst (the source to use), addr (ignored on send)
        address = source.packed if source is not None else bytes(4)
        messages.append((socket.IPPROTO_IP, IP_PKTINFO, struct.pack("i", ifindex) + address + bytes(4)))
    return messages


def set_dont_fragment(sock: socket.socket, on: bool) -> None:
    """Set or clear DF on an IPv4 socket's next datagrams (path MTU discovery "do" / "don't")."""
    sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO if on else IP_PMTUDISC_DONT)


def is_local_address(address: IPv4Address | IPv6Address) -> bool:
    """Whether `address` belongs to this host (in this network namespace)."""
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((str(address), 0))
        except OSError:
            return False
    return True
