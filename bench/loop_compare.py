"""asyncio against uvloop, the whole daemon, same run: CPU per probe and scheduler lag.

    .venv/bin/python bench/loop_compare.py [--types tcp,icmp] [--rounds 2] [--window 10]

For each probe type: 1,000 checks every 1 s (machine and healthd CPU per probe,
lag p99) and 10,000 checks every 10 s (healthd CPU per probe, lag p99), each on
both loops, in alternating order over `--rounds` rounds so that a change in the
machine's load falls on both. Targets are the bench's loopback targets
(`bench.targets`); every process is stopped on the way out. Prints a markdown
table (medians, min-max) and writes the raw figures as JSON with `--json`.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` and `daemon` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import measure
from bench.kinds import KINDS
from bench.procs import Processes, interrupt_on_signals

LOOPS = ("asyncio", "uvloop")
FIGURES = (  # (label, scenario, field of HealthdRun, scale)
    ("1,000/s: machine µs/probe", "scheduled", "machine_us", 1.0),
    ("1,000/s: healthd µs/probe", "scheduled", "healthd_us", 1.0),
    ("1,000/s: lag p99 ms", "scheduled", "lag_p99", 1000.0),
    ("10,000 checks: healthd µs/probe", "big", "healthd_us", 1.0),
    ("10,000 checks: lag p99 ms", "big", "lag_p99", 1000.0),
    ("10,000 checks: failed probes", "big", "failures", 1.0),
)


def measure_once(bench: measure.Bench, kind: str, loop: str, window: float) -> dict[str, Any]:
    uv = loop == "uvloop"
    scheduled = measure.scheduled(
        bench, KINDS[kind], checks=1000, interval=1.0, repeats=1, seconds=window, uvloop=uv
    )[0]
    big = measure.big(bench, KINDS[kind], checks=10_000, seconds=window * 2, uvloop=uv).run
    return {"scheduled": asdict(scheduled), "big": asdict(big)}


def table(runs: dict[str, dict[str, list[dict[str, Any]]]]) -> list[str]:
    rows = ["| type | figure | asyncio | uvloop | uvloop / asyncio |", "|---|---|---|---|---|"]
    for kind, by_loop in runs.items():
        for label, scenario, name, scale in FIGURES:
            values = {loop: [run[scenario][name] * scale for run in by_loop[loop]] for loop in LOOPS}
            medians = {loop: statistics.median(v) for loop, v in values.items()}
            ratio = f"{medians['uvloop'] / medians['asyncio']:.2f}" if medians["asyncio"] else "-"
            cells = [f"{medians[loop]:,.1f} ({min(v):,.1f}-{max(v):,.1f})" for loop, v in values.items()]
            rows.append(f"| {kind} | {label} | {cells[0]} | {cells[1]} | {ratio} |")
    return rows


def run_all(
    procs: Processes, workdir: Path, kinds: list[str], rounds: int, window: float, budget: float
) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Every (type, loop) `rounds` times, the loops' order swapped every round."""
    targets = measure.start_targets(procs)
    bench = measure.Bench(procs, workdir, targets.pid, False, time.monotonic() + budget, 2.0)
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {k: {loop: [] for loop in LOOPS} for k in kinds}
    for round_ in range(rounds):
        for kind in kinds:
            for loop in LOOPS if round_ % 2 == 0 else LOOPS[::-1]:
                print(f"loop_compare: round {round_ + 1}, {kind} on {loop}", file=sys.stderr, flush=True)
                runs[kind][loop].append(measure_once(bench, kind, loop, window))
    return runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--types", default="tcp,icmp")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--window", type=float, default=10.0, help="seconds per 1,000/s window")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    kinds = [name.strip() for name in args.types.split(",") if name.strip()]
    step = 15 + args.window + 45 + args.window * 2  # start-up, warm-up and scrapes included
    budget = step * len(kinds) * len(LOOPS) * args.rounds + 120
    interrupt_on_signals(budget)  # the hard bound; the finally stops every process
    with tempfile.TemporaryDirectory(prefix="healthd-loops-") as tmp:
        procs = Processes(Path(tmp))
        try:
            runs = run_all(procs, Path(tmp), kinds, args.rounds, args.window, budget)
        finally:
            procs.stop_all()
            signal.alarm(0)
    print("\n".join(table(runs)))
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
