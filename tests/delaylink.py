"""A namespace reached over a link with a fixed added delay, since this kernel has no netem.

The path is two TUN devices, one in the root namespace (`host_if`) and one inside a test
namespace, joined by a forwarder thread in this process: a packet the root namespace
sends into `host_if` is read by the forwarder, held `delay` seconds from the moment it
was read, then written into the namespace's TUN; answers travel back at once. So the
round trip through the link grows by `delay` (20 ms by default), all of it on the way in.

Usage::

    with delay_link(0.020) as link:           # root only (skips otherwise, like netlab)
        server = link.ns.socket(socket.AF_INET, socket.SOCK_STREAM)   # lives in link.ns
        server.bind((link.ns_ip, 0))           # or link.ns_ip6
        with Capture(link.host_if) as cap:     # wire timestamps of the delayed path
            ...                                # probe link.ns_ip / link.ns_ip6 from here

Addresses (inside the namespace's own 10.200.k.0/24 and a ULA /64 of its own):
`host_ip`/`host_ip6` on the root side, `ns_ip`/`ns_ip6` in the namespace, routed as
point-to-point so the veth that `tests.netlab.namespace()` also creates is not used.

The forwarder sleeps until ~0.3 ms before a release and spins the rest, so packets leave
on time even when the machine is idle. What it adds itself, measured with
`measure_forwarder()` (captures on both TUNs, 50 UDP echoes; 2-core VM shared with other
test runs; ranges over 5 runs):
    to the namespace, beyond the delay: median 0.10-0.16 ms, p90 0.2-1.5 ms
    back to the root namespace:         median 0.03-0.15 ms, p90 0.2-1.1 ms
(the medians are mostly the VM waking an idle thread; the p90 tails grow when other
processes keep both cores busy).
Compare probes with a capture on `host_if` (the link's own timestamps), never with
`delay` alone.
"""

from __future__ import annotations

import contextlib
import fcntl
import heapq
import os
import select
import socket
import statistics
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from tests.capture import PROTO_UDP, Capture, Packet
from tests.netlab import Namespace, namespace, sh

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
SPIN = 0.0003  # the last stretch before a release is busy-waited: sleeping overshoots by ~0.1 ms
MAX_HELD = 10_000  # packets in flight inside the link; beyond that the link drops, like a full queue


@dataclass
class DelayLink:
    ns: Namespace
    host_if: str  # the TUN in the root namespace: capture here for wire timestamps
    ns_if: str  # the TUN inside the namespace
    delay: float

    @property
    def host_ip(self) -> str:
        return f"10.200.{self.ns.index}.65"

    @property
    def ns_ip(self) -> str:
        return f"10.200.{self.ns.index}.66"

    @property
    def host_ip6(self) -> str:
        return f"fd00:201:{self.ns.index:x}::1"

    @property
    def ns_ip6(self) -> str:
        return f"fd00:201:{self.ns.index:x}::2"


@dataclass(order=True)
class _Held:
    release: float
    order: int
    data: bytes = field(compare=False)


class _Forwarder(threading.Thread):
    """Moves packets between two TUN descriptors; root→namespace ones are held `delay` seconds."""

    def __init__(self, host_fd: int, ns_fd: int, delay: float) -> None:
        super().__init__(name="delaylink", daemon=True)
        self._host_fd, self._ns_fd, self._delay = host_fd, ns_fd, delay
        self._wake_r, self._wake_w = os.pipe()
        self._held: list[_Held] = []
        self._count = 0
        self.dropped = 0

    def stop(self) -> None:
        os.write(self._wake_w, b"x")
        self.join(timeout=2.0)
        os.close(self._wake_r)
        os.close(self._wake_w)

    def run(self) -> None:
        poller = select.poll()
        for fd in (self._host_fd, self._ns_fd, self._wake_r):
            poller.register(fd, select.POLLIN)
        while True:
            wait_ms = self._wait_ms()
            for fd, _ in poller.poll(wait_ms):
                if fd == self._wake_r:
                    return
                self._read(fd)
            self._release_due()

    def _wait_ms(self) -> int | None:
        if not self._held:
            return None
        remaining = self._held[0].release - time.monotonic() - SPIN
        return max(0, int(remaining * 1000))

    def _read(self, fd: int) -> None:
        try:
            data = os.read(fd, 65535)
        except OSError:
            return
        if fd == self._ns_fd:
            self._write(self._host_fd, data)
        elif len(self._held) < MAX_HELD:
            self._count += 1
            heapq.heappush(self._held, _Held(time.monotonic() + self._delay, self._count, data))
        else:
            self.dropped += 1

    def _release_due(self) -> None:
        while self._held:
            remaining = self._held[0].release - time.monotonic()
            if remaining > SPIN:
                return
            while time.monotonic() < self._held[0].release:
                pass  # spin: bounded by SPIN
            self._write(self._ns_fd, heapq.heappop(self._held).data)

    @staticmethod
    def _write(fd: int, data: bytes) -> None:
        # e.g. the far side is already down during teardown: the packet is lost
        with contextlib.suppress(OSError):
            os.write(fd, data)


def open_tun(name: str) -> int:
    """Create TUN device `name` (IFF_TUN|IFF_NO_PI) in the caller's namespace; it lives while the fd does."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
        os.set_blocking(fd, False)
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextmanager
def delay_link(delay: float = 0.020) -> Iterator[DelayLink]:
    """A namespace behind a TUN link adding `delay` seconds to every round trip (root ns only)."""
    with namespace() as ns:
        link = DelayLink(ns=ns, host_if=f"hdd{ns.name[6:]}", ns_if=f"hde{ns.name[6:]}", delay=delay)
        host_fd = open_tun(link.host_if)
        ns_fd = -1
        forwarder: _Forwarder | None = None
        try:
            ns_fd = ns.call(lambda: open_tun(link.ns_if))
            _configure(link)
            forwarder = _Forwarder(host_fd, ns_fd, delay)
            forwarder.start()
            yield link
        finally:
            if forwarder is not None:
                forwarder.stop()
            # closing the descriptors deletes both (non-persistent) TUN devices
            os.close(host_fd)
            if ns_fd >= 0:
                os.close(ns_fd)


def _configure(link: DelayLink) -> None:
    sh("ip", "addr", "add", link.host_ip, "peer", f"{link.ns_ip}/32", "dev", link.host_if)
    sh("ip", "-6", "addr", "add", f"{link.host_ip6}/64", "dev", link.host_if, "nodad")
    sh("ip", "link", "set", link.host_if, "up")
    link.ns.exec("ip", "addr", "add", link.ns_ip, "peer", f"{link.host_ip}/32", "dev", link.ns_if)
    link.ns.exec("ip", "-6", "addr", "add", f"{link.ns_ip6}/64", "dev", link.ns_if, "nodad")
    link.ns.exec("ip", "link", "set", link.ns_if, "up")


# ---- self-measurement ----------------------------------------------------------------


@dataclass(frozen=True)
class ForwarderCost:
    """What the forwarder adds beyond `delay`, in seconds, from captures on both TUNs."""

    inbound_median: float
    inbound_p90: float
    outbound_median: float
    outbound_p90: float
    samples: int


def measure_forwarder(link: DelayLink, count: int = 50, port: int = 9999) -> ForwarderCost:
    """Send `count` UDP echoes through the link and time each leg on both TUNs' captures."""
    echo = link.ns.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stop = threading.Event()

    def serve() -> None:
        echo.settimeout(0.05)
        while not stop.is_set():
            try:
                data, peer = echo.recvfrom(2048)
            except TimeoutError:
                continue
            echo.sendto(data, peer)

    def ours(p: Packet) -> bool:
        return p.proto == PROTO_UDP and port in (p.sport, p.dport)

    server = threading.Thread(target=serve, daemon=True)
    with echo, client:
        echo.bind((link.ns_ip, port))
        client.settimeout(link.delay + 1.0)
        server.start()
        try:
            host_cap = Capture(link.host_if, keep=ours)
            ns_cap = Capture(link.ns_if, ns=link.ns, keep=ours)
            with host_cap, ns_cap:
                for i in range(count):
                    client.sendto(i.to_bytes(4, "big"), (link.ns_ip, port))
                    client.recvfrom(2048)
                host_cap.wait_for(lambda p: p.sport == port, count=count)
                ns_cap.wait_for(lambda p: p.sport == port, count=count)
        finally:
            stop.set()
            server.join(timeout=1.0)
    inbound, outbound = _legs(host_cap.packets, ns_cap.packets, port, link.delay)
    return ForwarderCost(
        inbound_median=statistics.median(inbound),
        inbound_p90=_p90(inbound),
        outbound_median=statistics.median(outbound),
        outbound_p90=_p90(outbound),
        samples=min(len(inbound), len(outbound)),
    )


def _legs(
    host: list[Packet], inside: list[Packet], port: int, delay: float
) -> tuple[list[float], list[float]]:
    def by_payload(packets: list[Packet], to_port: bool) -> dict[bytes, float]:
        return {p.payload: p.time for p in packets if (p.dport == port) == to_port}

    host_req, host_rep = by_payload(host, True), by_payload(host, False)
    ns_req, ns_rep = by_payload(inside, True), by_payload(inside, False)
    inbound = [ns_req[k] - host_req[k] - delay for k in host_req.keys() & ns_req.keys()]
    outbound = [host_rep[k] - ns_rep[k] for k in host_rep.keys() & ns_rep.keys()]
    return inbound, outbound


def _p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1] if len(values) > 1 else values[0]
