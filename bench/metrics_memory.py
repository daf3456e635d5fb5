"""What the `/metrics` cache holds at 10,000 checks: memory before and after the first scrapes.

One process, no HTTP, the store of `bench.metrics_render`: before each of three gzip
scrapes and one plain one a tenth of the checks get a result, as in a daemon scraped every
second. Reported: the memory Python's allocator holds for what the scrapes kept
(tracemalloc, after a collection; the store's new results are in it too, a few hundred KB),
the process's RSS before and after, and the CPU of each scrape (all threads). Prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

from healthd.scrape import MetricsRenderer

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.loop_hold import filled_store
from bench.metrics_render import new_results, rss_mb
from bench.procstat import print_figures


async def measure(checks: int) -> dict[str, Any]:
    store = filled_store(checks)
    renderer = MetricsRenderer(store)
    gc.collect()
    figures: dict[str, Any] = {"checks": checks, "rss_mb_before": rss_mb()}
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    cpu_ms = []
    for scrape, gzip in enumerate((True, True, True, False)):
        new_results(store, scrape, 0.1)
        cpu = time.process_time()
        await renderer.render(gzip=gzip)
        cpu_ms.append(round((time.process_time() - cpu) * 1000, 1))
    gc.collect()
    figures["cache_mb"] = round((tracemalloc.get_traced_memory()[0] - before) / 2**20, 1)
    tracemalloc.stop()
    figures["rss_mb_after"] = rss_mb()
    figures["cpu_ms_scrapes"] = cpu_ms  # under tracemalloc: slower than without
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=10_000)
    args = parser.parse_args(argv)
    print_figures(asyncio.run(measure(args.checks)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
