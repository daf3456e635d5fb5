"""The benchmark: healthd against blackbox_exporter + Prometheus and fping, in one run.

    .venv/bin/python bench/run.py [--quick] [--types tcp,icmp] [--out bench/RESULTS.md]

Starts a targets process on loopback, runs healthd as a real process with
generated configs, runs the reference tools over the same targets, and writes
a markdown report. Every process it starts is stopped on the way out, also on
failure, Ctrl-C or SIGTERM; the whole run is bounded by a deadline and an alarm.
Traffic goes to 127.0.0.0/8 only.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` and `daemon` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import measure, report
from bench.healthd_process import PYTHON, ROOT
from bench.kinds import HTTP_LISTENERS, KINDS, TCP_LISTENERS
from bench.procs import Processes, wait_line
from bench.procstat import load_average, machine, machine_busy_share
from bench.reference import MODULES, available, versions

# budget: when the last step may start; the alarm (budget + slack) ends whatever still runs
FULL = {
    "budget": 840,
    "slack": 45,
    "repeats": 3,
    "window": 10.0,
    "rate_window": 8.0,
    "big_window": 20.0,
    "warmup": 3.0,
}
QUICK = {
    "budget": 160,
    "slack": 12,
    "repeats": 1,
    "window": 3.0,
    "rate_window": 3.0,
    "big_window": 6.0,
    "warmup": 1.5,
}
SCHEDULED_CHECKS = 1000  # 1,000 checks every 1 s: the 1,000 probes/s comparison
BIG_CHECKS = 10_000
BIG_COST = 35.0  # seconds a 10,000-check run takes besides its window: start-up, warm-up, scrapes


class Interrupted(Exception):
    pass


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="healthd benchmark (see bench/README.md)")
    parser.add_argument("--quick", action="store_true", help="one short window per figure, under 3 minutes")
    parser.add_argument("--types", default="tcp,syn,icmp,http", help="probe types to measure")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS.md")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw figures here")
    args = parser.parse_args(argv)
    profile = QUICK if args.quick else FULL
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM):
        signal.signal(sig, _interrupt)
    # the hard bound: whatever hangs, the alarm ends the run and the finally cleans up
    signal.alarm(int(profile["budget"] + profile["slack"]))
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
        "machine": machine_facts(),
        "types": {},
        "missing": [name for name in wanted if name not in PROBES],
    }
    idle = machine()
    time.sleep(1.0)
    results["machine"]["busy_before"] = machine_busy_share(idle, machine())
    targets = procs.start(
        "targets",
        [str(PYTHON), "-m", "bench.targets", "--tcp", str(TCP_LISTENERS), "--http", str(HTTP_LISTENERS)],
        stdout_pipe=True,
        cwd=ROOT,
    )
    wait_line(targets, b"ready", timeout=60)
    bench = measure.Bench(
        procs, workdir, targets.pid, args.quick, started + profile["budget"], profile["warmup"], log=_log
    )
    present = [name for name in wanted if name in PROBES and name in KINDS]
    for name in results["missing"]:
        _log(f"{name}: not available yet (not in healthd.probes.PROBES)")
    # cheapest and most wanted first: if the budget runs out, what is left out is marked so
    references: dict[str, Any] = {}
    for name in present:
        results["types"][name] = per_type(bench, name, profile, references)
    results["fping"] = fping_section(bench, profile) if "icmp" in wanted else None
    results["memory"] = memfill()
    results["big"] = big_section(bench, profile)
    for name in present:
        results["types"][name]["rate"] = rate_search(bench, name, profile)
    results["linear"] = linear_section(bench, profile, results["big"])
    results["uvloop"] = uvloop_section(bench, profile, results)
    results["machine"]["load_after"] = load_average()
    return results


def per_type(
    bench: measure.Bench, name: str, profile: dict[str, Any], references: dict[str, Any]
) -> dict[str, Any]:
    kind = KINDS[name]
    window, repeats = profile["window"], profile["repeats"]
    out: dict[str, Any] = {"scheduled": [], "reference": [], "rate": measure.RateSearch()}
    if not bench.can(window * repeats + 10):
        _log(f"{name}: skipped, time budget spent")
        out["skipped"] = True
        return out
    _log(f"{name}: healthd, {SCHEDULED_CHECKS} checks every 1 s")
    out["scheduled"] = measure.scheduled(
        bench, kind, checks=SCHEDULED_CHECKS, interval=1.0, repeats=repeats, seconds=window
    )
    module = MODULES[name]
    out["reference_module"] = module
    if module not in references and all(available().values()) and bench.can(window * repeats + 12):
        _log(
            f"{name}: blackbox_exporter ({module}) scheduled by Prometheus, "
            f"{SCHEDULED_CHECKS} targets every 1 s"
        )
        targets = [kind.reference_target(i) for i in range(SCHEDULED_CHECKS)]
        try:
            references[module] = measure.reference_scheduled(
                bench, module, targets, repeats=repeats, seconds=window
            )
        except (RuntimeError, TimeoutError, OSError) as exc:
            _log(f"  reference failed: {exc}")
            references[module] = []
    out["reference"] = references.get(module, [])
    return out


def rate_search(bench: measure.Bench, name: str, profile: dict[str, Any]) -> measure.RateSearch:
    kind = KINDS[name]
    _log(f"{name}: highest sustained rate")
    if bench.quick:
        # one step at the goal (or the ladder's start) keeps --quick short
        kind = replace(kind, rate_ladder=(kind.rate_goal or kind.rate_ladder[0],))
    return measure.max_rate(bench, kind, seconds=profile["rate_window"])


def fping_section(bench: measure.Bench, profile: dict[str, Any]) -> dict[str, Any]:
    from bench.targets import icmp_targets

    _log("fping over the same 1,000 ICMP targets")
    count = 5 if bench.quick else 10
    return measure.fping_runs(bench, icmp_targets(SCHEDULED_CHECKS), paced_count=count, batches=5)


def big_section(bench: measure.Bench, profile: dict[str, Any]) -> dict[str, Any]:
    kind = KINDS["tcp"]
    out: dict[str, Any] = {}
    cost = BIG_COST + profile["big_window"]
    if not bench.can(cost):
        _log(f"tcp: {BIG_CHECKS} checks: skipped, time budget spent")
        return out
    _log(f"tcp: {BIG_CHECKS} checks every 10 s (history 120)")
    out["default"] = measure.big(bench, kind, checks=BIG_CHECKS, seconds=profile["big_window"])
    if bench.can(cost):
        _log(f"tcp: {BIG_CHECKS} checks every 10 s, probe_duration_histogram: false")
        out["no_histogram"] = measure.big(
            bench, kind, checks=BIG_CHECKS, seconds=profile["big_window"], histogram=False
        )
    return out


def linear_section(bench: measure.Bench, profile: dict[str, Any], big: dict[str, Any]) -> list[Any]:
    if bench.quick or "default" not in big:
        return []
    runs = []
    for checks in (1000, 5000):
        if not bench.can(BIG_COST + profile["big_window"]):
            break
        _log(f"tcp: {checks} checks every 10 s")
        runs.append(measure.big(bench, KINDS["tcp"], checks=checks, seconds=profile["big_window"]))
    runs.append(big["default"])
    return runs


def uvloop_section(
    bench: measure.Bench, profile: dict[str, Any], results: dict[str, Any]
) -> dict[str, Any] | None:
    if importlib.util.find_spec("uvloop") is None:
        _log("uvloop: not installed, skipped (pip install uvloop)")
        return None
    if bench.quick or not bench.can(BIG_COST + profile["big_window"] + profile["window"] * 3 + 15):
        return None
    kind = KINDS["tcp"]
    _log("tcp with uvloop: 1,000 checks every 1 s, then 10,000 every 10 s")
    scheduled = measure.scheduled(
        bench,
        kind,
        checks=SCHEDULED_CHECKS,
        interval=1.0,
        repeats=profile["repeats"],
        seconds=profile["window"],
        uvloop=True,
    )
    big = measure.big(bench, kind, checks=BIG_CHECKS, seconds=profile["big_window"], uvloop=True)
    return {"scheduled": scheduled, "big": big}


def memfill() -> dict[str, Any]:
    _log("memory of a full history (store filled in a process of its own)")
    done = subprocess.run(
        [str(PYTHON), "-m", "bench.memfill", "--checks", "2000", "--history", "120"],
        capture_output=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        return {"error": done.stderr.decode(errors="replace")[-500:]}
    facts: dict[str, Any] = json.loads(done.stdout)
    return facts


def machine_facts() -> dict[str, Any]:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    import os

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
