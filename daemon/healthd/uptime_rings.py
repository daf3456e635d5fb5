"""The bucket rings behind the uptime windows: fixed-size arrays indexed by time. Pure.

A ring of `size` slots of `step` seconds holds bucket index i = time // step in slot
i % size; writing a newer bucket clears the slots it rolls over, so memory never
grows and stale buckets are never read.
"""

from __future__ import annotations

import sys
from array import array
from bisect import bisect_left
from collections.abc import Sequence
from typing import Any

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
_U32_MAX = 0xFFFFFFFF


class Timeline:
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


class Ring(Timeline):
    """Probes, successes, latency sum and seconds down per bucket.

    For each window length in `spans` the ring keeps the (probes, successes) of the
    `span` buckets ending at its head as running totals, updated as probes are added
    and as buckets leave the window: `window_counts` answers a ratio without summing
    the window's buckets, so listing 10,000 checks' uptime costs no loop over slots.
    """

    __slots__ = ("_running", "cap", "counts", "down", "float_code", "latency", "spans")

    def __init__(
        self, step: int, size: int, count_code: str, float_code: str, spans: tuple[int, ...] = ()
    ) -> None:
        super().__init__(step, size)
        self.counts = array(count_code, [0]) * (2 * size)  # probes | successes
        self.cap = (1 << (8 * self.counts.itemsize)) - 1
        self.float_code = float_code
        self.latency: array[float] = array(float_code, [0.0]) * size  # sum of successes' latencies
        # seconds down per bucket: most checks are never down, so allocated at the first down second
        self.down: array[float] | None = None
        self.spans = spans
        self._running = [0] * (2 * len(spans))  # probes, successes per span

    def slot(self, index: int) -> int | None:
        if index > self.head >= 0:
            self._leave(index)
        return super().slot(index)

    def _leave(self, new_head: int) -> None:
        """Take the buckets that fall out of each span, once the head moves to `new_head`, out
        of its running totals (before `slot` clears any of them)."""
        for which, span in enumerate(self.spans):
            probes, successes = self.counts_in(self.head - span + 1, new_head - span)
            self._running[2 * which] -= probes
            self._running[2 * which + 1] -= successes

    def window_counts(self, which: int, last: int) -> tuple[int, int]:
        """`counts_in` of the `spans[which]` buckets ending at bucket `last`, from the running totals."""
        span = self.spans[which]
        if last < self.head:  # a clock that went back: sum the buckets
            return self.counts_in(last - span + 1, last)
        probes, successes = self._running[2 * which], self._running[2 * which + 1]
        if last > self.head:  # no probe since `last` began: buckets left the window meanwhile
            gone_probes, gone_successes = self.counts_in(self.head - span + 1, last - span)
            probes, successes = probes - gone_probes, successes - gone_successes
        return probes, successes

    def recount(self) -> None:
        """Rebuild the running totals from the buckets (after they were loaded)."""
        for which, span in enumerate(self.spans):
            probes, successes = self.counts_in(self.head - span + 1, self.head)
            self._running[2 * which], self._running[2 * which + 1] = probes, successes

    def _widen(self) -> bool:
        """uint16 counts to uint32, once a bucket is full (an hour of probes < 55 ms apart, a day
        of probes < 1.3 s apart); False if they are uint32 already."""
        if self.counts.typecode != "H":
            return False
        self.counts = array("I", self.counts)
        self.cap = _U32_MAX
        return True

    def load_counts(self, data: bytes) -> None:
        """Counts from a snapshot, uint16 or uint32 by their size (format 1 held every ring's
        as uint32, and a widened ring's are): kept narrow where every count fits."""
        if len(data) != 4 * len(self.counts):
            fill_le(self.counts, data)
            return
        wide = array("I", bytes(len(data)))
        fill_le(wide, data)
        if self.counts.typecode == "H" and max(wide, default=0) <= _U16_MAX:
            self.counts = array("H", wide)
        else:
            self.counts, self.cap = wide, _U32_MAX

    def _zero(self, slot: int) -> None:
        self.counts[slot] = self.counts[self.size + slot] = 0
        self.latency[slot] = 0.0
        if self.down is not None:
            self.down[slot] = 0.0

    def add_probe(self, time: float, ok: bool, latency: float | None) -> None:
        index = int(time // self.step)
        # most probes land in the newest bucket: nothing rolls over, nothing leaves a span
        slot = index % self.size if index == self.head else self.slot(index)
        if slot is None:
            return
        if self.counts[slot] == self.cap and not self._widen():
            return  # a bucket of 4 billion probes: saturated rather than wrapped
        counts = self.counts
        counts[slot] += 1
        if ok:
            counts[self.size + slot] += 1
            if latency is not None:
                self.latency[slot] += latency
        running, head = self._running, self.head
        for which, span in enumerate(self.spans):
            if index > head - span:  # inside the span ending at the head
                running[2 * which] += 1
                running[2 * which + 1] += ok

    def add_down(self, start: float, end: float) -> None:
        step = self.step
        last = int(end // step)
        for index in range(max(int(start // step), last - self.size + 1), last + 1):
            seconds = min(end, (index + 1) * step) - max(start, index * step)
            slot = self.slot(index)
            if slot is not None and seconds > 0:
                if self.down is None:
                    self.down = array(self.float_code, [0.0]) * self.size
                self.down[slot] += seconds

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
            latency += sum(self.latency[start:stop])
            if self.down is not None:
                down += sum(self.down[start:stop])
        return probes, successes, down, latency

    def sums(self) -> array[float]:
        """Down seconds | latency sums, one array (the snapshot's layout)."""
        down = self.down if self.down is not None else array(self.float_code, [0.0]) * self.size
        return down + self.latency

    def load_sums(self, sums: array[float]) -> None:
        """The inverse of `sums`; a ring never down keeps no down array."""
        size = self.size
        self.down = sums[:size] if any(sums[:size]) else None
        self.latency = sums[size:]


class HistogramRing(Timeline):
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


def le_bytes(values: array[Any]) -> bytes:
    """The array's bytes, little-endian (the snapshot's byte order)."""
    if sys.byteorder == "little":
        return values.tobytes()
    swapped = array(values.typecode, values)
    swapped.byteswap()
    return swapped.tobytes()


def fill_le(target: array[Any], data: bytes) -> None:
    """Overwrite `target` with little-endian `data` of exactly its size; ValueError if not."""
    if len(data) != len(target) * target.itemsize:
        raise ValueError("uptime: array size does not match")
    loaded = array(target.typecode)
    loaded.frombytes(data)
    if sys.byteorder != "little":
        loaded.byteswap()
    target[:] = loaded
