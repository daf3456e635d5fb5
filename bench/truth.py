"""Truth under load: what healthd reports for a path with 20 ms of added delay while it is busy.

One daemon probes `background` tcp checks every 1 s on loopback (the load) and four checks
through the test lab's delay link (`tests/delaylink.py`: TUN devices and a forwarder, since
this kernel has no netem) into a namespace this step creates: tcp, syn, icmp (`count: 20`)
and http. `/metrics` is read every second meanwhile.

The wire reference is a packet capture (AF_PACKET, kernel timestamps) on the link's
root-side TUN, of the very probes healthd sends: SYN -> SYN-ACK per connection (tcp,
syn), echo request -> reply per (id, seq) (icmp), SYN -> first response byte per
connection (http: connect plus request, what the probe's latency spans). Each check's
error is the median of its reported latencies minus the median of its wire gaps.
Needs root; skipped with the reason otherwise. Traffic: loopback and the namespace only.
"""

from __future__ import annotations

import json
import os
import selectors
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bench.healthd_process import CHECKS_PER_SERVICE, Healthd, between, write_config
from bench.kinds import KINDS
from bench.measure import Bench
from bench.polling import Poller

GOALS_MS = {"tcp": 2.0, "syn": 2.0, "icmp": 2.0, "http": 10.0}
DELAY = 0.020
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n"


@dataclass
class TruthCheck:
    type: str
    reported_ms: list[float] = field(default_factory=list)
    wire_ms: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def error_ms(self) -> float:
        if not self.reported_ms or not self.wire_ms:
            return float("nan")
        return statistics.median(self.reported_ms) - statistics.median(self.wire_ms)

    @property
    def met(self) -> bool:
        return not self.failures and abs(self.error_ms) <= GOALS_MS[self.type]


@dataclass
class TruthRun:
    background: int
    checks: dict[str, TruthCheck]
    background_rate: float
    background_failures: float
    lag_p99: float
    metrics_reads: int
    metrics_errors: int
    link_inbound_ms: float  # what the forwarder adds beyond the delay, median
    skipped: str = ""


def skip_reason() -> str:
    if os.geteuid() != 0:
        return "needs root (network namespaces, TUN devices, packet capture)"
    if not os.path.exists("/dev/net/tun"):
        return "needs /dev/net/tun"
    return ""


def run(bench: Bench, *, background: int, seconds: float) -> TruthRun:
    from tests.delaylink import delay_link, measure_forwarder

    with delay_link(DELAY) as link, _servers(link) as ports:
        cost = measure_forwarder(link, count=30)
        path = bench.config_path()
        truth = _truth_checks(link.ns_ip, ports)
        checks = [KINDS["tcp"].check(i) for i in range(background)] + truth
        write_config(path, checks, interval=1.0, timeout=1.0)
        names = {c["type"]: _name(background + i) for i, c in enumerate(truth)}
        daemon = Healthd(bench.procs, path)
        try:
            time.sleep(5.0 + bench.warmup)  # the icmp check's first 20 echoes are done
            return _measure(daemon, link, ports, names, background, seconds, cost.inbound_median)
        finally:
            daemon.stop()


def _name(index: int) -> tuple[str, str]:
    return f"bench-{index // CHECKS_PER_SERVICE:04d}", f"c{index:05d}"


def _truth_checks(ip: str, ports: dict[str, int]) -> list[dict[str, Any]]:
    return [
        {"type": "tcp", "target": f"{ip}:{ports['tcp']}"},
        {"type": "syn", "target": f"{ip}:{ports['syn']}"},
        {"type": "icmp", "target": ip, "count": 20, "interval": 5.0, "timeout": 4.0},
        {"type": "http", "url": f"http://{ip}:{ports['http']}/"},
    ]


def _measure(
    daemon: Healthd,
    link: Any,
    ports: dict[str, int],
    names: dict[str, tuple[str, str]],
    background: int,
    seconds: float,
    inbound: float,
) -> TruthRun:
    from tests.capture import Capture

    ns_ip = link.ns_ip
    since = time.time()
    keep = lambda p: ns_ip in (p.src, p.dst)  # noqa: E731 - a one-line filter
    with Capture(link.host_if, keep=keep, max_packets=50_000, max_seconds=seconds + 30) as cap:
        with Poller(daemon.base, ["/metrics"]) as poller:
            first = daemon.scrape()
            time.sleep(seconds)
            last = daemon.scrape()
        until = time.time()
    packets = [p for p in cap.packets if since <= p.time <= until]
    checks = {
        kind: _reported(daemon, kind, svc, chk, since, until - 1.0) for kind, (svc, chk) in names.items()
    }
    for kind, wire in _wire(packets, ports, ns_ip).items():
        checks[kind].wire_ms = wire
    delta = between(first, last)
    stats = poller.stats["/metrics"]
    return TruthRun(
        background=background,
        checks=checks,
        background_rate=delta.rate,
        background_failures=delta.failures - sum(len(c.failures) for c in checks.values()),
        lag_p99=delta.lag_quantile(0.99),
        metrics_reads=stats.reads,
        metrics_errors=len(stats.errors),
        link_inbound_ms=inbound * 1000,
    )


def _reported(daemon: Healthd, kind: str, service: str, check: str, since: float, until: float) -> TruthCheck:
    body, _ = daemon.get(f"/api/v1/services/{service}/checks/{check}/history")
    out = TruthCheck(kind)
    for result in json.loads(body)["results"]:
        at = datetime.fromisoformat(result["time"]).timestamp()
        if not since <= at <= until:
            continue  # the capture saw this whole probe only inside the window
        if result["ok"]:
            out.reported_ms.append(result["latency_ms"])
        else:
            out.failures.append((result.get("error") or {}).get("kind", "?"))
    return out


def _wire(packets: list[Any], ports: dict[str, int], ns_ip: str) -> dict[str, list[float]]:
    from bench.syn_rtt import gaps_by_port

    out = {kind: [g * 1000 for g in gaps_by_port(packets, ports[kind]).values()] for kind in ("tcp", "syn")}
    requests = {(p.icmp_id, p.seq): p.time for p in packets if p.is_icmp and p.icmp_type == 8}
    replies = {(p.icmp_id, p.seq): p.time for p in packets if p.is_icmp and p.icmp_type == 0}
    out["icmp"] = [(replies[k] - requests[k]) * 1000 for k in requests.keys() & replies.keys()]
    out["http"] = _http_gaps(packets, ports["http"])
    return out


def _http_gaps(packets: list[Any], port: int) -> list[float]:
    from tests.capture import SYN

    syn_at: dict[int, float] = {}
    answer_at: dict[int, float] = {}
    for p in sorted((p for p in packets if p.is_tcp), key=lambda p: p.time):
        if p.dport == port and p.flags == SYN:
            syn_at.setdefault(p.sport, p.time)
        elif p.sport == port and p.payload:
            answer_at.setdefault(p.dport, p.time)
    return [(answer_at[k] - syn_at[k]) * 1000 for k in syn_at.keys() & answer_at.keys()]


@contextmanager
def _servers(link: Any) -> Iterator[dict[str, int]]:
    """Listeners inside the namespace, served by one thread here: tcp and syn accept and close,
    http answers one `200 OK` per connection."""
    import socket

    listeners = {kind: link.ns.socket(socket.AF_INET, socket.SOCK_STREAM) for kind in ("tcp", "syn", "http")}
    stop = threading.Event()
    selector = selectors.DefaultSelector()
    for kind, sock in listeners.items():
        sock.bind((link.ns_ip, 0))
        sock.listen(1024)
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ, kind)
    thread = threading.Thread(target=_serve, args=(selector, stop), daemon=True)
    thread.start()
    try:
        yield {kind: sock.getsockname()[1] for kind, sock in listeners.items()}
    finally:
        stop.set()
        thread.join(timeout=2.0)
        for key in list(selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        selector.close()


def _serve(selector: selectors.BaseSelector, stop: threading.Event) -> None:
    while not stop.is_set():
        for key, _ in selector.select(timeout=0.1):
            sock = key.fileobj
            if key.data in ("tcp", "syn", "http"):
                try:
                    conn, _ = sock.accept()  # type: ignore[union-attr]
                except OSError:
                    continue
                if key.data == "http":
                    conn.setblocking(False)
                    selector.register(conn, selectors.EVENT_READ, "request")
                else:
                    conn.close()
            else:
                _answer(selector, sock)


def _answer(selector: selectors.BaseSelector, conn: Any) -> None:
    try:
        data = conn.recv(4096)
        if data:
            conn.send(RESPONSE)
    except OSError:
        pass
    selector.unregister(conn)
    conn.close()
