"""TCP connect probe.

On the wire: SYN, SYN-ACK, ACK (a full handshake), then FIN — or RST with
`close: reset`. Success means the handshake completed within the timeout.
Phases: `resolve` (name lookup; ~0 for IP literals) and `connect` (wall time
from `connect()` to writable). The latency is the handshake RTT the kernel
measured (TCP_INFO `tcpi_rtt`, SYN sent to SYN-ACK received), as for `syn`: it
stays right when a busy event loop notices the connect late. Where TCP_INFO
gives no sample, the latency is the connect phase (`details.rtt_source`).

`start_tcp` is the scheduler's fast path for the same probe (IP literals only; a
name goes through `probe_tcp`): the connect watched by one loop callback, no task.
"""

from __future__ import annotations

import functools
import socket
import time

from healthd.config import TcpCheck
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
    connect,
    handshake_info,
    open_socket,
    open_stream_for,
    set_zero_linger,
)
from healthd.probes.base import Done, ProbeContext, ProbeSpec, Started
from healthd.results import ProbeOutcome


async def probe_tcp(check: TcpCheck, ctx: ProbeContext) -> ProbeOutcome:
    sock, addr, resolving = await open_stream_for(check, ctx.resources.get(Resolver))
    with sock:
        started = time.perf_counter()
        await connect(sock, addr)
        return _connected(check, sock, addr, time.perf_counter() - started, resolving)


def start_tcp(check: TcpCheck, ctx: ProbeContext, done: Done) -> Started | None:
    target = ctx.resources.get(Resolver).literal(check.host, check.port, check.ip_family, check.source_ip)
    if target is None:
        return None  # a name: `probe_tcp` resolves it on the resolver's pool
    family, addr = target
    sock = open_socket(family, socket.SOCK_STREAM, source_ip=check.source_ip, interface=check.interface)
    return Connecting(sock, addr, functools.partial(_connected, check), done)


def _connected(
    check: TcpCheck, sock: socket.socket, addr: SockAddr, connecting: float, resolving: float = 0.0
) -> ProbeOutcome:
    """The outcome of a completed handshake, read before the socket closes."""
    rtt = handshake_info(sock).rtt
    if check.close == "reset":
        set_zero_linger(sock)
    return ProbeOutcome(
        phases={"resolve": resolving, "connect": connecting},
        details={
            "address": format_sockaddr(addr),
            "rtt_ms": round((connecting if rtt is None else rtt) * 1000, 3),
            "rtt_source": "wall" if rtt is None else "tcp_info",
        },
        gauges={IP_PROTOCOL: ip_protocol(addr[0])},
        latency=connecting if rtt is None else rtt,
    )


SPEC = ProbeSpec(
    type="tcp",
    model=TcpCheck,
    probe=probe_tcp,
    gauges={IP_PROTOCOL: IP_PROTOCOL_HELP},
    resource=Resolver,
    start=start_tcp,
)
