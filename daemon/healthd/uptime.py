"""Uptime windows: constant-size aggregates per check over 1 h, 24 h, 7 d and 30 d.

Pure: no I/O and no clock of its own; callers pass unix (wall-clock) times.

Time buckets are aligned to UTC and kept in three rings: 60 minutes, 168 hours
and 90 days. A bucket holds the probes run in it, the successes, the seconds the
check was `down` (from the debounced state, not from failed probes) and the sum
of the latencies of its successful probes. Two more rings hold latency
histograms in fixed buckets, 12 x 5 minutes for the 1 h percentiles and 24 x 1
hour for 24 h, so percentiles are estimated without keeping samples. All of it
sits in compact arrays: about 7.6 KB per check, whatever the uptime.
"""

from __future__ import annotations

import re
import sys
from array import array
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

MINUTE, HOUR, DAY = 60, 3600, 86400

#: Upper bounds (seconds) of the latency buckets; one more bucket holds what is above.
LATENCY_BOUNDS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)
_BUCKETS = len(LATENCY_BOUNDS) + 1
_U16_MAX = 0xFFFF  # histogram counts saturate here (a check probed every < 55 ms in one hour)

WINDOW_NAMES = ("1h", "24h", "7d", "30d")
PERCENTILES = (0.5, 0.95, 0.99)

#: Series steps -> the most buckets a series of that step may have.
SERIES_STEPS = {"1m": (MINUTE, 60), "1h": (HOUR, 168), "1d": (DAY, 90)}
_SPAN = re.compile(r"^([1-9][0-9]{0,4})([mhd])$")
_UNIT = {"m": MINUTE, "h": HOUR, "d": DAY}


class _Timeline:
    """`size` slots of `step` seconds; bucket index i covers [i * step, (i + 1) * step)."""

    __slots__ = ("head", "size", "step")

    def __init__(self, step: int, size: int) -> None:
        self.step, self.size = step, size
        self.head = -1  # index of the newest bucket written; -1: none yet

    def slot(self, index: int) -> int | None:
        """The slot of bucket `index`, clearing the slots it rolls over; None if too old."""
        if index > self.head:
            for old in range(max(self.head + 1, index - self.size + 1), index + 1):
                self._zero(old % self.size)
            self.head = index
        elif index <= self.head - self.size:
            return None
        return index % self.size

    def valid(self, index: int) -> bool:
        return self.head - self.size < index <= self.head

    def slot_ranges(self, first: int, last: int) -> list[tuple[int, int]]:
        """Slot ranges [start, stop) holding the kept buckets with index in [first, last]."""
        first, last = max(first, self.head - self.size + 1), min(last, self.head)
        if first > last:
            return []
        start, stop = first % self.size, last % self.size + 1
        return [(start, stop)] if start < stop else [(start, self.size), (0, stop)]

    def _zero(self, slot: int) -> None:
        raise NotImplementedError


class _Ring(_Timeline):
    """Probes, successes, seconds down and latency sum per bucket."""

    __slots__ = ("cap", "counts", "sums")

    def __init__(self, step: int, size: int, count_code: str, float_code: str) -> None:
        super().__init__(step, size)
        self.counts = array(count_code, [0]) * (2 * size)  # probes | successes
        self.cap = (1 << (8 * self.counts.itemsize)) - 1
        # down seconds | latency sum
        self.sums: array[float] = array(float_code, [0.0]) * (2 * size)

    def _zero(self, slot: int) -> None:
        size = self.size
        self.counts[slot] = self.counts[size + slot] = 0
        self.sums[slot] = self.sums[size + slot] = 0.0

    def add_probe(self, time: float, ok: bool, latency: float | None) -> None:
        slot = self.slot(int(time // self.step))
        if slot is None:
            return
        if self.counts[slot] == self.cap:  # only a check probed more than 1,000 times a second
            return
        self.counts[slot] += 1
        if ok:
            self.counts[self.size + slot] += 1
            if latency is not None:
                self.sums[self.size + slot] += latency

    def add_down(self, start: float, end: float) -> None:
        step = self.step
        last = int(end // step)
        for index in range(max(int(start // step), last - self.size + 1), last + 1):
            seconds = min(end, (index + 1) * step) - max(start, index * step)
            slot = self.slot(index)
            if slot is not None and seconds > 0:
                self.sums[slot] += seconds

    def counts_in(self, first: int, last: int) -> tuple[int, int]:
        """(probes, successes) of buckets first..last."""
        probes = successes = 0
        size, counts = self.size, self.counts
        for start, stop in self.slot_ranges(first, last):
            probes += sum(counts[start:stop])
            successes += sum(counts[size + start : size + stop])
        return probes, successes

    def totals(self, first: int, last: int) -> tuple[int, int, float, float]:
        """(probes, successes, down seconds, latency sum) of buckets first..last."""
        probes = successes = 0
        down = latency = 0.0
        size = self.size
        for start, stop in self.slot_ranges(first, last):
            probes += sum(self.counts[start:stop])
            successes += sum(self.counts[size + start : size + stop])
            down += sum(self.sums[start:stop])
            latency += sum(self.sums[size + start : size + stop])
        return probes, successes, down, latency


class _HistogramRing(_Timeline):
    """Counts per latency bucket per time bucket, slot-major."""

    __slots__ = ("counts",)

    def __init__(self, step: int, size: int) -> None:
        super().__init__(step, size)
        self.counts = array("H", bytes(2 * _BUCKETS * size))

    def _zero(self, slot: int) -> None:
        offset = slot * _BUCKETS
        self.counts[offset : offset + _BUCKETS] = array("H", bytes(2 * _BUCKETS))

    def add(self, time: float, latency: float) -> None:
        slot = self.slot(int(time // self.step))
        if slot is not None:
            at = slot * _BUCKETS + bisect_left(LATENCY_BOUNDS, latency)
            self.counts[at] = min(self.counts[at] + 1, _U16_MAX)

    def merged(self, first: int, last: int) -> list[int]:
        merged = [0] * _BUCKETS
        for start, stop in self.slot_ranges(first, last):
            for bucket in range(_BUCKETS):
                merged[bucket] += sum(self.counts[start * _BUCKETS + bucket : stop * _BUCKETS : _BUCKETS])
        return merged


def quantile(counts: Sequence[int], q: float) -> float | None:
    """Estimate quantile q from bucket counts, interpolating within the bucket (as
    Prometheus' histogram_quantile does); the top bucket answers its lower bound."""
    total = sum(counts)
    if total == 0:
        return None
    rank, below = q * total, 0
    for bucket, count in enumerate(counts):
        if count and below + count >= rank:
            if bucket == len(LATENCY_BOUNDS):
                return LATENCY_BOUNDS[-1]
            lower = LATENCY_BOUNDS[bucket - 1] if bucket else 0.0
            upper = LATENCY_BOUNDS[bucket]
            return lower + (upper - lower) * (rank - below) / count
        below += count
    return LATENCY_BOUNDS[-1]


@dataclass(frozen=True, slots=True)
class Window:
    """Aggregates over one window (or one series bucket). Latencies in seconds."""

    probes: int
    successes: int
    down_seconds: float
    latency_mean: float | None
    percentiles: tuple[float | None, ...] | None = None  # p50, p95, p99; None: not kept

    @property
    def ratio(self) -> float | None:
        return self.successes / self.probes if self.probes else None


@dataclass(frozen=True, slots=True)
class SeriesBucket:
    start: int  # unix time
    window: Window


class Uptime:
    """One check's uptime aggregates. Write with `observe`; read with `window` / `series`."""

    __slots__ = ("_day", "_down_since", "_hist_5m", "_hist_hour", "_hour", "_minute")

    def __init__(self) -> None:
        # uint16 counts suffice for a minute; float32 sums would drift over a day of 100 ms probes
        self._minute = _Ring(MINUTE, 60, "H", "f")
        self._hour = _Ring(HOUR, 168, "I", "f")
        self._day = _Ring(DAY, 90, "I", "d")
        self._hist_5m = _HistogramRing(5 * MINUTE, 12)
        self._hist_hour = _HistogramRing(HOUR, 24)
        self._down_since: float | None = None  # start of the down stretch not yet counted

    def _rings(self) -> tuple[_Ring, _Ring, _Ring]:
        return self._minute, self._hour, self._day

    def observe(self, time: float, ok: bool, latency: float | None, down: bool) -> None:
        """One probe result at `time`; `down`: the check's debounced state after it."""
        if self._down_since is not None and time > self._down_since:
            for ring in self._rings():
                ring.add_down(self._down_since, time)
        self._down_since = time if down else None
        for ring in self._rings():
            ring.add_probe(time, ok, latency)
        if ok and latency is not None:
            self._hist_5m.add(time, latency)
            self._hist_hour.add(time, latency)

    def forget_open_stretch(self) -> None:
        """After a restart: the time healthd did not watch is not counted as down."""
        self._down_since = None

    def _open_down(self, start: float, end: float) -> float:
        if self._down_since is None:
            return 0.0
        return max(0.0, end - max(start, self._down_since))

    def window(self, name: str, now: float) -> Window:
        ring, count, hist = self._window_parts(name)
        last = int(now // ring.step)
        first = last - count + 1
        probes, successes, down, latency = ring.totals(first, last)
        down += self._open_down(first * ring.step, now)
        percentiles = None
        if hist is not None:
            hist_last = int(now // hist.step)
            merged = hist.merged(hist_last - hist.size + 1, hist_last)
            percentiles = tuple(quantile(merged, q) for q in PERCENTILES)
        mean = latency / successes if successes else None
        return Window(probes, successes, down, mean, percentiles)

    def counts(self, name: str, now: float) -> tuple[int, int]:
        """(probes, successes) in a window: what a ratio needs, cheaper than `window`."""
        ring, count, _ = self._window_parts(name)
        last = int(now // ring.step)
        return ring.counts_in(last - count + 1, last)

    def _window_parts(self, name: str) -> tuple[_Ring, int, _HistogramRing | None]:
        if name == "1h":
            return self._minute, 60, self._hist_5m
        if name == "24h":
            return self._hour, 24, self._hist_hour
        if name == "7d":
            return self._hour, 168, None
        if name == "30d":
            return self._day, 30, None
        raise ValueError(f"unknown window {name!r}")

    def series(self, window: int, step: int, now: float) -> list[SeriesBucket]:
        """`window // step` buckets ending with the one holding `now`, oldest first."""
        ring = next(r for r in self._rings() if r.step == step)
        last = int(now // step)
        return [self._bucket(ring, index, now) for index in range(last - window // step + 1, last + 1)]

    def _bucket(self, ring: _Ring, index: int, now: float) -> SeriesBucket:
        start = index * ring.step
        probes, successes, down, latency = ring.totals(index, index)
        down += self._open_down(start, min(now, start + ring.step))
        mean = latency / successes if successes else None
        return SeriesBucket(start, Window(probes, successes, down, mean))

    # ---- snapshot form (pure): plain values and little-endian bytes ------------------

    def dump(self) -> dict[str, Any]:
        rings = [[r.head, _le_bytes(r.counts), _le_bytes(r.sums)] for r in self._rings()]
        hists = [[h.head, _le_bytes(h.counts)] for h in (self._hist_5m, self._hist_hour)]
        return {"rings": rings, "histograms": hists}

    @classmethod
    def load(cls, data: dict[str, Any]) -> Uptime:
        """The inverse of `dump`; raises ValueError if the layout does not match."""
        uptime = cls()
        rings, hists = data["rings"], data["histograms"]
        if len(rings) != 3 or len(hists) != 2:
            raise ValueError("uptime: wrong number of rings")
        for ring, (head, counts, sums) in zip(uptime._rings(), rings, strict=True):
            ring.head = int(head)
            _fill(ring.counts, counts)
            _fill(ring.sums, sums)
        for hist, (head, counts) in zip((uptime._hist_5m, uptime._hist_hour), hists, strict=True):
            hist.head = int(head)
            _fill(hist.counts, counts)
        return uptime

    def arrays(self) -> Iterator[array[Any]]:
        """Every array held, for measuring memory."""
        for ring in self._rings():
            yield ring.counts
            yield ring.sums
        yield self._hist_5m.counts
        yield self._hist_hour.counts


def _le_bytes(values: array[Any]) -> bytes:
    if sys.byteorder == "little":
        return values.tobytes()
    swapped = array(values.typecode, values)
    swapped.byteswap()
    return swapped.tobytes()


def _fill(target: array[Any], data: bytes) -> None:
    if len(data) != len(target) * target.itemsize:
        raise ValueError("uptime: array size does not match")
    loaded = array(target.typecode)
    loaded.frombytes(data)
    if sys.byteorder != "little":
        loaded.byteswap()
    target[:] = loaded


def combine(windows: Sequence[Window]) -> Window:
    """A service's window: its checks' probes and successes summed."""
    probes = sum(w.probes for w in windows)
    successes = sum(w.successes for w in windows)
    return Window(probes, successes, sum(w.down_seconds for w in windows), None)


def parse_span(text: str) -> int:
    """`90d`, `24h`, `30m` -> seconds; raises ValueError."""
    match = _SPAN.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a span like 30m, 24h or 90d")
    return int(match.group(1)) * _UNIT[match.group(2)]


def series_shape(window: str, step: str) -> tuple[int, int]:
    """(window, step) in seconds for a supported series; ValueError naming what is allowed."""
    allowed = "step=1m with window up to 1h, step=1h with window up to 7d (168h), step=1d up to 90d"
    if step not in SERIES_STEPS:
        raise ValueError(f"step {step!r} is not supported: {allowed}")
    step_seconds, most = SERIES_STEPS[step]
    try:
        window_seconds = parse_span(window)
    except ValueError as exc:
        raise ValueError(f"window: {exc}; {allowed}") from None
    if window_seconds % step_seconds or not 1 <= window_seconds // step_seconds <= most:
        raise ValueError(f"window {window} with step {step} is not supported: {allowed}")
    return window_seconds, step_seconds
