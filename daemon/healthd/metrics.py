"""Prometheus exposition built from the store at scrape time.

Nothing is updated per probe: each scrape walks the store once and writes
fresh families, so removed checks vanish by themselves.

The per-check families are written as text directly rather than through
prometheus_client's families: it formats about 13 µs a sample, 3.3 s for
10,000 checks with histograms, all of it blocking the event loop. Here each
check's label strings are built once and reused across scrapes, and its
histogram is one %-template filled with its counts. The few families that
are not per check go through prometheus_client (`DaemonCollector`).

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
from io import StringIO
from itertools import accumulate

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
from healthd.gauges import escape_label_value as _escape
from healthd.gauges import split_gauge_key
from healthd.histogram import PROBE_DURATION_BUCKETS, Histogram
from healthd.store import CheckInfo, CheckState, Status, Store

HELP = {
    "probe_success": "Last probe succeeded (1) or not (0)",
    "probe_duration_seconds": "Duration of the last probe",
    "healthd_check_up": "Debounced check state: 1 up, 0 down; absent while unknown",
    "healthd_probes": "Probes run, by result",
    "healthd_check_transitions": "Check state changes",
    "healthd_probe_duration_seconds": (
        "Duration of whole probes, start to verdict, failures included (a timeout counts as its timeout)"
    ),
    "healthd_check_uptime_ratio": "Share of successful probes in the window (whole UTC hours or days)",
}

#: Windows exported as healthd_check_uptime_ratio{window}.
UPTIME_GAUGE_WINDOWS = ("24h", "30d")

_EOF = b"# EOF\n"


def generate_openmetrics(collector: Collector) -> bytes:
    """prometheus_client's OpenMetrics writer (untyped there), ending with `# EOF`."""
    data: bytes = openmetrics_exposition.generate_latest(collector)  # type: ignore[no-untyped-call]
    return data


#: blackbox_exporter's name for the name lookup, which every probe reports as its `resolve` phase
DNS_LOOKUP = "probe_dns_lookup_time_seconds"
DNS_LOOKUP_HELP = "Time the name lookup of the last probe took (0 for an IP literal)"


def _phase_help(probe_type: str) -> str:
    return f"Duration of each phase of the last {probe_type} probe"


def _gauge_help(name: str, known: Mapping[str, str]) -> str:
    if name == DNS_LOOKUP:
        return DNS_LOOKUP_HELP
    return known.get(name, "Reported by the last probe")


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
        store, daemon = self._store, self._store.daemon
        lag = HistogramMetricFamily(
            "healthd_scheduler_lag_seconds", "How late probes start against their planned time"
        )
        lag.add_metric([], *_buckets(store.lag))
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
        index, count, _ = daemon.shard
        shard = GaugeMetricFamily(
            "healthd_shard_info",
            "This instance's shard: it probes checks hashmod(SERVICE/CHECK) % count == index",
            labels=["index", "count"],
        )
        shard.add_metric([str(index), str(count)], 1.0)
        yield shard
        checks = GaugeMetricFamily(
            "healthd_checks", "Configured checks, by debounced state", labels=["status"]
        )
        by_status: dict[str, int] = defaultdict(
            int, {s.value: 0 for s in (Status.UP, Status.DOWN, Status.UNKNOWN)}
        )
        for state in store.all_states():
            by_status[state.status.value] += 1
        for status, count in by_status.items():
            checks.add_metric([status], count)
        yield checks

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
    buckets = [(_bound(bound), float(count)) for bound, count in histogram.cumulative()]
    return buckets, histogram.sum


def _bound(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


# ---- per-check families, written as text ------------------------------------------------


class Exposition:
    """Renders the store; keeps each check's label strings between scrapes."""

    def __init__(
        self, store: Store, gauge_help: Mapping[str, str] | None = None, *, uptime_ratio: bool = True
    ) -> None:
        self._store = store
        self._gauge_help = gauge_help or {}  # HELP of the gauges probes report (healthd.probes.GAUGE_HELP)
        self._uptime_ratio = uptime_ratio
        self._labels: dict[int, _CheckLabels] = {}  # by id() of the CheckInfo

    def _text(self) -> _CheckText:
        return _CheckText(self._store.probe_histograms, time.time() if self._uptime_ratio else None)

    def render(self, openmetrics: bool = False) -> bytes:
        """The per-check families, then the daemon's; OpenMetrics without its closing # EOF."""
        text = self._text()
        for state in self._store.all_states():
            text.add(state, self._labels_of(state.info))
        return self._finish(text, openmetrics)

    async def render_async(self, checks_per_pause: int = 1000, openmetrics: bool = False) -> bytes:
        """`render()`, handing the event loop back every `checks_per_pause` checks.

        Each check's lines are written in one piece, so its samples agree with
        one another; probes due meanwhile start at most one slice late.
        """
        text = self._text()
        for count, state in enumerate(list(self._store.all_states()), 1):
            text.add(state, self._labels_of(state.info))
            if count % checks_per_pause == 0:
                await asyncio.sleep(0)
        return self._finish(text, openmetrics)

    def _labels_of(self, info: CheckInfo) -> _CheckLabels:
        cached = self._labels.get(id(info))
        if cached is None or cached.info is not info:  # new check, or a reload made a new info
            cached = self._labels[id(info)] = _CheckLabels(info)
        return cached

    def _finish(self, text: _CheckText, openmetrics: bool) -> bytes:
        if len(self._labels) > 2 * text.checks:  # forget checks that reloads removed
            live = {id(state.info) for state in self._store.all_states()}
            self._labels = {key: value for key, value in self._labels.items() if key in live}
        checks = text.render(self._gauge_help, openmetrics).encode()
        daemon = DaemonCollector(self._store)
        if openmetrics:  # generate_openmetrics() closes its document: the caller closes ours
            return checks + generate_openmetrics(daemon).removesuffix(_EOF)
        return checks + generate_latest(daemon)


_LE = tuple(_bound(bound) for bound in (*PROBE_DURATION_BUCKETS, float("inf")))


# One %-template for every check's histogram: its label set goes in before each count.
_HISTOGRAM = "".join(f'healthd_probe_duration_seconds_bucket{{%s,le="{le}"}} %d\n' for le in _LE) + (
    "healthd_probe_duration_seconds_count{%s} %d\nhealthd_probe_duration_seconds_sum{%s} %r\n"
)


class _CheckLabels:
    """A check's label set, escaped once."""

    __slots__ = ("info", "labels")

    def __init__(self, info: CheckInfo) -> None:
        self.info = info
        self.labels = (
            f'service="{_escape(info.service)}",check="{_escape(info.name)}",'
            f'type="{_escape(info.type)}",target="{_escape(info.target)}"'
        ) + "".join(f',{name}="{_escape(value)}"' for name, value in sorted(info.labels.items()))


class _CheckText:
    """Per-check sample lines, grouped by family as the text format requires.

    One growing buffer per family rather than a list of lines: 100,000 small
    strings kept until the end would fragment the heap (RSS stays up after).
    """

    def __init__(self, histograms: bool, uptime_now: float | None) -> None:
        self.histograms = histograms
        self.uptime_now = uptime_now  # None: no uptime gauges
        self.uptime = StringIO()
        self.checks = 0
        self.success = StringIO()
        self.duration = StringIO()
        self.up = StringIO()
        self.probes = StringIO()
        self.transitions = StringIO()
        self.histogram = StringIO()
        self.phases: dict[str, StringIO] = {}
        self.gauges: dict[str, StringIO] = {}

    def add(self, state: CheckState, check: _CheckLabels) -> None:
        self.checks += 1
        labels = check.labels
        for to, count in state.transitions.items():
            self.transitions.write(f'healthd_check_transitions_total{{{labels},to="{to}"}} {count}\n')
        for result, count in state.counts.items():
            self.probes.write(f'healthd_probes_total{{{labels},result="{result}"}} {count}\n')
        if state.status is not Status.UNKNOWN:
            self.up.write(f"healthd_check_up{{{labels}}} {1.0 if state.status is Status.UP else 0.0}\n")
        if self.uptime_now is not None:
            self._add_uptime(state, labels, self.uptime_now)
        histogram = state.duration_histogram
        if histogram is not None:
            values: list[object] = []
            for count in accumulate(histogram.counts):
                values += (labels, count)
            values += (labels, values[-1], labels, histogram.sum)
            self.histogram.write(_HISTOGRAM % tuple(values))
        last = state.last
        if last is None:
            return
        self.success.write(f"probe_success{{{labels}}} {1.0 if last.ok else 0.0}\n")
        self.duration.write(f"probe_duration_seconds{{{labels}}} {last.duration!r}\n")
        if last.phases:
            lines = _buffer(self.phases, state.info.type)
            name = f"probe_{state.info.type}_duration_seconds"
            for phase, seconds in last.phases.items():
                lines.write(f'{name}{{{labels},phase="{_escape(phase)}"}} {float(seconds)!r}\n')
            resolve = last.phases.get("resolve")
            if resolve is not None:
                _buffer(self.gauges, DNS_LOOKUP).write(f"{DNS_LOOKUP}{{{labels}}} {float(resolve)!r}\n")
        for key, value in last.gauges.items():
            name, extra = split_gauge_key(key)
            _buffer(self.gauges, name).write(f"{name}{{{labels}{extra}}} {float(value)!r}\n")

    def _add_uptime(self, state: CheckState, labels: str, now: float) -> None:
        for window in UPTIME_GAUGE_WINDOWS:
            probes, successes = state.uptime.counts(window, now)
            if probes:  # absent, not NaN, while the window holds no probe
                ratio = successes / probes
                self.uptime.write(f'healthd_check_uptime_ratio{{{labels},window="{window}"}} {ratio!r}\n')

    def render(self, gauge_help: Mapping[str, str], openmetrics: bool) -> str:
        parts: list[str] = []
        for name, kind, lines in (
            ("probe_success", "gauge", self.success),
            ("probe_duration_seconds", "gauge", self.duration),
            ("healthd_check_up", "gauge", self.up),
            ("healthd_probes", "counter", self.probes),
            ("healthd_check_transitions", "counter", self.transitions),
        ):
            parts.extend(_family(name, kind, HELP[name], lines, openmetrics))
        if self.uptime_now is not None:
            name = "healthd_check_uptime_ratio"
            parts.extend(_family(name, "gauge", HELP[name], self.uptime, openmetrics))
        if self.histograms:
            name = "healthd_probe_duration_seconds"
            parts.extend(_family(name, "histogram", HELP[name], self.histogram, openmetrics))
        for probe_type, lines in self.phases.items():
            name = f"probe_{probe_type}_duration_seconds"
            parts.extend(_family(name, "gauge", _phase_help(probe_type), lines, openmetrics))
        for name, lines in self.gauges.items():
            parts.extend(_family(name, "gauge", _gauge_help(name, gauge_help), lines, openmetrics))
        return "".join(parts)


def _buffer(buffers: dict[str, StringIO], key: str) -> StringIO:
    buffer = buffers.get(key)
    if buffer is None:
        buffer = buffers[key] = StringIO()
    return buffer


def _family(name: str, kind: str, help_text: str, lines: StringIO, openmetrics: bool) -> list[str]:
    # the text format names a counter family by its sample (`_total`), OpenMetrics without it
    exposed = f"{name}_total" if kind == "counter" and not openmetrics else name
    escaped = help_text.replace("\\", r"\\").replace("\n", r"\n")
    if openmetrics:
        escaped = escaped.replace('"', r"\"")
    return [f"# HELP {exposed} {escaped}\n# TYPE {exposed} {kind}\n", lines.getvalue()]
