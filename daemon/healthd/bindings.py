"""Load-time warnings about check bindings this host cannot honour (for `healthd check-config`).

A config that names an interface or a source address is valid anywhere, but on a
given host the interface may be missing or down, or the address not this host's:
the probes would then fail with the same reason. Saying it at load time lets an
operator fix it before the checks go red. Only warnings: the config is still
usable, e.g. checked on a build host before it is deployed to the router.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from ipaddress import ip_address

from healthd.config import CheckBase, Config
from healthd.probes._icmp_open import is_local_address
from healthd.probes._interfaces import interface_problem

Locate = Callable[[tuple[str | int, ...]], str]


def binding_warnings(config: Config, locate: Locate) -> Iterator[str]:
    """`FILE:LINE: path: warning: reason` for each binding that cannot work on this host."""
    for si, service in enumerate(config.services):
        for ci, check in enumerate(service.checks):
            where = ("services", si, "checks", ci)
            if check.interface:
                problem = interface_problem(check.interface, None if check.source_ip else _family(check))
                if problem:
                    yield f"{locate((*where, 'interface'))}: warning: {problem}"
            if check.source_ip is not None and not is_local_address(check.source_ip):
                yield (
                    f"{locate((*where, 'source_ip'))}: warning: source_ip {check.source_ip} is not an "
                    "address of this host (`ip addr` lists them)"
                )


def _family(check: CheckBase) -> socket.AddressFamily | None:
    """The address family the check will use, where the config alone says it."""
    if check.ip_family != "auto":
        return socket.AF_INET6 if check.ip_family == "ipv6" else socket.AF_INET
    host = getattr(check, "host", None) or getattr(check, "target", None)
    if host is None and hasattr(check, "parsed_url"):
        host = check.parsed_url.host
    try:
        version = ip_address(str(host).strip("[]")).version
    except ValueError:
        return None  # a name: its family is known only once resolved
    return socket.AF_INET6 if version == 6 else socket.AF_INET
