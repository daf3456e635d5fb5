"""ICMP echo packets: checksum, build and parse, against byte literals worked out by hand."""

from __future__ import annotations

import socket
import struct

import pytest
from healthd.probes._icmp_packet import (
    EchoError,
    EchoReply,
    build_echo_request,
    checksum,
    parse_message,
    parse_queued_error,
    parse_quoted_request,
)

# Echo Request, id 0x1234, seq 7, data "ping": the words 0800 0000 1234 0007 7069 6e67
# add up to f90b, whose complement is 06f4.
REQUEST_V4 = bytes.fromhex("080006f4 12340007 70696e67")
REPLY_V4 = bytes.fromhex("00000ef4 12340007 70696e67")  # type 0: the sum drops by 0800
# the same reply behind the IPv4 header a raw socket reads (127.0.0.9 -> 127.0.0.1)
RAW_REPLY_V4 = bytes.fromhex("450000201234000040016a9f7f0000097f000001") + REPLY_V4
# ... and behind a 24-byte header (IHL 6, one word of options)
RAW_REPLY_V4_OPTIONS = bytes.fromhex("46000024123400004001699b7f0000097f00000100000000") + REPLY_V4
# Destination Unreachable (3), code 1 (host), quoting the IPv4 header of a request
# 10.0.0.1 -> 192.0.2.7 and the request's first 8 bytes
UNREACH_V4 = bytes.fromhex("0301dbcf00000000 450000201234000040019ca10a000001c0000207 080006f412340007")
REQUEST_V6 = bytes.fromhex("80000000 12340007 70696e67")  # checksum left to the kernel
REPLY_V6 = bytes.fromhex("81000000 12340007 70696e67")
# Time Exceeded (3), code 0, quoting an IPv6 header fd00::1 -> 2001:db8::7 (next header 58)
TIME_EXCEEDED_V6 = (
    bytes.fromhex("03000000 00000000")  # type, code, checksum (kernel's), unused
    + bytes.fromhex("60000000 000c 3a 01")  # version 6, payload 12 bytes, next header 58, hop limit 1
    + bytes.fromhex("fd00 0000 0000 0000 0000 0000 0000 0001")
    + bytes.fromhex("2001 0db8 0000 0000 0000 0000 0000 0007")
    + REQUEST_V6
)


def test_checksum_of_rfc1071_example() -> None:
    # RFC 1071 §3: 0001 f203 f4f5 f6f7 sums to ddf2; the checksum is its complement
    assert checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D


def test_checksum_pads_odd_length_with_zero() -> None:
    assert checksum(b"\x01") == checksum(b"\x01\x00") == 0xFEFF


def test_checksum_of_zeros_and_of_a_summed_message() -> None:
    assert checksum(b"") == 0xFFFF
    assert checksum(bytes(8)) == 0xFFFF
    assert checksum(REQUEST_V4) == 0  # a message with its checksum in place sums to all ones
    assert checksum(bytes.fromhex("ffff")) == 0


def test_build_ipv4_request() -> None:
    assert build_echo_request(0x1234, 7, b"ping", v6=False) == REQUEST_V4


def test_build_ipv6_request_leaves_checksum_zero() -> None:
    assert build_echo_request(0x1234, 7, b"ping", v6=True) == REQUEST_V6


def test_build_empty_payload() -> None:
    # 0800 + 0001 = 0801 -> f7fe
    assert build_echo_request(1, 0, b"", v6=False) == bytes.fromhex("0800f7fe00010000")


@pytest.mark.parametrize(
    ("data", "ip_header"),
    [(REPLY_V4, False), (RAW_REPLY_V4, True), (RAW_REPLY_V4_OPTIONS, True)],
    ids=["datagram", "raw", "raw-with-ip-options"],
)
def test_parse_ipv4_reply(data: bytes, ip_header: bool) -> None:
    assert parse_message(data, v6=False, ip_header=ip_header) == EchoReply(0x1234, 7, b"ping")


def test_parse_ipv6_reply() -> None:
    assert parse_message(REPLY_V6, v6=True) == EchoReply(0x1234, 7, b"ping")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        REPLY_V4[:7],  # truncated header
        REQUEST_V4,  # our own request, seen on a raw socket
        bytes.fromhex("00000ef5") + REPLY_V4[4:],  # checksum off by one: corrupt
        REPLY_V4[:-1] + b"h",  # data changed in flight: corrupt
        bytes.fromhex("0d00f2ff00000000"),  # timestamp request (type 13): not ours
    ],
    ids=["empty", "truncated", "request", "bad-checksum", "bad-data", "other-type"],
)
def test_parse_rejects_what_is_not_a_reply(data: bytes) -> None:
    assert parse_message(data, v6=False) is None


@pytest.mark.parametrize(
    "data",
    [
        RAW_REPLY_V4[:19],  # shorter than an IPv4 header
        b"\x60" + RAW_REPLY_V4[1:],  # version 6 in an IPv4 socket
        RAW_REPLY_V4[:9] + b"\x06" + RAW_REPLY_V4[10:],  # protocol TCP
        b"\x44" + RAW_REPLY_V4[1:],  # IHL 4: impossible
    ],
    ids=["short", "version", "protocol", "ihl"],
)
def test_parse_rejects_bad_ipv4_header(data: bytes) -> None:
    assert parse_message(data, v6=False, ip_header=True) is None


def test_parse_ipv6_rejects_echo_request_and_truncated() -> None:
    assert parse_message(REQUEST_V6, v6=True) is None
    assert parse_message(REPLY_V6[:6], v6=True) is None


def test_parse_ipv4_unreachable_quoting_our_request() -> None:
    error = parse_message(UNREACH_V4, v6=False)
    assert error == EchoError(False, 3, 1, "192.0.2.7", 0x1234, 7)
    assert isinstance(error, EchoError)
    assert error.describe() == "destination unreachable (ICMP type 3, code 1: host unreachable)"


def test_parse_ipv6_time_exceeded_quoting_our_request() -> None:
    error = parse_message(TIME_EXCEEDED_V6, v6=True)
    assert error == EchoError(True, 3, 0, "2001:db8::7", 0x1234, 7)
    assert isinstance(error, EchoError)
    assert error.describe() == "time exceeded (ICMPv6 type 3, code 0: hop limit exceeded in transit)"


def test_unknown_code_is_still_described() -> None:
    assert EchoError(False, 3, 99, "192.0.2.7", 1, 1).describe() == (
        "destination unreachable (ICMP type 3, code 99)"
    )


def resummed(message: bytes) -> bytes:
    """`message` with its ICMP checksum recomputed, so that only the change under test is wrong."""
    zeroed = message[:2] + b"\0\0" + message[4:]
    return message[:2] + checksum(zeroed).to_bytes(2, "big") + message[4:]


def test_resummed_keeps_a_valid_message() -> None:
    assert resummed(UNREACH_V4) == UNREACH_V4


@pytest.mark.parametrize(
    "data",
    [
        UNREACH_V4[:30],  # the quote stops inside the IPv4 header
        UNREACH_V4[:-2],  # the quoted request lost its sequence number
        UNREACH_V4[:17] + b"\x11" + UNREACH_V4[18:],  # quoted packet is UDP
        UNREACH_V4[:8] + b"\x44" + UNREACH_V4[9:],  # quoted IHL 4: impossible
        UNREACH_V4[:28] + b"\x00" + UNREACH_V4[29:],  # quoted ICMP is an echo reply
    ],
    ids=["short-ip", "short-echo", "udp", "ihl", "not-a-request"],
)
def test_parse_rejects_errors_not_about_an_echo_request(data: bytes) -> None:
    assert parse_message(resummed(data), v6=False) is None


def test_parse_rejects_corrupt_error() -> None:
    assert parse_message(UNREACH_V4[:-1] + b"\x08", v6=False) is None


def test_parse_ipv6_error_quote_must_be_icmpv6() -> None:
    udp_quote = TIME_EXCEEDED_V6[:14] + b"\x11" + TIME_EXCEEDED_V6[15:]
    assert parse_message(udp_quote, v6=True) is None
    assert parse_message(TIME_EXCEEDED_V6[:40], v6=True) is None


def test_parse_quoted_request_from_error_queue() -> None:
    assert parse_quoted_request(REQUEST_V4, v6=False) == (0x1234, 7)
    assert parse_quoted_request(REQUEST_V6, v6=True) == (0x1234, 7)
    assert parse_quoted_request(REPLY_V4, v6=False) is None
    assert parse_quoted_request(REQUEST_V4[:7], v6=False) is None


# An error-queue entry as the kernel fills it (host byte order): sock_extended_err with
# errno EHOSTUNREACH (113), origin ICMP (2), type 3, code 1, then the sender's sockaddr_in.
QUEUED_INFO_V4 = struct.pack("=IBBBBII", 113, 2, 3, 1, 0, 0, 0) + struct.pack(
    "=HH4s8x", socket.AF_INET, 0, bytes([10, 200, 1, 2])
)
QUEUED_INFO_V6 = struct.pack("=IBBBBII", 113, 3, 1, 3, 0, 0, 0) + struct.pack(
    "=HHI16sI", socket.AF_INET6, 0, 0, bytes.fromhex("fd00 0200 0001 0000 0000 0000 0000 0002"), 0
)


def test_parse_queued_error_ipv4() -> None:
    parsed = parse_queued_error(QUEUED_INFO_V4, REQUEST_V4, "10.200.1.9", v6=False)
    assert parsed == (EchoError(False, 3, 1, "10.200.1.9", 0x1234, 7), "10.200.1.2")


def test_parse_queued_error_ipv6() -> None:
    parsed = parse_queued_error(QUEUED_INFO_V6, REQUEST_V6, "fd00:200:1::9", v6=True)
    assert parsed == (EchoError(True, 1, 3, "fd00:200:1::9", 0x1234, 7), "fd00:200:1::2")


def test_parse_queued_error_without_sender_names_the_destination() -> None:
    parsed = parse_queued_error(QUEUED_INFO_V4[:16], REQUEST_V4, "10.200.1.9", v6=False)
    assert parsed is not None and parsed[1] == "10.200.1.9"


def test_parse_queued_error_ignores_local_errors_and_other_packets() -> None:
    local = struct.pack("=IBBBBII", 90, 1, 0, 0, 0, 0, 1500)  # origin LOCAL: EMSGSIZE
    assert parse_queued_error(local, REQUEST_V4, "10.200.1.9", v6=False) is None
    assert parse_queued_error(QUEUED_INFO_V4, REPLY_V4, "10.200.1.9", v6=False) is None
    assert parse_queued_error(QUEUED_INFO_V4[:15], REQUEST_V4, "10.200.1.9", v6=False) is None
