"""The bench's scenarios: each starts what it needs, measures windows, stops it again.

A window is: scrape `/metrics`, sample CPU, wait, sample CPU, scrape again.
CPU per probe divides the CPU of the inner interval by the probes the daemon
counted between the scrapes, scaled to that interval. The lag of a window
includes the effect of one `/metrics` scrape, as a Prometheus scraping once
per window would cause.
"""

from __future__ import annotations

import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.healthd_process import PYTHON, ROOT, Healthd, between, write_config
from bench.kinds import HTTP_LISTENERS, TCP_LISTENERS, Kind
from bench.polling import Poller, PollStats
from bench.procs import Processes, wait_line
from bench.procstat import CpuWindow, process_pss, process_rss

LAG_GOAL = 0.1  # sustained rate: 99% of probe starts lag at most this
BIG_LAG_GOAL = 0.05


def start_targets(procs: Processes) -> subprocess.Popen[bytes]:
    """The loopback targets process every scenario probes, once it listens on all its ports."""
    argv = [str(PYTHON), "-m", "bench.targets", "--tcp", str(TCP_LISTENERS), "--http", str(HTTP_LISTENERS)]
    targets = procs.start("targets", argv, stdout_pipe=True, cwd=ROOT)
    wait_line(targets, b"ready", timeout=60)
    return targets


@dataclass
class Bench:
    """What every scenario shares: processes, scratch space, the targets process, the clock."""

    procs: Processes
    workdir: Path
    targets_pid: int
    quick: bool
    deadline: float  # monotonic
    warmup: float = 2.0  # seconds after the first interval before a window opens
    log: Callable[[str], None] = print
    configs: int = 0

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def can(self, seconds: float) -> bool:
        """Whether a step expected to take `seconds` still fits the run's deadline."""
        return self.remaining() >= seconds

    def config_path(self) -> Path:
        self.configs += 1
        return self.workdir / f"healthd-{self.configs}.yaml"


@dataclass(frozen=True)
class HealthdRun:
    """One window of a running daemon."""

    checks: int
    rate: float  # probes/s achieved
    probes: float  # in the window
    total_probes: float  # since the daemon started: the results its history holds so far
    failures: float
    failure_kinds: dict[str, float]
    skipped: float
    lag_p50: float
    lag_p99: float
    lag_within_goal: float  # share of starts lagging <= LAG_GOAL
    lag_within_big_goal: float  # share lagging <= BIG_LAG_GOAL
    machine_us: float  # machine CPU per probe, microseconds
    healthd_us: float
    targets_us: float
    machine_share: float
    rss: int  # summed over the process tree: a page shared by main and workers counts per process
    metrics_seconds: float
    metrics_bytes: int
    pss: int | None = None  # summed over the tree: every page once (procstat.process_pss)

    @property
    def sustained(self) -> bool:
        return self.failures == 0 and self.lag_within_goal >= 0.99


def start_healthd(
    bench: Bench,
    kind: Kind,
    checks: int,
    *,
    interval: float,
    timeout: float,
    histogram: bool = True,
    uvloop: bool = False,
    workers: int | str | None = None,
) -> Healthd:
    path = bench.config_path()
    write_config(
        path,
        [kind.check(i) for i in range(checks)],
        interval=interval,
        timeout=timeout,
        histogram=histogram,
        workers=workers,
    )
    return Healthd(bench.procs, path, uvloop=uvloop)


def window(daemon: Healthd, bench: Bench, checks: int, seconds: float) -> HealthdRun:
    first = daemon.scrape()
    cpu = CpuWindow({"healthd": daemon.pid, "targets": bench.targets_pid})
    cpu.begin()
    time.sleep(seconds)
    cpu.finish()
    rss, pss = process_rss(daemon.pid), process_pss(daemon.pid)
    last = daemon.scrape()
    if not daemon.alive():
        raise RuntimeError("healthd exited during the measurement")
    delta = between(first, last)
    probes_in_cpu_window = max(delta.rate * cpu.seconds, 1.0)
    per_probe = 1e6 / probes_in_cpu_window
    return HealthdRun(
        checks=checks,
        rate=delta.rate,
        probes=delta.probes,
        total_probes=sum(last.probes.values()),
        failures=delta.failures,
        failure_kinds=delta.failure_kinds,
        skipped=delta.skipped,
        lag_p50=delta.lag_quantile(0.5),
        lag_p99=delta.lag_quantile(0.99),
        lag_within_goal=delta.lag_share_within(LAG_GOAL),
        lag_within_big_goal=delta.lag_share_within(BIG_LAG_GOAL),
        machine_us=cpu.machine_cpu * per_probe,
        healthd_us=cpu.cpu("healthd") * per_probe,
        targets_us=cpu.cpu("targets") * per_probe,
        machine_share=cpu.machine_share,
        rss=rss,
        metrics_seconds=last.seconds,
        metrics_bytes=last.size,
        pss=pss,
    )


def scheduled(
    bench: Bench,
    kind: Kind,
    *,
    checks: int,
    interval: float,
    repeats: int,
    seconds: float,
    uvloop: bool = False,
    warm: float | None = None,
    workers: int | str | None = None,
) -> list[HealthdRun]:
    """`checks` checks every `interval`: `repeats` windows after `warm` seconds (default: one
    interval and the bench's warm-up)."""
    daemon = start_healthd(
        bench, kind, checks, interval=interval, timeout=min(interval, 1.0), uvloop=uvloop, workers=workers
    )
    try:
        time.sleep(interval + bench.warmup if warm is None else warm)
        return [window(daemon, bench, checks, seconds) for _ in range(repeats)]
    finally:
        daemon.stop()


@dataclass
class RateSearch:
    best: int | None = None  # highest rate that passed
    steps: list[tuple[int, HealthdRun | None, str]] = field(default_factory=list)  # rate, run, verdict


def max_rate(bench: Bench, kind: Kind, *, seconds: float, workers: int | str | None = None) -> RateSearch:
    """Climb `kind.rate_ladder` (checks every 1 s) until a rate fails, then try halfway once."""
    search = RateSearch()
    failed: int | None = None
    for rate in kind.rate_ladder:
        if not bench.can(_step_cost(rate, seconds)):
            search.steps.append((rate, None, "not run: time budget"))
            break
        if not _rate_step(bench, kind, rate, seconds, search, workers):
            failed = rate
            break
    if failed is not None and search.best is not None:
        middle = (search.best + failed) // 2 // 500 * 500
        if search.best < middle < failed and bench.can(_step_cost(middle, seconds)):
            _rate_step(bench, kind, middle, seconds, search, workers)
    return search


def _step_cost(rate: int, seconds: float) -> float:
    # start-up, warm-up and two scrapes grow with the check count: ~2 s per 1,000 checks here
    return seconds + 5.0 + 2.0 * rate / 1000


def _rate_step(
    bench: Bench, kind: Kind, rate: int, seconds: float, search: RateSearch, workers: int | str | None
) -> bool:
    bench.log(f"  {kind.name}: {rate}/s" + ("" if workers is None else f", workers: {workers}"))
    try:
        run = scheduled(bench, kind, checks=rate, interval=1.0, repeats=1, seconds=seconds, workers=workers)[
            0
        ]
    except (RuntimeError, TimeoutError, OSError) as exc:
        search.steps.append((rate, None, f"failed to run: {exc}"))
        return False
    ok = run.sustained and run.rate >= 0.97 * rate
    verdict = "pass" if ok else _why_not(run, rate)
    search.steps.append((rate, run, verdict))
    if ok and (search.best is None or rate > search.best):
        search.best = rate
    bench.log(
        f"    {verdict}: {run.rate:.0f}/s, lag p99 {run.lag_p99 * 1000:.1f} ms, {run.failures:.0f} failed"
    )
    return ok


def _why_not(run: HealthdRun, rate: int) -> str:
    reasons = []
    if run.failures:
        kinds = ", ".join(f"{k} {v:.0f}" for k, v in run.failure_kinds.items())
        reasons.append(f"{run.failures:.0f} probes failed ({kinds})")
    if run.lag_within_goal < 0.99:
        reasons.append(f"only {run.lag_within_goal:.1%} of starts within {LAG_GOAL * 1000:.0f} ms")
    if run.rate < 0.97 * rate:
        reasons.append(f"ran {run.rate:.0f}/s of {rate}/s")
    return "fail: " + "; ".join(reasons)


@dataclass(frozen=True)
class BigRun:
    """Many checks at a long interval: lag, memory, API and exposition costs."""

    run: HealthdRun
    startup_seconds: float
    stored_results: float  # results held in history at the end (history not yet full)
    rss_end: int
    metrics_seconds: list[float]
    metrics_bytes: int
    services_seconds: list[float]
    services_bytes: int
    label: str = ""
    polls: dict[str, PollStats] = field(default_factory=dict)  # read every 1 s during the window
    pss_end: int | None = None  # the tree's PSS beside rss_end (None: not measured)


def big(
    bench: Bench,
    kind: Kind,
    *,
    checks: int,
    seconds: float,
    histogram: bool = True,
    uvloop: bool = False,
    label: str = "",
    poll: bool = False,
    interval: float = 10.0,
) -> BigRun:
    """`checks` checks every `interval`; with `poll`, `/metrics` and `/api/v1/services` are
    read every second, concurrently, through the window."""
    daemon = start_healthd(
        bench, kind, checks, interval=interval, timeout=min(2.0, interval), histogram=histogram, uvloop=uvloop
    )
    try:
        # the first slot of every check falls within one interval
        time.sleep(interval + 0.5)
        polls: dict[str, PollStats] = {}
        if poll:
            with Poller(daemon.base, ["/metrics", "/api/v1/services"]) as poller:
                run = window(daemon, bench, checks, seconds)
            polls = poller.stats
        else:
            run = window(daemon, bench, checks, seconds)
        timings = 1 if bench.quick else 2
        metrics = [run.metrics_seconds] + [daemon.get("/metrics")[1] for _ in range(timings)]
        services = [daemon.get("/api/v1/services") for _ in range(timings + 1)]
        return BigRun(
            run=run,
            startup_seconds=daemon.startup_seconds,
            stored_results=run.total_probes,
            rss_end=run.rss,
            metrics_seconds=metrics,
            metrics_bytes=run.metrics_bytes,
            services_seconds=[seconds for _, seconds in services],
            services_bytes=len(services[0][0]),
            label=label,
            polls=polls,
            pss_end=run.pss,
        )
    finally:
        daemon.stop()


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summary(values: list[float]) -> dict[str, Any]:
    return {
        "median": median(values),
        "min": min(values, default=float("nan")),
        "max": max(values, default=float("nan")),
    }
