"""The bench's healthd steps: each measures one question and returns its figures.

run.py decides which run (`--only STEP`) and in which order; every step checks
the time budget before it starts and marks what it had to leave out.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
from dataclasses import replace
from typing import Any

from bench import measure, steps_ref
from bench.healthd_process import PYTHON, ROOT, workers_supported
from bench.kinds import KINDS
from bench.reference import MODULES, available

SCHEDULED_CHECKS = 1000  # 1,000 checks every 1 s: the 1,000 probes/s comparison
BIG_CHECKS = 10_000
BIG_COST = 35.0  # seconds a 10,000-check run takes besides its window: start-up, warm-up, scrapes
STEADY_TYPES = ("tcp", "syn", "icmp")  # their CPU is a ratio of a floor: measured at steady state


def per_type(
    bench: measure.Bench, name: str, profile: dict[str, Any], references: dict[str, Any]
) -> dict[str, Any]:
    kind = KINDS[name]
    window, repeats = profile["window"], profile["repeats"]
    warm = 1.0 + (profile["steady"] if name in STEADY_TYPES else bench.warmup)
    out: dict[str, Any] = {"scheduled": [], "reference": [], "warm": warm}
    if not bench.can(warm + window * repeats + 10):
        bench.log(f"{name}: skipped, time budget spent")
        out["skipped"] = True
        return out
    bench.log(f"{name}: healthd, {SCHEDULED_CHECKS} checks every 1 s, windows after {warm:.0f} s")
    out["scheduled"] = measure.scheduled(
        bench, kind, checks=SCHEDULED_CHECKS, interval=1.0, repeats=repeats, seconds=window, warm=warm
    )
    module = MODULES[name]
    out["reference_module"] = module
    if module not in references and all(available().values()) and bench.can(window * repeats + 12):
        bench.log(f"{name}: blackbox_exporter ({module}) scheduled by Prometheus, {SCHEDULED_CHECKS} targets")
        targets = [kind.reference_target(i) for i in range(SCHEDULED_CHECKS)]
        try:
            references[module] = steps_ref.reference_scheduled(
                bench, module, targets, repeats=repeats, seconds=window
            )
        except (RuntimeError, TimeoutError, OSError) as exc:
            bench.log(f"  reference failed: {exc}")
            references[module] = []
    out["reference"] = references.get(module, [])
    return out


def rates(bench: measure.Bench, name: str, profile: dict[str, Any]) -> dict[str, Any]:
    """The highest sustained rate with the daemon's default workers and with `workers: 1`."""
    kind = KINDS[name]
    if bench.quick:
        # one step at the goal (or the ladder's start) keeps --quick short
        kind = replace(kind, rate_ladder=(kind.rate_goal or kind.rate_ladder[0],))
    if not workers_supported():
        bench.log(f"{name}: highest sustained rate (workers: not available, single process)")
        single = measure.max_rate(bench, kind, seconds=profile["rate_window"])
        return {"workers": "not available", "default": single, "single": single}
    bench.log(f"{name}: highest sustained rate, default workers")
    default = measure.max_rate(bench, kind, seconds=profile["rate_window"])
    bench.log(f"{name}: highest sustained rate, workers: 1")
    single = measure.max_rate(bench, kind, seconds=profile["rate_window"], workers=1)
    return {"workers": "default", "default": default, "single": single}


def big_section(bench: measure.Bench, profile: dict[str, Any]) -> dict[str, Any]:
    """10,000 checks every 10 s: polled (the goal), not polled, and without histograms (full)."""
    kind = KINDS["tcp"]
    out: dict[str, Any] = {}
    runs: list[tuple[str, bool, bool]] = [("polled", True, True), ("default", True, False)]
    if not bench.quick:
        runs.append(("no_histogram", False, False))
    for label, histogram, poll in runs:
        if not bench.can(BIG_COST + profile["big_window"]):
            bench.log(f"tcp: {BIG_CHECKS} checks ({label}): skipped, time budget spent")
            break
        bench.log(f"tcp: {BIG_CHECKS} checks every 10 s (history 120), {label}")
        out[label] = measure.big(
            bench, kind, checks=BIG_CHECKS, seconds=profile["big_window"], histogram=histogram, poll=poll
        )
    return out


GROWTH_RATE = 1000  # probes/s at every size: what grows is the check count, not the rate


def growth(bench: measure.Bench, profile: dict[str, Any], big: dict[str, Any]) -> list[Any]:
    """Cost from 1,000 to 50,000 checks at 1,000 probes/s (each check every checks/1,000 s:
    1 s to 50 s; 50,000 in the full run only). At a fixed interval the rate would grow with
    the count, and a cost per probe would measure the rate (and this machine's ceiling,
    ~3,500/s) rather than the count."""
    sizes = (1000, 5000, BIG_CHECKS) if bench.quick else (1000, 5000, BIG_CHECKS, 50_000)
    runs = []
    for checks in sizes:
        interval = checks / GROWTH_RATE
        if checks == BIG_CHECKS and "default" in big:  # the big step's run: every 10 s
            runs.append(big["default"])
            continue
        if not bench.can(BIG_COST + profile["big_window"] + interval + 2.0 * checks / 1000):
            bench.log(f"tcp: {checks} checks: skipped, time budget spent")
            break
        bench.log(f"tcp: {checks} checks every {interval:g} s")
        runs.append(
            measure.big(bench, KINDS["tcp"], checks=checks, seconds=profile["big_window"], interval=interval)
        )
    return runs


def uvloop_section(bench: measure.Bench, profile: dict[str, Any]) -> dict[str, Any] | None:
    if importlib.util.find_spec("uvloop") is None:
        bench.log("uvloop: not installed, skipped (pip install uvloop)")
        return None
    if bench.quick or not bench.can(BIG_COST + profile["big_window"] + profile["window"] * 3 + 15):
        return None
    kind = KINDS["tcp"]
    bench.log("tcp with uvloop: 1,000 checks every 1 s, then 10,000 every 10 s")
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


def memfill(bench: measure.Bench) -> dict[str, Any]:
    bench.log("memory of a full history (store filled in a process of its own)")
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
