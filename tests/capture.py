"""A small packet capture for tests: AF_PACKET on one interface, kernel timestamps, parsed headers.

Usage::

    with Capture("hdh123") as cap:            # or Capture(ns.ns_if, ns=ns) inside a namespace
        ...                                   # make traffic
        cap.wait_for(lambda p: p.is_tcp and p.flags & RST, timeout=1.0)
    packets = cap.packets                     # list[Packet], in arrival order

The socket is `SOCK_DGRAM`, so the kernel strips the link header and the same code reads
veth, loopback and TUN devices. Each packet carries the kernel's receive/transmit
timestamp (`SO_TIMESTAMPNS`, CLOCK_REALTIME): differences between them are the wire
truth for RTTs. A capture is bounded both in packets kept and in seconds it runs.
The parsing functions are pure (bytes in, `Packet | None` out) and tested with literals.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.netlab import Namespace

ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
PACKET_OUTGOING = 4
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)

# TCP flag bits (byte 13 of the TCP header)
FIN, SYN, RST, PSH, ACK, URG = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20

PROTO_ICMP, PROTO_TCP, PROTO_UDP, PROTO_ICMPV6 = 1, 6, 17, 58
_IPV6_EXTENSIONS = {0, 43, 60}  # hop-by-hop, routing, destination options: skipped over


@dataclass(frozen=True, slots=True)
class Packet:
    """One IP packet as seen on the interface. Transport fields are None when they do not apply."""

    time: float  # kernel timestamp, seconds (CLOCK_REALTIME); 0.0 for packets parsed from literals
    outgoing: bool  # sent by this host (PACKET_OUTGOING) rather than received
    version: int  # 4 or 6
    src: str
    dst: str
    proto: int  # IP protocol / final IPv6 next header
    sport: int | None = None  # TCP/UDP
    dport: int | None = None
    seq: int | None = None  # TCP sequence number, or ICMP echo sequence
    ack: int | None = None  # TCP acknowledgement number
    flags: int | None = None  # TCP flags byte
    icmp_type: int | None = None  # ICMP or ICMPv6
    icmp_code: int | None = None
    icmp_id: int | None = None  # echo request/reply only
    payload: bytes = b""  # what follows the transport header

    @property
    def is_tcp(self) -> bool:
        return self.proto == PROTO_TCP

    @property
    def is_icmp(self) -> bool:
        return self.proto in (PROTO_ICMP, PROTO_ICMPV6)

    @property
    def tcp_flags(self) -> str:
        """tcpdump's notation: `S`, `S.`, `R.`, `.` (pure ACK), `F.`, `P.`; empty for non-TCP."""
        if self.flags is None:
            return ""
        named = ((SYN, "S"), (FIN, "F"), (RST, "R"), (PSH, "P"))
        letters = "".join(c for bit, c in named if self.flags & bit)
        return letters + ("." if self.flags & ACK else "")

    def summary(self) -> str:
        """One line in the spirit of tcpdump, for failure messages and reports."""
        if self.is_tcp:
            return (
                f"{_hostport(self.src, self.sport)} > {_hostport(self.dst, self.dport)}: "
                f"Flags [{self.tcp_flags}], seq {self.seq}, ack {self.ack}"
            )
        if self.is_icmp:
            return (
                f"{self.src} > {self.dst}: ICMP type {self.icmp_type} code {self.icmp_code} "
                f"id {self.icmp_id} seq {self.seq}"
            )
        return f"{self.src} > {self.dst}: proto {self.proto}"


def _hostport(host: str, port: int | None) -> str:
    return f"{host}.{port}"


# ---- pure parsing --------------------------------------------------------------------


def parse_ip(data: bytes, *, stamp: float = 0.0, outgoing: bool = False) -> Packet | None:
    """Parse an IPv4 or IPv6 packet (no link header); None for anything else or truncated."""
    if not data:
        return None
    version = data[0] >> 4
    if version == 4:
        return _parse_ipv4(data, stamp, outgoing)
    if version == 6:
        return _parse_ipv6(data, stamp, outgoing)
    return None


def _parse_ipv4(data: bytes, stamp: float, outgoing: bool) -> Packet | None:
    #  0                   1                   2                   3
    # |Version|  IHL  |Type of Service|          Total Length         |
    # |         Identification        |Flags|      Fragment Offset    |
    # |  Time to Live |    Protocol   |         Header Checksum       |
    # |                       Source Address                          |
    # |                    Destination Address                        |   (RFC 791)
    header_len = (data[0] & 0x0F) * 4
    if header_len < 20 or len(data) < header_len:
        return None
    total = struct.unpack_from("!H", data, 2)[0]
    proto = data[9]
    src = str(ipaddress.IPv4Address(data[12:16]))
    dst = str(ipaddress.IPv4Address(data[16:20]))
    body = data[header_len : total if header_len <= total <= len(data) else len(data)]
    return _transport(4, src, dst, proto, body, stamp, outgoing)


def _parse_ipv6(data: bytes, stamp: float, outgoing: bool) -> Packet | None:
    # |Version| Traffic Class |           Flow Label                  |
    # |         Payload Length        |  Next Header  |   Hop Limit   |
    # |                Source Address (128 bits)                      |
    # |             Destination Address (128 bits)                    |   (RFC 8200)
    if len(data) < 40:
        return None
    payload_len, next_header = struct.unpack_from("!HB", data, 4)
    src = str(ipaddress.IPv6Address(data[8:24]))
    dst = str(ipaddress.IPv6Address(data[24:40]))
    body = data[40 : 40 + payload_len]
    for _ in range(8):  # a bounded walk over extension headers
        if next_header not in _IPV6_EXTENSIONS:
            break
        if len(body) < 8:
            return None
        next_header, ext_len = body[0], (body[1] + 1) * 8
        body = body[ext_len:]
    return _transport(6, src, dst, next_header, body, stamp, outgoing)


def _transport(
    version: int, src: str, dst: str, proto: int, body: bytes, stamp: float, outgoing: bool
) -> Packet | None:
    base = Packet(time=stamp, outgoing=outgoing, version=version, src=src, dst=dst, proto=proto)
    if proto == PROTO_TCP:
        return _parse_tcp(base, body)
    if proto == PROTO_UDP:
        if len(body) < 8:
            return None
        sport, dport = struct.unpack_from("!HH", body)
        return replace(base, sport=sport, dport=dport, payload=body[8:])
    if proto in (PROTO_ICMP, PROTO_ICMPV6):
        return _parse_icmp(base, body)
    return replace(base, payload=body)


def _parse_tcp(base: Packet, body: bytes) -> Packet | None:
    # |          Source Port          |       Destination Port        |
    # |                        Sequence Number                        |
    # |                    Acknowledgment Number                      |
    # |  Data |       |C|E|U|A|P|R|S|F|                               |
    # | Offset|  Rsrvd|W|C|R|C|S|S|Y|I|            Window             |   (RFC 9293)
    if len(body) < 20:
        return None
    sport, dport, seq, ack, offset, flags = struct.unpack_from("!HHIIBB", body)
    data_offset = (offset >> 4) * 4
    if data_offset < 20 or data_offset > len(body):
        return None
    return replace(base, sport=sport, dport=dport, seq=seq, ack=ack, flags=flags, payload=body[data_offset:])


def _parse_icmp(base: Packet, body: bytes) -> Packet | None:
    # |     Type      |     Code      |          Checksum             |
    # |           Identifier          |        Sequence Number        |   (echo: RFC 792, RFC 4443)
    if len(body) < 8:
        return None
    kind, code = body[0], body[1]
    echo = (0, 8) if base.proto == PROTO_ICMP else (128, 129)
    if kind in echo:
        ident, seq = struct.unpack_from("!HH", body, 4)
        return replace(base, icmp_type=kind, icmp_code=code, icmp_id=ident, seq=seq, payload=body[8:])
    # errors and others: the payload keeps the quoted original packet (after the 4 unused bytes)
    return replace(base, icmp_type=kind, icmp_code=code, payload=body[8:])


def parse_timestamp(ancillary: list[tuple[int, int, bytes]]) -> float | None:
    """The SCM_TIMESTAMPNS control message of a recvmsg() as seconds, if present."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            seconds, nanoseconds = struct.unpack_from("qq", data)
            return float(seconds + nanoseconds / 1e9)
    return None


# ---- capture -------------------------------------------------------------------------


class Capture:
    """Capture IP packets on `interface` in a background thread while the context is open.

    Bounded: keeps at most `max_packets` (then stops) and stops `max_seconds` after start.
    `ns` opens the socket inside that namespace (the interface lives there). `keep` filters
    what is stored (e.g. one TCP port), so a busy interface does not fill the bound.
    """

    def __init__(
        self,
        interface: str,
        *,
        ns: Namespace | None = None,
        keep: Callable[[Packet], bool] | None = None,
        max_packets: int = 10_000,
        max_seconds: float = 30.0,
    ) -> None:
        self.interface = interface
        self._ns = ns
        self._keep = keep
        self._max_packets = max_packets
        self._max_seconds = max_seconds
        self._packets: list[Packet] = []
        self._lock = threading.Condition()
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    @property
    def packets(self) -> list[Packet]:
        with self._lock:
            return list(self._packets)

    def __enter__(self) -> Capture:
        self._sock = self._ns.call(self._open) if self._ns is not None else self._open()
        self._thread = threading.Thread(target=self._run, name=f"capture-{self.interface}", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop capturing (idempotent): the thread ends within one receive timeout."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        if self._sock is not None:
            self._sock.close()

    def wait_for(self, predicate: Callable[[Packet], bool], timeout: float = 1.0, count: int = 1) -> bool:
        """Wait until `count` stored packets match `predicate`, at most `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while sum(1 for p in self._packets if predicate(p)) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stop.is_set():
                    return False
                self._lock.wait(min(remaining, 0.05))
        return True

    def _open(self) -> socket.socket:
        # protocol 0 receives nothing until bind(): no packet of another interface slips in
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            sock.bind((self.interface, ETH_P_ALL))
            sock.settimeout(0.05)
        except BaseException:
            sock.close()
            raise
        return sock

    def _run(self) -> None:
        assert self._sock is not None
        deadline = time.monotonic() + self._max_seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                data, ancillary, _, address = self._sock.recvmsg(65535, 64)
            except TimeoutError:
                continue
            except OSError:
                break  # closed under us
            stamp = parse_timestamp(ancillary) or time.time()
            packet = parse_ip(data, stamp=stamp, outgoing=address[2] == PACKET_OUTGOING)
            if packet is None or (self._keep is not None and not self._keep(packet)):
                continue
            with self._lock:
                self._packets.append(packet)
                self._lock.notify_all()
                if len(self._packets) >= self._max_packets:
                    break
        self._stop.set()
