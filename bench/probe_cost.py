"""Per-probe cost and sustained rate of tcp, syn and icmp: this tree against another, and the C floor.

    .venv/bin/python -m bench.probe_cost --before /tmp/before/daemon [--types tcp,syn,icmp]
        [--settle 70] [--window 20] [--rates 5000,10000,15000] [--json out.json]

For each type, in one run on the same targets process (loopback only):

- machine CPU per probe at 1,000 probes/s (1,000 checks every 1 s) at steady state:
  the window opens after `--settle` seconds at the rate (TIME_WAIT and the heap have
  filled by then), for this tree's healthd and for the one whose `daemon/` directory
  `--before` names (e.g. main exported with `git archive`), and for tcp and syn for
  `bench/connect_loop.c` (via `bench.cloop`) doing the same connects at the same rate;
- the highest of `--rates` probes/s held with lag p99 < 100 ms and no failure, both trees.

Every process is stopped on the way out; each step is bounded by its own duration.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import cloop, measure
from bench.healthd_process import Healthd, write_config
from bench.kinds import KINDS
from bench.procs import Processes
from bench.procstat import load_average

RATE = 1000  # probes/s of the cost comparison (--rate: only to try the script out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--before", type=Path, required=True, help="the other tree's daemon/ directory")
    parser.add_argument("--types", default="tcp,syn,icmp")
    parser.add_argument("--settle", type=float, default=70.0)
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--rates", default="5000,10000,15000")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--rate", type=int, default=RATE)
    args = parser.parse_args(argv)
    results: dict[str, Any] = {"load_before": load_average(), "types": {}}
    with tempfile.TemporaryDirectory(prefix="healthd-cost-") as tmp:
        workdir = Path(tmp)
        procs = Processes(workdir)
        try:
            results["types"] = run(procs, workdir, args)
        finally:
            procs.stop_all()
    results["load_after"] = load_average()
    text = json.dumps(results, indent=1, default=str)
    if args.json:
        args.json.write_text(text)
    print(text)
    return 0


def run(procs: Processes, workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    targets = measure.start_targets(procs)
    bench = measure.Bench(procs, workdir, targets.pid, False, time.monotonic() + 3600, 3.0, log=_log)
    trees = {"after": "", "before": f"sys.path.insert(0, {str(args.before)!r})\n"}
    loop = _build_c(workdir)
    out: dict[str, Any] = {}
    rates = [int(r) for r in args.rates.split(",") if r]
    for name in [t.strip() for t in args.types.split(",") if t.strip()]:
        row: dict[str, Any] = out.setdefault(name, {})
        for tree, prelude in trees.items():
            _log(f"{name} {tree}: {args.rate}/s, window after {args.settle:.0f} s")
            row[tree] = _step(_cost, bench, name, prelude, args.rate, args.settle, args.window)
            _save(args.json, out)
        if name in ("tcp", "syn"):
            _log(f"{name} C floor: {args.rate}/s")
            row["c_floor"] = _step(_c_cost, bench, loop, name, args.rate, args.settle, args.window)
            _save(args.json, out)
    for name in out:
        for tree, prelude in trees.items():
            out[name][f"{tree}_rate"] = _step(_best_rate, bench, name, prelude, rates)
            _save(args.json, out)
    return out


def _step(measure_it: Any, *args: Any) -> Any:
    """One step's figures, or what went wrong (the run goes on with the next step)."""
    try:
        return measure_it(*args)
    except (RuntimeError, OSError, subprocess.SubprocessError, ValueError) as exc:
        _log(f"  failed: {str(exc).splitlines()[0]}")
        return {"error": str(exc).splitlines()[0]}


def _save(path: Path | None, out: dict[str, Any]) -> None:
    if path is not None:
        path.write_text(json.dumps(out, indent=1, default=str))


def _start(bench: measure.Bench, name: str, prelude: str, checks: int) -> Healthd:
    path = bench.config_path()
    kind = KINDS[name]
    write_config(path, [kind.check(i) for i in range(checks)], interval=1.0, timeout=1.0)
    return Healthd(bench.procs, path, prelude=prelude)


def _cost(
    bench: measure.Bench, name: str, prelude: str, rate: int, settle: float, window: float
) -> dict[str, Any]:
    daemon = _start(bench, name, prelude, rate)
    try:
        time.sleep(settle)
        run = measure.window(daemon, bench, rate, window)
    finally:
        daemon.stop()
    return _figures(run)


def _figures(run: measure.HealthdRun) -> dict[str, Any]:
    return {
        "rate": round(run.rate),
        "machine_us": round(run.machine_us, 1),
        "healthd_us": round(run.healthd_us, 1),
        "targets_us": round(run.targets_us, 1),
        "machine_share": round(run.machine_share, 3),
        "lag_p99_ms": round(run.lag_p99 * 1000, 1),
        "failures": run.failures,
        "failure_kinds": run.failure_kinds,
        "load": load_average(),
    }


def _build_c(workdir: Path) -> Path | None:
    binary, how = cloop.build(workdir)
    _log(f"C epoll loop: {how}")
    return binary


def _c_cost(
    bench: measure.Bench, binary: Path | None, name: str, rate: int, settle: float, window: float
) -> dict[str, Any]:
    """The C loop (bench/connect_loop.c) doing the probe's connects at the same rate."""
    if binary is None:
        raise RuntimeError("no C epoll loop: no compiler")
    mode = "syn" if name == "syn" else "full"
    (taken,) = cloop.paced(
        bench.procs,
        binary,
        mode,
        targets=1000,
        targets_pid=bench.targets_pid,
        rate=rate,
        warm=settle,
        seconds=window,
        repeats=1,
    )
    return {
        "machine_us": round(taken.machine_us, 1),
        "loop_us": round(taken.own_us, 1),
        "done": taken.connects,
        "failed": taken.failures,
        "load": load_average(),
    }


def _best_rate(bench: measure.Bench, name: str, prelude: str, rates: list[int]) -> dict[str, Any]:
    """Climb `rates` (checks every 1 s, 10 s window after warm-up) until one fails."""
    steps: dict[str, Any] = {}
    best = None
    for rate in rates:
        _log(f"{name}: {rate}/s")
        daemon = _start(bench, name, prelude, rate)
        try:
            time.sleep(1.0 + bench.warmup)
            run = measure.window(daemon, bench, rate, 10.0)
        finally:
            daemon.stop()
        steps[str(rate)] = _figures(run)
        if not run.sustained or run.rate < rate * 0.95:
            break
        best = rate
    return {"best": best, "steps": steps}


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
