"""The bench's reference steps: the C epoll connect loop and fping, paced and unpaced.

Paced runs give machine CPU per probe at steady state (`warm` seconds at
1,000/s before the first window), the figure healthd's cost is a ratio of;
unpaced runs give this machine's floor rates.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Any

from bench import cloop
from bench.kinds import TCP_LISTENERS
from bench.measure import Bench
from bench.procstat import CpuWindow
from bench.reference import FPING, BlackboxStack, FpingRun, ReferenceWindow, fping

PACED_RATE = 1000


def connect_loops(bench: Bench, profile: dict[str, Any], *, paced: bool) -> dict[str, Any]:
    """Every mode of the C loop, paced at 1,000/s (steady state) or unpaced; {} entries say why not."""
    binary, note = cloop.build(bench.workdir)
    out: dict[str, Any] = {"note": note, "built": binary is not None, "modes": {}}
    if binary is None:
        bench.log(f"C epoll loop: {note}")
        return out
    warm, seconds, repeats = profile["steady"], profile["window"], profile["repeats"]
    for mode in cloop.MODES:
        cost = warm + repeats * (seconds + 1) + 5 if paced else seconds + 6
        if not bench.can(cost):
            bench.log(f"C epoll loop {mode}: skipped, time budget spent")
            continue
        if paced:
            bench.log(f"C epoll loop {mode}: 1,000 connects/s, {warm:.0f} s at the rate, then windows")
            out["modes"][mode] = cloop.paced(
                bench.procs,
                binary,
                mode,
                targets=TCP_LISTENERS,
                targets_pid=bench.targets_pid,
                rate=PACED_RATE,
                warm=warm,
                seconds=seconds,
                repeats=repeats,
            )
        else:
            bench.log(f"C epoll loop {mode}: unpaced, {cloop.INFLIGHT} in flight")
            out["modes"][mode] = cloop.unpaced(
                bench.procs,
                binary,
                mode,
                targets=TCP_LISTENERS,
                targets_pid=bench.targets_pid,
                seconds=seconds,
            )
    return out


@dataclass(frozen=True)
class FpingSteady:
    warm: float
    seconds: float
    echoes_per_second: float  # over the whole run (sent / wall time)
    machine_us: float  # machine CPU per echo inside the window
    lost: int
    sent: int


def fping_steady(bench: Bench, targets: list[str], *, warm: float, seconds: float) -> FpingSteady | None:
    """fping paced (`-p 1000 -i 1`: each target once a second) for `warm` + `seconds`; the window
    is the last `seconds`. Echoes in it: one round (every target once) per second, as paced."""
    from bench.reference import _SUMMARY

    count = int(warm + seconds) + 2
    if not bench.can(count + 15):
        return None
    listing = bench.workdir / "fping-steady.txt"
    listing.write_text("\n".join(targets) + "\n")
    argv = [FPING, "-q", "-c", str(count), "-p", "1000", "-i", "1", "-f", str(listing)]
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    killer = threading.Timer(count + 30, proc.kill)  # bounded even if fping hangs
    killer.start()
    try:
        time.sleep(warm)
        window = CpuWindow({})
        window.begin()
        time.sleep(seconds)
        window.finish()
        assert proc.stderr is not None
        stderr = proc.stderr.read()
        proc.wait()
        elapsed = time.monotonic() - started
    finally:
        killer.cancel()
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
    sent = sum(int(m.group(1)) for m in _SUMMARY.finditer(stderr))
    received = sum(int(m.group(2)) for m in _SUMMARY.finditer(stderr))
    per_second = sent / count  # one round per second
    return FpingSteady(
        warm=warm,
        seconds=window.seconds,
        echoes_per_second=sent / elapsed if elapsed > 0 else 0.0,
        machine_us=window.machine_cpu * 1e6 / max(per_second * window.seconds, 1.0),
        lost=sent - received,
        sent=sent,
    )


def reference_scheduled(
    bench: Bench, module: str, targets: list[str], *, repeats: int, seconds: float
) -> list[ReferenceWindow]:
    stack = BlackboxStack(bench.procs, bench.workdir, module, targets, interval=1.0)
    try:
        stack.wait_all_scraped(timeout=30)
        time.sleep(bench.warmup)  # every target's scrape offset comes round again
        return [stack.measure(seconds, {"targets": bench.targets_pid}) for _ in range(repeats)]
    finally:
        stack.stop()


def fping_runs(
    bench: Bench, targets: list[str], *, paced_count: int, batches: int
) -> dict[str, list[FpingRun]]:
    paced = [fping(targets, bench.workdir, count=paced_count, paced=True, timeout=paced_count + 30)]
    batch = [fping(targets, bench.workdir, count=1, paced=False, timeout=30) for _ in range(batches)]
    return {"paced": paced, "batch": batch}
