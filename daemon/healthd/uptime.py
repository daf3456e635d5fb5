"""Uptime windows: constant-size aggregates per check over 1 h, 24 h, 7 d and 30 d.

Pure: no I/O and no clock of its own; callers pass unix (wall-clock) times.

Time buckets are aligned to UTC and kept in three rings: 60 minutes, 168 hours
and 90 days. A bucket holds the probes run in it, the successes, the seconds the
check was `down` (from the debounced state, not from failed probes) and the sum
of the latencies of its successful probes. Two more rings hold latency
histograms in fixed buckets, 12 x 5 minutes for the 1 h percentiles and 24 x 1
hour for 24 h, so percentiles are estimated without keeping samples. All of it
sits in compact arrays (healthd.uptime_rings): about 4.9 KB per check never down, whatever
the uptime (down seconds are kept once a check is first down: 1.6 KB more).
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from healthd.uptime_rings import (
    HistogramRing,
    Ring,
    fill_le,
    le_bytes,
    quantile,
)

MINUTE, HOUR, DAY = 60, 3600, 86400

WINDOW_NAMES = ("1h", "24h", "7d", "30d")
PERCENTILES = (0.5, 0.95, 0.99)

#: Series steps -> the most buckets a series of that step may have.
SERIES_STEPS = {"1m": (MINUTE, 60), "1h": (HOUR, 168), "1d": (DAY, 90)}
_SPAN = re.compile(r"^([1-9][0-9]{0,4})([mhd])$")
_UNIT = {"m": MINUTE, "h": HOUR, "d": DAY}


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

    __slots__ = ("_day", "_down_since", "_hist_5m", "_hist_hour", "_hour", "_minute", "observed")

    def __init__(self) -> None:
        # uint16 counts hold an hour of probes 55 ms apart, a day of probes 1.3 s apart (a fuller
        # bucket widens the ring's, Ring._widen); float32 sums would drift over a day of 100 ms probes.
        # spans: the windows' lengths in buckets (see _window_parts), kept as running counts
        self._minute = Ring(MINUTE, 60, "H", "f", spans=(60,))
        self._hour = Ring(HOUR, 168, "H", "f", spans=(24, 168))
        self._day = Ring(DAY, 90, "H", "d", spans=(30,))
        self._hist_5m = HistogramRing(5 * MINUTE, 12)
        self._hist_hour = HistogramRing(HOUR, 24)
        self._down_since: float | None = None  # start of the down stretch not yet counted
        self.observed = 0  # results observed: readers that cache what they read compare it

    def _rings(self) -> tuple[Ring, Ring, Ring]:
        return self._minute, self._hour, self._day

    def observe(self, time: float, ok: bool, latency: float | None, down: bool) -> None:
        """One probe result at `time`; `down`: the check's debounced state after it."""
        self.observed += 1
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
        """(probes, successes) in a window: what a ratio needs, from the ring's running totals."""
        ring, count, _ = self._window_parts(name)
        return ring.window_counts(ring.spans.index(count), int(now // ring.step))

    def all_counts(self, now: float) -> tuple[int, ...]:
        """`counts` of every window in WINDOW_NAMES order, flat: 1h probes, 1h successes, 24h …"""
        minute, hour, day = int(now // MINUTE), int(now // HOUR), int(now // DAY)
        return (
            *self._minute.window_counts(0, minute),
            *self._hour.window_counts(0, hour),
            *self._hour.window_counts(1, hour),
            *self._day.window_counts(0, day),
        )

    def _window_parts(self, name: str) -> tuple[Ring, int, HistogramRing | None]:
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

    def _bucket(self, ring: Ring, index: int, now: float) -> SeriesBucket:
        start = index * ring.step
        probes, successes, down, latency = ring.totals(index, index)
        down += self._open_down(start, min(now, start + ring.step))
        mean = latency / successes if successes else None
        return SeriesBucket(start, Window(probes, successes, down, mean))

    # ---- snapshot form (pure): plain values and little-endian bytes ------------------

    def dump(self) -> dict[str, Any]:
        rings = [[r.head, le_bytes(r.counts), le_bytes(r.sums())] for r in self._rings()]
        hists = [[h.head, le_bytes(h.counts)] for h in (self._hist_5m, self._hist_hour)]
        return {"rings": rings, "histograms": hists}

    @classmethod
    def load(cls, data: dict[str, Any]) -> Uptime:
        """The inverse of `dump`; raises ValueError if the layout does not match.

        Snapshots of format 1 held the hourly counts as uint32, and format 2 the daily ones
        until 2026-12: read by their size."""
        uptime = cls()
        rings, hists = data["rings"], data["histograms"]
        if len(rings) != 3 or len(hists) != 2:
            raise ValueError("uptime: wrong number of rings")
        for ring, (head, counts, sums) in zip(uptime._rings(), rings, strict=True):
            ring.head = int(head)
            ring.load_counts(counts)
            loaded: array[float] = array(ring.float_code, bytes(2 * ring.size * ring.latency.itemsize))
            fill_le(loaded, sums)
            ring.load_sums(loaded)
            ring.recount()
        for hist, (head, counts) in zip((uptime._hist_5m, uptime._hist_hour), hists, strict=True):
            hist.head = int(head)
            fill_le(hist.counts, counts)
        return uptime

    def arrays(self) -> Iterator[array[Any]]:
        """Every array held, for measuring memory."""
        for ring in self._rings():
            yield ring.counts
            yield ring.latency
            if ring.down is not None:
                yield ring.down
        yield self._hist_5m.counts
        yield self._hist_hour.counts


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
