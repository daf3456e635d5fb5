"""A check's recent results, kept compactly.

Pure: no I/O. `History` is written by the store only; `HistoryCopy` is an
immutable copy the snapshot writer encodes off the event loop (its snapshot
form is in `healthd.history_form`).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from healthd.results import ErrorKind, ProbeResult


class _Number:
    """Stands in a shape for a float detail or gauge: its value is in the numbers array."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NUMBER"


NUMBER = _Number()  # an immutable marker, the one instance

#: a mapping's keys in order, each with its value or NUMBER (the value is a float in the slot)
Template = tuple[tuple[str, Any], ...]


def _template(values: Mapping[str, Any]) -> Template:
    return tuple((key, NUMBER if type(value) is float else value) for key, value in values.items())


def _matches(template: Template, values: Mapping[str, Any]) -> bool:
    """`template == _template(values)`, compared in place: this runs for every stored result."""
    if len(template) != len(values):
        return False
    for (key, kept), (name, value) in zip(template, values.items(), strict=True):
        if key != name or (kept is NUMBER) != (type(value) is float):
            return False
        if kept is not NUMBER and kept != value:
            return False
    return True


def _floats(values: Mapping[str, Any]) -> list[float]:
    return [value for value in values.values() if type(value) is float]


def _filled(template: Template, numbers: Iterator[float]) -> dict[str, Any]:
    return {key: next(numbers) if value is NUMBER else value for key, value in template}


@dataclass(frozen=True, slots=True)
class _Shape:
    """What a result shares with its neighbours: verdict, error, phase names, and its details
    and gauges with every float left out (an RTT differs each run; it goes in the numbers)."""

    ok: bool
    error_kind: ErrorKind | None
    error_message: str | None
    phase_names: tuple[str, ...]
    details: Template
    gauges: Template

    @classmethod
    def of(cls, result: ProbeResult) -> _Shape:
        return cls(
            result.ok,
            result.error_kind,
            result.error_message,
            tuple(result.phases),
            _template(result.details),
            _template(result.gauges),
        )

    @classmethod
    def of_whole(
        cls,
        ok: bool,
        kind: ErrorKind | None,
        message: str | None,
        phases: tuple[str, ...],
        details: Mapping[str, Any],
        gauges: Mapping[str, Any],
    ) -> _Shape:
        """A shape whose details and gauges are all kept in it (snapshots written before 2026-12)."""
        return cls(ok, kind, message, phases, tuple(details.items()), tuple(gauges.items()))

    @property
    def floats(self) -> int:
        """Float details and gauges: the doubles kept beside the ticks."""
        return sum(value is NUMBER for _, value in (*self.details, *self.gauges))

    def fits(self, result: ProbeResult) -> bool:
        return (
            self.ok == result.ok
            and self.error_kind == result.error_kind
            and self.error_message == result.error_message
            and len(self.phase_names) == len(result.phases)
            and all(a == b for a, b in zip(self.phase_names, result.phases, strict=False))
            and _matches(self.details, result.details)
            and _matches(self.gauges, result.gauges)
        )


#: Durations, latencies and phases are kept as whole ticks of 0.1 µs in a uint32 (up to ~429 s):
#: the API shows them in milliseconds to 4 decimals, i.e. to the tick, so what it shows is unchanged
TICKS_PER_SECOND = 10_000_000
_NO_LATENCY = 0xFFFFFFFF  # the tick value of latency None


def to_ticks(seconds: float) -> int | None:
    """`seconds` in ticks, rounded as the API rounds milliseconds to 4 decimals; None if a
    uint32 cannot hold it (negative, NaN, infinite, or over ~429 s)."""
    if not 0.0 <= seconds < 429.0:  # also False for NaN
        return None
    return round(round(seconds * 1000, 4) * 10_000)


def kept(seconds: float) -> float:
    """What a History gives back for a duration it keeps as ticks (`seconds` if it cannot)."""
    ticks = to_ticks(seconds)
    return seconds if ticks is None else ticks / TICKS_PER_SECOND


class History:
    """The last `maxlen` results of one check, oldest first, kept compactly.

    As objects a TCP result costs ~780 bytes (six floats, three dicts, the
    address string): 10,000 checks x 120 results would hold ~900 MB. Here each
    result is its time (a double), its duration, latency and phase values as
    ticks of 0.1 µs (uint32, see `to_ticks`), its float details and gauges as
    doubles, and the index of a shared `_Shape` for what repeats from one result to the
    next: 25 bytes a result for a steady TCP check. A result with more phases
    or floats than the slots hold widens them (`_widen`); one with a value no
    tick can hold is kept whole. Reading rebuilds `ProbeResult` values equal to the originals but for
    durations rounded to the tick (`kept`).
    """

    __slots__ = (
        "_count",
        "_floats",
        "_shape_at",
        "_shapes",
        "_start",
        "_ticks",
        "_times",
        "_uses",
        "float_width",
        "maxlen",
        "tick_width",
    )

    def __init__(self, maxlen: int) -> None:
        self.maxlen = maxlen
        # allocated at their full size by the first result (`_allocate`): grown one result at a
        # time, 10,000 rings growing in step left ~20 bytes a result of heap holes (measured)
        self._times = array("d")
        self._ticks = array("I")  # duration, latency, phases: tick_width per slot
        self._floats = array("d")  # float details, float gauges: float_width per slot
        # the distinct shapes (and results kept whole) held, each with the slots using it, and
        # per slot the index of its shape: a byte a result, not a pointer (most results share one)
        self._shapes: list[_Shape | ProbeResult | None] = []
        self._uses: list[int] = []
        self._shape_at = array("B" if maxlen < 256 else "H")
        self._count = 0
        self._start = 0  # slot of the oldest result
        self.tick_width = self.float_width = -1  # set by the first result

    def __len__(self) -> int:
        return self._count

    def _allocate(self, tick_width: int, float_width: int) -> None:
        self.tick_width, self.float_width = tick_width, float_width
        # repetition allocates the exact size (an array built from bytes is over-allocated)
        self._times = array("d", [0.0]) * self.maxlen
        self._ticks = array("I", [0]) * (tick_width * self.maxlen)
        self._floats = array("d", [0.0]) * (float_width * self.maxlen)
        self._shape_at = array(self._shape_at.typecode, [0]) * self.maxlen

    def append(self, result: ProbeResult) -> None:
        if self.tick_width < 0:
            first = _Shape.of(result)
            self._allocate(2 + len(first.phase_names), first.floats)
        shape, ticks = self._shape_for(result)
        floats = _floats_of(result, self.float_width) if ticks else (0.0,) * self.float_width
        ticks = ticks or (0,) * self.tick_width
        newest = self._shape_at[(self._start + self._count - 1) % self.maxlen] if self._count else -1
        if self._count < self.maxlen:
            slot = self._count
            self._count += 1
        else:
            slot, self._start = self._start, (self._start + 1) % self.maxlen
            self._release(self._shape_at[slot])
        self._shape_at[slot] = self._index_of(shape, newest)
        self._times[slot] = result.time
        at = slot * self.tick_width
        self._ticks[at : at + self.tick_width] = array("I", ticks)
        at = slot * self.float_width
        self._floats[at : at + self.float_width] = array("d", floats)

    def _index_of(self, shape: _Shape | ProbeResult, newest: int) -> int:
        """The entry of `shape` in `_shapes`, one more slot using it: the newest result's
        entry (the common case), else a free entry or a new one."""
        if newest >= 0 and self._shapes[newest] is shape:
            self._uses[newest] += 1
            return newest
        try:
            index = self._shapes.index(None)
        except ValueError:
            index = len(self._shapes)
            self._shapes.append(None)
            self._uses.append(0)
        self._shapes[index], self._uses[index] = shape, 1
        return index

    def _release(self, index: int) -> None:
        self._uses[index] -= 1
        if not self._uses[index]:
            self._shapes[index] = None

    def _shape(self, slot: int) -> _Shape | ProbeResult:
        shape = self._shapes[self._shape_at[slot]]
        assert shape is not None  # slots below the count are written
        return shape

    def _shape_for(self, result: ProbeResult) -> tuple[_Shape | ProbeResult, tuple[int, ...] | None]:
        """The shape to keep and the result's ticks; (result, None) when it is kept whole."""
        newest = self._shape((self._start + self._count - 1) % self.maxlen) if self._count else None
        shape = newest if isinstance(newest, _Shape) and newest.fits(result) else _Shape.of(result)
        if len(shape.phase_names) > self.tick_width - 2 or shape.floats > self.float_width:
            self._widen(max(self.tick_width, 2 + len(shape.phase_names)), max(self.float_width, shape.floats))
        ticks = _ticks_of(result, self.tick_width)
        return (shape, ticks) if ticks is not None else (result, None)

    def _widen(self, tick_width: int, float_width: int) -> None:
        """Room for a result with more phases or floats than the first (a check whose first
        result was a failure, say): every slot moves to the wider layout, once."""
        ticks, floats, old_ticks, old_floats = self._ticks, self._floats, self.tick_width, self.float_width
        self._ticks = array("I", [0]) * (tick_width * self.maxlen)
        self._floats = array("d", [0.0]) * (float_width * self.maxlen)
        for slot in range(self.maxlen):
            self._ticks[slot * tick_width : slot * tick_width + old_ticks] = ticks[
                slot * old_ticks : (slot + 1) * old_ticks
            ]
            self._floats[slot * float_width : slot * float_width + old_floats] = floats[
                slot * old_floats : (slot + 1) * old_floats
            ]
        self.tick_width, self.float_width = tick_width, float_width

    def _result(self, slot: int) -> ProbeResult:
        shape = self._shape(slot)
        if isinstance(shape, ProbeResult):
            return shape
        at = slot * self.tick_width
        duration, latency, *phases = self._ticks[at : at + 2 + len(shape.phase_names)]
        at = slot * self.float_width
        floats = iter(self._floats[at : at + shape.floats])
        return ProbeResult(
            time=self._times[slot],
            ok=shape.ok,
            duration=duration / TICKS_PER_SECOND,
            latency=None if latency == _NO_LATENCY else latency / TICKS_PER_SECOND,
            error_kind=shape.error_kind,
            error_message=shape.error_message,
            phases={name: t / TICKS_PER_SECOND for name, t in zip(shape.phase_names, phases, strict=True)},
            details=_filled(shape.details, floats),
            gauges=_filled(shape.gauges, floats),
        )

    def _order(self) -> Iterator[int]:
        """The slots holding results, oldest first."""
        return ((self._start + i) % self.maxlen for i in range(self._count))

    def __iter__(self) -> Iterator[ProbeResult]:
        return map(self._result, self._order())

    def __reversed__(self) -> Iterator[ProbeResult]:
        return map(self._result, reversed(list(self._order())))

    def __getitem__(self, index: int) -> ProbeResult:
        count = self._count
        if not -count <= index < count:
            raise IndexError("history index out of range")
        return self._result((self._start + index % count) % self.maxlen)

    def resized(self, maxlen: int) -> History:
        """A history of another length holding the newest results of this one."""
        return History.of(maxlen, list(self)[-maxlen:])

    @classmethod
    def of(cls, maxlen: int, results: Iterable[ProbeResult]) -> History:
        history = cls(maxlen)
        for result in results:
            history.append(result)
        return history

    def copy(self) -> HistoryCopy:
        """An immutable copy (shapes and results are immutable; the arrays are copied)."""
        count, ticks, floats = self._count, self.tick_width, self.float_width
        shapes = tuple(map(self._shape, range(count)))
        return HistoryCopy(
            self.maxlen,
            ticks,
            floats,
            self._start,
            self._times[:count],
            self._ticks[: count * max(ticks, 0)],
            self._floats[: count * max(floats, 0)],
            shapes,
        )

    @classmethod
    def from_copy(cls, copy: HistoryCopy) -> History:
        """The history of a copy, its oldest result in slot 0."""
        history, count = cls(copy.maxlen), len(copy.shapes)
        if copy.tick_width < 0:
            return history
        history._allocate(copy.tick_width, copy.float_width)
        start = copy.start
        columns: tuple[tuple[array[Any], array[Any], int], ...] = (
            (history._times, copy.times, 1),
            (history._ticks, copy.ticks, copy.tick_width),
            (history._floats, copy.floats, copy.float_width),
        )
        for kept, source, width in columns:
            kept[: count * width] = source[start * width :] + source[: start * width]
        for slot, shape in enumerate((*copy.shapes[start:], *copy.shapes[:start])):
            history._shape_at[slot] = history._index_of(shape, history._shape_at[slot - 1] if slot else -1)
        history._count = count
        return history

    def arrays(self) -> Iterator[array[Any]]:
        """Every array held, for measuring memory."""
        yield from (self._times, self._ticks, self._floats, self._shape_at)


def _ticks_of(result: ProbeResult, width: int) -> tuple[int, ...] | None:
    latency = _NO_LATENCY if result.latency is None else to_ticks(result.latency)
    ticks = [to_ticks(result.duration), latency, *map(to_ticks, result.phases.values())]
    if None in ticks:
        return None
    return (*ticks, *(0,) * (width - len(ticks)))  # type: ignore[arg-type]


def _floats_of(result: ProbeResult, width: int) -> tuple[float, ...]:
    values = [*_floats(result.details), *_floats(result.gauges)]
    return (*values, *(0.0,) * (width - len(values)))


@dataclass(frozen=True, slots=True)
class HistoryCopy:
    """A History's state, copied; `healthd.history_form` writes and reads its snapshot form."""

    maxlen: int
    tick_width: int
    float_width: int
    start: int
    times: array[float]
    ticks: array[int]
    floats: array[float]
    shapes: tuple[_Shape | ProbeResult, ...]
