"""Real network namespaces for tests: a second host joined to this one by a veth pair.

Everything created here is deleted again when the context exits, also on failure.
Addresses come from 10.200.0.0/16 and fd00:200::/32, only ever inside namespaces
this module created (the network rule: tests send traffic only to loopback or to them).
"""

from __future__ import annotations

import asyncio
import ctypes
import fcntl
import itertools
import os
import random
import re
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

CLONE_NEWNET = 0x40000000
_counter = itertools.count()
T = TypeVar("T")


def skip_unless_root(*tools: str) -> None:
    """Skip the calling test, with a reason, where namespaces or a tool are unavailable."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create network namespaces (CI runs as root)")
    for tool in ("ip", *tools):
        if shutil.which(tool) is None:
            pytest.skip(f"needs {tool!r} (installed by `make test` as root)")


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=30)


@dataclass
class Namespace:
    name: str
    index: int
    host_if: str
    ns_if: str

    @property
    def host_ip(self) -> str:
        return f"10.200.{self.index}.1"

    @property
    def ns_ip(self) -> str:
        return f"10.200.{self.index}.2"

    @property
    def host_ip6(self) -> str:
        return f"fd00:200:{self.index:x}::1"

    @property
    def ns_ip6(self) -> str:
        return f"fd00:200:{self.index:x}::2"

    def exec(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", self.name, *cmd, check=check)

    def popen(self, *cmd: str, **kwargs: object) -> subprocess.Popen[bytes]:
        return subprocess.Popen(["ip", "netns", "exec", self.name, *cmd], **kwargs)  # type: ignore[call-overload,no-any-return]

    def iptables(self, *rule: str) -> None:
        self.exec("iptables", "-w", *rule)

    def ip6tables(self, *rule: str) -> None:
        self.exec("ip6tables", "-w", *rule)

    def sysctl(self, key: str, value: str) -> None:
        self.exec("sysctl", "-q", "-w", f"{key}={value}")

    def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` in a thread that has entered this namespace (e.g. to open a socket there).

        A socket keeps the namespace it was created in, so it can then be used from
        any thread of the test process.
        """
        return run_in_netns(self.name, fn)

    def socket(self, family: int, kind: int, proto: int = 0) -> socket.socket:
        return self.call(lambda: socket.socket(family, kind, proto))


def run_in_netns(name: str, fn: Callable[[], T]) -> T:
    box: dict[str, object] = {}

    def target() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            with open(f"/var/run/netns/{name}") as ns_file:
                if libc.setns(ns_file.fileno(), CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns {name}")
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


@contextmanager
def subnet_lock() -> Iterator[set[int]]:
    """Hold the machine-wide lab lock; yields the 10.200.X subnets already on this host.

    Several test runs share one machine: whoever picks a subnet must add its
    address before releasing the lock, so no two labs route the same /24.
    """
    with open("/run/healthd-netlab.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        out = sh("ip", "-o", "-4", "addr", "show").stdout
        yield {int(m) for m in re.findall(r"inet 10\.200\.(\d+)\.", out)}


def free_index(used: set[int]) -> int:
    """A subnet number 1-250 not in `used`, from a random start (runs rarely race for one)."""
    start = random.randrange(250)
    for step in range(250):
        index = (start + step) % 250 + 1
        if index not in used:
            return index
    raise RuntimeError("all 250 lab subnets 10.200.1-250.0/24 are in use")


@contextmanager
def namespace() -> Iterator[Namespace]:
    """A namespace `ns` with ns_ip/ns_ip6, reachable from here via host_ip/host_ip6."""
    skip_unless_root()
    n = next(_counter)
    tag = f"{os.getpid() % 100000}{n}"
    ns: Namespace | None = None
    try:
        with subnet_lock() as used:
            ns = Namespace(
                name=f"hdtest{tag}", index=free_index(used), host_if=f"hdh{tag}", ns_if=f"hdn{tag}"
            )
            sh("ip", "netns", "add", ns.name)
            sh("ip", "link", "add", ns.host_if, "type", "veth", "peer", "name", ns.ns_if)
            sh("ip", "addr", "add", f"{ns.host_ip}/24", "dev", ns.host_if)
        sh("ip", "link", "set", ns.ns_if, "netns", ns.name)
        sh("ip", "-6", "addr", "add", f"{ns.host_ip6}/64", "dev", ns.host_if, "nodad")
        sh("ip", "link", "set", ns.host_if, "up")
        ns.exec("ip", "addr", "add", f"{ns.ns_ip}/24", "dev", ns.ns_if)
        ns.exec("ip", "-6", "addr", "add", f"{ns.ns_ip6}/64", "dev", ns.ns_if, "nodad")
        ns.exec("ip", "link", "set", ns.ns_if, "up")
        ns.exec("ip", "link", "set", "lo", "up")
        yield ns
    finally:
        if ns is not None:
            sh("ip", "link", "del", ns.host_if, check=False)
            sh("ip", "netns", "del", ns.name, check=False)


# ---- a routed path: client — router — target -------------------------------------------


@dataclass
class RoutedLab:
    """Three namespaces in a row, so that a router on the path can answer for the target:

        client  rt 10.220.N.2/24 --- cl 10.220.N.1  router  tg 10.221.N.1 --- rt 10.221.N.2/24  target

    (IPv6 alike: fd00:220:N::/64, fd00:221:N::/64.) The target holds hosts 2 and 3 of its
    link (`target_ip`; other host numbers are nobody's); the client's default route goes
    via the router, the target's back via it. Routers forward, every namespace sends as
    many ICMP errors as asked. Probes run in the client (`run`): nothing of the lab is in
    the root namespace.
    """

    client: Namespace
    router: Namespace
    target: Namespace
    index: int

    def client_ip(self, version: int, host: int = 2) -> str:
        """An address on the client's link: 2 the client, 1 the router."""
        return f"10.220.{self.index}.{host}" if version == 4 else f"fd00:220:{self.index:x}::{host}"

    def target_ip(self, version: int, host: int = 2) -> str:
        """An address on the target's link: 1 the router, 2 and 3 the target."""
        return f"10.221.{self.index}.{host}" if version == 4 else f"fd00:221:{self.index:x}::{host}"

    def run(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run a coroutine on a fresh event loop in a thread inside the client: its sockets are the client's."""
        return self.client.call(lambda: asyncio.run(make()))


ROUTED_TARGET_HOSTS = (2, 3)


@contextmanager
def routed_lab() -> Iterator[RoutedLab]:
    """Build a RoutedLab (root only, else the test skips), yield it, delete it again."""
    skip_unless_root()
    tag = f"{os.getpid() % 100000}{next(_counter)}"
    names = [f"hdr{tag}{part}" for part in ("c", "r", "t")]
    # nothing is added to the root namespace; the number only keeps concurrent runs' captures apart
    with subnet_lock() as used:
        index = free_index(used)
    try:
        for name in names:
            sh("ip", "netns", "add", name)
        client, router, target = (Namespace(name, index, "", "") for name in names)
        lab = RoutedLab(client, router, target, index)
        _build_routed(lab)
        yield lab
    finally:
        for name in names:
            sh("ip", "netns", "del", name, check=False)


def _build_routed(lab: RoutedLab) -> None:
    client, router, target = lab.client, lab.router, lab.target
    for ns, peer in ((client, "cl"), (target, "tg")):  # each one's `rt` <-> the router's `peer`
        sh("ip", "-n", ns.name, "link", "add", "rt", "type", "veth", "peer", peer, "netns", router.name)
    for ns in (client, router, target):
        for key in ("net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"):
            ns.sysctl(key, "0" if ns is client else "1")
        for key in ("net.ipv4.conf.all.send_redirects", "net.ipv4.conf.default.send_redirects"):
            ns.sysctl(key, "0")  # a loop through one interface would otherwise also send redirects
        # the kernel sends at most one ICMP error a second to a host by default: one per probe here
        ns.sysctl("net.ipv4.icmp_ratelimit", "0")
        ns.sysctl("net.ipv6.icmp.ratelimit", "0")
        ns.exec("ip", "link", "set", "lo", "up")
    links = [
        (client, "rt", lab.client_ip, 2),
        (router, "cl", lab.client_ip, 1),
        (router, "tg", lab.target_ip, 1),
    ]
    links += [(target, "rt", lab.target_ip, host) for host in ROUTED_TARGET_HOSTS]
    for ns, device, address, host in links:
        for version, plen in ((4, 24), (6, 64)):
            extra = ("nodad",) if version == 6 else ()
            ns.exec("ip", "addr", "add", f"{address(version, host)}/{plen}", "dev", device, *extra)
        ns.exec("ip", "link", "set", device, "up")
    for ns, via in ((client, lab.client_ip), (target, lab.target_ip)):
        for version in (4, 6):
            ns.exec("ip", f"-{version}", "route", "add", "default", "via", via(version, 1))
