"""TCP connect probe.

On the wire: SYN, SYN-ACK, ACK (a full handshake), then FIN — or RST with
`close: reset`. Success means the handshake completed within the timeout.
Phases: `resolve` (name lookup; ~0 for IP literals) and `connect`.
"""

from __future__ import annotations

import socket
import time

from daemon.config import TcpCheck
from daemon.probes._resolve import format_sockaddr, resolve
from daemon.probes._sockets import connect, open_socket, set_zero_linger
from daemon.results import ProbeOutcome


async def probe_tcp(check: TcpCheck) -> ProbeOutcome:
    started = time.perf_counter()
    family, addr = await resolve(check.host, check.port, check.ip_family, check.source_ip)
    resolved = time.perf_counter()
    with open_socket(
        family, socket.SOCK_STREAM, source_ip=check.source_ip, interface=check.interface
    ) as sock:
        await connect(sock, addr)
        connected = time.perf_counter()
        if check.close == "reset":
            set_zero_linger(sock)
    return ProbeOutcome(
        phases={"resolve": resolved - started, "connect": connected - resolved},
        details={"address": format_sockaddr(addr)},
        latency=connected - resolved,
    )
