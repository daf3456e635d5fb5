"""healthd as the bench runs it: a real process with a generated config, read over HTTP.

Figures come from the daemon's own exposition: probes from
`healthd_probes_total` deltas, lag from `healthd_scheduler_lag_seconds` bucket
deltas, skipped runs from `healthd_scheduler_skipped_runs_total`.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.procs import Processes, free_port, wait_http

ROOT = Path(__file__).resolve().parent.parent
HEALTHD = ROOT / ".venv" / "bin" / "healthd"
PYTHON = ROOT / ".venv" / "bin" / "python"
CHECKS_PER_SERVICE = 100

LAUNCHER = "import sys\n{prelude}from healthd.cli import main\nsys.argv[0] = 'healthd'\nmain()\n"


def write_config(
    path: Path,
    checks: Sequence[dict[str, Any]],
    *,
    interval: float,
    timeout: float,
    history: int = 120,
    histogram: bool = True,
    max_in_flight: int = 1024,
    workers: int | str | None = None,
) -> None:
    """A config of `checks` split into services of 100 checks. JSON is valid YAML.

    `workers` (`scheduler.workers`: 1, N or "auto") is written only where the daemon
    has the key; None leaves the daemon's default.
    """
    services = [
        {
            "name": f"bench-{n // CHECKS_PER_SERVICE:04d}",
            "labels": {"bench": "yes"},
            "checks": [{"name": f"c{n + i:05d}", **check} for i, check in enumerate(chunk)],
        }
        for n in range(0, len(checks), CHECKS_PER_SERVICE)
        for chunk in [checks[n : n + CHECKS_PER_SERVICE]]
    ]
    scheduler: dict[str, Any] = {"max_in_flight": max_in_flight}
    if workers is not None and workers_supported():
        scheduler["workers"] = workers
    config = {
        "defaults": {"interval": interval, "timeout": timeout, "history": history},
        "scheduler": scheduler,
        "metrics": {"probe_duration_histogram": histogram},
        "services": services,
    }
    path.write_text(json.dumps(config, indent=1))


def workers_supported() -> bool:
    """Whether this daemon has `scheduler.workers` (worker processes probing shards of the checks)."""
    from healthd.config.model import SchedulerConfig

    return "workers" in SchedulerConfig.model_fields


@dataclass
class Scrape:
    at: float  # monotonic midpoint of the request
    seconds: float  # response time
    size: int  # bytes
    probes: dict[str, float] = field(default_factory=dict)  # result label -> total
    lag: list[tuple[float, float]] = field(default_factory=list)  # (le, cumulative count)
    skipped: float = 0.0


@dataclass
class Window:
    """What changed between two scrapes."""

    seconds: float
    probes: float
    failures: float
    failure_kinds: dict[str, float]
    lag: list[tuple[float, float]]  # bucket deltas, cumulative
    skipped: float

    @property
    def rate(self) -> float:
        return self.probes / self.seconds if self.seconds > 0 else 0.0

    def lag_quantile(self, q: float) -> float:
        return quantile(self.lag, q)

    def lag_share_within(self, bound: float) -> float:
        """Fraction of probe starts that lagged at most `bound` seconds (a bucket bound)."""
        total = self.lag[-1][1] if self.lag else 0.0
        if total == 0:
            return 1.0
        within = next((count for le, count in self.lag if abs(le - bound) < 1e-9), None)
        if within is None:
            raise ValueError(f"{bound} is not a lag bucket bound")
        return within / total


def quantile(cumulative: list[tuple[float, float]], q: float) -> float:
    """Linear interpolation inside the bucket, as PromQL's histogram_quantile does."""
    if not cumulative or cumulative[-1][1] == 0:
        return 0.0
    rank = q * cumulative[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in cumulative:
        if count >= rank:
            if bound == float("inf"):
                return lower_bound  # above the highest finite bucket: that bound is all we know
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return float("inf")


def parse_metrics(text: str) -> tuple[dict[str, float], list[tuple[float, float]], float]:
    """Sum of probes by result, the lag histogram, skipped runs; other lines are skipped."""
    probes: dict[str, float] = {}
    lag: list[tuple[float, float]] = []
    skipped = 0.0
    for line in text.splitlines():
        if line.startswith("healthd_probes_total{"):
            labels, value = line.rsplit(" ", 1)
            result = labels.split('result="', 1)[1].split('"', 1)[0]
            probes[result] = probes.get(result, 0.0) + float(value)
        elif line.startswith("healthd_scheduler_lag_seconds_bucket{"):
            labels, value = line.rsplit(" ", 1)
            le = labels.split('le="', 1)[1].split('"', 1)[0]
            lag.append((float(le), float(value)))
        elif line.startswith("healthd_scheduler_skipped_runs_total "):
            skipped = float(line.rsplit(" ", 1)[1])
    return probes, lag, skipped


def between(first: Scrape, second: Scrape) -> Window:
    kinds = {
        kind: second.probes.get(kind, 0.0) - first.probes.get(kind, 0.0)
        for kind in second.probes
        if kind != "success"
    }
    before = dict(first.lag)
    return Window(
        seconds=second.at - first.at,
        probes=sum(second.probes.values()) - sum(first.probes.values()),
        failures=sum(kinds.values()),
        failure_kinds={k: v for k, v in kinds.items() if v},
        lag=[(le, count - before.get(le, 0.0)) for le, count in second.lag],
        skipped=second.skipped - first.skipped,
    )


class Healthd:
    """One running daemon."""

    def __init__(
        self,
        procs: Processes,
        config: Path,
        *,
        uvloop: bool = False,
        prelude: str = "",
        name: str = "healthd",
    ) -> None:
        self.procs = procs
        self.name = name
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        args = ["run", "-c", str(config), "--listen", f"127.0.0.1:{self.port}", "--log-level", "warning"]
        args += ["--loop", "uvloop" if uvloop else "asyncio"]  # the baseline is the standard loop
        argv = (
            [str(PYTHON), "-c", LAUNCHER.format(prelude=prelude), *args] if prelude else [str(HEALTHD), *args]
        )
        started = time.monotonic()
        self.proc = procs.start(name, argv, cwd=ROOT)
        try:
            wait_http(f"{self.base}/readyz", timeout=180, proc=self.proc)  # a loaded machine starts slowly
        except (RuntimeError, TimeoutError) as exc:
            tail = procs.log_tail(name)
            procs.stop(name)
            raise RuntimeError(f"healthd did not start: {exc}\n{tail}") from None
        self.startup_seconds = time.monotonic() - started

    @property
    def pid(self) -> int:
        return self.proc.pid

    def get(self, path: str, timeout: float = 30.0) -> tuple[bytes, float]:
        """Body and response time of a GET."""
        started = time.perf_counter()
        with urllib.request.urlopen(self.base + path, timeout=timeout) as answer:
            body: bytes = answer.read()
        return body, time.perf_counter() - started

    def scrape(self) -> Scrape:
        started = time.monotonic()
        body, seconds = self.get("/metrics")
        probes, lag, skipped = parse_metrics(body.decode())
        return Scrape(started + seconds / 2, seconds, len(body), probes, lag, skipped)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        status = self.procs.stop(self.name)
        if status not in (0, None):
            print(f"  note: healthd exited with status {status}", file=sys.stderr)
