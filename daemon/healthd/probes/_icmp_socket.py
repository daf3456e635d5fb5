"""A shared ICMP echo socket (one per address family, see `icmp.EchoSockets`) and its reply demultiplexer.

On the wire: ICMP Echo Requests (ICMPv6 type 128 for IPv6) from one socket per
family, whatever the number of checks; their Echo Replies, and any Destination
Unreachable or Time Exceeded that quotes one of them, come back to that socket.
One reader registered on the event loop (`loop.add_reader`, on the socket's
`ReadinessWatch`, so that libuv's handling of POLLERR cannot unregister it)
reads them all and hands each to the round waiting for it, by (source address, identifier,
sequence); everything else (foreign, truncated, corrupt, late or duplicate
packets) is dropped there.

Identifier: a datagram socket's is its local "port", assigned by the kernel,
which rewrites our requests with it and delivers only matching replies; a raw
socket's is random. Sequence numbers are per socket and never reused while a
request to the same address is unanswered.

Time: each request is stamped just before `sendto` on the monotonic clock; each
reply with the kernel's receive timestamp (SO_TIMESTAMPNS, CLOCK_REALTIME)
moved onto the monotonic clock, so the time the reply waits for the loop is
not counted.
"""

from __future__ import annotations

import asyncio
import random
import socket
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address

from healthd.errors import ProbeFailure, from_os_error
from healthd.probes._icmp_open import (
    ICMP_DATAGRAM,
    IP_RECVERR,
    IPV6_RECVERR,
    Ancillary,
    ReadinessWatch,
    is_local_address,
    kernel_receive_time,
    reply_hop_limit,
    set_dont_fragment,
)
from healthd.probes._icmp_packet import (
    EchoError,
    EchoReply,
    build_echo_request,
    parse_message,
    parse_queued_error,
)
from healthd.results import ErrorKind

READ_BATCH = 256  # packets read per wake-up before the loop gets a turn again
DRAIN_EVERY = 64  # sends in a row before the socket is read in between (keeps the buffer from overflowing)
RECV_BUFFER = 65_600  # the largest ICMP message plus an IPv4 header
_ANC_SPACE = socket.CMSG_SPACE(16) + socket.CMSG_SPACE(4)  # struct timespec, the TTL (an int)
_ERR_ANC_SPACE = 512

Key = tuple[str, int]  # (address, sequence)


@dataclass(eq=False, slots=True)
class EchoRound:
    """One probe's echo requests to one address, and what came back."""

    address: str  # canonical text form, as replies report their source
    sockaddr: tuple[str, int] | tuple[str, int, int, int]
    count: int
    interval: float  # seconds between requests
    payload: bytes
    ancillary: Ancillary
    dont_fragment: bool
    source: IPv4Address | IPv6Address | None = None
    sent_ns: list[int] = field(default_factory=list)
    rtt_ns: list[int | None] = field(default_factory=list)
    received: int = 0
    hop_limit: int | None = None  # TTL / hop limit of the last reply, when the kernel said
    icmp_error: EchoError | None = None
    error_from: str = ""  # who sent the ICMP error
    failure: ProbeFailure | None = None  # a send that failed after the first one
    keys: list[Key] = field(default_factory=list, init=False)  # (address, seq) of each request
    done: asyncio.Future[None] | None = field(default=None, init=False)
    deadline_timer: asyncio.TimerHandle | None = field(default=None, init=False)
    send_timer: asyncio.TimerHandle | None = field(default=None, init=False)
    on_finish: Callable[[], None] | None = field(default=None, init=False)  # see `send_round`

    @property
    def sent(self) -> int:
        return len(self.sent_ns)

    @property
    def rtts(self) -> list[float]:
        """Round-trip times in seconds of the requests that were answered, in sending order."""
        return [rtt / 1e9 for rtt in self.rtt_ns if rtt is not None]

    def on_reply(self, index: int, received_ns: int, hop_limit: int | None = None) -> None:
        # a clock step between the two stamps could make it negative: never report that
        self.rtt_ns[index] = max(received_ns - self.sent_ns[index], 0)
        if hop_limit is not None:
            self.hop_limit = hop_limit
        self.received += 1
        if self.received == self.count:
            self.finish()

    def on_error(self, error: EchoError, sender: str) -> None:
        self.icmp_error, self.error_from = error, sender
        self.finish()

    def finish(self) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_result(None)
        if self.deadline_timer is not None:
            self.deadline_timer.cancel()
        if self.send_timer is not None:
            self.send_timer.cancel()
        if self.on_finish is not None:
            on_finish, self.on_finish = self.on_finish, None
            on_finish()


class EchoSocket:
    """The ICMP socket of one family on one event loop, shared by every ICMP check."""

    def __init__(self, sock: socket.socket, mode: str, loop: asyncio.AbstractEventLoop) -> None:
        self.sock = sock
        self.mode = mode
        self.v6 = sock.family == socket.AF_INET6
        self.ident = sock.getsockname()[1] if mode == ICMP_DATAGRAM else random.randrange(1, 0x10000)
        self.closed = False
        self._ip_header = mode != ICMP_DATAGRAM and not self.v6  # raw IPv4 reads include the IP header
        self._pending: dict[Key, tuple[EchoRound, int]] = {}
        self._seq = random.randrange(0x10000)
        self._dont_fragment = False
        self._unread = 0
        self._buffer = bytearray(RECV_BUFFER)
        self._view = memoryview(self._buffer)
        self._loop = weakref.ref(loop)  # the loop holds us (reader); we must not hold it
        self._watch = ReadinessWatch(sock)
        loop.add_reader(self._watch.fd, self._on_readable)

    @property
    def in_flight(self) -> int:
        """Requests sent and not yet answered, over all rounds."""
        return len(self._pending)

    def waiting(self, address: str) -> list[int]:
        """Sequence numbers of requests to `address` that still wait for a reply."""
        return [seq for host, seq in self._pending if host == address]

    async def ping(self, echo: EchoRound, deadline: float) -> EchoRound:
        """Send `echo.count` requests `echo.interval` apart; return at the last reply, an ICMP
        error about one of them, or `deadline` (loop time), whichever comes first."""
        loop = asyncio.get_running_loop()
        echo.done = loop.create_future()
        echo.rtt_ns = [None] * echo.count
        try:
            self._send(echo)  # the first one here, so that its errors reach the probe as they are
            first = loop.time()
            if not echo.done.done():
                echo.deadline_timer = loop.call_at(deadline, echo.finish)
                if echo.count > 1:
                    echo.send_timer = loop.call_at(first + echo.interval, self._send_later, echo, first)
            await echo.done
        finally:
            echo.finish()
            self._forget(echo)
        return echo

    def send_round(self, echo: EchoRound) -> None:
        """Send a one-request round and return (the scheduler's fast path keeps the deadline):
        `echo.on_finish` runs at its reply or an ICMP error about it; `forget` ends it."""
        if echo.count != 1:
            raise ValueError("send_round sends one request; paced rounds go through ping")
        echo.rtt_ns = [None]
        self._send(echo)

    def forget(self, echo: EchoRound) -> None:
        """End a round from `send_round`: a reply after this is dropped as not ours."""
        echo.on_finish = None
        self._forget(echo)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        loop = self._loop()
        if loop is not None and not loop.is_closed():
            loop.remove_reader(self._watch.fd)
        self._watch.close()
        self.sock.close()
        for echo, _ in list(self._pending.values()):
            echo.finish()
        self._pending.clear()

    # ---- sending -----------------------------------------------------------------------

    def _send_later(self, echo: EchoRound, first: float) -> None:
        try:
            self._send(echo)
        except ProbeFailure as exc:
            echo.failure = exc
            echo.finish()
            return
        if echo.sent < echo.count and not echo.done.done():  # type: ignore[union-attr]
            loop = asyncio.get_running_loop()
            when = first + echo.sent * echo.interval  # from the first send: no drift
            echo.send_timer = loop.call_at(when, self._send_later, echo, first)

    def _send(self, echo: EchoRound) -> None:
        if self.closed:
            raise ProbeFailure(ErrorKind.ERROR, "the ICMP socket was closed")
        key = (echo.address, self._next_seq(echo.address))
        packet = build_echo_request(self.ident, key[1], echo.payload, v6=self.v6)
        try:
            sent_at = self._transmit(packet, echo)
        except OSError as exc:
            if not (self.mode == ICMP_DATAGRAM and self._read_error_queue()):
                raise self._send_error(exc, echo) from exc
            # the kernel failed this send with the pending error of an earlier request, whose
            # details wait in the error queue (now delivered to its round): this one may still go
            if echo.done is not None and echo.done.done():
                return  # that earlier request was this round's own: it has ended
            try:
                sent_at = self._transmit(packet, echo)
            except OSError as again:
                raise self._send_error(again, echo) from again
        # registered after the send: nothing reads the socket in between (single-threaded loop)
        self._pending[key] = (echo, echo.sent)
        echo.keys.append(key)
        echo.sent_ns.append(sent_at)
        self._unread += 1
        if self._unread >= DRAIN_EVERY:
            self._on_readable()

    def _transmit(self, packet: bytes, echo: EchoRound) -> int:
        """Send one request; return when it left (perf_counter ns)."""
        if not self.v6 and echo.dont_fragment != self._dont_fragment:
            # one socket for all checks: DF is switched around this synchronous send
            set_dont_fragment(self.sock, echo.dont_fragment)
            self._dont_fragment = echo.dont_fragment
        sent_at = time.perf_counter_ns()
        if echo.ancillary:
            self.sock.sendmsg([packet], echo.ancillary, 0, echo.sockaddr)
        else:
            self.sock.sendto(packet, echo.sockaddr)
        return sent_at

    def _send_error(self, exc: OSError, echo: EchoRound) -> ProbeFailure:
        if echo.source is not None and not is_local_address(echo.source):
            # the kernel says "network unreachable" or "invalid argument" for a foreign source
            return ProbeFailure(ErrorKind.ERROR, f"source_ip {echo.source} is not an address of this host")
        return from_os_error(exc, f"send echo request to {echo.address}")

    def _next_seq(self, address: str) -> int:
        for _ in range(0x10000):
            self._seq = (self._seq + 1) & 0xFFFF
            if (address, self._seq) not in self._pending:
                return self._seq
        raise ProbeFailure(
            ErrorKind.ERROR, f"65536 echo requests to {address} are already waiting for replies"
        )

    def _forget(self, echo: EchoRound) -> None:
        for key in echo.keys:
            entry = self._pending.get(key)
            if entry is not None and entry[0] is echo:
                del self._pending[key]
        echo.keys.clear()

    # ---- receiving ---------------------------------------------------------------------

    def _on_readable(self) -> None:
        self._unread = 0
        # the offset between the two clocks, read together: moves kernel stamps onto the monotonic clock
        offset = time.perf_counter_ns() - time.time_ns()
        got_any = False
        for _ in range(READ_BATCH):
            try:
                size, ancdata, flags, addr = self.sock.recvmsg_into([self._buffer], _ANC_SPACE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                # a datagram socket reports an ICMP error about one of our requests as a
                # pending socket error (IP_RECVERR); its details wait in the error queue
                self._read_error_queue()
                continue
            got_any = True
            if flags & socket.MSG_TRUNC:
                continue
            stamp = kernel_receive_time(ancdata)
            received = stamp + offset if stamp else time.perf_counter_ns()
            self._dispatch(bytes(self._view[:size]), addr[0], received, reply_hop_limit(ancdata))
        if not got_any and self.mode == ICMP_DATAGRAM:
            # woken with nothing to read: the error queue holds something (it keeps POLLERR up)
            self._read_error_queue()

    def _dispatch(self, data: bytes, source: str, received_ns: int, hop_limit: int | None = None) -> None:
        message = parse_message(data, v6=self.v6, ip_header=self._ip_header)
        if message is None or message.ident != self.ident:
            return
        if isinstance(message, EchoReply):
            key = (_host(source), message.seq)
            entry = self._pending.get(key)
            if entry is not None and entry[0].payload == message.payload:
                del self._pending[key]
                entry[0].on_reply(entry[1], received_ns, hop_limit)
        else:
            self._deliver_error(message, source)

    def _deliver_error(self, error: EchoError, sender: str) -> None:
        entry = self._pending.get((_host(error.destination), error.seq))
        if entry is not None:
            entry[0].on_error(error, _host(sender))

    def _read_error_queue(self) -> int:
        """Deliver the queued ICMP errors (datagram mode); return how many entries were read."""
        level, kind = (socket.IPPROTO_IPV6, IPV6_RECVERR) if self.v6 else (socket.IPPROTO_IP, IP_RECVERR)
        for count in range(READ_BATCH):
            try:
                data, ancdata, _, addr = self.sock.recvmsg(512, _ERR_ANC_SPACE, socket.MSG_ERRQUEUE)
            except OSError:
                return count  # EAGAIN: the queue is empty
            for cmsg_level, cmsg_type, cmsg_data in ancdata:
                if (cmsg_level, cmsg_type) == (level, kind):
                    error = parse_queued_error(cmsg_data, data, _host(addr[0]), v6=self.v6)
                    if error is not None and error[0].ident == self.ident:
                        self._deliver_error(*error)
        return READ_BATCH


def _host(address: str) -> str:
    """Drop an IPv6 scope (`fe80::1%eth0`): quoted addresses in ICMP errors carry none."""
    return address.partition("%")[0] if "%" in address else address
