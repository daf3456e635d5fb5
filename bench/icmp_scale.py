"""ICMP at scale: one echo to each of 1,000 loopback addresses, healthd's probe code vs fping.

    sudo .venv/bin/python -m bench.icmp_scale [--targets 1000] [--runs 9]

Every run pings the same addresses (127.0.x.y; the kernel answers for all of
127.0.0.0/8) first with `fping -c1 -q -i0` and then with healthd's ICMP probe,
one `run_probe(probe_icmp, check, resources)` per address, all at once on one event loop,
as the scheduler would run them. fping's figures are its process's rusage,
start-up included (a few ms); healthd's are the CPU time of its process over
the batch, in an already running process (the daemon is long-lived; its
interpreter start-up is not part of a probe). A warm-up probe opens the shared
socket first. Results are medians over the runs, with the range after them.
Traffic goes to loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass

from healthd.config import IcmpCheck
from healthd.probes import ProbeResources
from healthd.probes.icmp import probe_icmp
from healthd.scheduler import run_probe


@dataclass
class Batch:
    wall: float  # seconds
    cpu: float  # seconds, user + sys
    answered: int


def addresses(count: int) -> list[str]:
    """127.0.1.1 onwards, 250 per /24, never a .0 or .255."""
    return [f"127.0.{1 + i // 250}.{1 + i % 250}" for i in range(count)]


def run_fping(targets: Sequence[str]) -> Batch:
    with tempfile.TemporaryFile("w+") as report:  # a file, not a pipe: 1000 lines would fill a pipe
        started = time.perf_counter()
        proc = subprocess.Popen(
            ["fping", "-c1", "-q", "-i0", "-t500", *targets], stdout=subprocess.DEVNULL, stderr=report
        )
        # wait4 gives this child's own rusage (getrusage(CHILDREN) would sum every child so far)
        _, _, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = 0  # reaped above
        report.seek(0)
        # -q -c1 prints one "addr : xmt/rcv/%loss = 1/1/0%, ..." line per target
        answered = sum(1 for line in report if "= 1/1/" in line)
    return Batch(wall, usage.ru_utime + usage.ru_stime, answered)


async def healthd_batch(checks: Sequence[IcmpCheck], resources: ProbeResources) -> Batch:
    # a full collection of this small process's heap would land in a random batch (tens of ms);
    # start each from a collected heap, so batches compare (young-generation collections still count)
    gc.collect()
    cpu_before, started = time.process_time(), time.perf_counter()
    results = await asyncio.gather(*(run_probe(probe_icmp, check, resources) for check in checks))
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_before
    return Batch(wall, cpu, sum(1 for result in results if result.ok))


async def healthd_runs(checks: Sequence[IcmpCheck], runs: int, fping: list[Batch]) -> list[Batch]:
    """healthd's batches, each right after an fping batch (same run, same machine state)."""
    ours = []
    for _ in range(runs):
        # no socket of ours is open while fping runs: an open raw ICMP socket would be handed
        # a copy of each of fping's replies, at fping's expense
        fping.append(await asyncio.to_thread(run_fping, [check.target for check in checks]))
        async with ProbeResources() as resources:
            warm = await run_probe(probe_icmp, checks[0], resources)  # opens the socket, outside the batch
            if not warm.ok:
                sys.exit(f"healthd cannot ping {checks[0].target}: {warm.error_kind}: {warm.error_message}")
            await asyncio.sleep(0.1)
            ours.append(await healthd_batch(checks, resources))
    return ours


def summary(batches: Sequence[Batch], targets: int) -> str:
    def cell(values: list[float], scale: float, unit: str) -> str:
        mid = statistics.median(values) * scale
        return f"{mid:,.1f} {unit} [{min(values) * scale:,.1f}-{max(values) * scale:,.1f}]"

    walls, cpus = [b.wall for b in batches], [b.cpu for b in batches]
    answered = min(b.answered for b in batches)
    per_probe = cell([c / targets for c in cpus], 1e6, "µs")
    return f"| {cell(walls, 1e3, 'ms')} | {cell(cpus, 1e3, 'ms')} | {per_probe} | {answered}/{targets} |"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--targets", type=int, default=1000, help="loopback addresses (default 1000)")
    parser.add_argument("--runs", type=int, default=9, help="batches per tool (default 9)")
    args = parser.parse_args(argv)
    if not 1 <= args.targets <= 60_000 or not 1 <= args.runs <= 50:
        parser.error("--targets must be 1..60000 and --runs 1..50")
    if shutil.which("fping") is None:
        sys.exit("needs fping (Debian package fping)")
    targets = addresses(args.targets)
    checks = [
        IcmpCheck.model_validate({"type": "icmp", "name": f"c{i}", "target": t, "timeout": "1s"})
        for i, t in enumerate(targets)
    ]
    fping: list[Batch] = []
    ours = asyncio.run(healthd_runs(checks, args.runs, fping))
    ratio = statistics.median(b.cpu for b in ours) / statistics.median(b.cpu for b in fping)
    best = min(b.cpu for b in ours) / min(b.cpu for b in fping)
    print(f"ICMP echo, 1 request to each of {args.targets} loopback addresses, {args.runs} runs")
    print("| tool | wall time | CPU time (user+sys) | CPU per echo | answered (worst run) |")
    print("|---|---|---|---|---|")
    print("| fping -c1 -q -i0 " + summary(fping, args.targets))
    print("| healthd probe_icmp " + summary(ours, args.targets))
    print(f"\nhealthd / fping CPU time: {ratio:.2f}x of the medians, {best:.2f}x of the best runs", end="")
    print(" (goal: at most 2x)")


if __name__ == "__main__":
    main()
