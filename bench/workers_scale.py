"""Probing in worker processes against probing in one: `python -m bench.workers_scale [--quick]`.

Two figures, each measured for `scheduler.workers` 1 and 2 in the same run,
on the bench's loopback targets process (nothing leaves 127.0.0.0/8):

- the highest tcp rate sustained with lag p99 < 100 ms and no failed probe
  (a ladder of rates; each step is its own daemon, `interval: 1s`);
- scheduler lag p99 at 10,000 tcp checks every 10 s while `/metrics` (gzip,
  as Prometheus asks) and `/api/v1/services` are each read once a second.

`workers_scale(bench, ...)` is the entry point bench/run.py can call; it
returns plain dicts (see `ScaleFigures`). Every step is bounded in time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.healthd_process import PYTHON, ROOT, Healthd, write_config
from bench.kinds import KINDS, TCP_LISTENERS
from bench.measure import Bench, HealthdRun, window
from bench.procs import Processes, wait_line
from bench.procstat import load_average, machine, machine_busy_share

LADDER = (2_500, 5_000, 7_500, 10_000, 12_500, 15_000)
QUICK_LADDER = (2_500, 5_000, 7_500)


@dataclass
class ScaleFigures:
    """What `workers_scale` measured, per worker count (as a string key, for JSON)."""

    sustained_tcp: dict[str, int] = field(default_factory=dict)  # probes/s, 0 if none held
    ladder: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # every step
    big: dict[str, dict[str, Any]] = field(default_factory=dict)  # 10k checks with reads
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    busy_before: float = 0.0


def start(bench: Bench, checks: int, *, interval: float, timeout: float, workers: int) -> Healthd:
    path = bench.config_path()
    write_config(path, [KINDS["tcp"].check(i) for i in range(checks)], interval=interval, timeout=timeout)
    config = json.loads(path.read_text())
    config["scheduler"]["workers"] = workers
    path.write_text(json.dumps(config))
    return Healthd(bench.procs, path, name=f"healthd-w{workers}")


@contextmanager
def readers(daemon: Healthd, every: float = 1.0) -> Iterator[dict[str, list[float]]]:
    """Read `/metrics` (gzip) and `/api/v1/services` every `every` seconds while inside."""
    timings: dict[str, list[float]] = {"/metrics": [], "/api/v1/services": []}
    done = threading.Event()

    def poll() -> None:
        while not done.wait(every):
            for path, seen in timings.items():
                request = urllib.request.Request(daemon.base + path, headers={"Accept-Encoding": "gzip"})
                started = time.perf_counter()
                try:
                    with urllib.request.urlopen(request, timeout=10) as answer:
                        answer.read()
                except OSError:
                    continue
                seen.append(time.perf_counter() - started)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield timings
    finally:
        done.set()
        thread.join(timeout=15)


def _row(run: HealthdRun, **extra: Any) -> dict[str, Any]:
    return {
        "rate": round(run.rate),
        "failures": run.failures,
        "lag_p99_ms": round(run.lag_p99 * 1000, 1),
        "lag_within_100ms": round(run.lag_within_goal, 4),
        "machine_us": round(run.machine_us, 1),
        "machine_share": round(run.machine_share, 3),
        **extra,
    }


def sustained_step(bench: Bench, rate: int, workers: int, seconds: float) -> dict[str, Any]:
    """`rate` tcp checks every 1 s: one window after the first interval."""
    daemon = start(bench, rate, interval=1.0, timeout=0.5, workers=workers)
    try:
        time.sleep(1.0 + bench.warmup)
        run = window(daemon, bench, rate, seconds)
        return _row(run, offered=rate, sustained=run.sustained)
    finally:
        daemon.stop()


def big_step(bench: Bench, workers: int, checks: int, seconds: float) -> dict[str, Any]:
    """`checks` tcp checks every 10 s, `/metrics` and the services listing read every second."""
    daemon = start(bench, checks, interval=10.0, timeout=2.0, workers=workers)
    try:
        time.sleep(10.5)  # every check's first slot falls within one interval
        with readers(daemon) as timings:
            run = window(daemon, bench, checks, seconds)
        slowest = {path: round(max(seen, default=0.0) * 1000, 1) for path, seen in timings.items()}
        pss_mb = None if run.pss is None else round(run.pss / 2**20)
        return _row(run, checks=checks, rss_mb=round(run.rss / 2**20), pss_mb=pss_mb, slowest_read_ms=slowest)
    finally:
        daemon.stop()


def workers_scale(
    bench: Bench,
    *,
    workers: Sequence[int] = (1, 2),
    ladder: Sequence[int] = LADDER,
    seconds: float = 10.0,
    big_checks: int = 10_000,
) -> dict[str, Any]:
    """Both figures for each worker count, interleaved step by step so the load they meet is alike.
    The ladder stops for a worker count at its first step not sustained."""
    figures = ScaleFigures(load_before=load_average())
    idle = machine()
    time.sleep(1.0)
    figures.busy_before = machine_busy_share(idle, machine())
    going = {str(count): True for count in workers}
    for rate in ladder:
        for count in workers:
            key = str(count)
            if not going[key] or not bench.can(seconds + 15):
                continue
            step = sustained_step(bench, rate, count, seconds)
            bench.log(f"workers {count}: tcp {rate}/s -> {step}")
            figures.ladder.setdefault(key, []).append(step)
            if step["sustained"]:
                figures.sustained_tcp[key] = rate
            going[key] = bool(step["sustained"])
    for count in workers:
        if bench.can(seconds + 40):
            figures.big[str(count)] = big_step(bench, count, big_checks, seconds)
            bench.log(f"workers {count}: {big_checks} checks with reads -> {figures.big[str(count)]}")
    return asdict(figures)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="three rates, 5 s windows, 5,000 checks")
    parser.add_argument("--budget", type=float, default=900.0, help="seconds the whole run may take")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="healthd-workers-") as tmp:
        procs = Processes(Path(tmp))
        try:
            targets = procs.start(
                "targets",
                [str(PYTHON), "-m", "bench.targets", "--tcp", str(TCP_LISTENERS), "--http", "1"],
                stdout_pipe=True,
                cwd=ROOT,
            )
            wait_line(targets, b"ready", timeout=60)
            bench = Bench(procs, Path(tmp), targets.pid, args.quick, time.monotonic() + args.budget)
            figures = workers_scale(
                bench,
                ladder=QUICK_LADDER if args.quick else LADDER,
                seconds=5.0 if args.quick else 10.0,
                big_checks=5_000 if args.quick else 10_000,
            )
        finally:
            procs.stop_all()
    figures["cpus"] = len(os.sched_getaffinity(0))
    print(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
