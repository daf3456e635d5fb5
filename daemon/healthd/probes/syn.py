"""SYN-only ("half-open") TCP probe.

On the wire, on Linux: SYN, SYN-ACK, RST. The port is up when the SYN-ACK arrives; the
target's kernel then drops the half-open request on our RST, so its application never
accepts a connection and nothing reaches its accept queue or its logs. Linux sets the
ACK bit on that RST (`[R.]`), but the pure ACK that would complete the handshake is
never sent. This is HAProxy's plain `check` and tcp-shaker's mechanism, with an
ordinary TCP socket (no raw sockets, no privileges):

- `TCP_QUICKACK` 0 before connect() puts the socket in delayed-ACK mode, so on the
  SYN-ACK the kernel arms its delayed-ACK timer (~200 ms) instead of answering;
- `SO_LINGER {on, 0}` turns close() into an abort: a RST replaces that pending ACK;
- connect() without blocking, wait until writable on the event loop's selector, read
  `SO_ERROR`, read `TCP_INFO` (handshake RTT, segments sent), close at once.

Where the kernel cannot hold the ACK back (no `TCP_QUICKACK`, or a kernel that answers
anyway), the same steps give SYN, SYN-ACK, ACK, RST: a connect closed by RST, reported as
`details.mode = "connect-rst"` instead of `"half-open"`. Which one this host does is
found by a self-test against a loopback listener at start, kept in the probes' resources
(`SynMode`), and logged once. Each probe also checks its own socket: `tcpi_segs_out`
beyond the SYN means the ACK went out (e.g. the loop stalled past the delayed-ACK timer),
and the probe says so.

Failures are classified as for `tcp`: refused (RST to our SYN), timeout (the caller's),
unreachable (ICMP), dns, permission, error. Phases: `resolve`, `connect` (wall time,
connect() to writable). Latency: the kernel's SYN -> SYN-ACK RTT, else the wall time.

`start_syn` is the scheduler's fast path for the same probe (IP literals, once the
self-test has decided the mode): the connect watched by one loop callback, no task.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from healthd.config import CheckBase, SynCheck
from healthd.errors import ProbeFailure
from healthd.probes._resolve import (
    IP_PROTOCOL,
    IP_PROTOCOL_HELP,
    Resolver,
    SockAddr,
    format_sockaddr,
    ip_protocol,
)
from healthd.probes._sockets import (
    Connecting,
    Handshake,
    connect,
    disable_quickack,
    handshake_info,
    open_socket,
    open_stream_for,
    set_zero_linger,
)
from healthd.probes.base import Done, ProbeContext, ProbeResources, ProbeSpec, SharedResource, Started
from healthd.results import ProbeOutcome

log = logging.getLogger(__name__)

HALF_OPEN = "half-open"
CONNECT_RST = "connect-rst"
SELF_TEST_TIMEOUT = 1.0  # loopback answers in microseconds; this only bounds the unexpected


class SynMode(SharedResource):
    """This host's SYN-probe mode: a loopback self-test at the first probe, then kept."""

    def __init__(self, resources: ProbeResources) -> None:
        super().__init__(resources)
        self._mode: str | None = None

    async def prepare(self, checks: Sequence[CheckBase]) -> None:
        await self.mode()  # so that the start-up log says which mode syn checks run in

    def known(self) -> str | None:
        """The mode, once the self-test has run (None before)."""
        return self._mode

    async def mode(self) -> str:
        if self._mode is None:
            holds, reason = await kernel_holds_ack()
            if self._mode is None:  # concurrent first probes each test; the first to finish decides
                self._mode = HALF_OPEN if holds else CONNECT_RST
                _announce(holds, reason)
        return self._mode


async def probe_syn(check: SynCheck, ctx: ProbeContext) -> ProbeOutcome:
    expected = await ctx.resources.get(SynMode).mode()
    sock, addr, resolving = await open_stream_for(check, ctx.resources.get(Resolver))
    with sock:
        held = disable_quickack(sock)
        set_zero_linger(sock)
        started = time.perf_counter()
        await connect(sock, addr)
        connecting = time.perf_counter() - started
        handshake = handshake_info(sock)
    # leaving the block closed the socket at once: the RST left before any delayed ACK
    return _outcome(addr, handshake, held and expected == HALF_OPEN, connecting, resolving)


def start_syn(check: SynCheck, ctx: ProbeContext, done: Done) -> Started | None:
    expected = ctx.resources.get(SynMode).known()
    resolver = ctx.resources.get(Resolver)
    target = resolver.literal(check.host, check.port, check.ip_family, check.source_ip)
    if expected is None or target is None:
        return None  # the self-test or a name lookup first: `probe_syn` awaits them
    family, addr = target
    sock = open_socket(family, socket.SOCK_STREAM, source_ip=check.source_ip, interface=check.interface)
    try:
        held = disable_quickack(sock)
        set_zero_linger(sock)
    except BaseException:
        sock.close()
        raise
    return Connecting(sock, addr, functools.partial(_handshaken, held and expected == HALF_OPEN), done)


def _handshaken(half_open: bool, sock: socket.socket, addr: SockAddr, connecting: float) -> ProbeOutcome:
    """Read TCP_INFO: the fast path's socket closes (sending the RST) when this returns."""
    return _outcome(addr, handshake_info(sock), half_open, connecting)


def _outcome(
    addr: SockAddr, handshake: Handshake, half_open: bool, connecting: float, resolving: float = 0.0
) -> ProbeOutcome:
    if handshake.ack_sent is not None:  # this socket's own count of segments sent is the truth
        mode = CONNECT_RST if handshake.ack_sent else HALF_OPEN
    else:
        mode = HALF_OPEN if half_open else CONNECT_RST
    rtt = handshake.rtt if handshake.rtt is not None else connecting
    return ProbeOutcome(
        phases={"resolve": resolving, "connect": connecting},
        details={
            "address": format_sockaddr(addr),
            "mode": mode,
            "rtt_ms": round(rtt * 1000, 3),
            "rtt_source": "tcp_info" if handshake.rtt is not None else "wall",
        },
        gauges={IP_PROTOCOL: ip_protocol(addr[0])},
        latency=rtt,
    )


def _announce(holds: bool, reason: str) -> None:
    if holds:
        log.info("syn probes run half-open (SYN, SYN-ACK, RST): %s", reason)
    else:
        log.warning(
            "syn probes fall back to connect-then-RST (SYN, SYN-ACK, ACK, RST), so targets "
            "will accept the connections: %s",
            reason,
        )


async def kernel_holds_ack() -> tuple[bool, str]:
    """Whether this kernel leaves a SYN probe's handshake half-open, and why we think so.

    Makes one SYN probe to a listener on loopback and asks the prober's socket whether it
    sent anything after its SYN: a kernel that completes the handshake has sent the ACK
    by the time connect() reports success.
    """
    try:
        with _loopback_listener() as listener, open_socket(listener.family, socket.SOCK_STREAM) as prober:
            if not disable_quickack(prober):
                return False, "TCP_QUICKACK is not available on this system"
            set_zero_linger(prober)
            async with asyncio.timeout(SELF_TEST_TIMEOUT):
                await connect(prober, listener.getsockname())
            ack_sent = handshake_info(prober).ack_sent
    except (OSError, ProbeFailure, TimeoutError) as exc:
        return False, f"the loopback self-test failed ({exc or type(exc).__name__})"
    if ack_sent is None:
        return False, "this kernel does not count sent segments in TCP_INFO, so half-open is unproven"
    if ack_sent:
        return False, "the kernel completed a loopback handshake despite TCP_QUICKACK=0"
    return True, "a loopback self-test sent no ACK after the SYN-ACK"


@contextmanager
def _loopback_listener() -> Iterator[socket.socket]:
    last: OSError | None = None
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        try:
            listener = socket.socket(family, socket.SOCK_STREAM)
        except OSError as exc:
            last = exc
            continue
        with listener:
            try:
                listener.bind((host, 0))
                listener.listen(1)
            except OSError as exc:
                last = exc
                continue
            yield listener
            return
    raise last or OSError("no loopback address")


SPEC = ProbeSpec(
    type="syn",
    model=SynCheck,
    probe=probe_syn,
    gauges={IP_PROTOCOL: IP_PROTOCOL_HELP},
    resource=SynMode,
    start=start_syn,
)
