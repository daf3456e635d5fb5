"""Prometheus exposition built from the store at scrape time.

Nothing is updated per probe: each scrape walks the store once and yields
fresh families, so removed checks vanish by themselves.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from daemon.histogram import Histogram
from daemon.results import GAUGE_HELP
from daemon.store import CheckState, Status, Store

CHECK_LABELS = ["service", "check", "type", "target"]


class StoreCollector(Collector):
    def __init__(self, store: Store) -> None:
        self._store = store

    def collect(self) -> Iterator[Metric]:
        yield from self._check_families(self._store.all_states())
        yield self._service_info()
        yield from self._daemon_families()

    def _check_families(self, states: Iterable[CheckState]) -> Iterator[Metric]:
        success = GaugeMetricFamily(
            "probe_success", "Last probe succeeded (1) or not (0)", labels=CHECK_LABELS
        )
        duration = GaugeMetricFamily(
            "probe_duration_seconds", "Duration of the last probe", labels=CHECK_LABELS
        )
        up = GaugeMetricFamily(
            "healthd_check_up",
            "Debounced check state: 1 up, 0 down; absent while unknown",
            labels=CHECK_LABELS,
        )
        probes = CounterMetricFamily(
            "healthd_probes", "Probes run, by result", labels=[*CHECK_LABELS, "result"]
        )
        transitions = CounterMetricFamily(
            "healthd_check_transitions", "Check state changes", labels=[*CHECK_LABELS, "to"]
        )
        histogram = HistogramMetricFamily(
            "healthd_probe_duration_seconds", "Probe latency", labels=CHECK_LABELS
        )
        phases: dict[str, GaugeMetricFamily] = {}
        gauges: dict[str, GaugeMetricFamily] = {}
        for state in states:
            info = state.info
            labels = [info.service, info.name, info.type, info.target]
            for to, count in state.transitions.items():
                transitions.add_metric([*labels, to], count)
            for result, count in state.counts.items():
                probes.add_metric([*labels, result], count)
            if state.status is not Status.UNKNOWN:
                up.add_metric(labels, 1.0 if state.status is Status.UP else 0.0)
            if state.duration_histogram is not None:
                histogram.add_metric(labels, *_buckets(state.duration_histogram))
            last = state.last
            if last is None:
                continue
            success.add_metric(labels, 1.0 if last.ok else 0.0)
            duration.add_metric(labels, last.duration)
            for phase, seconds in last.phases.items():
                family = phases.get(info.type)
                if family is None:
                    family = phases[info.type] = GaugeMetricFamily(
                        f"probe_{info.type}_duration_seconds",
                        f"Duration of each phase of the last {info.type} probe",
                        labels=[*CHECK_LABELS, "phase"],
                    )
                family.add_metric([*labels, phase], seconds)
            for name, value in last.gauges.items():
                family = gauges.get(name)
                if family is None:
                    family = gauges[name] = GaugeMetricFamily(
                        name, GAUGE_HELP.get(name, "Reported by the last probe"), labels=CHECK_LABELS
                    )
                family.add_metric(labels, value)
        yield from (success, duration, up, probes, transitions)
        if self._store.probe_histograms:
            yield histogram
        yield from phases.values()
        yield from gauges.values()

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


def _buckets(histogram: Histogram) -> tuple[list[tuple[str, float]], float]:
    buckets = [(_bound(bound), float(count)) for bound, count in histogram.cumulative()]
    return buckets, histogram.sum


def _bound(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)
