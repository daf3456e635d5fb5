"""A two-uplink lab: a prober host with `wan1`/`wan2` into two ISPs that both route to one internet.

    host (prober)                 isp1                      internet
      wan1 10.210.N.2/24  ----  cust 10.210.N.1   core 10.212.N.1  ----  isp1 10.212.N.2
      wan2 10.211.N.2/24  ----  cust 10.211.N.1   core 10.213.N.1  ----  isp2 10.213.N.2
                                isp2                                     lo: the targets

IPv6 mirrors it (`fd00:210:N::/64`, ...). The targets live on the internet's `lo`:
`web` (an HTTP server, also the TCP port), `filtered` (the same server, but ICMP echo
dropped: the host behind a firewall) and `other` (where `/hop` redirects to).

The host routes like a two-ISP router: the main table's default goes out `wan1`; tables
101/102 each hold one uplink's default, chosen by `from <address>` and `oif <interface>`
rules (see docs/multi-wan.md). Every part of the lab, host included, is its own network
namespace, so nothing is ever added to the root namespace that other test runs share;
the probes run inside the host (`WanLab.run`, or a daemon under `WanLab.host.popen`).
Everything is deleted when the context exits, also on failure.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import os
import socket
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any, Literal, TypeVar

from tests.capture import Capture, Packet
from tests.netlab import Namespace, free_index, sh, skip_unless_root, subnet_lock
from tests.wanserver import serve_targets

T = TypeVar("T")
HTTP_PORT = 80  # the internet is our own namespace: any port is free there
Cut = Literal["down", "drop", "unreachable"]
_counter = itertools.count()


@dataclass(frozen=True)
class Uplink:
    """One ISP link of the host: its interface, addresses, routing table and the ISP's namespace."""

    name: str  # the host's interface: wan1 / wan2
    table: int
    isp: Namespace
    net: int  # second octet of the link's /24 (and 4th group of its IPv6 /64)
    core: int  # the same for the ISP's link into the internet
    index: int

    def ip(self, version: int, host: int) -> str:
        """An address of the link: host 2 is ours, host 1 the ISP's."""
        return self.addr(self.net, version, host)

    def core_ip(self, version: int, host: int) -> str:
        """An address of the ISP's link into the internet: 1 the ISP, 2 the internet."""
        return self.addr(self.core, version, host)

    def addr(self, net: int, version: int, host: int) -> str:
        return f"10.{net}.{self.index}.{host}" if version == 4 else f"fd00:{net}:{self.index:x}::{host}"

    def capture(self, **options: Any) -> Capture:
        """A capture on the ISP's end of this link: what really reached that ISP."""
        return Capture("cust", ns=self.isp, **options)


@dataclass
class WanLab:
    host: Namespace
    internet: Namespace
    wan1: Uplink
    wan2: Uplink
    index: int
    requests: list[tuple[str, str, str]] = field(default_factory=list)  # (client, server, path) served

    def target(self, name: Literal["web", "filtered", "other"], version: int) -> str:
        host = {"web": 10, "filtered": 20, "other": 30}[name]
        return f"10.214.{self.index}.{host}" if version == 4 else f"fd00:214:{self.index:x}::{host}"

    def uplinks(self) -> tuple[Uplink, Uplink]:
        return (self.wan1, self.wan2)

    def run(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run a coroutine on a fresh event loop in a thread inside the host: its sockets are the host's."""
        return self.host.call(lambda: asyncio.run(make()))

    def cut(self, uplink: Uplink, how: Cut) -> None:
        """Break one uplink: `down` (the ISP's end loses its link), `drop` (the ISP silently
        drops our traffic) or `unreachable` (the ISP answers each packet with ICMP "network
        unreachable", as when its upstream is gone).

        `unreachable` uses REJECT rather than a missing route: the kernel rate-limits the
        ICMP errors of failed route lookups per sender (about one a second, not a sysctl),
        which would turn most of them into timeouts."""
        if how == "down":
            uplink.isp.exec("ip", "link", "set", "cust", "down")
            return
        rules = {
            "drop": (("iptables", "DROP"), ("ip6tables", "DROP")),
            "unreachable": (
                ("iptables", "REJECT", "--reject-with", "icmp-net-unreachable"),
                ("ip6tables", "REJECT", "--reject-with", "icmp6-no-route"),
            ),
        }[how]
        for tables, *target in rules:
            uplink.isp.exec(tables, "-w", "-I", "FORWARD", "-i", "cust", "-j", *target)

    def restore(self, uplink: Uplink) -> None:
        """Undo any cut of `uplink` (idempotent)."""
        for tables in ("iptables", "ip6tables"):
            uplink.isp.exec(tables, "-w", "-F", "FORWARD")
        for device in ("cust", "core"):
            uplink.isp.exec("ip", "link", "set", device, "up")
        _isp_routes(uplink, self.internet)  # a link that went down took its routes along

    def set_host_link(self, uplink: Uplink, up: bool) -> None:
        """Take the host's own end of `uplink` down or up (up puts its table's default back)."""
        self.host.exec("ip", "link", "set", uplink.name, "up" if up else "down")
        if up:
            for version in (4, 6):
                gateway = ("via", uplink.ip(version, 1), "dev", uplink.name, "table", str(uplink.table))
                # (IPv6 refuses to replace a route it kept: "No route to host"; that one is fine)
                self.host.exec("ip", f"-{version}", "route", "replace", "default", *gateway, check=False)

    def remove_policy(self, uplink: Uplink) -> None:
        """Delete `uplink`'s policy rules: its table is then used by nothing (the "wrong route")."""
        for version in (4, 6):
            for pref in (uplink.table * 10, uplink.table * 10 + 1):
                self.host.exec("ip", f"-{version}", "rule", "del", "pref", str(pref), check=False)

    def restore_policy(self) -> None:
        """Put every uplink's policy rules back (idempotent)."""
        for uplink in self.uplinks():
            self.remove_policy(uplink)
            _policy_rules(self.host, uplink)

    def sent_by_host(self, uplink: Uplink, packets: list[Packet], version: int) -> list[Packet]:
        """The packets in a capture that came from the host (any of its addresses) on `uplink`."""
        ours = {up.ip(version, 2) for up in self.uplinks()}
        return [p for p in packets if not p.outgoing and p.src in ours]


@contextmanager
def wan_lab() -> Iterator[WanLab]:
    """Build the lab (root only, else the test skips), yield it, delete it again."""
    skip_unless_root("iptables", "ip6tables")
    tag = f"{os.getpid() % 100000}{next(_counter)}"
    names = [f"hdw{tag}{part}" for part in ("h", "a", "b", "n")]
    # No address of the lab is in the root namespace, so labs cannot collide; the number is
    # still drawn like netlab's so that captures of concurrent runs read differently.
    with subnet_lock() as used:
        index = free_index(used)
    server: ThreadingHTTPServer | None = None
    try:
        for name in names:
            sh("ip", "netns", "add", name)
        host, isp1, isp2, internet = (Namespace(name, index, "", "") for name in names)
        lab = WanLab(
            host,
            internet,
            Uplink("wan1", 101, isp1, 210, 212, index),
            Uplink("wan2", 102, isp2, 211, 213, index),
            index,
        )
        _build(lab)
        server = serve_targets(
            internet, HTTP_PORT, lambda version: lab.target("other", version), lab.requests
        )
        _wait_until_routed(lab)
        yield lab
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
        for name in names:
            sh("ip", "netns", "del", name, check=False)


def _build(lab: WanLab) -> None:
    host, internet = lab.host, lab.internet
    for ns in (host, lab.wan1.isp, lab.wan2.isp, internet):
        _sysctls(ns)
        ns.exec("ip", "link", "set", "lo", "up")
    for up in lab.uplinks():
        _wire(lab, up)
        _isp_routes(up, internet)
        _host_policy(host, up)
    for version in (4, 6):
        host.exec(
            "ip", f"-{version}", "route", "add", "default", "via", lab.wan1.ip(version, 1), "dev", "wan1"
        )
        for name in ("web", "filtered", "other"):
            _address(internet, "lo", f"{lab.target(name, version)}/{32 if version == 4 else 128}")
    echo = ("--icmp-type", "echo-request", "-j", "DROP")
    internet.iptables("-A", "INPUT", "-d", lab.target("filtered", 4), "-p", "icmp", *echo)
    echo6 = ("--icmpv6-type", "echo-request", "-j", "DROP")
    internet.ip6tables("-A", "INPUT", "-d", lab.target("filtered", 6), "-p", "ipv6-icmp", *echo6)


def _wire(lab: WanLab, up: Uplink) -> None:
    """host `wanN` <-> ISP `cust`, ISP `core` <-> internet `ispN`: created inside the namespaces."""
    edge = up.name.replace("wan", "isp")  # the internet's end
    veth = ("link", "add", "type", "veth", "peer", "name")
    sh("ip", "-n", lab.host.name, *veth[:2], up.name, *veth[2:], "cust", "netns", up.isp.name)
    sh("ip", "-n", up.isp.name, *veth[:2], "core", *veth[2:], edge, "netns", lab.internet.name)
    for version, plen in ((4, 24), (6, 64)):
        _address(lab.host, up.name, f"{up.ip(version, 2)}/{plen}")
        _address(up.isp, "cust", f"{up.ip(version, 1)}/{plen}")
        _address(up.isp, "core", f"{up.core_ip(version, 1)}/{plen}")
        _address(lab.internet, edge, f"{up.core_ip(version, 2)}/{plen}")
    for ns, device in ((lab.host, up.name), (up.isp, "cust"), (up.isp, "core"), (lab.internet, edge)):
        ns.exec("ip", "link", "set", device, "up")


def _sysctls(ns: Namespace) -> None:
    for key, value in (
        ("net.ipv4.ip_forward", "1"),
        ("net.ipv6.conf.all.forwarding", "1"),
        ("net.ipv6.conf.all.keep_addr_on_down", "1"),  # a cut link keeps its addresses
        ("net.ipv6.conf.default.keep_addr_on_down", "1"),
        ("net.ipv4.conf.all.rp_filter", "2"),  # loose: what a multi-homed router runs
        ("net.ipv4.conf.default.rp_filter", "2"),
        ("net.ipv4.icmp_ratelimit", "0"),  # every probe gets its unreachable, not one a second
        ("net.ipv6.icmp.ratelimit", "0"),
    ):
        ns.sysctl(key, value)


def _address(ns: Namespace, device: str, cidr: str) -> None:
    ns.exec("ip", "addr", "add", cidr, "dev", device, *(("nodad",) if ":" in cidr else ()))


def _isp_routes(up: Uplink, internet: Namespace) -> None:
    """The ISP's default into the internet, and the internet's route back to this ISP's customers."""
    for version, plen in ((4, 24), (6, 64)):
        up.isp.exec(
            "ip", f"-{version}", "route", "replace", "default", "via", up.core_ip(version, 2), "dev", "core"
        )
        internet.exec(
            "ip",
            f"-{version}",
            "route",
            "replace",
            f"{up.ip(version, 0)}/{plen}",
            "via",
            up.core_ip(version, 1),
        )


def _host_policy(host: Namespace, up: Uplink) -> None:
    """The router recipe: the uplink's own table, used for its source address and its interface."""
    for version in (4, 6):
        ip = ("ip", f"-{version}")
        host.exec(
            *ip, "route", "add", "default", "via", up.ip(version, 1), "dev", up.name, "table", str(up.table)
        )
    _policy_rules(host, up)


def _policy_rules(host: Namespace, up: Uplink) -> None:
    for version in (4, 6):
        ip = ("ip", f"-{version}")
        host.exec(
            *ip, "rule", "add", "pref", str(up.table * 10), "from", up.ip(version, 2), "table", str(up.table)
        )
        host.exec(*ip, "rule", "add", "pref", str(up.table * 10 + 1), "oif", up.name, "table", str(up.table))


def _wait_until_routed(lab: WanLab, seconds: float = 10.0) -> None:
    """Wait until both uplinks carry TCP both ways, v4 and v6 (a new veth's carrier comes up late)."""
    for up in lab.uplinks():
        for version in (4, 6):
            address = (lab.target("web", version), HTTP_PORT)
            deadline = time.monotonic() + seconds
            while not lab.host.call(functools.partial(_connects, address, up.name)):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the lab does not route {address[0]} through {up.name}")
                time.sleep(0.05)


def _connects(address: tuple[str, int], device: str) -> bool:
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, device.encode())
        sock.settimeout(0.2)
        return sock.connect_ex(address) == 0
