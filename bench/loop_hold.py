"""How long serving holds the event loop at 10,000 checks: the max gap of a 1 ms ticker.

One process: the daemon's own `Store`, filled with results shaped as the TCP
probe's, served by the daemon's own routes on 127.0.0.1 (port 0), and a task
that sleeps 1 ms in a loop and records how late it wakes. A client thread
(blocking sockets, which release the GIL) reads `/metrics` (gzip and plain) and
`/api/v1/services`; for each read the ticker's largest gap is the longest the
loop was held, i.e. how late a probe due then would have started.

References measured in the same run, on the loop, in one piece: the whole
exposition rendered at once (what a render without slices holds), and the
listing built as pydantic models (the encoding before orjson). Prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import http.client
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from healthd import api, api_dicts
from healthd.api_models import ServicesResponse
from healthd.metrics import Exposition
from healthd.results import ProbeResult
from healthd.scrape import MetricsRenderer
from healthd.store import CheckInfo, ServiceInfo, Store

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.procstat import print_figures

READS = {  # name -> (path, request headers)
    "idle": ("/healthz", {}),  # the reference: what this machine's load alone delays the ticker by
    "metrics_gzip": ("/metrics", {"Accept-Encoding": "gzip"}),
    "metrics_plain": ("/metrics", {"Accept-Encoding": "identity"}),
    "services": ("/api/v1/services", {}),
}


def filled_store(checks: int, rounds: int = 3) -> Store:
    """`checks` TCP checks in services of 100, each with `rounds` results (`history: 120`)."""
    store = Store(probe_histograms=True)
    services = []
    for s in range(checks // 100):
        name = f"bench-{s:04d}"
        targets = (f"127.70.0.{1 + c}:{20000 + s}" for c in range(100))
        infos = (CheckInfo(name, f"c{c:03d}", "tcp", target, 2, 3, 120) for c, target in enumerate(targets))
        services.append(ServiceInfo(name, {"bench": "yes"}, tuple(infos)))
    store.apply(services)
    now = time.time()
    for round_ in range(rounds):
        for info in (info for svc in services for info in svc.checks):
            phases = {"resolve": 1e-6, "connect": 1e-4}
            details = {"address": info.target}
            result = ProbeResult(now + round_, True, 2e-4, 1e-4, phases=phases, details=details)
            store.record(info.key, result)
    return store


class GcPauses:
    """The longest cyclic-GC pause since `reset()` (gc.callbacks), to tell GC from our own work."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._started = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.longest = max(self.longest, time.perf_counter() - self._started)

    def reset(self) -> None:
        self.longest = 0.0


class Ticker:
    """Sleeps `period` in a loop and records, since `reset()`, the longest wake-up delay (`gap`)
    and the most CPU the loop's thread spent between two wake-ups (`cpu`).

    On a saturated machine the gap also holds the time the kernel ran other processes; the
    CPU figure is only what ran on the loop (our callbacks, GC), which is what we can change.
    """

    def __init__(self, period: float = 0.001) -> None:
        self.period = period
        self.gap = self.cpu = 0.0

    async def run(self) -> None:
        while True:
            before, cpu_before = time.perf_counter(), time.thread_time()
            await asyncio.sleep(self.period)
            self.gap = max(self.gap, time.perf_counter() - before - self.period)
            self.cpu = max(self.cpu, time.thread_time() - cpu_before)

    def reset(self) -> None:
        self.gap = self.cpu = 0.0


def read(port: int, path: str, headers: dict[str, str]) -> tuple[float, int]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        started = time.perf_counter()
        conn.request("GET", path, headers=headers)
        body = conn.getresponse().read()
        return time.perf_counter() - started, len(body)
    finally:
        conn.close()


def pydantic_listing(store: Store) -> str:
    """The listing as it was built before orjson: a model per check, per request."""
    body = api_dicts.services_dict(store, store.services, time.time())
    return ServicesResponse.model_validate(body).model_dump_json()


async def serve(store: Store, *, metrics: bool) -> tuple[web.AppRunner, int]:
    """The daemon's own routes over `store` on 127.0.0.1 (port 0): the runner and its port."""
    app = web.Application(middlewares=[api.error_middleware])
    app[api.STORE], app[api.AUTH] = store, api.Auth()
    if metrics:
        app[api.RENDER_METRICS] = MetricsRenderer(store).render
    api.add_routes(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, runner.addresses[0][1]


def timed(fn: Any) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


async def measure(checks: int, rounds: int, freeze: bool) -> dict[str, Any]:
    store = filled_store(checks)
    runner, port = await serve(store, metrics=True)
    ticker, pauses = Ticker(), GcPauses()
    if freeze:
        gc.freeze()  # as `healthd run` does after start-up; the results written since stay unfrozen
    tick_task = asyncio.create_task(ticker.run())
    figures: dict[str, Any] = {"checks": checks, "rounds": rounds}
    try:
        for name, (path, headers) in READS.items():
            holds, cpus, walls, gcs = [], [], [], []
            for _ in range(rounds):
                await asyncio.sleep(0.05)
                ticker.reset()
                pauses.reset()
                wall, size = await asyncio.to_thread(read, port, path, headers)
                holds.append(ticker.gap)
                cpus.append(ticker.cpu)
                gcs.append(pauses.longest)
                walls.append(wall)
            figures[name] = {
                "bytes": size,
                "wall_ms_median": round(statistics.median(walls) * 1000, 1),
                "loop_hold_ms_max": round(max(holds) * 1000, 1),
                "loop_hold_ms_median": round(statistics.median(holds) * 1000, 1),
                "loop_cpu_hold_ms_max": round(max(cpus) * 1000, 1),
                "loop_cpu_hold_ms_median": round(statistics.median(cpus) * 1000, 1),
                "gc_pause_ms_max": round(max(gcs) * 1000, 1),
            }
        exposition = Exposition(store)
        figures["reference_one_piece_render_ms"] = round(timed(exposition.render) * 1000, 1)
        figures["reference_pydantic_services_ms"] = round(timed(lambda: pydantic_listing(store)) * 1000, 1)
    finally:
        tick_task.cancel()
        await runner.cleanup()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--freeze", action="store_true", help="gc.freeze() once the store is filled")
    args = parser.parse_args(argv)
    if args.loop == "uvloop":
        import uvloop

        figures = uvloop.run(measure(args.checks, args.rounds, args.freeze))
    else:
        figures = asyncio.run(measure(args.checks, args.rounds, args.freeze))
    figures["loop"], figures["gc_frozen"] = args.loop, args.freeze
    print_figures(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
