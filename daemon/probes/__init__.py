"""Probes: one module per check type, one coroutine each, joined in `PROBES`.

Every probe has the same shape: `async def probe_X(check) -> ProbeOutcome`,
raising `ProbeError` (or an OSError/TimeoutError) on failure. The caller
applies the timeout and measures the total.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from daemon.probes._http_conn import close_pools
from daemon.probes._icmp_socket import close_icmp_sockets
from daemon.probes.http import probe_http
from daemon.probes.icmp import probe_icmp
from daemon.probes.syn import probe_syn
from daemon.probes.tcp import probe_tcp
from daemon.results import ProbeOutcome

Probe = Callable[[Any], Awaitable[ProbeOutcome]]

PROBES: dict[str, Probe] = {
    "tcp": probe_tcp,
    "syn": probe_syn,
    "icmp": probe_icmp,
    "http": probe_http,
}


async def close_shared_resources() -> None:
    """Close what probes keep between runs (ICMP sockets, HTTP keepalive pools), at shutdown."""
    close_icmp_sockets()
    await close_pools()
