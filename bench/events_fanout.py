"""Does a crowd on `GET /api/v1/events` slow probing? Scheduler lag with 0 vs N SSE subscribers.

One real healthd process probes `--checks` TCP checks every second on
127.0.0.1; `--flapping` of them aim at a port this script opens and closes
every `--toggle` seconds (rise 1, fall 1), so each toggle is a burst of check
and service events. The same daemon is measured in alternating windows with
no subscriber and with `--subscribers` loopback SSE clients (in a process of
their own). Per window: lag p50/p99 from `healthd_scheduler_lag_seconds`
deltas, probes run, the daemon's own CPU, and on the subscriber side the
events received and their delivery delay (receive time minus event time).

    .venv/bin/python bench/events_fanout.py                 # 1,000 checks, 1,000 subscribers, ~3 min
    .venv/bin/python bench/events_fanout.py --seconds 10 --rounds 1 --json /tmp/fanout.json

Traffic stays on 127.0.0.1. Every child is stopped from a `finally`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.healthd_process import Healthd, between
from bench.procs import Processes, free_port, wait_line
from bench.procstat import load_average, machine, machine_busy_share, process_cpu

PYTHON = Path(sys.executable)
SCRIPT = Path(__file__).resolve()


# ---- child: the targets --------------------------------------------------------------------


async def run_targets(steady: int, flapping: int, toggle: float, seconds: float) -> None:
    """A steady listener, and one that exists only every other `toggle` seconds."""

    async def close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    await asyncio.start_server(close, "127.0.0.1", steady, reuse_address=True, backlog=4096)
    print("ready", flush=True)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        server = await asyncio.start_server(close, "127.0.0.1", flapping, reuse_address=True, backlog=4096)
        await asyncio.sleep(toggle)
        server.close()
        await server.wait_closed()
        await asyncio.sleep(toggle)


# ---- child: the subscribers ----------------------------------------------------------------


async def subscriber(port: int, stats: dict[str, Any], connected: asyncio.Event, total: int) -> None:
    """Counts events; samples the delivery delay of the newest event in each read (cheap: no
    per-event parsing, so this process does not take the CPU the daemon needs)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /api/v1/events HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n")
    await writer.drain()
    try:
        while chunk := await reader.read(1 << 16):
            if b": connected" in chunk:
                stats["connected"] += 1
                if stats["connected"] == total:
                    connected.set()
            count = chunk.count(b"\ndata: ")
            if count:
                stats["events"] += count
                newest = chunk.rsplit(b"\ndata: ", 1)[1]
                at = newest.find(b'"time":"')
                if at >= 0 and len(stats["delays"]) < 200_000:
                    sent = newest[at + 8 : at + 32].decode()
                    stats["delays"].append(time.time() - _parse_time(sent))
        stats["ended"] += 1
    finally:
        writer.close()


def _parse_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def run_subscribers(port: int, count: int, seconds: float) -> None:
    stats: dict[str, Any] = {"connected": 0, "events": 0, "ended": 0, "delays": []}
    connected = asyncio.Event()
    tasks = []
    for start in range(0, count, 50):  # gradually: the listen backlog is finite
        for _ in range(start, min(start + 50, count)):
            tasks.append(asyncio.create_task(subscriber(port, stats, connected, count)))
        await asyncio.sleep(0.02)
    async with asyncio.timeout(60):
        await connected.wait()
    print("ready", flush=True)
    await asyncio.sleep(seconds)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    delays = sorted(stats.pop("delays"))
    stats["delay_ms"] = {
        "p50": round(delays[len(delays) // 2] * 1000, 2) if delays else None,
        "p99": round(delays[int(len(delays) * 0.99)] * 1000, 2) if delays else None,
        "max": round(delays[-1] * 1000, 2) if delays else None,
    }
    print(json.dumps(stats), flush=True)


# ---- in-process: what one flush to N real connections costs the event loop ----------------


async def flush_cost(count: int, flushes: int = 50) -> dict[str, float]:
    """Time `EventHub.flush()` writing one event to `count` SSE subscribers of a real app."""
    from aiohttp import web
    from healthd.api import EVENTS as EVENTS_KEY
    from healthd.api import get_events
    from healthd.events import EventHub

    hub = EventHub(flush_interval=3600.0)  # flushed by hand below
    app = web.Application()
    app[EVENTS_KEY] = hub
    app.router.add_get("/api/v1/events", get_events)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
    await site.start()
    port = runner.addresses[0][1]
    stats: dict[str, Any] = {"connected": 0, "events": 0, "ended": 0, "delays": []}
    connected = asyncio.Event()
    tasks = [asyncio.create_task(subscriber(port, stats, connected, count)) for _ in range(count)]
    async with asyncio.timeout(60):
        await connected.wait()
        while hub.subscribers < count:
            await asyncio.sleep(0.01)
    costs = []
    for n in range(flushes):
        hub.publish("check", service="bench", check=f"c{n}", status="down", previous="up")
        started = time.perf_counter()
        hub.flush()
        costs.append(time.perf_counter() - started)
        await asyncio.sleep(0.02)  # the readers take it
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await runner.cleanup()
    costs.sort()
    return {
        "subscribers": count,
        "flush_ms_p50": round(costs[len(costs) // 2] * 1000, 3),
        "flush_ms_max": round(costs[-1] * 1000, 3),
        "per_subscriber_us": round(costs[len(costs) // 2] / count * 1e6, 2),
    }


# ---- the driver ----------------------------------------------------------------------------


def write_config(path: Path, checks: int, flapping: int, steady_port: int, flap_port: int) -> None:
    def target(n: int) -> str:
        return f"127.0.0.1:{flap_port if n < flapping else steady_port}"

    service_checks = [{"name": f"c{n:05d}", "type": "tcp", "target": target(n)} for n in range(checks)]
    services = [
        {"name": f"bench-{n // 100:03d}", "checks": service_checks[n : n + 100]}
        for n in range(0, checks, 100)
    ]
    config = {
        "defaults": {"interval": "1s", "timeout": "500ms", "rise": 1, "fall": 1, "history": 10},
        "services": services,
    }
    path.write_text(json.dumps(config, indent=1))


def window(daemon: Healthd, seconds: float, others: int | None = None) -> dict[str, Any]:
    cpu_before, first, busy_before = process_cpu(daemon.pid), daemon.scrape(), machine()
    others_before = process_cpu(others) if others else 0.0
    time.sleep(seconds)
    second, cpu_after, busy_after = daemon.scrape(), process_cpu(daemon.pid), machine()
    others_after = process_cpu(others) if others else 0.0
    measured = between(first, second)
    return {
        "seconds": round(measured.seconds, 2),
        "probes_per_s": round(measured.rate, 1),
        "failures": measured.failures,
        "lag_p50_ms": round(measured.lag_quantile(0.5) * 1000, 3),
        "lag_p99_ms": round(measured.lag_quantile(0.99) * 1000, 3),
        "within_100ms": round(measured.lag_share_within(0.1), 5),
        "daemon_cpu_share": round((cpu_after - cpu_before) / measured.seconds, 3),
        "subscriber_process_cpu_share": round((others_after - others_before) / measured.seconds, 3),
        "machine_busy_share": round(machine_busy_share(busy_before, busy_after), 3),
    }


def with_subscribers(procs: Processes, daemon: Healthd, count: int, seconds: float) -> dict[str, Any]:
    argv = [str(PYTHON), str(SCRIPT), "--subscribers-child", str(daemon.port), str(count), str(seconds + 1)]
    proc = procs.start("subscribers", argv, stdout_pipe=True)
    try:
        wait_line(proc, b"ready", timeout=90)
        measured = window(daemon, seconds, others=proc.pid)
        proc.wait(timeout=seconds + 30)
        assert proc.stdout is not None
        lines = [line for line in proc.stdout.read().decode().splitlines() if line.startswith("{")]
        measured["subscribers"] = json.loads(lines[-1]) if lines else None
        return measured
    finally:
        procs.stop("subscribers")


def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="healthd-fanout-"))
    procs = Processes(workdir)
    steady, flap = free_port(), free_port()
    budget = (args.seconds * 2 + 15) * args.rounds + 60
    try:
        times = (str(args.toggle), str(budget))
        argv = [str(PYTHON), str(SCRIPT), "--targets-child", str(steady), str(flap), *times]
        wait_line(procs.start("targets", argv, stdout_pipe=True), b"ready", timeout=30)
        config = workdir / "config.json"
        write_config(config, args.checks, args.flapping, steady, flap)
        daemon = Healthd(procs, config)
        time.sleep(3)  # past the first verdicts
        rounds = []
        for _ in range(args.rounds):
            idle = window(daemon, args.seconds)
            busy = with_subscribers(procs, daemon, args.subscribers, args.seconds)
            rounds.append({"subscribers_0": idle, f"subscribers_{args.subscribers}": busy})
            print(json.dumps(rounds[-1]), flush=True)
        daemon.stop()
        cost = asyncio.run(flush_cost(args.subscribers))
        print(json.dumps(cost), flush=True)
        return {
            "flush_cost": cost,
            "checks": args.checks,
            "flapping": args.flapping,
            "toggle_s": args.toggle,
            "subscribers": args.subscribers,
            "cpus": os.cpu_count(),
            "load_average": load_average(),
            "rounds": rounds,
        }
    finally:
        procs.stop_all()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--checks", type=int, default=1000)
    parser.add_argument("--flapping", type=int, default=10, help="checks whose target comes and goes")
    parser.add_argument("--toggle", type=float, default=2.0, help="seconds up, then down")
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each measured window")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--flush-cost-only", action="store_true", help="only the in-process flush timing")
    parser.add_argument("--targets-child", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--subscribers-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.targets_child:
        steady, flap, toggle, seconds = args.targets_child
        asyncio.run(run_targets(int(steady), int(flap), float(toggle), float(seconds)))
        return
    if args.subscribers_child:
        port, count, seconds = args.subscribers_child
        asyncio.run(run_subscribers(int(port), int(count), float(seconds)))
        return
    if args.flush_cost_only:
        print(json.dumps(asyncio.run(flush_cost(args.subscribers))))
        return
    result = run(args)
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
