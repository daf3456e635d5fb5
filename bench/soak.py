"""Soak: N checks of every kind and outcome against loopback targets for a given time.

Every `--every` seconds it samples the daemon's descriptors, RSS, CPU share,
scheduler lag (p99 over the window) and verdict correctness (each check's
status against the one its target must give), then prints the samples and a
least-squares slope per hour of each figure: a leak shows as a slope that is
not ~0. RSS grows until every check's history is full (120 results: 4 minutes
at the default 2 s interval), so judge slopes from runs well past that, or
pass --warmup. Not in CI (it runs for minutes to hours):

    .venv/bin/python bench/soak.py --checks 2000 --duration 1800

Targets are on 127.0.0.1 only, in this process: a TCP listener, a closed port,
an HTTP server (200 and 500), a silent listener (timeouts), and 127.0.0.1 for
ICMP. Every loop is bounded by --duration.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import socketserver
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.healthd_process import Healthd, Scrape, between
from bench.procs import Interrupted, Processes, interrupt_on_signals
from bench.procstat import process_cpu, process_pss, process_rss, process_tree

SILENT_HOLD = 5.0  # seconds the silent listener keeps a connection before closing it


class _Accept(socketserver.BaseRequestHandler):
    def handle(self) -> None:  # accept and close
        pass


class _Silent(socketserver.BaseRequestHandler):
    def handle(self) -> None:  # accept, never answer (bounded), then close
        time.sleep(SILENT_HOLD)


class _Http(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = 200 if self.path == "/ok" else 500
        body = b"healthy\n" if status == 200 else b"broken\n"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass(frozen=True)
class Outcome:
    name: str  # the service holding checks of this outcome
    expect: str  # the status every such check must have: up or down
    check: dict[str, Any]


BACKLOG = 4096  # socketserver's default of 5 overflows at a few hundred connects/s: SYNs dropped


class _AcceptServer(socketserver.TCPServer):
    request_queue_size = BACKLOG  # accept and close needs no thread per connection


class _SilentServer(socketserver.ThreadingTCPServer):
    request_queue_size = BACKLOG
    daemon_threads = True


class _HttpServer(ThreadingHTTPServer):
    request_queue_size = BACKLOG


@contextmanager
def targets() -> Iterator[list[Outcome]]:
    """Start the loopback targets; yield one Outcome per kind x outcome."""
    servers: list[socketserver.TCPServer] = [
        _AcceptServer(("127.0.0.1", 0), _Accept),
        _SilentServer(("127.0.0.1", 0), _Silent),
        _HttpServer(("127.0.0.1", 0), _Http),
    ]
    for server in servers:
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, not listening: answers SYN with RST
    ok, silent, web = (int(s.server_address[1]) for s in servers)
    refused = closed.getsockname()[1]
    try:
        yield [
            Outcome("tcp-up", "up", {"type": "tcp", "target": f"127.0.0.1:{ok}"}),
            Outcome("tcp-refused", "down", {"type": "tcp", "target": f"127.0.0.1:{refused}"}),
            Outcome("syn-up", "up", {"type": "syn", "target": f"127.0.0.1:{ok}"}),
            Outcome("syn-refused", "down", {"type": "syn", "target": f"127.0.0.1:{refused}"}),
            Outcome("http-up", "up", {"type": "http", "url": f"http://127.0.0.1:{web}/ok"}),
            Outcome("http-500", "down", {"type": "http", "url": f"http://127.0.0.1:{web}/fail"}),
            Outcome("http-timeout", "down", {"type": "http", "url": f"http://127.0.0.1:{silent}/"}),
            Outcome("icmp-up", "up", {"type": "icmp", "target": "127.0.0.1"}),
        ]
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
        closed.close()


def write_config(path: Path, outcomes: list[Outcome], checks: int, interval: float, timeout: float) -> None:
    services = [
        {
            "name": outcome.name,
            "checks": [
                {"name": f"c{n:05d}", **outcome.check}
                for n in range(index, checks, len(outcomes))  # round-robin: every outcome ~N/8
            ],
        }
        for index, outcome in enumerate(outcomes)
    ]
    config = {
        "defaults": {"interval": interval, "timeout": timeout, "rise": 1, "fall": 1},
        "services": services,
    }
    path.write_text(json.dumps(config, indent=1))


@dataclass
class Sample:
    at: float  # seconds since start
    fds: int  # of the daemon and its worker processes
    processes: int  # the daemon and its workers: a restarted worker shows as a dip
    load: float  # the machine's 1-minute load average
    rss_mb: float  # summed over the tree: a page main and the workers share counts per process
    pss_mb: float  # each page once (smaps_rollup Pss), as systemd's MemoryCurrent counts it
    cpu_share: float  # of one core over the window
    lag_p99_ms: float
    probes_per_s: float
    wrong: int  # checks whose status is not what their target must give


def wrong_verdicts(daemon: Healthd, outcomes: list[Outcome]) -> int:
    wrong = 0
    for outcome in outcomes:
        body, _ = daemon.get(f"/api/v1/services/{outcome.name}")
        wrong += sum(check["status"] != outcome.expect for check in json.loads(body)["checks"])
    return wrong


Last = tuple[Scrape, float]  # the previous scrape and the daemon's CPU seconds then


def sample(daemon: Healthd, outcomes: list[Outcome], started: float, last: Last) -> tuple[Sample, Last]:
    scrape, cpu = daemon.scrape(), process_cpu(daemon.pid)
    window = between(last[0], scrape)
    return Sample(
        at=time.monotonic() - started,
        fds=sum(len(os.listdir(f"/proc/{pid}/fd")) for pid in process_tree(daemon.pid)),  # workers too
        processes=len(process_tree(daemon.pid)),
        load=os.getloadavg()[0],
        rss_mb=process_rss(daemon.pid) / 2**20,
        pss_mb=process_pss(daemon.pid) / 2**20,
        cpu_share=(cpu - last[1]) / window.seconds if window.seconds > 0 else 0.0,
        lag_p99_ms=window.lag_quantile(0.99) * 1000,
        probes_per_s=window.rate,
        wrong=wrong_verdicts(daemon, outcomes),
    ), (scrape, cpu)


def slope_per_hour(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, per hour."""
    if len(points) < 2:
        return 0.0
    mean_t = sum(t for t, _ in points) / len(points)
    mean_v = sum(v for _, v in points) / len(points)
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    if spread == 0:
        return 0.0
    return sum((t - mean_t) * (v - mean_v) for t, v in points) / spread * 3600


def report(samples: list[Sample]) -> str:
    lines = [
        "| t (s) | processes | fds | RSS (MB) | PSS (MB) | CPU (core) | lag p99 (ms) | probes/s "
        "| wrong verdicts | load |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in samples:
        lines.append(
            f"| {s.at:.0f} | {s.processes} | {s.fds} | {s.rss_mb:.1f} | {s.pss_mb:.1f} | {s.cpu_share:.3f} "
            f"| {s.lag_p99_ms:.1f} | {s.probes_per_s:.0f} | {s.wrong} | {s.load:.1f} |"
        )
    lines += ["", "| figure | slope per hour |", "|---|---:|"]
    for name, unit in (
        ("fds", ""),
        ("rss_mb", " MB"),
        ("pss_mb", " MB"),
        ("cpu_share", " core"),
        ("lag_p99_ms", " ms"),
    ):
        slope = slope_per_hour([(s.at, float(getattr(s, name))) for s in samples])
        lines.append(f"| {name} | {slope:+.3f}{unit} |")
    lines.append(f"| wrong verdicts (total over samples) | {sum(s.wrong for s in samples)} |")
    return "\n".join(lines)


def soak(
    checks: int, duration: float, every: float, interval: float, timeout: float, warmup: float
) -> list[Sample]:
    workdir = Path(tempfile.mkdtemp(prefix="healthd-soak-"))
    procs = Processes(workdir)
    with targets() as outcomes:
        config = workdir / "config.json"
        write_config(config, outcomes, checks, interval, timeout)
        daemon = Healthd(procs, config, name="soak")
        try:
            time.sleep(max(warmup, interval + timeout + 1))  # every check has a first verdict
            started = time.monotonic()
            last = (daemon.scrape(), process_cpu(daemon.pid))
            samples: list[Sample] = []
            while time.monotonic() - started + every <= duration:  # bounded by --duration
                time.sleep(every)
                if not daemon.alive():
                    raise RuntimeError(f"healthd exited\n{procs.log_tail('soak')}")
                taken, last = sample(daemon, outcomes, started, last)
                samples.append(taken)
                print(
                    f"  t={taken.at:.0f}s fds={taken.fds} rss={taken.rss_mb:.1f}MB pss={taken.pss_mb:.1f}MB "
                    f"cpu={taken.cpu_share:.3f} "
                    f"lag_p99={taken.lag_p99_ms:.1f}ms {taken.probes_per_s:.0f}/s wrong={taken.wrong}",
                    file=sys.stderr,
                )
        finally:
            daemon.stop()
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checks", type=int, default=400, help="checks in all (default 400)")
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of sampling (default 300)")
    parser.add_argument("--every", type=float, default=30.0, help="seconds between samples (default 30)")
    parser.add_argument("--interval", type=float, default=2.0, help="check interval, seconds (default 2)")
    parser.add_argument("--timeout", type=float, default=1.0, help="check timeout, seconds (default 1)")
    parser.add_argument("--warmup", type=float, default=0.0, help="seconds before the first sample")
    args = parser.parse_args(argv)
    # a kill or Ctrl-C (and a run far past its length) still stops the daemon: soak's finally
    interrupt_on_signals(args.warmup + args.interval + args.duration + args.every + 600)
    try:
        samples = soak(args.checks, args.duration, args.every, args.interval, args.timeout, args.warmup)
    except Interrupted as exc:
        print(f"soak: stopped by {exc}; the daemon and targets are stopped", file=sys.stderr)
        return 1
    setting = f"interval {args.interval:g}s, {args.duration:g}s, a sample every {args.every:g}s"
    print(f"soak: {args.checks} checks, {setting}")
    print(report(samples))
    return 1 if any(s.wrong for s in samples) else 0


if __name__ == "__main__":
    sys.exit(main())
