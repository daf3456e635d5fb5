"""Platform and privilege details of ICMP echo sockets: which mode, which options, per-packet control.

Linux values come from the uapi headers; Python's socket module lacks most of them.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import struct
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv6Address

from healthd.errors import ProbeFailure, from_os_error
from healthd.probes._sockets import bind_source
from healthd.results import ErrorKind

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
IP_RECVTTL = getattr(socket, "IP_RECVTTL", 12)  # cmsg IP_TTL: the TTL a packet arrived with
IPV6_RECVHOPLIMIT = getattr(socket, "IPV6_RECVHOPLIMIT", 51)  # cmsg IPV6_HOPLIMIT, likewise
PING_GROUP_RANGE = "/proc/sys/net/ipv4/ping_group_range"  # gates ICMPv6 datagram sockets too

ICMP_DATAGRAM, ICMP_RAW = "datagram", "raw"
#: a burst of replies (1000 loopback targets at once) must fit before the loop reads them
ICMP_RCVBUF = 4 * 1024 * 1024

Ancillary = Sequence[tuple[int, int, bytes]]  # sendmsg() control messages: (level, type, data)


def open_icmp_socket(
    family: socket.AddressFamily,
    wanted: tuple[int, ...],
    source: IPv4Address | IPv6Address | None = None,
    interface: str | None = None,
) -> tuple[socket.socket, str]:
    """A non-blocking ICMP socket for echo requests, and its mode: `datagram` or `raw`.

    With `source` and/or `interface` the socket itself is bound (`bind_source`): per
    packet, IPV6_PKTINFO is not enough. The kernel's ICMPv6 datagram path
    (`ping_v6_sendmsg`) overwrites its source with the socket's own, and its interface
    only prefers a route: with no route through it, IPv6 requests leave elsewhere.

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
            bind_source(sock, source, interface)
            if mode == ICMP_DATAGRAM and source is None:
                # bind now so the kernel picks the echo identifier (the local "port") before any send
                sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", 0))
        except OSError as exc:
            sock.close()
            raise from_os_error(exc, "cannot set up the ICMP socket") from exc
        except BaseException:
            sock.close()
            raise
        return sock, mode
    raise ProbeFailure(ErrorKind.PERMISSION, icmp_permission_advice())


def _setup_icmp_socket(sock: socket.socket, mode: str, wanted: tuple[int, ...]) -> None:
    sock.setblocking(False)
    v6 = sock.family == socket.AF_INET6
    # the kernel's receive time of each reply comes with it: RTTs do not wait for the loop
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    # and the TTL / hop limit it arrived with (blackbox_exporter's probe_icmp_reply_hop_limit)
    if v6:
        sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVHOPLIMIT, 1)
    else:
        sock.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
    try:  # beyond net.core.rmem_max needs CAP_NET_ADMIN; without it the kernel caps the size
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, ICMP_RCVBUF)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, ICMP_RCVBUF)
    if not v6:
        # a known starting point: no DF unless a check asks (see set_dont_fragment)
        sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DONT)
    if mode == ICMP_DATAGRAM:
        # ICMP errors about our requests reach a datagram socket only through its error queue
        if v6:
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVERR, 1)
        else:
            sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
        return
    if v6:
        blocked = [0xFFFFFFFF] * 8
        for kind in wanted:
            blocked[kind >> 5] &= ~(1 << (kind & 31))
        sock.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, struct.pack("8I", *blocked))
    else:
        passed = sum(1 << kind for kind in wanted if kind < 32)
        sock.setsockopt(SOL_RAW, ICMP_FILTER, struct.pack("I", ~passed & 0xFFFFFFFF))


class ReadinessWatch:
    """What the event loop watches for an ICMP socket: an epoll instance holding it, on Linux.

    A datagram socket reports each ICMP error about our requests (IP_RECVERR) as
    POLLERR until it is read. libuv, under uvloop, stops watching a descriptor at
    its first POLLERR (`uv__poll_io`; uvloop then runs the reader once and closes
    its poll handle), so the socket would go deaf after the first "unreachable".
    An epoll descriptor is only ever readable: it becomes so when the socket has a
    packet or an error, whichever loop watches it. Where epoll is missing, the
    socket itself is watched.
    """

    def __init__(self, sock: socket.socket) -> None:
        epoll = getattr(select, "epoll", None)
        self._epoll: select.epoll | None = None
        if epoll is not None:
            self._epoll = epoll(1)
            # level-triggered; EPOLLERR is always reported, so it needs no flag
            self._epoll.register(sock.fileno(), select.EPOLLIN)
        self.fd = self._epoll.fileno() if self._epoll is not None else sock.fileno()

    def close(self) -> None:
        if self._epoll is not None:
            self._epoll.close()


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
    except OSError as exc:
        raise ProbeFailure(ErrorKind.ERROR, f"no interface named {name!r}") from exc


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


def kernel_receive_time(ancdata: Sequence[tuple[int, int, bytes]]) -> int:
    """The SO_TIMESTAMPNS receive time of a packet in ns (CLOCK_REALTIME), or 0 if absent."""
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            seconds, nanoseconds = struct.unpack_from("qq", data)
            return int(seconds * 1_000_000_000 + nanoseconds)
    return 0


def reply_hop_limit(ancdata: Sequence[tuple[int, int, bytes]]) -> int | None:
    """The TTL (IPv4) or hop limit (IPv6) a packet arrived with, from IP_RECVTTL/IPV6_RECVHOPLIMIT."""
    ours = ((socket.IPPROTO_IP, socket.IP_TTL), (socket.IPPROTO_IPV6, IPV6_HOPLIMIT))
    for level, kind, data in ancdata:
        if (level, kind) in ours and len(data) >= 4:
            return int(struct.unpack_from("i", data)[0])
    return None
