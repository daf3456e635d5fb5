"""Config load time at 1k/10k/50k checks, and how long a state snapshot holds the event loop.

Config: files written as the bench writes them (`healthd_process.write_config`:
TCP checks in services of 100, JSON, which is YAML), loaded by healthd's
loader (`healthd.config.load`: bounded parse, defaults, validation) and, in the
same run, by plain `yaml.load(text, Loader=yaml.CSafeLoader)`, the named
reference (libyaml with PyYAML's constructor, no bounds, no validation). The
pure-Python parse (`yaml_source.parse(pure=True)`, what every load used before
libyaml) runs at the smallest size only: it takes ~20 s at 10k.

Snapshot: a store of 10,000 checks filled as `loop_hold.filled_store` does
(120 results each) with every uptime bucket filled (`memfill.fill_uptime`),
written by `StateFile.write` while a 1 ms ticker records its longest wake-up
delay (`loop_hold.Ticker`); the reference is the same ticker over an idle
interval of the same length, same run. Each figure is the best (config) or
worst (snapshot) of `--rounds`. Prints JSON. Bounded: three sizes, a few
rounds, no network.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from healthd.config import load
from healthd.config.yaml_source import LIBYAML, parse
from healthd.statefile import StateFile

from bench.healthd_process import write_config
from bench.loop_hold import Ticker, filled_store
from bench.memfill import fill_uptime
from bench.procstat import print_figures

SIZES = (1_000, 10_000, 50_000)
UPTIME_DAYS = 30  # every bucket of every uptime ring holds data, as in bench/memfill.py


def tcp_checks(count: int) -> list[dict[str, Any]]:
    return [{"type": "tcp", "target": f"127.70.0.{1 + i % 50}:{20000 + i % 200}"} for i in range(count)]


def best_of(rounds: int, fn: Callable[[], object]) -> dict[str, float]:
    """The fastest of `rounds` runs: wall and CPU seconds (CPU is what load on the machine leaves alone)."""
    walls, cpus = [], []
    for _ in range(rounds):
        gc.collect()
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return {"wall_s": round(min(walls), 3), "cpu_s": round(min(cpus), 3)}


def config_section(workdir: Path, sizes: tuple[int, ...], rounds: int) -> list[dict[str, Any]]:
    rows = []
    for size in sizes:
        path = workdir / f"checks-{size}.yaml"
        write_config(path, tcp_checks(size), interval=10.0, timeout=2.0)
        rows.append(config_row(path, size, rounds, pure=size == min(sizes)))
    return rows


def config_row(path: Path, size: int, rounds: int, pure: bool) -> dict[str, Any]:
    text = path.read_text()
    row: dict[str, Any] = {"checks": size, "bytes": len(text)}
    row["healthd_load"] = best_of(rounds, lambda: load(path))
    if LIBYAML is not None:
        row["reference_csafeloader"] = best_of(rounds, lambda: yaml.load(text, Loader=yaml.CSafeLoader))
    if pure:
        row["pure_python_parse"] = best_of(1, lambda: parse(text, pure=True))
    return row


async def snapshot_section(workdir: Path, checks: int, history: int, rounds: int) -> dict[str, Any]:
    store = filled_store(checks, rounds=history)
    fill_uptime(store, time.time(), UPTIME_DAYS)
    gc.freeze()  # as the daemon does once it is up
    state = StateFile(store, workdir / "state")
    ticker = Ticker()
    tick_task = asyncio.create_task(ticker.run())
    holds, cpus, idles, writes, captures = [], [], [], [], []
    try:
        for _ in range(rounds):
            await asyncio.sleep(0.05)
            ticker.reset()
            started = time.perf_counter()
            assert await state.write()
            took = time.perf_counter() - started
            holds.append(ticker.gap)
            cpus.append(ticker.cpu)
            writes.append(took)
            captures.append(state.last.capture_seconds)
            ticker.reset()
            await asyncio.sleep(took)  # the reference: this machine's load alone, as long
            idles.append(ticker.gap)
    finally:
        tick_task.cancel()
    ms = 1000
    return {
        "checks": checks,
        "history": history,
        "uptime_days": UPTIME_DAYS,
        "rounds": rounds,
        "bytes": state.last.bytes,
        "write_ms_median": round(statistics.median(writes) * ms, 1),
        "capture_ms_median": round(statistics.median(captures) * ms, 1),
        "loop_hold_ms_max": round(max(holds) * ms, 1),
        "loop_hold_ms_median": round(statistics.median(holds) * ms, 1),
        "loop_cpu_hold_ms_max": round(max(cpus) * ms, 1),
        "reference_idle_hold_ms_max": round(max(idles) * ms, 1),
        "reference_idle_hold_ms_median": round(statistics.median(idles) * ms, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="check counts, comma-separated")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--snapshot-checks", type=int, default=10_000)
    parser.add_argument("--snapshot-history", type=int, default=120, help="results per check")
    parser.add_argument("--snapshot-rounds", type=int, default=5)
    args = parser.parse_args(argv)
    sizes = tuple(int(size) for size in args.sizes.split(","))
    workdir = Path(tempfile.mkdtemp(prefix="healthd-config-load-"))
    try:
        figures: dict[str, Any] = {"libyaml": LIBYAML is not None}
        figures["config"] = config_section(workdir, sizes, args.rounds)
        if args.snapshot_checks:  # 0 skips the snapshot section
            figures["snapshot"] = asyncio.run(
                snapshot_section(workdir, args.snapshot_checks, args.snapshot_history, args.snapshot_rounds)
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print_figures(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
