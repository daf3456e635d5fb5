"""Memory of a full history, measured in a process of its own.

A 10,000-check daemon at a 10 s interval needs 20 minutes to fill
`history: 120`; the bench cannot wait that long. This fills the daemon's own
`Store` with results shaped exactly as the TCP probe and `run_probe` build
them (two phases, an `address` detail formatted per probe) and reports the
resident memory it took. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time

from bench.procstat import process_rss


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--checks", type=int, default=10_000)
    parser.add_argument("--history", type=int, default=120)
    args = parser.parse_args(argv)

    from healthd.results import ProbeOutcome, ProbeResult
    from healthd.store import CheckInfo, ServiceInfo, Store

    pid = os.getpid()
    store = Store(probe_histograms=True)
    services = [
        ServiceInfo(
            name=f"bench-{s:04d}",
            labels={"bench": "yes"},
            checks=tuple(
                CheckInfo(
                    f"bench-{s:04d}",
                    f"c{s * 100 + c:05d}",
                    "tcp",
                    f"127.70.0.{1 + c % 50}:{20000 + s}",
                    2,
                    3,
                    args.history,
                )
                for c in range(100)
            ),
        )
        for s in range(args.checks // 100)
    ]
    store.apply(services)
    gc.collect()
    before = process_rss(pid)
    keys = [info.key for svc in services for info in svc.checks]
    now = time.time()
    for round_ in range(args.history):
        for n, key in enumerate(keys):
            # what probe_tcp returns and run_probe turns into a result, allocation for allocation
            outcome = ProbeOutcome(
                phases={"resolve": 1e-6, "connect": 1e-4 + n * 1e-9},
                # probe_tcp formats the address per probe (format_sockaddr); so does this
                details={"address": f"127.70.0.{1 + n % 50}:{20000 + n // 100}"},
                latency=1e-4 + round_ * 1e-9,
            )
            result = ProbeResult(
                time=now + round_,
                ok=True,
                duration=2e-4 + n * 1e-9,
                latency=outcome.latency,
                phases=outcome.phases,
                details=outcome.details,
                gauges=outcome.gauges,
            )
            store.record(key, result)
    gc.collect()
    after = process_rss(pid)
    results = args.checks * args.history
    print(
        json.dumps(
            {
                "checks": args.checks,
                "history": args.history,
                "rss_before": before,
                "rss_after": after,
                "bytes_per_result": (after - before) / results,
                "bytes_per_check": (after - before) / args.checks,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
