"""ICMP echo probe.

On the wire: `count` Echo Requests (ICMPv6 for IPv6 targets) of `payload_size`
bytes of data, `packet_interval` apart, from the one shared ICMP socket of
that family (`EchoSockets`, kept in the probes' resources; see `_icmp_socket`);
the target answers each with an Echo Reply. A Destination Unreachable or Time Exceeded about one of them ends
the probe at once as `unreachable`.

Success: at least one reply, or with `max_loss` a loss ratio at most that.
Phases: `resolve` and `rtt` (the mean round trip). Gauge:
`healthd_icmp_packet_loss_ratio`. Details: the socket mode (`datagram` or
`raw`), `sent`, `received`, `loss_ratio` and `rtt_min/avg/max/stddev_ms`.

The probe stops waiting a little before its deadline (`_GUARD`), so that it can
still report how many replies were lost; a reply later than that counts as lost.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import socket
import time
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from healthd.config import CheckBase, IcmpCheck, format_duration
from healthd.errors import ProbeFailure
from healthd.probes._icmp_open import (
    ICMP_DATAGRAM,
    Ancillary,
    echo_ancillary,
    icmp_permission_advice,
    interface_index,
    open_icmp_socket,
    ping_group_range,
)
from healthd.probes._icmp_packet import WANTED_TYPES_V4, WANTED_TYPES_V6
from healthd.probes._icmp_socket import EchoRound, EchoSocket
from healthd.probes._resolve import IP_PROTOCOL, IP_PROTOCOL_HELP, Resolver, SockAddr, ip_protocol
from healthd.probes.base import Done, ProbeContext, ProbeResources, ProbeSpec, SharedResource, Started
from healthd.results import ErrorKind, ProbeOutcome

log = logging.getLogger(__name__)

LOSS_GAUGE = "healthd_icmp_packet_loss_ratio"
HOP_LIMIT_GAUGE = "probe_icmp_reply_hop_limit"  # blackbox_exporter's name
_GUARD = 0.025  # seconds before the deadline when the probe stops waiting (at most 5% of the timeout)


async def probe_icmp(check: IcmpCheck, ctx: ProbeContext) -> ProbeOutcome:
    started = time.perf_counter()
    resolver = ctx.resources.get(Resolver)
    family, sockaddr = await resolver.resolve(check.host, 0, check.ip_family, check.source_ip)
    resolved = time.perf_counter()
    shared = ctx.resources.get(EchoSockets).for_family(family, check.source_ip, check.interface)
    echo = _round(check, family, sockaddr)
    await shared.ping(echo, ctx.deadline - min(_GUARD, check.timeout * 0.05))
    return _verdict(check, echo, shared.mode, resolved - started)


def start_icmp(check: IcmpCheck, ctx: ProbeContext, done: Done) -> Started | None:
    """The scheduler's fast path for one echo request to an address literal: sent at once,
    its reply handed over by the socket's reader, its deadline kept by the scheduler."""
    if check.count != 1:
        return None  # requests paced apart keep their timers in `EchoSocket.ping`
    target = ctx.resources.get(Resolver).literal(check.host, 0, check.ip_family, check.source_ip)
    if target is None:
        return None  # a name: `probe_icmp` resolves it on the resolver's pool
    family, sockaddr = target
    shared = ctx.resources.get(EchoSockets).for_family(family, check.source_ip, check.interface)
    return _Echoing(check, shared, _round(check, family, sockaddr), done)


class _Echoing:
    """One fast-path echo round in flight on the shared socket."""

    __slots__ = ("_check", "_done", "_echo", "_shared")

    def __init__(self, check: IcmpCheck, shared: EchoSocket, echo: EchoRound, done: Done) -> None:
        self._check, self._shared, self._echo, self._done = check, shared, echo, done
        echo.on_finish = self._finished
        shared.send_round(echo)

    def _finished(self) -> None:
        self._done(self._ended())

    def cancel(self) -> ProbeOutcome | Exception:
        return self._ended()  # at the deadline: the loss count is the verdict, as in probe_icmp

    def _ended(self) -> ProbeOutcome | Exception:
        self._shared.forget(self._echo)
        try:
            return _verdict(self._check, self._echo, self._shared.mode, 0.0)
        except Exception as exc:  # ProbeFailure: the caller turns it into the result
            return exc


def _round(check: IcmpCheck, family: socket.AddressFamily, sockaddr: SockAddr) -> EchoRound:
    return EchoRound(
        address=_canonical(family, sockaddr[0]),
        sockaddr=sockaddr,
        count=check.count,
        interval=check.packet_interval,
        payload=_payload(check.payload_size),
        ancillary=_ancillary(family, check),
        dont_fragment=check.dont_fragment,
        source=check.source_ip,
    )


def _verdict(check: IcmpCheck, echo: EchoRound, mode: str, resolve_time: float) -> ProbeOutcome:
    """Statistics of a finished round, as an outcome or as the ProbeFailure it amounts to."""
    rtts = echo.rtts
    sent, received = echo.sent, len(rtts)
    loss = (sent - received) / sent if sent else 1.0
    # fping's summary: sent, received, loss and min/avg/max/stddev (population) in ms
    details: dict[str, Any] = {
        "address": echo.address,
        "mode": mode,
        "sent": sent,
        "received": received,
        "loss_ratio": round(loss, 6),
    }
    mean = sum(rtts) / received if rtts else None
    if mean is None:
        phases = {"resolve": resolve_time}
    else:
        phases = {"resolve": resolve_time, "rtt": mean}
        spread = math.sqrt(sum((rtt - mean) ** 2 for rtt in rtts) / received) if received > 1 else 0.0
        details["rtt_min_ms"] = round(min(rtts) * 1000, 3)
        details["rtt_avg_ms"] = round(mean * 1000, 3)
        details["rtt_max_ms"] = round(max(rtts) * 1000, 3)
        details["rtt_stddev_ms"] = round(spread * 1000, 3)
    gauges = {LOSS_GAUGE: loss, IP_PROTOCOL: ip_protocol(echo.address)}
    if echo.hop_limit is not None:
        gauges[HOP_LIMIT_GAUGE] = float(echo.hop_limit)
    outcome = ProbeOutcome(phases=phases, details=details, gauges=gauges, latency=mean)
    if echo.failure is not None and echo.icmp_error is None:
        raise echo.failure.with_outcome(outcome) from echo.failure
    problem = _problem(check, echo, received, loss)
    if problem is not None:
        raise ProbeFailure(problem[0], problem[1], outcome)
    return outcome


def _problem(check: IcmpCheck, echo: EchoRound, received: int, loss: float) -> tuple[ErrorKind, str] | None:
    """What makes this round a failure, if anything: (kind, message)."""
    if echo.icmp_error is not None:
        return ErrorKind.UNREACHABLE, f"{echo.icmp_error.describe()} from {echo.error_from}"
    if not received:
        requests = "request" if echo.sent == 1 else f"{echo.sent} requests"
        return (
            ErrorKind.TIMEOUT,
            f"no echo reply from {echo.address} to {requests} within {format_duration(check.timeout)}",
        )
    if check.max_loss is not None and loss > check.max_loss:
        return (
            ErrorKind.TIMEOUT,
            f"{echo.sent - received} of {echo.sent} echo requests lost ({loss:.0%}), "
            f"more than max_loss {check.max_loss:g}",
        )
    return None


def _ancillary(family: socket.AddressFamily, check: IcmpCheck) -> Ancillary:
    """The per-request socket options the check asks for; none for most checks (plain sendto)."""
    if check.ttl is None and check.source_ip is None and not check.interface and not check.dont_fragment:
        return ()
    return echo_ancillary(
        family,
        ttl=check.ttl,
        source=check.source_ip,
        ifindex=interface_index(check.interface) if check.interface else 0,
        dont_fragment=check.dont_fragment,
    )


@functools.lru_cache(maxsize=4096)
def _canonical(family: socket.AddressFamily, host: str) -> str:
    """The address as replies report their source (`::0001` -> `::1`; the scope dropped)."""
    return socket.inet_ntop(family, socket.inet_pton(family, host.partition("%")[0]))


@functools.lru_cache(maxsize=64)
def _payload(size: int) -> bytes:
    """Echo data: a fixed pattern, so a reply with other data is not ours (or corrupt)."""
    pattern = b"healthd echo "
    return (pattern * (size // len(pattern) + 1))[:size]


# ---- the shared sockets -----------------------------------------------------------------


class EchoSockets(SharedResource):
    """The ICMP checks' sockets: one per address family, shared by every check; checks
    with a `source_ip` or `interface` share one bound to them (see `open_icmp_socket`)."""

    def __init__(self, resources: ProbeResources) -> None:
        super().__init__(resources)
        self._sockets: dict[tuple[int, IPv4Address | IPv6Address | None, str | None], EchoSocket] = {}
        self._announced: set[tuple[int, str]] = set()

    def for_family(
        self,
        family: socket.AddressFamily,
        source: IPv4Address | IPv6Address | None = None,
        interface: str | None = None,
    ) -> EchoSocket:
        """The socket for `family` (bound to `source`/`interface` if given), opened on first use.

        Raises ProbeFailure (kind `permission`) when neither mode is allowed; the
        next probe tries again, so fixing the sysctl needs no restart.
        """
        route = (family, source, interface)
        shared = self._sockets.get(route)
        if shared is None or shared.closed:
            wanted = WANTED_TYPES_V6 if family == socket.AF_INET6 else WANTED_TYPES_V4
            try:
                sock, mode = open_icmp_socket(family, wanted, source, interface)
            except ProbeFailure as exc:
                if exc.kind is ErrorKind.PERMISSION:
                    self._announce(family, "none")
                raise
            shared = self._sockets[route] = EchoSocket(sock, mode, asyncio.get_running_loop())
            self._announce(family, mode, shared.ident)
        return shared

    async def prepare(self, checks: Sequence[CheckBase]) -> None:
        """Open the sockets now, so the start-up log says which mode each family uses.

        A family that cannot be opened is only logged here; its probes report the error.
        """
        families = {
            socket.AF_INET6 if ":" in check.display_target or check.ip_family == "ipv6" else socket.AF_INET
            for check in checks
        }
        for family in sorted(families):
            try:
                self.for_family(family)
            except ProbeFailure as exc:
                if exc.kind is not ErrorKind.PERMISSION:  # that one is logged with its advice
                    log.warning("ICMP %s checks cannot run yet: %s", _family_name(family), exc.message)

    async def aclose(self) -> None:
        for shared in self._sockets.values():
            shared.close()
        self._sockets.clear()

    def _announce(self, family: socket.AddressFamily, mode: str, ident: int = 0) -> None:
        """Log, once per family and mode, which kind of ICMP socket the checks use and why."""
        if (family, mode) in self._announced:
            return
        self._announced.add((family, mode))
        name = _family_name(family)
        span = ping_group_range()
        shown = f'"{span}"' if span else "?"
        if mode == ICMP_DATAGRAM:
            log.info(
                "ICMP %s checks use an unprivileged datagram socket (net.ipv4.ping_group_range %s "
                "admits this process; echo identifier %d)",
                name,
                shown,
                ident,
            )
        elif mode == "none":
            log.warning("ICMP %s checks cannot run: %s", name, icmp_permission_advice())
        else:
            log.info(
                "ICMP %s checks use a raw socket (CAP_NET_RAW; net.ipv4.ping_group_range %s does not "
                "admit this process's group)",
                name,
                shown,
            )


def _family_name(family: int) -> str:
    return "IPv6" if family == socket.AF_INET6 else "IPv4"


SPEC = ProbeSpec(
    type="icmp",
    model=IcmpCheck,
    probe=probe_icmp,
    gauges={
        LOSS_GAUGE: "Share of the last ICMP probe's echo requests left unanswered (0-1)",
        HOP_LIMIT_GAUGE: "TTL (IPv4) or hop limit (IPv6) the last echo reply arrived with",
        IP_PROTOCOL: IP_PROTOCOL_HELP,
    },
    resource=EchoSockets,
    start=start_icmp,
)
