"""The API under a slowloris crowd: /healthz latency with and without it, in the same run.

    .venv/bin/python bench/api_slowloris.py [--clients 2000] [--seconds 15]

Starts `healthd run` on a free loopback port, measures /healthz (sequential requests)
alone, then opens CLIENTS connections that each send a request head one byte a second
for SECONDS (never finishing it), and measures /healthz again while they do. Reports how
many of the crowd were turned away at once (the connection cap's 503), how long the
others stayed open (the head timeout), and the daemon's descriptors during and after.
Traffic goes to 127.0.0.1 only; the whole run is bounded (SECONDS + 30 s).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEAD = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def healthz_ms(port: int, count: int) -> list[float]:
    """Sequential GET /healthz on a fresh connection each, in milliseconds."""
    times = []
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    for _ in range(count):
        began = time.perf_counter()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        if not answer.startswith(b"HTTP/1.1 200"):
            raise AssertionError(answer[:200])
        times.append((time.perf_counter() - began) * 1000)
        await asyncio.sleep(0.01)
    return times


async def slow_client(port: int, seconds: float, outcome: dict[str, list[float]]) -> None:
    began = time.monotonic()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        outcome["connect_failed"].append(0.0)
        return
    try:
        for byte in HEAD[: int(seconds)]:
            writer.write(bytes([byte]))
            try:
                data = await asyncio.wait_for(reader.read(200), 1.0)
            except TimeoutError:
                continue
            kind = "turned_away" if data.startswith(b"HTTP/1.1 503") else "closed"
            outcome[kind].append(time.monotonic() - began)
            return
        outcome["still_open"].append(time.monotonic() - began)
    except ConnectionError:
        outcome["closed"].append(time.monotonic() - began)
    finally:
        writer.close()


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def summary(times: list[float]) -> str:
    cuts = statistics.quantiles(times, n=100)
    return f"p50 {cuts[49]:.2f} ms, p99 {cuts[98]:.2f} ms, max {max(times):.2f} ms ({len(times)} requests)"


async def crowd(port: int, pid: int, clients: int, seconds: float) -> None:
    baseline = await healthz_ms(port, 200)
    fds_before = fds(pid)
    outcome: dict[str, list[float]] = {
        k: [] for k in ("turned_away", "closed", "still_open", "connect_failed")
    }
    tasks = [asyncio.create_task(slow_client(port, seconds, outcome)) for _ in range(clients)]
    await asyncio.sleep(1)
    during = await healthz_ms(port, 200)
    fds_during = fds(pid)
    await asyncio.wait_for(asyncio.gather(*tasks), seconds + 15)
    await asyncio.sleep(0.5)
    print(f"| /healthz alone | {summary(baseline)} |")
    print(f"| /healthz with {clients} slow clients | {summary(during)} |")
    print(f"| turned away at once (503) | {len(outcome['turned_away'])} |")
    closed = outcome["closed"]
    if closed:
        span = f"after {min(closed):.1f}-{max(closed):.1f} s"
        print(f"| closed by the server (made room for newer, or head timeout) | {len(closed)}, {span} |")
    print(
        f"| still open after {seconds:.0f} s / connect failed | {len(outcome['still_open'])} / "
        f"{len(outcome['connect_failed'])} |"
    )
    print(f"| daemon descriptors before / during / after | {fds_before} / {fds_during} / {fds(pid)} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=15)
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="healthd-slowloris-"))
    config = workdir / "healthd.yaml"
    config.write_text("services:\n  - name: s\n    checks:\n      - type: tcp\n        target: 127.0.0.1:9\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "healthd", "run", "-c", str(config), "--listen", f"127.0.0.1:{port}"],
        stderr=(workdir / "healthd.log").open("w"),
    )
    signal.alarm(int(args.seconds) + 60)  # the whole run is bounded, whatever hangs
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        print("| measure | value |\n|---|---|")
        asyncio.run(crowd(port, proc.pid, args.clients, args.seconds))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    log = (workdir / "healthd.log").read_text()
    print(f"\ndaemon log: {len(log.splitlines())} lines, {log.count('Traceback')} tracebacks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
