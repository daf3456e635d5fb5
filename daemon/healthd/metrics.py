"""Prometheus exposition built from the store at scrape time.

Nothing is updated per probe: each scrape walks the store once and writes
fresh families, so removed checks vanish by themselves.

The per-check families are written as text directly (`metrics_text`: formatting
them through prometheus_client would hold the event loop for seconds at 10,000
checks); the few families that are not per check go through prometheus_client
(`DaemonCollector`, `NotificationCollector`).

Two formats: the Prometheus text format (0.0.4) and, when the scraper asks
for it, OpenMetrics 1.0 (counter families named without `_total`, HELP
escaping quotes too, a closing `# EOF`).
"""

from __future__ import annotations

import asyncio
import platform
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping

from prometheus_client import generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.openmetrics import exposition as openmetrics_exposition
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from healthd import __version__
from healthd.deflate import Deflated
from healthd.histogram import Histogram
from healthd.loop_slices import LoopSlices
from healthd.metrics_cache import KeptLines
from healthd.metrics_text import CheckLabels, CheckText, bound_text
from healthd.store import CheckInfo, Status, Store
from healthd.uptime import HOUR

_EOF = b"# EOF\n"


def generate_openmetrics(collector: Collector) -> bytes:
    """prometheus_client's OpenMetrics writer (untyped there), ending with `# EOF`."""
    data: bytes = openmetrics_exposition.generate_latest(collector)  # type: ignore[no-untyped-call]
    return data


class DaemonCollector(Collector):
    """The families that are not per check: services, scheduler, config, check counts."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def collect(self) -> Iterator[Metric]:
        yield build_info()
        yield self._service_info()
        yield from self._daemon_families()
        yield self._task_restarts()
        yield self._local_errors()

    def _service_info(self) -> Metric:
        info = GaugeMetricFamily("healthd_service_info", "Configured services and their labels", labels=None)
        for svc in self._store.services:
            sample_labels = {"service": svc.name, **svc.labels}
            info.samples.append(Sample("healthd_service_info", sample_labels, 1.0))
        return info

    def _daemon_families(self) -> Iterator[Metric]:
        daemon = self._store.daemon
        lag = HistogramMetricFamily(
            "healthd_scheduler_lag_seconds", "How late probes start against their planned time"
        )
        lag.add_metric([], *_buckets(self._store.lag))
        yield lag
        yield CounterMetricFamily(
            "healthd_scheduler_skipped_runs",
            "Planned runs skipped because the previous run of the check overran",
            value=daemon.skipped_runs,
        )
        yield GaugeMetricFamily(
            "healthd_config_last_reload_successful",
            "Whether the last config reload succeeded",
            value=1.0 if daemon.last_reload_ok else 0.0,
        )
        yield GaugeMetricFamily(
            "healthd_config_last_reload_success_timestamp_seconds",
            "Time of the last successful config load",
            value=daemon.last_reload_success_time,
        )
        yield self._shard_info()
        yield self._checks()

    def _shard_info(self) -> Metric:
        index, count, _ = self._store.daemon.shard
        shard = GaugeMetricFamily(
            "healthd_shard_info",
            "This instance's shard: it probes checks hashmod(SERVICE/CHECK) % count == index",
            labels=["index", "count"],
        )
        shard.add_metric([str(index), str(count)], 1.0)
        return shard

    def _checks(self) -> Metric:
        checks = GaugeMetricFamily(
            "healthd_checks", "Configured checks, by debounced state", labels=["status"]
        )
        by_status: dict[str, int] = defaultdict(
            int, {s.value: 0 for s in (Status.UP, Status.DOWN, Status.UNKNOWN)}
        )
        for state in self._store.all_states():
            by_status[state.status.value] += 1
        for status, count in by_status.items():
            checks.add_metric([status], count)
        return checks

    def _task_restarts(self) -> Metric:
        restarts = CounterMetricFamily(
            "healthd_check_task_restarts",
            "Times a check's task died of an unexpected error and was started again",
            labels=["service", "check"],
        )
        for state in self._store.all_states():
            if state.task_restarts:  # a bug's trace: absent while it never happened
                restarts.add_metric([state.info.service, state.info.name], state.task_restarts)
        return restarts

    def _local_errors(self) -> Metric:
        local = CounterMetricFamily(
            "healthd_probe_local_errors",
            "Probes that failed for a lack of resources on this host (not counted against the target)",
            labels=["reason"],
        )
        for reason, count in sorted(self._store.daemon.local_errors.items()):
            local.add_metric([reason], count)
        return local


def event_loop_name() -> str:
    """The event loop implementation in use, e.g. "asyncio" or "uvloop"."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return "none"
    return type(loop).__module__.split(".")[0]


def build_info() -> Metric:
    info = GaugeMetricFamily(
        "healthd_build_info",
        "Always 1; the labels say which healthd, Python and event loop are running",
        labels=["version", "python", "event_loop"],
    )
    info.add_metric([__version__, platform.python_version(), event_loop_name()], 1.0)
    return info


class NotificationCollector(Collector):
    """`healthd_notifications_total{receiver,result}` from a live count of deliveries."""

    def __init__(self, counts: Callable[[], Mapping[tuple[str, str], int]]) -> None:
        self._counts = counts

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "healthd_notifications",
            "Notifications by receiver and result: sent, failed (after retries) or dropped (queue full)",
            labels=["receiver", "result"],
        )
        for (receiver, result), count in sorted(self._counts().items()):
            family.add_metric([receiver, result], count)
        yield family


def _buckets(histogram: Histogram) -> tuple[list[tuple[str, float]], float]:
    buckets = [(bound_text(bound), float(count)) for bound, count in histogram.cumulative()]
    return buckets, histogram.sum


# ---- the document: the per-check families (metrics_text), then the daemon's ----------


class Exposition:
    """Renders the store; keeps each check's label strings and lines between scrapes."""

    def __init__(
        self,
        store: Store,
        gauge_help: Mapping[str, str] | None = None,
        *,
        uptime_ratio: bool = True,
        clock: Callable[[], float] = time.time,  # wall clock: the uptime windows are UTC hours and days
    ) -> None:
        self._store = store
        self._clock = clock
        self._gauge_help = gauge_help or {}  # HELP of the gauges probes report (healthd.probes.GAUGE_HELP)
        self._uptime_ratio = uptime_ratio
        self._labels: dict[int, CheckLabels] = {}  # by id() of the CheckInfo
        self._kept = KeptLines()
        self._rendering = asyncio.Lock()

    def _text(self) -> CheckText:
        return CheckText(self._store.probe_histograms, self._clock() if self._uptime_ratio else None)

    def render(self, openmetrics: bool = False) -> bytes:
        """The per-check families, then the daemon's; OpenMetrics without its closing # EOF.

        Written afresh, in one piece: the reference `render_chunks` is held to."""
        text = self._text()
        for state in self._store.all_states():
            text.add(state, self._labels_of(state.info))
        self._forget_removed(text.checks)
        return b"".join([*text.render(self._gauge_help, openmetrics), self._daemon_families(openmetrics)])

    async def render_chunks(self, openmetrics: bool = False, slices: LoopSlices | None = None) -> list[bytes]:
        """`render()` as pieces to join, handing the event loop back between slices."""
        parts = await self.render_parts(openmetrics, slices)
        return [part if isinstance(part, bytes) else part.text() for part in parts]

    async def render_parts(
        self, openmetrics: bool = False, slices: LoopSlices | None = None, *, gzip: bool = False
    ) -> list[bytes | Deflated]:
        """`render_chunks()`, but the histograms left compressed (`healthd.deflate.Deflated`),
        and with `gzip` every per-check family.

        Each check's lines are kept between scrapes and written again only when they
        changed (`metrics_cache`); the loop is held for one slice at a time. Each check's
        lines are written in one piece, so its samples agree with one another.
        """
        slices = slices or LoopSlices()
        states = list(self._store.all_states())
        hour = int(self._clock() // HOUR) if self._uptime_ratio else None
        async with self._rendering:  # one at a time: a check's lines change only between scrapes
            await self._kept.collect(states, self._labels_of, hour, slices)
            parts = await self._kept.join(
                self._store.probe_histograms, self._uptime_ratio, self._gauge_help, openmetrics, gzip, slices
            )
        self._forget_removed(len(states))
        parts.append(self._daemon_families(openmetrics))
        return parts

    def _labels_of(self, info: CheckInfo) -> CheckLabels:
        cached = self._labels.get(id(info))
        if cached is None or cached.info is not info:  # new check, or a reload made a new info
            cached = self._labels[id(info)] = CheckLabels(info)
        return cached

    def _forget_removed(self, checks: int) -> None:
        if len(self._labels) > 2 * checks:  # forget checks that reloads removed
            live = {id(state.info) for state in self._store.all_states()}
            self._labels = {key: value for key, value in self._labels.items() if key in live}

    def _daemon_families(self, openmetrics: bool) -> bytes:
        daemon = DaemonCollector(self._store)
        if openmetrics:  # generate_openmetrics() closes its document: the caller closes ours
            return generate_openmetrics(daemon).removesuffix(_EOF)
        return generate_latest(daemon)
