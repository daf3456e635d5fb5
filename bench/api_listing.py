"""How long the API's reads take at 10,000 checks, served by the daemon's own routes.

One process: the daemon's own `Store` with `--checks` TCP checks in services of 100, each
with `--rounds` results shaped as the TCP probe's (one check gets `--history` of them, for
`/history`), served on 127.0.0.1 (port 0). A client thread (blocking sockets) times:

- `services_cold`: the first `GET /api/v1/services`, with nothing cached yet;
- `services_steady`: the listing after each `--fresh` fraction of the checks got a new result
  (0.1: 10,000 checks every 10 s polled every second), `--requests` times. `--order phase`
  (the default) gives the results in the order of the checks' phases (`slots.stable_fraction`),
  as the daemon's scheduler runs them: a few new checks in every service; `--order sequential`
  gives whole services at a time (the figures before 2026-12-01 19:00 UTC);
- `service`, `check`, `history`: `GET /api/v1/services/{s}`, `…/checks/{c}`, `…/history`.

In-process, on the loop's thread: `minute_rollover_ms`, the listing when every check's 1 h
window moved on by a minute since the last one (the costliest steady request), `steady_cpu_ms`,
the loop thread's CPU time of the steady listing (in-process, after each `--fresh` share of new
results), and the reference measured in the same run: `reference_fresh_dicts_ms`, every dict built afresh
and encoded (what each request cost before the cache), and `reference_pydantic_ms`, the
listing built as pydantic models. The `loop_hold_ms` figures are the longest wake-up delay
of a 1 ms ticker on the loop during each request (bench.loop_hold). Prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from typing import Any

from healthd import api_dicts
from healthd.api_keys import LISTING
from healthd.api_listing import ListingCache, services_json
from healthd.api_models import ServicesResponse
from healthd.results import ProbeResult
from healthd.slots import stable_fraction
from healthd.store import CheckInfo, ServiceInfo, Store

from bench.loop_hold import Ticker, read, serve
from bench.procstat import print_figures


def filled_store(checks: int, rounds: int, history: int, now: float) -> Store:
    store = Store(probe_histograms=True)
    services = []
    for s in range(checks // 100):
        name = f"bench-{s:04d}"
        infos = (
            CheckInfo(name, f"c{c:03d}", "tcp", f"127.70.0.{1 + c}:{20000 + s}", 2, 3, history)
            for c in range(100)
        )
        services.append(ServiceInfo(name, {"bench": "yes"}, tuple(infos)))
    store.apply(services)
    keys = [info.key for svc in services for info in svc.checks]
    for round_ in range(rounds):
        for key in keys:
            record(store, key, now - rounds + round_)
    for n in range(history):
        record(store, keys[0], now - history + n)
    return store


def record(store: Store, key: Any, at: float) -> None:
    phases = {"resolve": 1e-6, "connect": 1e-4}
    details = {"address": f"127.70.0.1:{20000 + len(key.check)}"}
    store.record(key, ProbeResult(at, True, 2e-4, 1e-4, phases=phases, details=details))


def figures(walls: list[float], holds: list[float], size: int) -> dict[str, Any]:
    return {
        "bytes": size,
        "wall_ms_median": round(statistics.median(walls) * 1000, 1),
        "wall_ms_max": round(max(walls) * 1000, 1),
        "loop_hold_ms_max": round(max(holds) * 1000, 1),
        "requests": len(walls),
    }


async def timed_reads(port: int, path: str, count: int, ticker: Ticker, before: Any = None) -> dict[str, Any]:
    walls, holds, size = [], [], 0
    for _ in range(count):
        if before is not None:
            before()
        await asyncio.sleep(0.02)
        ticker.reset()
        wall, size = await asyncio.to_thread(read, port, path, {})
        walls.append(wall)
        holds.append(ticker.gap)
    return figures(walls, holds, size)


def in_process_ms(fn: Any, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return round(best * 1000, 1)


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    now = time.time()
    store = filled_store(args.checks, args.rounds, args.history, now)
    runner, port = await serve(store, metrics=False)
    keys = [info.key for svc in store.services for info in svc.checks]
    if args.order == "phase":
        keys.sort(key=stable_fraction)
    fresh = max(1, int(len(keys) * args.fresh))
    turn = iter(range(10**9))

    def new_results() -> None:
        start = next(turn) * fresh
        for n in range(start, start + fresh):
            record(store, keys[n % len(keys)], time.time())

    ticker = Ticker()
    tick = asyncio.create_task(ticker.run())
    out: dict[str, Any] = {"checks": args.checks, "fresh_per_request": fresh, "order": args.order}
    try:
        out["services_cold"] = await timed_reads(port, "/api/v1/services", 1, ticker)
        out["services_steady"] = await timed_reads(
            port, "/api/v1/services", args.requests, ticker, new_results
        )
        first = store.services[0].checks[0].key
        out["service"] = await timed_reads(port, f"/api/v1/services/{first.service}", args.requests, ticker)
        check = f"/api/v1/services/{first.service}/checks/{first.check}"
        out["check"] = await timed_reads(port, check, args.requests, ticker)
        out["history"] = await timed_reads(port, check + "/history", args.requests, ticker)
        out.update(in_process(store, runner.app[LISTING]))
        out["steady_cpu_ms"] = await steady_cpu(store, runner.app[LISTING], args.requests, new_results)
    finally:
        tick.cancel()
        await runner.cleanup()
    return out


async def steady_cpu(store: Store, cache: ListingCache, count: int, before: Any) -> dict[str, float]:
    """The loop thread's CPU time (`time.thread_time`) of `services_json`, on the loop, after each
    `before()`: what a steady listing costs, less sensitive to other processes than the wall."""
    spent = []
    for _ in range(count):
        before()
        started = time.thread_time()
        await services_json(cache, store, store.services, time.time())
        spent.append(time.thread_time() - started)
    return {"median": round(statistics.median(spent) * 1000, 1), "least": round(min(spent) * 1000, 1)}


def in_process(store: Store, cache: ListingCache) -> dict[str, float]:
    minute = iter(range(1, 10**6))

    def next_minute() -> None:
        later = time.time() + 60 * next(minute)
        for service in store.services:
            cache.service_json(store, service, later)

    def fresh_dicts() -> None:
        api_dicts.encode(api_dicts.services_dict(store, store.services, time.time()))

    def pydantic() -> None:
        body = api_dicts.services_dict(store, store.services, time.time())
        ServicesResponse.model_validate(body).model_dump_json()

    return {
        "minute_rollover_ms": in_process_ms(next_minute),
        "reference_fresh_dicts_ms": in_process_ms(fresh_dicts),
        "reference_pydantic_ms": in_process_ms(pydantic, repeat=1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3, help="results per check")
    parser.add_argument("--history", type=int, default=120)
    parser.add_argument(
        "--fresh", type=float, default=0.1, help="share of checks with a new result per request"
    )
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--order", choices=("phase", "sequential"), default="phase", help="of new results")
    args = parser.parse_args(argv)
    if not 100 <= args.checks <= 100_000 or not 1 <= args.requests <= 200 or not 0 <= args.fresh <= 1:
        parser.error("--checks 100..100000, --requests 1..200, --fresh 0..1")
    out = asyncio.run(measure(args))
    print_figures(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
