"""ICMP echo messages (RFC 792 for IPv4, RFC 4443 for IPv6): build, parse, checksum.

Pure functions over bytes, no sockets. `parse_message` answers one question for
every packet an ICMP socket hands us: is it an echo reply, or an error that
quotes one of our echo requests? Anything else (other types, truncated or
corrupt packets) gives `None`, and the caller ignores it. `parse_queued_error`
answers the same for what a datagram socket's error queue holds instead.

Echo Request / Echo Reply (RFC 792 p.14; RFC 4443 §4.1-4.2, same layout):

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |     Type      |     Code      |          Checksum             |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |           Identifier          |        Sequence Number        |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |     Data ...
    +-+-+-+-+-

Destination Unreachable / Time Exceeded (RFC 792 p.4-6; RFC 4443 §3.1, §3.3):

    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |     Type      |     Code      |          Checksum             |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                 unused (IPv6: also unused)                    |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |  the invoking packet: its IP header, then at least 8 bytes     |
    |  of what followed it (for us: the echo request's header)       |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

A raw IPv4 socket delivers the IPv4 header in front of the ICMP message
(`ip_header=True`); datagram sockets and IPv6 sockets deliver the ICMP message
alone. The IPv4 checksum is ours to compute and to verify; the ICMPv6 checksum
covers a pseudo-header with both addresses, and the kernel computes and
verifies it for every ICMPv6 socket, so IPv6 messages leave with zero there.
"""

from __future__ import annotations

import socket
import struct
from types import MappingProxyType
from typing import NamedTuple

ECHO_REPLY_V4, DEST_UNREACH_V4, ECHO_REQUEST_V4, TIME_EXCEEDED_V4 = 0, 3, 8, 11
DEST_UNREACH_V6, TIME_EXCEEDED_V6, ECHO_REQUEST_V6, ECHO_REPLY_V6 = 1, 3, 128, 129

HEADER = struct.Struct("!BBHHH")  # type, code, checksum, identifier, sequence
ICMP_HEADER_LEN = HEADER.size  # 8
IPV4_MIN_HEADER_LEN = 20
IPV6_HEADER_LEN = 40
PROTO_ICMP, PROTO_ICMPV6 = 1, 58
EXTENDED_ERR = struct.Struct("=IBBBBII")  # struct sock_extended_err (<linux/errqueue.h>)
SO_EE_ORIGIN_ICMP, SO_EE_ORIGIN_ICMP6 = 2, 3

#: the ICMP types an echo socket needs to see, per family: everything else may be filtered
WANTED_TYPES_V4 = (ECHO_REPLY_V4, DEST_UNREACH_V4, TIME_EXCEEDED_V4)
WANTED_TYPES_V6 = (ECHO_REPLY_V6, DEST_UNREACH_V6, TIME_EXCEEDED_V6)

_ERROR_NAMES = MappingProxyType(
    {
        (False, DEST_UNREACH_V4): "destination unreachable",
        (False, TIME_EXCEEDED_V4): "time exceeded",
        (True, DEST_UNREACH_V6): "destination unreachable",
        (True, TIME_EXCEEDED_V6): "time exceeded",
    }
)
_CODE_TABLE = {
    (False, DEST_UNREACH_V4): {
        0: "net unreachable",
        1: "host unreachable",
        2: "protocol unreachable",
        3: "port unreachable",
        4: "fragmentation needed and DF set",
        5: "source route failed",
        6: "destination network unknown",
        7: "destination host unknown",
        9: "network administratively prohibited",
        10: "host administratively prohibited",
        13: "communication administratively prohibited",
    },
    (False, TIME_EXCEEDED_V4): {0: "TTL exceeded in transit", 1: "fragment reassembly time exceeded"},
    (True, DEST_UNREACH_V6): {
        0: "no route to destination",
        1: "communication administratively prohibited",
        2: "beyond scope of source address",
        3: "address unreachable",
        4: "port unreachable",
        5: "source address failed ingress/egress policy",
        6: "reject route to destination",
    },
    (True, TIME_EXCEEDED_V6): {0: "hop limit exceeded in transit", 1: "fragment reassembly time exceeded"},
}
_CODE_NAMES = MappingProxyType({key: MappingProxyType(names) for key, names in _CODE_TABLE.items()})
del _CODE_TABLE


class EchoReply(NamedTuple):
    ident: int
    seq: int
    payload: bytes


class EchoError(NamedTuple):
    """An ICMP error quoting an echo request we (or someone) sent to `destination`."""

    v6: bool
    type: int
    code: int
    destination: str  # where the quoted request was going
    ident: int
    seq: int

    def describe(self) -> str:
        """E.g. `destination unreachable (ICMP type 3, code 1: host unreachable)`."""
        name = _ERROR_NAMES.get((self.v6, self.type), "ICMP error")
        codes = _CODE_NAMES.get((self.v6, self.type))
        reason = codes.get(self.code) if codes is not None else None
        label = "ICMPv6" if self.v6 else "ICMP"
        return f"{name} ({label} type {self.type}, code {self.code}{': ' + reason if reason else ''})"


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071): one's complement of the one's-complement sum of 16-bit words.

    Since 2**16 = 1 (mod 0xFFFF), that sum is the whole message read as one big
    number, modulo 0xFFFF (RFC 1071 §2(B)); 0 stands for 0xFFFF unless every bit is 0.
    One C-level conversion instead of a Python loop over the words.
    """
    number = int.from_bytes(data, "big") << (8 if len(data) % 2 else 0)  # odd: pad with a zero byte
    total = number % 0xFFFF
    if total == 0 and number:
        total = 0xFFFF
    return ~total & 0xFFFF


def build_echo_request(ident: int, seq: int, payload: bytes, *, v6: bool) -> bytes:
    """An Echo Request; the IPv4 checksum is filled in, the ICMPv6 one is left to the kernel."""
    if v6:
        return HEADER.pack(ECHO_REQUEST_V6, 0, 0, ident, seq) + payload
    unsummed = HEADER.pack(ECHO_REQUEST_V4, 0, 0, ident, seq) + payload
    return HEADER.pack(ECHO_REQUEST_V4, 0, checksum(unsummed), ident, seq) + payload


def parse_message(data: bytes, *, v6: bool, ip_header: bool = False) -> EchoReply | EchoError | None:
    """An echo reply, an error quoting an echo request, or None for anything else."""
    if ip_header:
        data = _strip_ipv4_header(data)
    if len(data) < ICMP_HEADER_LEN:
        return None
    if not v6 and checksum(data) != 0:
        return None  # corrupt; the kernel does not verify for raw IPv4 sockets
    kind, code, _, ident, seq = HEADER.unpack_from(data)
    if kind == (ECHO_REPLY_V6 if v6 else ECHO_REPLY_V4):
        return EchoReply(ident, seq, bytes(data[ICMP_HEADER_LEN:]))
    if (v6, kind) in _ERROR_NAMES:
        return _parse_quote(data[ICMP_HEADER_LEN:], v6, kind, code)
    return None


def parse_quoted_request(data: bytes, *, v6: bool) -> tuple[int, int] | None:
    """(identifier, sequence) of an echo request header at the start of `data`, else None.

    This is what a datagram ICMP socket's error queue holds: the request the
    error was about, from its ICMP header on.
    """
    if len(data) < ICMP_HEADER_LEN:
        return None
    kind, _, _, ident, seq = HEADER.unpack_from(data)
    if kind != (ECHO_REQUEST_V6 if v6 else ECHO_REQUEST_V4):
        return None
    return ident, seq


def parse_queued_error(
    info: bytes, quoted: bytes, destination: str, *, v6: bool
) -> tuple[EchoError, str] | None:
    """An entry of a datagram socket's error queue as (error, who sent it), or None.

    `info` is the IP_RECVERR / IPV6_RECVERR control message: a struct
    sock_extended_err (errno u32, origin, type, code, pad u8, info, data u32),
    then the sockaddr of the host that sent the ICMP error. `quoted` is the
    request it was about, from its ICMP header on; `destination` where it went.
    """
    if len(info) < EXTENDED_ERR.size:
        return None
    _, origin, kind, code, _, _, _ = EXTENDED_ERR.unpack_from(info)
    if origin not in (SO_EE_ORIGIN_ICMP, SO_EE_ORIGIN_ICMP6):
        return None  # e.g. a local EMSGSIZE: the send itself reported it
    request = parse_quoted_request(quoted, v6=v6)
    if request is None:
        return None
    offender = info[EXTENDED_ERR.size :]
    if v6 and len(offender) >= 24:  # sockaddr_in6: family, port, flowinfo, address
        sender = socket.inet_ntop(socket.AF_INET6, offender[8:24])
    elif not v6 and len(offender) >= 8:  # sockaddr_in: family, port, address
        sender = socket.inet_ntop(socket.AF_INET, offender[4:8])
    else:
        sender = destination
    return EchoError(v6, kind, code, destination, *request), sender


def _strip_ipv4_header(data: bytes) -> bytes:
    if len(data) < IPV4_MIN_HEADER_LEN or data[0] >> 4 != 4 or data[9] != PROTO_ICMP:
        return b""
    header_len = (data[0] & 0x0F) * 4
    if header_len < IPV4_MIN_HEADER_LEN:
        return b""
    return data[header_len:]


def _parse_quote(quote: bytes, v6: bool, kind: int, code: int) -> EchoError | None:
    if v6:
        # a quoted IPv6 header with extension headers in between is not ours: we send none
        if len(quote) < IPV6_HEADER_LEN or quote[0] >> 4 != 6 or quote[6] != PROTO_ICMPV6:
            return None
        destination = socket.inet_ntop(socket.AF_INET6, quote[24:40])
        inner = quote[IPV6_HEADER_LEN:]
    else:
        if len(quote) < IPV4_MIN_HEADER_LEN or quote[0] >> 4 != 4 or quote[9] != PROTO_ICMP:
            return None
        header_len = (quote[0] & 0x0F) * 4
        if header_len < IPV4_MIN_HEADER_LEN:
            return None
        destination = socket.inet_ntop(socket.AF_INET, quote[16:20])
        inner = quote[header_len:]
    request = parse_quoted_request(inner, v6=v6)
    if request is None:
        return None
    return EchoError(v6, kind, code, destination, *request)
