"""The benchmark: healthd against blackbox_exporter + Prometheus and fping, in one run.

    .venv/bin/python bench/run.py [--quick] [--only STEP] [--types tcp,icmp] [--out bench/RESULTS.md]

Starts a targets process on loopback, runs healthd as a real process with
generated configs, runs the reference tools over the same targets, and writes
a markdown report. Every process it starts is stopped on the way out, also on
failure, Ctrl-C or SIGTERM; the whole run is bounded by a deadline and an alarm.
Traffic goes to 127.0.0.0/8 only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` and `daemon` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import measure, report, steps, steps_ref, truth
from bench.healthd_process import ROOT, workers_supported
from bench.kinds import KINDS
from bench.procs import Interrupted, Processes, interrupt_on_signals
from bench.procstat import load_average, machine, machine_busy_share
from bench.reference import versions
from bench.targets import icmp_targets

# budget: when the last step may start; the alarm (budget + slack) ends whatever still runs.
# steady: seconds at 1,000 probes/s before a CPU-per-probe window opens (TIME_WAIT, caches, GC)
FULL = {
    "budget": 2100,
    "slack": 60,
    "repeats": 3,
    "window": 10.0,
    "rate_window": 8.0,
    "big_window": 20.0,
    "warmup": 3.0,
    "steady": 72.0,
    "truth_window": 30.0,
}
QUICK = {
    "budget": 450,
    "slack": 30,
    "repeats": 1,
    "window": 3.0,
    "rate_window": 3.0,
    "big_window": 6.0,
    "warmup": 1.5,
    "steady": 5.0,
    "truth_window": 12.0,
}
TRUTH_BACKGROUND = 6000  # background tcp checks every 1 s during the truth step
STEPS = ("cost", "floor", "memory", "big", "truth", "rate", "growth", "uvloop")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="healthd benchmark (see bench/README.md)")
    parser.add_argument("--quick", action="store_true", help="one short window per figure, under 8 minutes")
    parser.add_argument("--only", choices=STEPS, action="append", help="run this step alone (repeatable)")
    parser.add_argument("--types", default="tcp,syn,icmp,http", help="probe types to measure")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS.md")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw figures here")
    args = parser.parse_args(argv)
    profile = QUICK if args.quick else FULL
    interrupt_on_signals(profile["budget"] + profile["slack"])  # the hard bound on the whole run
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="healthd-bench-") as tmp:
        procs = Processes(Path(tmp))
        try:
            results = run(procs, Path(tmp), args, profile, started)
        except Interrupted as exc:
            print(f"bench: stopped by {exc}; cleaning up", file=sys.stderr)
            return 1
        except Exception:
            traceback.print_exc()
            return 1
        finally:
            procs.stop_all()
            signal.alarm(0)
    results["elapsed"] = time.monotonic() - started
    args.out.write_text(report.render(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=_jsonable))
    print(f"bench: wrote {args.out} in {results['elapsed']:.0f} s")
    return 0


def run(
    procs: Processes, workdir: Path, args: argparse.Namespace, profile: dict[str, Any], started: float
) -> dict[str, Any]:
    from healthd.probes import PROBES

    wanted = [name.strip() for name in args.types.split(",") if name.strip()]
    results: dict[str, Any] = {
        "mode": "quick" if args.quick else "full",
        "only": args.only or [],
        "machine": machine_facts(),
        "types": {},
        "missing": [name for name in wanted if name not in PROBES],
        "workers": "available" if workers_supported() else "not available",
    }
    idle = machine()
    time.sleep(1.0)
    results["machine"]["busy_before"] = machine_busy_share(idle, machine())
    targets = measure.start_targets(procs)
    bench = measure.Bench(
        procs, workdir, targets.pid, args.quick, started + profile["budget"], profile["warmup"], log=_log
    )
    present = [name for name in wanted if name in PROBES and name in KINDS]
    for name in results["missing"]:
        _log(f"{name}: not available yet (not in healthd.probes.PROBES)")
    # cheapest and most wanted first: if the budget runs out, what is left out is marked so
    for step in args.only or STEPS:
        try:
            _STEPS[step](bench, profile, present, results)
        except (RuntimeError, TimeoutError, OSError) as exc:
            # one step that cannot run (a daemon that does not start on a loaded machine) costs
            # its own figures only; the report lists it
            _log(f"{step}: failed: {exc}")
            results.setdefault("errors", {})[step] = str(exc).splitlines()[0][:300]
    results["machine"]["load_after"] = load_average()
    return results


Step = Callable[[measure.Bench, dict[str, Any], list[str], dict[str, Any]], None]


def _cost(bench: measure.Bench, profile: dict[str, Any], present: list[str], results: dict[str, Any]) -> None:
    references: dict[str, Any] = {}
    for name in present:
        try:
            results["types"][name] = steps.per_type(bench, name, profile, references)
        except (RuntimeError, TimeoutError, OSError) as exc:
            _log(f"{name}: failed: {exc}")
            results.setdefault("errors", {})[f"cost {name}"] = str(exc).splitlines()[0][:300]
    results["cloop_paced"] = steps_ref.connect_loops(bench, profile, paced=True)
    if "icmp" in present:
        _log(f"fping paced over the same 1,000 ICMP targets, {profile['steady']:.0f} s before the window")
        results["fping_steady"] = steps_ref.fping_steady(
            bench, icmp_targets(steps.SCHEDULED_CHECKS), warm=profile["steady"], seconds=profile["window"]
        )


def _floor(
    bench: measure.Bench, profile: dict[str, Any], present: list[str], results: dict[str, Any]
) -> None:
    results["cloop_unpaced"] = steps_ref.connect_loops(bench, profile, paced=False)
    if "icmp" in present:
        _log("fping over the same 1,000 ICMP targets")
        count = 5 if bench.quick else 10
        results["fping"] = steps_ref.fping_runs(
            bench, icmp_targets(steps.SCHEDULED_CHECKS), paced_count=count, batches=5
        )


def _memory(
    bench: measure.Bench, profile: dict[str, Any], present: list[str], results: dict[str, Any]
) -> None:
    results["memory"] = steps.memfill(bench)


def _big(bench: measure.Bench, profile: dict[str, Any], present: list[str], results: dict[str, Any]) -> None:
    results["big"] = steps.big_section(bench, profile)


def _truth(
    bench: measure.Bench, profile: dict[str, Any], present: list[str], results: dict[str, Any]
) -> None:
    reason = truth.skip_reason()
    if not reason and not bench.can(profile["truth_window"] + 2.0 * TRUTH_BACKGROUND / 1000 + 30):
        reason = "time budget spent"
    if reason:
        _log(f"truth under load: skipped, {reason}")
        results["truth"] = truth.TruthRun(TRUTH_BACKGROUND, {}, 0, 0, 0, 0, 0, 0, skipped=reason)
        return
    _log(f"truth under load: {TRUTH_BACKGROUND} background checks/s, 4 checks through a 20 ms delay link")
    results["truth"] = truth.run(bench, background=TRUTH_BACKGROUND, seconds=profile["truth_window"])


def _rate(bench: measure.Bench, profile: dict[str, Any], present: list[str], results: dict[str, Any]) -> None:
    results["rates"] = {name: steps.rates(bench, name, profile) for name in present}


def _growth(
    bench: measure.Bench, profile: dict[str, Any], present: list[str], results: dict[str, Any]
) -> None:
    if bench.quick:
        _log("growth: full run only (the 50,000-check step alone takes minutes)")
        return
    results["linear"] = steps.growth(bench, profile, results.get("big") or {})


def _uvloop(
    bench: measure.Bench, profile: dict[str, Any], present: list[str], results: dict[str, Any]
) -> None:
    results["uvloop"] = steps.uvloop_section(bench, profile)


_STEPS: dict[str, Step] = {
    "cost": _cost,
    "floor": _floor,
    "memory": _memory,
    "big": _big,
    "truth": _truth,
    "rate": _rate,
    "growth": _growth,
    "uvloop": _uvloop,
}


def machine_facts() -> dict[str, Any]:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_before": load_average(),
        "tools": versions(),
    }


def _log(message: str) -> None:
    print(message, flush=True)


def _jsonable(value: Any) -> Any:
    from dataclasses import asdict, is_dataclass

    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    return str(value)


if __name__ == "__main__":
    sys.exit(main())
