"""The per-check families, written as Prometheus text directly.

prometheus_client formats about 13 µs a sample, 3.3 s for 10,000 checks with
histograms, all of it blocking the event loop. Here each check's label strings
are built once (`CheckLabels`, kept by `metrics.Exposition` between scrapes) and
its histogram is one %-template filled with its counts. A family is one buffer
in `CheckText`, written in `add` and named, typed and helped in `render`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from io import StringIO
from itertools import accumulate
from typing import Protocol

from healthd.gauges import escape_label_value as _escape
from healthd.gauges import split_gauge_key
from healthd.histogram import PROBE_DURATION_BUCKETS
from healthd.store import CheckInfo, CheckState, Status

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

#: blackbox_exporter's name for the name lookup, which every probe reports as its `resolve` phase
DNS_LOOKUP = "probe_dns_lookup_time_seconds"
DNS_LOOKUP_HELP = "Time the name lookup of the last probe took (0 for an IP literal)"


def _phase_help(probe_type: str) -> str:
    return f"Duration of each phase of the last {probe_type} probe"


def _gauge_help(name: str, known: Mapping[str, str]) -> str:
    if name == DNS_LOOKUP:
        return DNS_LOOKUP_HELP
    return known.get(name, "Reported by the last probe")


def bound_text(bound: float) -> str:
    """A bucket's `le` label value."""
    return "+Inf" if bound == float("inf") else repr(bound)


_LE = tuple(bound_text(bound) for bound in (*PROBE_DURATION_BUCKETS, float("inf")))


# One %-template for every check's histogram: its label set goes in before each count.
_HISTOGRAM = "".join(f'healthd_probe_duration_seconds_bucket{{%s,le="{le}"}} %d\n' for le in _LE) + (
    "healthd_probe_duration_seconds_count{%s} %d\nhealthd_probe_duration_seconds_sum{%s} %r\n"
)


class CheckLabels:
    """A check's label set, escaped once."""

    __slots__ = ("info", "labels")

    def __init__(self, info: CheckInfo) -> None:
        self.info = info
        self.labels = (
            f'service="{_escape(info.service)}",check="{_escape(info.name)}",'
            f'type="{_escape(info.type)}",target="{_escape(info.target)}"'
        ) + "".join(f',{name}="{_escape(value)}"' for name, value in sorted(info.labels.items()))


class _Lines(StringIO):
    """One family's sample lines: a text buffer, encoded to a bytes chunk at each flush.

    A growing buffer per family rather than a list of lines: 100,000 small
    strings kept until the end would fragment the heap (RSS stays up after).
    Chunks rather than one string: encoding or joining a 30 MB string at the
    end would hold the event loop for tens of milliseconds.
    """

    def __init__(self) -> None:
        super().__init__()
        self.chunks: list[bytes] = []

    def flush(self) -> None:
        if self.tell():
            self.chunks.append(self.getvalue().encode())
            self.seek(0)
            self.truncate()

    def all_chunks(self) -> list[bytes]:
        self.flush()
        return self.chunks


#: Families every check writes to, in the document's order; the uptime gauges go after the
#: first five, the histogram after them, then the probes' phases and gauges (`PHASE`, `GAUGE`).
FIXED = (
    "probe_success",
    "probe_duration_seconds",
    "healthd_check_up",
    "healthd_probes",
    "healthd_check_transitions",
)
UPTIME = "healthd_check_uptime_ratio"
HISTOGRAM = "healthd_probe_duration_seconds"
PHASE, GAUGE = "phase:", "gauge:"  # family keys: "phase:tcp", "gauge:probe_http_status_code"


class LineSink(Protocol):
    def write(self, family: str, text: str) -> None: ...


def write_check(state: CheckState, labels: str, out: LineSink) -> None:
    """A check's sample lines, but for the uptime gauges (`write_uptime`), by family key."""
    for to, count in state.transitions.items():
        out.write(
            "healthd_check_transitions", f'healthd_check_transitions_total{{{labels},to="{to}"}} {count}\n'
        )
    for result, count in state.counts.items():
        out.write("healthd_probes", f'healthd_probes_total{{{labels},result="{result}"}} {count}\n')
    if state.status is not Status.UNKNOWN:
        out.write(
            "healthd_check_up", f"healthd_check_up{{{labels}}} {1.0 if state.status is Status.UP else 0.0}\n"
        )
    histogram = state.duration_histogram
    if histogram is not None:
        counts = list(accumulate(histogram.counts))
        values: list[object] = [labels, 0] * len(counts)
        values[1::2] = counts  # labels, count, labels, count, ...
        values += (labels, counts[-1], labels, histogram.sum)
        out.write(HISTOGRAM, _HISTOGRAM % tuple(values))
    last = state.last
    if last is None:
        return
    out.write("probe_success", f"probe_success{{{labels}}} {1.0 if last.ok else 0.0}\n")
    out.write("probe_duration_seconds", f"probe_duration_seconds{{{labels}}} {last.duration!r}\n")
    if last.phases:
        name, key = f"probe_{state.info.type}_duration_seconds", PHASE + state.info.type
        for phase, seconds in last.phases.items():
            out.write(key, f'{name}{{{labels},phase="{_escape(phase)}"}} {float(seconds)!r}\n')
        resolve = last.phases.get("resolve")
        if resolve is not None:
            out.write(GAUGE + DNS_LOOKUP, f"{DNS_LOOKUP}{{{labels}}} {float(resolve)!r}\n")
    for key, value in last.gauges.items():
        name, extra = split_gauge_key(key)
        out.write(GAUGE + name, f"{name}{{{labels}{extra}}} {float(value)!r}\n")


def write_uptime(state: CheckState, labels: str, now: float, out: LineSink) -> None:
    """The uptime gauges: they change with a result and when `now` enters another UTC hour."""
    for window in UPTIME_GAUGE_WINDOWS:
        probes, successes = state.uptime.counts(window, now)
        if probes:  # absent, not NaN, while the window holds no probe
            ratio = successes / probes
            out.write(UPTIME, f'healthd_check_uptime_ratio{{{labels},window="{window}"}} {ratio!r}\n')


def family_order(dynamic: Iterable[str], histograms: bool, uptime: bool) -> list[str]:
    """The document's family keys: the fixed ones, then `dynamic` (phases, then gauges, each in
    the order they first appeared)."""
    keys = [*FIXED, *([UPTIME] if uptime else []), *([HISTOGRAM] if histograms else [])]
    phases = [key for key in dynamic if key.startswith(PHASE)]
    return keys + phases + [key for key in dynamic if key.startswith(GAUGE)]


def family_head(key: str, gauge_help: Mapping[str, str], openmetrics: bool) -> bytes:
    """A family's # HELP and # TYPE lines, from its key."""
    if key.startswith(PHASE):
        probe_type = key.removeprefix(PHASE)
        return _head(f"probe_{probe_type}_duration_seconds", "gauge", _phase_help(probe_type), openmetrics)
    if key.startswith(GAUGE):
        name = key.removeprefix(GAUGE)
        return _head(name, "gauge", _gauge_help(name, gauge_help), openmetrics)
    kind = {"healthd_probes": "counter", "healthd_check_transitions": "counter", HISTOGRAM: "histogram"}
    return _head(key, kind.get(key, "gauge"), HELP[key], openmetrics)


class CheckText:
    """Per-check sample lines, grouped by family as the text format requires: rendered afresh."""

    def __init__(self, histograms: bool, uptime_now: float | None) -> None:
        self.histograms = histograms
        self.uptime_now = uptime_now  # None: no uptime gauges
        self.checks = 0
        self._families: dict[str, _Lines] = {key: _Lines() for key in (*FIXED, UPTIME, HISTOGRAM)}

    def write(self, family: str, text: str) -> None:
        _buffer(self._families, family).write(text)

    def flush(self) -> None:
        for lines in self._families.values():
            lines.flush()

    def add(self, state: CheckState, check: CheckLabels) -> None:
        self.checks += 1
        write_check(state, check.labels, self)
        if self.uptime_now is not None:
            write_uptime(state, check.labels, self.uptime_now, self)

    def render(self, gauge_help: Mapping[str, str], openmetrics: bool) -> list[bytes]:
        parts: list[bytes] = []
        for key in family_order(self._families, self.histograms, self.uptime_now is not None):
            parts += (family_head(key, gauge_help, openmetrics), *self._families[key].all_chunks())
        return parts


def _buffer(buffers: dict[str, _Lines], key: str) -> _Lines:
    buffer = buffers.get(key)
    if buffer is None:
        buffer = buffers[key] = _Lines()
    return buffer


def _head(exposed: str, kind: str, help_text: str, openmetrics: bool) -> bytes:
    # the text format names a counter family by its sample (`_total`), OpenMetrics without it
    if kind == "counter" and not openmetrics:
        exposed += "_total"
    escaped = help_text.replace("\\", r"\\").replace("\n", r"\n")
    if openmetrics:
        escaped = escaped.replace('"', r"\"")
    return f"# HELP {exposed} {escaped}\n# TYPE {exposed} {kind}\n".encode()
