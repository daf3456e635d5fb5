"""tcp, syn and http probes against every way a network rejects a connection, v4 and v6.

One namespace; each rejection is an iptables/ip6tables REJECT (or DROP) rule on
its own port there. Each verdict is asserted with its kind, within the timeout
+ 100 ms, as one clean line. IPv6 "administratively prohibited" (EACCES from
connect) and ICMP "protocol unreachable" (ENOPROTOOPT) blamed this host
(`permission`) or nobody (`error`) before; both are `unreachable` now.

The ICMPv6 rows prove that probe sockets set IPV6_RECVERR. Over veth the first
ICMPv6 error comes back while connect() still holds the socket (the kernel counts
TcpExtLockDroppedIcmps), so it only becomes the socket's soft error; without
RECVERR nothing wakes the probe, and only the error to the SYN retransmitted after
1 s ends connect(), past TIMEOUT (see docs/hostile-targets.md), so the row fails.

Then a router on the path (tests.netlab.routed_lab): a TTL / hop limit that runs
out at the router, or in a routing loop, comes back as ICMP time exceeded: tcp,
syn, http and icmp report `unreachable`, never `permission` or `local`.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import pytest
from healthd.config import CHECK_MODELS, CheckBase
from healthd.errors import MESSAGE_CHARS
from healthd.probes import PROBES, ProbeResources
from healthd.results import ErrorKind, ProbeResult
from healthd.scheduler import run_probe

from tests.netlab import Namespace, RoutedLab, namespace, routed_lab

# below the kernel's first SYN retransmission (TCP_TIMEOUT_INIT, 1 s): a probe that missed the
# first ICMP error would hear of the second only after it, and then times out here
TIMEOUT = 0.8
SLACK = 0.1


@dataclass(frozen=True)
class Rejection:
    name: str
    family: int  # 4 or 6
    rule: tuple[str, ...]  # the target of the rule: -j REJECT --reject-with ..., or -j DROP
    kind: ErrorKind


def _reject(how: str) -> tuple[str, ...]:
    return ("-j", "REJECT", "--reject-with", how)


REJECTIONS = [
    Rejection("tcp-reset", 4, _reject("tcp-reset"), ErrorKind.REFUSED),
    Rejection("port-unreachable", 4, _reject("icmp-port-unreachable"), ErrorKind.REFUSED),
    Rejection("host-unreachable", 4, _reject("icmp-host-unreachable"), ErrorKind.UNREACHABLE),
    Rejection("net-unreachable", 4, _reject("icmp-net-unreachable"), ErrorKind.UNREACHABLE),
    Rejection("admin-prohibited", 4, _reject("icmp-admin-prohibited"), ErrorKind.UNREACHABLE),
    Rejection("protocol-unreachable", 4, _reject("icmp-proto-unreachable"), ErrorKind.UNREACHABLE),
    Rejection("drop", 4, ("-j", "DROP"), ErrorKind.TIMEOUT),
    Rejection("tcp-reset", 6, _reject("tcp-reset"), ErrorKind.REFUSED),
    Rejection("port-unreachable", 6, _reject("icmp6-port-unreachable"), ErrorKind.REFUSED),
    Rejection("addr-unreachable", 6, _reject("icmp6-addr-unreachable"), ErrorKind.UNREACHABLE),
    Rejection("no-route", 6, _reject("icmp6-no-route"), ErrorKind.UNREACHABLE),
    Rejection("admin-prohibited", 6, _reject("icmp6-adm-prohibited"), ErrorKind.UNREACHABLE),
    # codes 5 and 6 of ICMPv6 destination unreachable: connect() gets EACCES for these too
    Rejection("policy-fail", 6, _reject("icmp6-policy-fail"), ErrorKind.UNREACHABLE),
    Rejection("reject-route", 6, _reject("icmp6-reject-route"), ErrorKind.UNREACHABLE),
    Rejection("drop", 6, ("-j", "DROP"), ErrorKind.TIMEOUT),
]
FIRST_PORT = 20000


@pytest.fixture(scope="module")
def lab() -> Iterator[Namespace]:
    """One namespace, a rule per rejection on its own port (FIRST_PORT + index)."""
    with namespace() as ns:
        # the kernel sends at most one ICMP error a second to a host by default: one per probe here
        ns.sysctl("net.ipv4.icmp_ratelimit", "0")
        ns.sysctl("net.ipv6.icmp.ratelimit", "0")
        for index, rejection in enumerate(REJECTIONS):
            tool = ns.iptables if rejection.family == 4 else ns.ip6tables
            tool("-A", "INPUT", "-p", "tcp", "--dport", str(FIRST_PORT + index), *rejection.rule)
        yield ns


def check_for(kind: str, host: str, port: int) -> CheckBase:
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    target = {"url": f"http://{where}/"} if kind == "http" else {"target": host if kind == "icmp" else where}
    return CHECK_MODELS[kind].model_validate(
        {"type": kind, "name": "r", "timeout": f"{TIMEOUT}s", "interval": "5s", **target}
    )


@pytest.mark.netns
@pytest.mark.parametrize("kind", ["tcp", "syn", "http"])
@pytest.mark.parametrize("index", range(len(REJECTIONS)), ids=[f"{r.name}-v{r.family}" for r in REJECTIONS])
async def test_each_rejection_has_its_kind_in_time(lab: Namespace, kind: str, index: int) -> None:
    rejection = REJECTIONS[index]
    host = lab.ns_ip if rejection.family == 4 else lab.ns_ip6
    check = check_for(kind, host, FIRST_PORT + index)
    async with ProbeResources() as resources:
        started = time.monotonic()
        result = await run_probe(PROBES[kind], check, resources)
        elapsed = time.monotonic() - started
    assert result.error_kind is rejection.kind, result
    assert elapsed <= TIMEOUT + SLACK, f"{elapsed:.3f}s"
    assert_one_line(result.error_message)


def assert_one_line(message: str | None) -> None:
    assert message is not None and "\n" not in message and len(message) <= MESSAGE_CHARS, message


# ---- a router on the path: ICMP time exceeded -------------------------------------------


@dataclass(frozen=True)
class Path:
    name: str
    host: int  # the target address's host number (tests.netlab.RoutedLab.target_ip)
    kind: ErrorKind | None  # None: the probe succeeds


SHORT_TTL, LOOPED = 3, 4
PATHS = [
    # the target that SHORT_TTL reaches by its other address: the lab routes, what fails is the TTL
    Path("direct", 2, None),
    Path("ttl-exceeded", SHORT_TTL, ErrorKind.UNREACHABLE),
    Path("routing-loop", LOOPED, ErrorKind.UNREACHABLE),
]
ROUTED_PORT = 8080
ROUTED_ROWS = [
    (path, kind, version)
    for path in PATHS
    for kind in ("tcp", "syn", "http", "icmp")
    for version in (4, 6)
    if not (path.kind is None and kind == "http")  # the listener speaks no HTTP
]


@pytest.fixture(scope="module")
def routed() -> Iterator[RoutedLab]:
    """client — router — target, with a listener on ROUTED_PORT and two broken paths to the target.

    SHORT_TTL: the client's route sends with TTL (hop limit) 1, which the router cannot
    forward. LOOPED: an address nobody holds; the router sends it to the target and the
    target back, until the TTL runs out (64 hops).
    """
    with routed_lab() as lab, ExitStack() as stack:
        for version in (4, 6):
            add = ("ip", f"-{version}", "route", "add")
            lab.client.exec(
                *add, lab.target_ip(version, SHORT_TTL), "via", lab.client_ip(version, 1), "hoplimit", "1"
            )
            lab.router.exec(*add, lab.target_ip(version, LOOPED), "via", lab.target_ip(version, 2))
            lab.target.exec(*add, lab.target_ip(version, LOOPED), "via", lab.target_ip(version, 1))
            stack.enter_context(_listener(lab.target, version))
        for version in (4, 6):
            _wait_until_routed(lab, lab.target_ip(version, 2))
        yield lab


def _listener(ns: Namespace, version: int) -> socket.socket:
    family = socket.AF_INET if version == 4 else socket.AF_INET6
    sock = ns.socket(family, socket.SOCK_STREAM)
    if version == 6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    sock.bind(("0.0.0.0" if version == 4 else "::", ROUTED_PORT))
    sock.listen(64)
    return sock


def _wait_until_routed(lab: RoutedLab, host: str, seconds: float = 10.0) -> None:
    """Wait until the client connects to `host` (a new veth's carrier comes up late)."""

    def connects() -> bool:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
            sock.settimeout(0.2)
            return sock.connect_ex((host, ROUTED_PORT)) == 0

    deadline = time.monotonic() + seconds
    while not lab.client.call(connects):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the routed lab does not reach {host}")
        time.sleep(0.05)


def time_exceeded_in(lab: RoutedLab, version: int) -> int:
    """How many ICMP time exceeded the client has received (its own /proc/net counters)."""
    table, key = (
        ("/proc/net/snmp", "InTimeExcds") if version == 4 else ("/proc/net/snmp6", "Icmp6InTimeExcds")
    )
    lines = lab.client.exec("cat", table).stdout.splitlines()
    if version == 6:
        return next(int(line.split()[1]) for line in lines if line.split()[0] == key)
    names, values = (line.split()[1:] for line in lines if line.startswith("Icmp:"))
    return int(values[names.index(key)])


@pytest.mark.netns
@pytest.mark.parametrize(
    ("path", "kind", "version"), ROUTED_ROWS, ids=[f"{p.name}-{k}-v{v}" for p, k, v in ROUTED_ROWS]
)
def test_a_router_answering_time_exceeded_is_unreachable(
    routed: RoutedLab, path: Path, kind: str, version: int
) -> None:
    check = check_for(kind, routed.target_ip(version, path.host), ROUTED_PORT)

    async def probe() -> tuple[ProbeResult, float]:
        async with ProbeResources() as resources:
            started = time.monotonic()
            result = await run_probe(PROBES[kind], check, resources)
            return result, time.monotonic() - started

    before = time_exceeded_in(routed, version)
    result, elapsed = routed.run(probe)
    assert result.error_kind is path.kind, result
    assert elapsed <= TIMEOUT + SLACK, f"{elapsed:.3f}s"
    if path.kind is None:
        return
    assert time_exceeded_in(routed, version) > before  # the error really was a time exceeded
    assert_one_line(result.error_message)
    if kind == "icmp":
        assert "time exceeded" in (result.error_message or ""), result
