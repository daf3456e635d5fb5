"""The capture fixture: pure parsing against byte literals, and one live capture on loopback."""

from __future__ import annotations

import socket
import struct

from tests.capture import (
    ACK,
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_UDP,
    RST,
    SYN,
    Capture,
    parse_ip,
    parse_timestamp,
)

# IPv4 10.200.1.1.33774 > 10.200.1.2.20000: Flags [S], seq 3622256274
SYN_V4 = bytes.fromhex("4500002800014000400600000ac801010ac8010283ee4e20d7e73e92000000005002faf000000000")
# IPv6 [fd00:200:1::2].8080 > [fd00:200:1::1].40000: Flags [S.], seq 1000, ack 3622256275
SYNACK_V6 = bytes.fromhex(
    "6000000000140640fd000200000100000000000000000002fd000200000100000000000000000001"
    "1f909c40000003e8d7e73e935012faf000000000"
)
# ICMP echo request 127.0.0.1 > 127.0.0.2, id 0x1234 seq 7, payload "hi"
ECHO_V4 = bytes.fromhex("4500001e00014000400100007f0000017f00000208000000123400076869")
# ICMPv6 echo reply ::1 > ::1, id 0x4321 seq 9
ECHO_REPLY_V6 = bytes.fromhex(
    "6000000000083a4000000000000000000000000000000001000000000000000000000000000000018100000043210009"
)
# UDP 10.0.0.1.5000 > 10.0.0.2.53, payload "ab"
UDP_V4 = bytes.fromhex("4500001e00014000401100000a0000010a00000213880035000a00006162")
# IPv6 with a hop-by-hop header, then ICMPv6 destination unreachable (port), quoting "quoted"
UNREACH_V6_HBH = bytes.fromhex(
    "6000000000160040fd000000000000000000000000000001fd000000000000000000000000000002"
    "3a00000000000000010400000000000071756f746564"
)


def test_ipv4_tcp_syn() -> None:
    p = parse_ip(SYN_V4, stamp=1.5, outgoing=True)
    assert p is not None
    assert (p.version, p.src, p.dst, p.sport, p.dport) == (4, "10.200.1.1", "10.200.1.2", 33774, 20000)
    assert (p.seq, p.ack, p.flags, p.tcp_flags) == (3622256274, 0, SYN, "S")
    assert p.time == 1.5 and p.outgoing and p.is_tcp
    assert p.summary() == "10.200.1.1.33774 > 10.200.1.2.20000: Flags [S], seq 3622256274, ack 0"


def test_ipv6_tcp_syn_ack() -> None:
    p = parse_ip(SYNACK_V6)
    assert p is not None
    assert (p.version, p.src, p.dst) == (6, "fd00:200:1::2", "fd00:200:1::1")
    assert (p.sport, p.dport, p.seq, p.ack) == (8080, 40000, 1000, 3622256275)
    assert p.flags == SYN | ACK and p.tcp_flags == "S."


def test_tcp_flag_notation() -> None:
    def with_flags(flags: int) -> str:
        data = bytearray(SYN_V4)
        data[20 + 13] = flags
        p = parse_ip(bytes(data))
        assert p is not None
        return p.tcp_flags

    assert with_flags(RST | ACK) == "R."
    assert with_flags(ACK) == "."
    assert with_flags(RST) == "R"
    assert with_flags(0x11) == "F."


def test_icmp_echo_v4_and_v6() -> None:
    request = parse_ip(ECHO_V4)
    assert request is not None and request.proto == PROTO_ICMP and request.is_icmp
    assert (request.icmp_type, request.icmp_code, request.icmp_id, request.seq) == (8, 0, 0x1234, 7)
    assert request.payload == b"hi"
    reply = parse_ip(ECHO_REPLY_V6)
    assert reply is not None and reply.proto == PROTO_ICMPV6
    assert (reply.icmp_type, reply.icmp_id, reply.seq) == (129, 0x4321, 9)


def test_udp_ports_and_payload() -> None:
    p = parse_ip(UDP_V4)
    assert p is not None and p.proto == PROTO_UDP
    assert (p.sport, p.dport, p.payload) == (5000, 53, b"ab")


def test_ipv6_extension_header_is_skipped_and_icmp_error_keeps_the_quote() -> None:
    p = parse_ip(UNREACH_V6_HBH)
    assert p is not None and p.proto == PROTO_ICMPV6
    assert (p.icmp_type, p.icmp_code, p.icmp_id) == (1, 4, None)
    assert p.payload == b"quoted"


def test_not_ours_or_truncated_is_none() -> None:
    assert parse_ip(b"") is None
    assert parse_ip(b"\x00" * 40) is None  # version 0
    assert parse_ip(SYN_V4[:30]) is None  # TCP header cut short
    assert parse_ip(SYNACK_V6[:39]) is None
    assert parse_ip(bytes([0x44]) + SYN_V4[1:]) is None  # IHL below 5 words


def test_timestamp_control_message() -> None:
    stamp = struct.pack("qq", 1700000000, 250_000_000)
    assert parse_timestamp([(socket.SOL_SOCKET, 35, stamp)]) == 1700000000.25
    assert parse_timestamp([(socket.SOL_SOCKET, 29, stamp)]) is None
    assert parse_timestamp([]) is None


def test_live_capture_on_loopback_sees_a_udp_datagram() -> None:
    from tests.netlab import skip_unless_root

    skip_unless_root()
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with receiver, sender:
        receiver.bind(("127.0.0.1", 0))
        port = receiver.getsockname()[1]
        with Capture("lo", keep=lambda p: p.dport == port, max_seconds=5) as cap:
            sender.sendto(b"capture-me", ("127.0.0.1", port))
            assert cap.wait_for(lambda p: not p.outgoing, timeout=2.0)
    seen = [p for p in cap.packets if not p.outgoing]
    assert seen[0].payload == b"capture-me"
    assert seen[0].time > 1e9  # a real kernel timestamp, not the 0.0 default
