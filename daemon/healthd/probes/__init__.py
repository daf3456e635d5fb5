"""Probes: one module per check type, one coroutine each, joined in `PROBES`.

Every probe has the same shape: `async def probe_X(check) -> ProbeOutcome`,
raising `ProbeError` (or an OSError/TimeoutError) on failure. The caller
applies the timeout and measures the total.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from healthd.config import CheckBase
from healthd.probes._http_conn import close_pools
from healthd.probes._icmp_socket import close_icmp_sockets, open_icmp_sockets
from healthd.probes.http import probe_http
from healthd.probes.icmp import probe_icmp
from healthd.probes.syn import probe_syn
from healthd.probes.tcp import probe_tcp
from healthd.results import ProbeOutcome

Probe = Callable[[Any], Awaitable[ProbeOutcome]]

PROBES: dict[str, Probe] = {
    "tcp": probe_tcp,
    "syn": probe_syn,
    "icmp": probe_icmp,
    "http": probe_http,
}


def open_shared_resources(checks: Iterable[CheckBase]) -> None:
    """Open at start what probes share, so the start-up log tells at once which ICMP
    socket mode each address family uses (or what is missing)."""
    families = {
        socket.AF_INET6 if ":" in check.display_target or check.ip_family == "ipv6" else socket.AF_INET
        for check in checks
        if check.type == "icmp"
    }
    open_icmp_sockets(sorted(families))


async def close_shared_resources() -> None:
    """Close what probes keep between runs (ICMP sockets, HTTP keepalive pools), at shutdown."""
    close_icmp_sockets()
    await close_pools()
