"""The families of probing in worker processes (healthd.workers), and of check freshness."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from healthd.store import Store, is_stale


class WorkerCollector(Collector):
    """`workers()`: (worker processes, restarts so far); (0, 0) when the main process probes."""

    def __init__(self, store: Store, workers: Callable[[], tuple[int, int]]) -> None:
        self._store = store
        self._workers = workers

    def collect(self) -> Iterator[Metric]:
        count, restarts = self._workers()
        yield GaugeMetricFamily(
            "healthd_workers", "Processes that probe (0: the main process probes)", value=count
        )
        yield CounterMetricFamily(
            "healthd_worker_restarts",
            "Worker processes that died or hung and were started again",
            value=restarts,
        )
        now = time.time()
        stale = sum(1 for state in self._store.all_states() if is_stale(state, now))
        yield GaugeMetricFamily(
            "healthd_checks_stale",
            "Checks without a result for longer than 2 x their interval + timeout",
            value=stale,
        )
