"""ICMP echo probe.

On the wire: `count` Echo Requests (ICMPv6 for IPv6 targets) of `payload_size`
bytes of data, `packet_interval` apart, from the process's one shared ICMP
socket of that family (see `_icmp_socket`); the target answers each with an
Echo Reply. A Destination Unreachable or Time Exceeded about one of them ends
the probe at once as `unreachable`.

Success: at least one reply, or with `max_loss` a loss ratio at most that.
Phases: `resolve` and `rtt` (the mean round trip). Gauge:
`healthd_icmp_packet_loss_ratio`. Details: the socket mode (`datagram` or
`raw`), `sent`, `received`, `loss_ratio` and `rtt_min/avg/max/stddev_ms`.

The probe stops waiting a little before its timeout (`_GUARD`), so that it can
still report how many replies were lost; a reply later than that counts as lost.
"""

from __future__ import annotations

import asyncio
import functools
import math
import socket
import time
from typing import Any

from healthd.config import IcmpCheck, format_duration
from healthd.errors import ProbeError, ProbeTimeout, ProbeUnreachable
from healthd.probes._icmp_socket import EchoRound, echo_socket
from healthd.probes._resolve import resolve
from healthd.probes._sockets import Ancillary, echo_ancillary, interface_index
from healthd.results import ProbeOutcome

LOSS_GAUGE = "healthd_icmp_packet_loss_ratio"
_GUARD = 0.025  # seconds before the timeout when the probe stops waiting (at most 5% of it)


async def probe_icmp(check: IcmpCheck) -> ProbeOutcome:
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    family, sockaddr = await resolve(check.host, 0, check.ip_family, check.source_ip)
    resolved = time.perf_counter()
    shared = echo_socket(family)
    echo = EchoRound(
        address=_canonical(family, sockaddr[0]),
        sockaddr=sockaddr,
        count=check.count,
        interval=check.packet_interval,
        payload=_payload(check.payload_size),
        ancillary=_ancillary(family, check),
        dont_fragment=check.dont_fragment,
        source=check.source_ip,
    )
    remaining = check.timeout - min(_GUARD, check.timeout * 0.05) - (resolved - started)
    await shared.ping(echo, loop.time() + remaining)
    return _verdict(check, echo, shared.mode, resolved - started)


def _verdict(check: IcmpCheck, echo: EchoRound, mode: str, resolve_time: float) -> ProbeOutcome:
    """Statistics of a finished round, as an outcome or as the ProbeError it amounts to."""
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
    gauges = {LOSS_GAUGE: loss}
    problem = _problem(check, echo, received, loss)
    if problem is not None:
        problem.details, problem.phases, problem.gauges, problem.latency = details, phases, gauges, mean
        raise problem
    return ProbeOutcome(phases=phases, details=details, gauges=gauges, latency=mean)


def _problem(check: IcmpCheck, echo: EchoRound, received: int, loss: float) -> ProbeError | None:
    """What makes this round a failure, if anything."""
    if echo.icmp_error is not None:
        return ProbeUnreachable(f"{echo.icmp_error.describe()} from {echo.error_from}")
    if echo.failure is not None:
        return echo.failure
    if not received:
        requests = "request" if echo.sent == 1 else f"{echo.sent} requests"
        return ProbeTimeout(
            f"no echo reply from {echo.address} to {requests} within {format_duration(check.timeout)}"
        )
    if check.max_loss is not None and loss > check.max_loss:
        return ProbeTimeout(
            f"{echo.sent - received} of {echo.sent} echo requests lost ({loss:.0%}), "
            f"more than max_loss {check.max_loss:g}"
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
