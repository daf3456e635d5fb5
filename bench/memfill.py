"""Memory of a full history, measured in a process of its own.

A 10,000-check daemon at a 10 s interval needs 20 minutes to fill
`history: 120`; the bench cannot wait that long. This fills the daemon's own
`Store` with results shaped exactly as the TCP probe and `run_probe` build
them (two phases, an `address` detail formatted per probe) and reports the
resident memory it took (`bytes_per_result`: the history's share, measured
before the uptime fill; `bytes_per_later_result`: what a result after each
check's first adds, since a ring is reserved whole with its first result).
With `--uptime-days` it also fills every bucket of each check's uptime rings
(30 days is what the 30 d window holds; the rings are preallocated, so
filling touches their pages but cannot grow them). With
`--snapshot DIR` it then measures a snapshot of all of it: the time the copy
holds the event loop, the longest stall of a 1 ms ticker on the loop during
the whole write (and, for reference, during one idle second before it), the
encode+write time in the executor, the file size, and the time to read it
back and restore it. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from bench.procstat import process_rss


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--checks", type=int, default=10_000)
    parser.add_argument("--history", type=int, default=120)
    parser.add_argument("--uptime-days", type=int, default=0, help="fill this many days of uptime buckets")
    parser.add_argument("--snapshot", type=Path, help="measure a snapshot written into this directory")
    args = parser.parse_args(argv)

    from healthd.results import ProbeOutcome, ProbeResult
    from healthd.store import CheckInfo, ServiceInfo, Store

    pid = os.getpid()
    gc.collect()
    rss_start = process_rss(pid)
    store = Store(probe_histograms=True)
    services = [
        ServiceInfo(
            name=f"bench-{s:04d}",
            labels={"bench": "yes"},
            checks=tuple(
                CheckInfo(
                    f"bench-{s:04d}",
                    f"c{s * 100 + c:05d}",
                    "tcp",
                    f"127.70.0.{1 + c % 50}:{20000 + s}",
                    2,
                    3,
                    args.history,
                )
                for c in range(100)
            ),
        )
        for s in range(args.checks // 100)
    ]
    store.apply(services)
    gc.collect()
    before = process_rss(pid)
    keys = [info.key for svc in services for info in svc.checks]
    now = time.time()
    after_first = before
    for round_ in range(args.history):
        if round_ == 1:
            gc.collect()
            after_first = process_rss(pid)
        for n, key in enumerate(keys):
            # what probe_tcp returns and run_probe turns into a result, allocation for allocation
            outcome = ProbeOutcome(
                phases={"resolve": 1e-6, "connect": 1e-4 + n * 1e-9},
                # probe_tcp formats the address per probe (format_sockaddr); so does this
                details={"address": f"127.70.0.{1 + n % 50}:{20000 + n // 100}"},
                latency=1e-4 + round_ * 1e-9,
            )
            result = ProbeResult(
                time=now + round_,
                ok=True,
                duration=2e-4 + n * 1e-9,
                latency=outcome.latency,
                phases=outcome.phases,
                details=outcome.details,
                gauges=outcome.gauges,
            )
            store.record(key, result)
    gc.collect()
    filled = process_rss(pid)
    if args.uptime_days:
        fill_uptime(store, now + args.history, args.uptime_days)
    gc.collect()
    after = process_rss(pid)
    results = args.checks * args.history
    report: dict[str, Any] = {
        "checks": args.checks,
        "history": args.history,
        "uptime_days": args.uptime_days,
        "rss_start": rss_start,
        "rss_before": before,
        "rss_after": after,
        "rss_history_filled": filled,
        "bytes_per_result": (filled - before) / results,
        # what each result after a check's first adds: the rings are reserved at full size with
        # the first result, so a daemon already past its first round grows by this much
        "bytes_per_later_result": (filled - after_first) / max(results - args.checks, 1),
        # the store's checks as apply() built them (uptime rings preallocated), before any result
        "bytes_per_check_applied": (before - rss_start) / args.checks,
        "bytes_per_check": (after - before) / args.checks,
        "bytes_per_check_total": (after - rss_start) / args.checks,
    }
    if args.snapshot is not None:
        gc.freeze()  # as the daemon does once it is up (cli.serve)
        report["snapshot"] = asyncio.run(measure_snapshot(store, args.snapshot))
    print(json.dumps(report))
    return 0


def fill_uptime(store: Any, now: float, days: int) -> None:
    """One probe in every minute of the last hour, every hour of the last 7 days (or fewer)
    and every day of the last `days` (up to 90): each bucket of each ring holds data."""
    times = sorted(
        {now - d * 86400 for d in range(min(days, 90))}
        | {now - h * 3600 for h in range(min(days * 24, 168))}
        | {now - m * 60 for m in range(60)}
    )
    for state in store.all_states():
        for t in times:
            state.uptime.observe(t, True, 1e-4, False)


async def measure_snapshot(store: Any, directory: Path) -> dict[str, float]:
    from healthd import snapshot
    from healthd.statefile import StateFile

    stalls: list[float] = []

    async def ticker() -> None:
        while True:
            planned = time.perf_counter() + 0.001
            await asyncio.sleep(0.001)
            stalls.append(time.perf_counter() - planned)

    state_file = StateFile(store, directory)
    tick = asyncio.create_task(ticker())
    await asyncio.sleep(1.0)  # the reference: the same ticker with nothing else to do
    idle = max(stalls, default=0.0)
    stalls.clear()
    started = time.perf_counter()
    assert await state_file.write()
    total = time.perf_counter() - started
    tick.cancel()
    data = state_file.path.read_bytes()
    read_started = time.perf_counter()
    restored = snapshot.restore(store, snapshot.decode(data))
    restore_seconds = time.perf_counter() - read_started
    assert restored == len(list(store.all_states()))
    return {
        "bytes": state_file.last.bytes,
        "capture_seconds_on_loop": state_file.last.capture_seconds,
        "encode_write_seconds_in_executor": state_file.last.write_seconds,
        "total_seconds": total,
        "longest_loop_stall_seconds": max(stalls, default=0.0),
        "longest_loop_stall_idle_seconds": idle,
        "decode_restore_seconds": restore_seconds,
    }


if __name__ == "__main__":
    sys.exit(main())
