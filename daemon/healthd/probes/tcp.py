"""TCP connect probe.

On the wire: SYN, SYN-ACK, ACK (a full handshake), then FIN — or RST with
`close: reset`. Success means the handshake completed within the timeout.
Phases: `resolve` (name lookup; ~0 for IP literals) and `connect` (wall time
from `connect()` to writable). The latency is the handshake RTT the kernel
measured (TCP_INFO `tcpi_rtt`, SYN sent to SYN-ACK received), as for `syn`: it
stays right when a busy event loop notices the connect late. Where TCP_INFO
gives no sample, the latency is the connect phase (`details.rtt_source`).
"""

from __future__ import annotations

import time

from healthd.config import TcpCheck
from healthd.probes._resolve import IP_PROTOCOL, IP_PROTOCOL_HELP, Resolver, format_sockaddr, ip_protocol
from healthd.probes._sockets import connect, handshake_info, open_stream_for, set_zero_linger
from healthd.probes.base import ProbeContext, ProbeSpec
from healthd.results import ProbeOutcome


async def probe_tcp(check: TcpCheck, ctx: ProbeContext) -> ProbeOutcome:
    sock, addr, resolving = await open_stream_for(check, ctx.resources.get(Resolver))
    with sock:
        started = time.perf_counter()
        await connect(sock, addr)
        connecting = time.perf_counter() - started
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
    type="tcp", model=TcpCheck, probe=probe_tcp, gauges={IP_PROTOCOL: IP_PROTOCOL_HELP}, resource=Resolver
)
