"""A store filled the same way here and by the release that wrote `tests/data/snapshot-v1.bin`
(snapshot format 1, healthd at commit 3535ddd; regenerate it with that tree's code on the path:
`PYTHONPATH=OLD/daemon:tests python -m snapshot_v1 tests/data/snapshot-v1.bin`)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from healthd import snapshot
from healthd.results import ErrorKind, ProbeResult
from healthd.store import CheckInfo, ServiceInfo, Store

T0 = 1_800_000_000.0
COUNT = 500  # 30 s apart: a little over four hours, so minute, hour and day buckets all hold data


def make_store() -> Store:
    store = Store()
    checks = (
        CheckInfo("v1", "tcp", "tcp", "127.0.0.1:1", 1, 2, 120),
        CheckInfo("v1", "icmp", "icmp", "127.0.0.1", 1, 1, 50),
    )
    store.apply([ServiceInfo("v1", {}, checks)])
    return store


def _tcp(n: int, t: float) -> ProbeResult:
    if 100 <= n % 200 < 110:  # ten failures in a row: the check goes down for a while
        return ProbeResult(
            time=t,
            ok=False,
            duration=0.5 + n * 1e-7,
            latency=None,
            error_kind=ErrorKind.TIMEOUT,
            error_message="no answer within 500ms",
        )
    return ProbeResult(
        time=t + n * 1e-6,
        ok=True,
        duration=2e-4 + n * 1.3e-8,
        latency=1e-4 + (n % 37) * 7.7e-5,
        phases={"resolve": 1e-6, "connect": 1e-4 + n * 1.1e-8},
        details={"address": "127.0.0.1:1", "attempts": 1},
    )


def fill(store: Store) -> None:
    for n in range(COUNT):
        t = T0 + 30 * n
        store.record(("v1", "tcp"), _tcp(n, t))
        rtt = 1e-3 + (n % 11) * 1.7e-5
        icmp = ProbeResult(time=t, ok=True, duration=rtt * 3, latency=rtt, gauges={"rtt_seconds": rtt})
        store.record(("v1", "icmp"), icmp)


async def _write(path: Path) -> None:
    store = make_store()
    fill(store)
    path.write_bytes(snapshot.encode(await snapshot.capture(store, T0 + 30 * COUNT)))


if __name__ == "__main__":
    asyncio.run(_write(Path(sys.argv[1])))
