"""The Goals table of bench/RESULTS.md: every figure the scale-engine issue names, with its
reference measured in the same run, and the earlier goals against blackbox_exporter."""

from __future__ import annotations

import itertools
import math
from typing import Any

from bench.cells import (
    bytes_per_result,
    med,
    not_run,
    ok,
    projected_pss,
    projected_rss,
    ratio,
    ref_machine_us,
)
from bench.measure import BigRun, RateSearch

RSS_GOAL = 300 * 2**20
RATE_GOALS = {"tcp": 12_000, "syn": 15_000, "icmp": 20_000}
FLOOR_RATIOS = {"syn": ("syn", 3.5), "tcp": ("full", 2.5)}  # healthd type -> (C loop mode, ratio goal)
SATURATED = 0.9  # machine busy share from which a CPU-per-probe window is no cost figure
FLAT = 1.25  # "cost flat": no step costs more than this times the cheapest step


def rows(results: dict[str, Any]) -> list[str]:
    out = ["## Goals", "", "| goal | measured (reference in the same run) | verdict |", "|---|---|---|"]
    for section in (_engine_big, _rates, _floor_cost, _truth, _growth, _blackbox):
        out.extend(section(results))
    return out


def _row(goal: str, measured: str, met: bool | None) -> str:
    return f"| {goal} | {measured} | {ok(met)} |"


def _engine_big(results: dict[str, Any]) -> list[str]:
    goal = "10,000 checks every 10 s, `/metrics` and `/api/v1/services` read every 1 s:"
    big: BigRun | None = (results.get("big") or {}).get("polled")
    if big is None:
        return [
            _row(
                f"{goal} lag p99 ≤ 20 ms, 0 failed, RSS ≤ 300 MB at `history: 120`",
                not_run(results, "big"),
                None,
            )
        ]
    run = big.run
    metrics, services = big.polls.get("/metrics"), big.polls.get("/api/v1/services")
    read_errors = sum(len(p.errors) for p in big.polls.values())
    out = [
        _row(
            f"{goal} lag p99 ≤ 20 ms",
            f"p99 {run.lag_p99 * 1000:.1f} ms (interpolated in the 10-25 ms bucket "
            f"when inside it); {read_errors} failed reads",
            run.lag_p99 <= 0.020,
        ),
        _row(f"{goal} 0 failed probes", f"{run.failures:.0f} failed", run.failures == 0),
    ]
    memory = _memory_row(f"{goal} RSS ≤ 300 MB at `history: 120`", big, bytes_per_result(results))
    if memory is not None:
        out.append(memory)
    if metrics and metrics.seconds:
        t = med(metrics.seconds)
        out.append(
            _row(
                "10,000 checks: `/metrics` (gzip) ≤ 100 ms",
                f"{t * 1000:,.0f} ms median of "
                f"{len(metrics.seconds)} reads, {med(metrics.sizes) / 2**20:.1f} MB",
                t <= 0.1,
            )
        )
    if services and services.seconds:
        t = med(services.seconds)
        out.append(
            _row(
                "10,000 checks: `GET /api/v1/services` ≤ 50 ms",
                f"{t * 1000:,.0f} ms median of {len(services.seconds)} reads",
                t <= 0.05,
            )
        )
    return out


def _memory_row(goal: str, big: BigRun, per_result: float | None) -> str | None:
    """Judged by the PSS sum of the process tree where it was measured: PSS counts a page
    shared by N processes (the workers' interpreter and libraries) as 1/N in each, so the sum
    counts every page once, as systemd's MemoryCurrent does; the RSS sum beside it counts a
    shared page once per process."""
    rss = projected_rss(big, per_result)
    if rss is None:
        return None
    measured = f"RSS sum {big.rss_end / 2**20:,.0f} MB now, {rss / 2**20:,.0f} MB projected"
    pss = projected_pss(big, per_result)
    if pss is None or big.pss_end is None:
        return _row(goal, f"{measured} (judged by RSS: PSS not measured)", rss <= RSS_GOAL)
    measured = (
        f"PSS sum {big.pss_end / 2**20:,.0f} MB now, {pss / 2**20:,.0f} MB projected; {measured} "
        "(judged by PSS, which counts each page once, as systemd's MemoryCurrent does; the RSS "
        "sum counts the pages the workers share once per process)"
    )
    return _row(goal, measured, pss <= RSS_GOAL)


def _rates(results: dict[str, Any]) -> list[str]:
    out = []
    rates = results.get("rates") or {}
    for name, goal in RATE_GOALS.items():
        label = f"{name}: sustained ≥ {goal:,}/s, lag p99 < 100 ms, no failed probe"
        data = rates.get(name)
        if data is None:
            out.append(_row(label, not_run(results, "rate"), None))
            continue
        default: RateSearch = data["default"]
        single: RateSearch = data["single"]
        if data["workers"] == "not available":
            both = f"{_best(default)} (workers: not available, single process)"
        else:
            both = f"{_best(default)} default workers; {_best(single)} with `workers: 1`"
        tried = any(run is not None for _, run, _ in default.steps)
        out.append(
            _row(
                label,
                f"{both}; {_rate_reference(results, name)}",
                (default.best or 0) >= goal if tried else None,
            )
        )
    return out


def _best(search: RateSearch) -> str:
    tried = [rate for rate, run, _ in search.steps if run is not None]
    if not tried:
        return "not measured (time budget)"
    if search.best is None:
        return f"none passed (lowest tried {min(tried):,}/s)"
    return f"{search.best:,}/s (tried up to {max(tried):,}/s)"


def _rate_reference(results: dict[str, Any], name: str) -> str:
    if name == "icmp":
        batch = [r for r in (results.get("fping") or {}).get("batch", []) if r.echoes]
        return (
            f"fping batch {med([r.echoes / r.seconds for r in batch]):,.0f} echoes/s"
            if batch
            else "fping not run"
        )
    loops = (results.get("cloop_unpaced") or {}).get("modes", {})
    mode = FLOOR_RATIOS[name][0]
    if mode not in loops:
        return "C loop not run"
    return f"C epoll {mode} unpaced {loops[mode].rate:,.0f}/s"


def _floor_cost(results: dict[str, Any]) -> list[str]:
    out = []
    quick = " (--quick: not steady state)" if results["mode"] == "quick" else ""
    loops = (results.get("cloop_paced") or {}).get("modes", {})
    for name, (mode, goal) in FLOOR_RATIOS.items():
        label = f"{name}: machine CPU/probe at 1,000/s, steady state, ≤ {goal}x the C epoll loop ({mode})"
        ours = _healthd_us(results, name)
        if math.isnan(ours) or mode not in loops:
            paced = results.get("cloop_paced") or {}
            why = paced["note"] if paced and not paced.get("built", True) else not_run(results, "cost")
            out.append(_row(label, why, None))
            continue
        theirs = med([w.machine_us for w in loops[mode]])
        r = ratio(ours, theirs)
        measured = f"{ours:,.0f} µs vs {theirs:,.0f} µs = {r:.2f}x{quick}"
        busy = max(_busiest(results, name), max(w.machine_share for w in loops[mode]))
        out.append(_row(label, measured + _saturated(busy), None if busy >= SATURATED else r <= goal))
    steady = results.get("fping_steady")
    label = "icmp: machine CPU/probe at 1,000/s, steady state, ≤ 2x fping paced"
    ours = _healthd_us(results, "icmp")
    if steady is None or math.isnan(ours):
        out.append(_row(label, not_run(results, "cost"), None))
    else:
        r = ratio(ours, steady.machine_us)
        busy = _busiest(results, "icmp")
        measured = f"{ours:,.0f} µs vs {steady.machine_us:,.0f} µs = {r:.2f}x{quick}" + _saturated(busy)
        out.append(_row(label, measured, None if busy >= SATURATED else r <= 2.0))
    return out


def _busiest(results: dict[str, Any], name: str) -> float:
    data = results["types"].get(name) or {}
    return max((r.machine_share for r in data.get("scheduled", [])), default=0.0)


def _saturated(busy: float) -> str:
    # at 1,000/s on 2 cores, a machine this busy is other work: machine CPU per probe says nothing
    return f"; machine {busy:.0%} busy: saturated by other work, no verdict" if busy >= SATURATED else ""


def _healthd_us(results: dict[str, Any], name: str) -> float:
    data = results["types"].get(name) or {}
    return med([r.machine_us for r in data.get("scheduled", [])])


def _truth(results: dict[str, Any]) -> list[str]:
    run = results.get("truth")
    label = (
        "truth under load (6,000 checks/s, `/metrics` every 1 s, 20 ms delay link): "
        "{} within {} ms of the wire, no false failure"
    )
    if run is None or run.skipped:
        why = run.skipped if run is not None else not_run(results, "truth")
        return [_row(label.format("tcp, syn, icmp, http", "2 (http 10)"), f"skipped: {why}", None)]
    out = []
    for name, check in run.checks.items():
        goal = 10 if name == "http" else 2
        measured = (
            f"{med(check.reported_ms):.2f} ms reported vs {med(check.wire_ms):.2f} ms on the wire "
            f"(capture) = {check.error_ms:+.2f} ms; {len(check.failures)} failed of "
            f"{len(check.reported_ms) + len(check.failures)}"
        )
        out.append(_row(label.format(name, goal), measured, check.met))
    return out


def _growth(results: dict[str, Any]) -> list[str]:
    runs: list[BigRun] = results.get("linear") or []
    label = "cost flat from 1,000 to 50,000 checks (largest step ≤ 1.25x the cheapest): {}"
    if len(runs) < 2:
        return [
            _row(label.format("CPU/probe, memory/check, `/metrics` per 1,000 checks"), "full run only", None)
        ]
    sizes = ", ".join(f"{b.run.checks:,}" for b in runs)
    cpu = [b.run.machine_us for b in runs]
    metrics = [med(b.metrics_seconds) * 1e3 / (b.run.checks / 1000) for b in runs]
    # memory per check as the step between sizes: the first size also holds the process's own base
    per_check = [
        (b.rss_end - a.rss_end) / (b.run.checks - a.run.checks) / 1024 for a, b in itertools.pairwise(runs)
    ]
    out = []
    for what, values, unit in (
        ("machine CPU/probe", cpu, "µs"),
        ("`/metrics` ms per 1,000 checks", metrics, "ms"),
        ("RSS per added check", per_check, "KB"),
    ):
        shown = " → ".join(f"{v:,.1f}" for v in values)
        out.append(
            _row(label.format(what), f"{shown} {unit} ({sizes} checks)", values[-1] <= FLAT * min(values))
        )
    return out


def _blackbox(results: dict[str, Any]) -> list[str]:
    out = []
    for name in ("tcp", "syn", "icmp", "http"):
        data = results["types"].get(name)
        share, goal = ("½", 0.5) if name == "http" else ("¼", 0.25)
        label = f"{name}: machine CPU/probe at 1,000/s ≤ {share} of blackbox+Prometheus"
        if not data or not data.get("reference"):
            out.append(_row(label, not_run(results, "cost"), None))
            continue
        ours, theirs = med([r.machine_us for r in data["scheduled"]]), med(ref_machine_us(data["reference"]))
        r = ratio(ours, theirs)
        out.append(
            _row(
                label, f"{ours:,.0f} µs vs {theirs:,.0f} µs = {r:.2f}x", None if math.isnan(r) else r <= goal
            )
        )
    return out
