"""`/metrics` render time at 10,000 checks while a tenth of them get a new result per scrape.

One process, no HTTP: the daemon's own `Store` filled like 10,000 TCP checks (`loop_hold`),
rendered by the daemon's own `MetricsRenderer` on a running loop, as a scrape would.
Before each scrape 10 % of the checks (a different tenth each time) get a result, as at
10,000 checks every 10 s scraped every second. Reported: the median and largest render
time, gzip and plain (wall, and CPU of all threads), and the process's RSS before the
first scrape and after the last (what the kept lines cost). The first scrape (nothing
kept yet) is reported on its own. Prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from healthd.results import ProbeResult
from healthd.scrape import MetricsRenderer
from healthd.store import Store

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.loop_hold import filled_store
from bench.procstat import print_figures


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def new_results(store: Store, scrape: int, share: float) -> None:
    """A result for every `1/share`-th check, a different slice each scrape."""
    step = round(1 / share)
    now = time.time()
    for index, state in enumerate(list(store.all_states())):
        if index % step == scrape % step:
            phases = {"resolve": 1e-6, "connect": 1e-4 * (1 + scrape % 7)}
            result = ProbeResult(now, True, 2e-4, 1e-4 * (1 + scrape % 7), phases=phases)
            store.record(state.info.key, result)


async def measure(checks: int, scrapes: int, share: float) -> dict[str, Any]:
    store = filled_store(checks)
    renderer = MetricsRenderer(store)
    figures: dict[str, Any] = {
        "checks": checks,
        "scrapes": scrapes,
        "new_share": share,
        "rss_mb_before": rss_mb(),
    }
    started = time.perf_counter()
    body = await renderer.render(gzip=True)
    figures["first_gzip_ms"] = round((time.perf_counter() - started) * 1000, 1)
    for gzip in (True, False):
        walls, cpus = [], []
        for scrape in range(scrapes):
            new_results(store, scrape, share)
            started, cpu = time.perf_counter(), time.process_time()
            body = await renderer.render(gzip=gzip)
            walls.append(time.perf_counter() - started)
            cpus.append(time.process_time() - cpu)
        name = "gzip" if gzip else "plain"
        figures[name] = {
            "bytes": len(body),
            "ms_median": round(statistics.median(walls) * 1000, 1),
            "ms_max": round(max(walls) * 1000, 1),
            "cpu_ms_median": round(
                statistics.median(cpus) * 1000, 1
            ),  # all threads: the load's share left out
        }
    figures["rss_mb_after"] = rss_mb()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=10_000)
    parser.add_argument("--scrapes", type=int, default=10)
    parser.add_argument(
        "--share", type=float, default=0.1, help="share of checks with new results per scrape"
    )
    args = parser.parse_args(argv)
    print_figures(asyncio.run(measure(args.checks, args.scrapes, args.share)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
