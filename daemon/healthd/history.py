"""A check's recent results, kept compactly; and their snapshot form.

Pure: no I/O. `History` is written by the store only; `HistoryCopy` is an
immutable copy the snapshot writer encodes off the event loop.
"""

from __future__ import annotations

import math
import sys
from array import array
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from healthd.results import ErrorKind, ProbeResult


@dataclass(frozen=True, slots=True)
class _Shape:
    """What a result shares with its neighbours: verdict, error, phase names, details, gauges."""

    ok: bool
    error_kind: ErrorKind | None
    error_message: str | None
    phase_names: tuple[str, ...]
    details: Mapping[str, Any]
    gauges: Mapping[str, float]

    def fits(self, result: ProbeResult) -> bool:
        return (
            self.ok == result.ok
            and self.error_kind == result.error_kind
            and self.error_message == result.error_message
            and len(self.phase_names) == len(result.phases)
            and all(a == b for a, b in zip(self.phase_names, result.phases, strict=False))
            and self.details == result.details
            and self.gauges == result.gauges
        )


class History:
    """The last `maxlen` results of one check, oldest first, kept compactly.

    As objects a TCP result costs ~780 bytes (six floats, three dicts, the
    address string): 10,000 checks x 120 results would hold ~900 MB. Here the
    numbers of each result (time, duration, latency, phase values) sit in one
    flat array of doubles, and what repeats from one result to the next is a
    shared `_Shape`: ~50 bytes a result for a steady check. A result with
    more phases than the check's first one is kept whole. Reading rebuilds
    equal `ProbeResult` values.
    """

    __slots__ = ("_numbers", "_shapes", "_start", "_width", "maxlen")

    def __init__(self, maxlen: int) -> None:
        self.maxlen = maxlen
        self._numbers = array("d")
        self._shapes: list[_Shape | ProbeResult] = []
        self._start = 0  # slot of the oldest result once the ring is full
        self._width = -1  # doubles per slot: 3 + phases of the first result

    def __len__(self) -> int:
        return len(self._shapes)

    def append(self, result: ProbeResult) -> None:
        if self._width < 0:
            self._width = 3 + len(result.phases)
        slot = len(self._shapes) if len(self._shapes) < self.maxlen else self._start
        shape = self._shape_for(result)
        numbers = self._numbers_of(result) if isinstance(shape, _Shape) else (0.0,) * self._width
        if slot == len(self._shapes):
            self._shapes.append(shape)
            self._numbers.extend(numbers)
        else:
            self._shapes[slot] = shape
            offset = slot * self._width
            self._numbers[offset : offset + self._width] = array("d", numbers)
            self._start = (slot + 1) % self.maxlen

    def _shape_for(self, result: ProbeResult) -> _Shape | ProbeResult:
        if len(result.phases) > self._width - 3:
            return result
        newest = self._shapes[self._start - 1] if self._shapes else None
        if isinstance(newest, _Shape) and newest.fits(result):
            return newest
        return _Shape(
            result.ok,
            result.error_kind,
            result.error_message,
            tuple(result.phases),
            result.details,
            result.gauges,
        )

    def _numbers_of(self, result: ProbeResult) -> tuple[float, ...]:
        latency = math.nan if result.latency is None else result.latency
        padding = (0.0,) * (self._width - 3 - len(result.phases))
        return (result.time, result.duration, latency, *result.phases.values(), *padding)

    def _result(self, slot: int) -> ProbeResult:
        shape = self._shapes[slot]
        if isinstance(shape, ProbeResult):
            return shape
        offset = slot * self._width
        time, duration, latency = self._numbers[offset : offset + 3]
        values = self._numbers[offset + 3 : offset + 3 + len(shape.phase_names)]
        return ProbeResult(
            time=time,
            ok=shape.ok,
            duration=duration,
            latency=None if math.isnan(latency) else latency,
            error_kind=shape.error_kind,
            error_message=shape.error_message,
            phases=dict(zip(shape.phase_names, values, strict=True)),
            details=shape.details,
            gauges=shape.gauges,
        )

    def _slots(self) -> range:
        return range(self._start, self._start + len(self._shapes))

    def __iter__(self) -> Iterator[ProbeResult]:
        count = len(self._shapes)
        return (self._result(i % count) for i in self._slots())

    def __reversed__(self) -> Iterator[ProbeResult]:
        count = len(self._shapes)
        return (self._result(i % count) for i in reversed(self._slots()))

    def __getitem__(self, index: int) -> ProbeResult:
        count = len(self._shapes)
        if not -count <= index < count:
            raise IndexError("history index out of range")
        return self._result((self._start + index % count) % count)

    def resized(self, maxlen: int) -> History:
        """A history of another length holding the newest results of this one."""
        resized = History(maxlen)
        for result in list(self)[-maxlen:]:
            resized.append(result)
        return resized

    def copy(self) -> HistoryCopy:
        """An immutable copy (shapes and results are immutable; the numbers are copied)."""
        return HistoryCopy(
            self.maxlen, self._width, self._start, array("d", self._numbers), tuple(self._shapes)
        )

    @classmethod
    def from_copy(cls, copy: HistoryCopy) -> History:
        history = cls(copy.maxlen)
        history._width, history._start = copy.width, copy.start
        history._numbers = array("d", copy.numbers)
        history._shapes = list(copy.shapes)
        return history


@dataclass(frozen=True, slots=True)
class HistoryCopy:
    maxlen: int
    width: int
    start: int
    numbers: array[float]
    shapes: tuple[_Shape | ProbeResult, ...]

    def dump(self) -> dict[str, Any]:
        """Plain values and little-endian bytes; each distinct shape is written once."""
        table: dict[int, int] = {}
        shapes: list[list[Any]] = []
        index = array("I")
        for shape in self.shapes:
            at = table.get(id(shape))
            if at is None:
                at = table[id(shape)] = len(shapes)
                shapes.append(_dump_shape(shape))
            index.append(at)
        numbers = array("d", self.numbers)
        if sys.byteorder != "little":
            numbers.byteswap()
            index.byteswap()
        return {
            "maxlen": self.maxlen,
            "width": self.width,
            "start": self.start,
            "numbers": numbers.tobytes(),
            "shapes": shapes,
            "index": index.tobytes(),
        }

    @classmethod
    def load(cls, data: Mapping[str, Any]) -> HistoryCopy:
        """The inverse of `dump`; raises ValueError, KeyError or TypeError on a bad layout."""
        numbers, index = array("d"), array("I")
        numbers.frombytes(data["numbers"])
        index.frombytes(data["index"])
        if sys.byteorder != "little":
            numbers.byteswap()
            index.byteswap()
        table = [_load_shape(shape) for shape in data["shapes"]]
        shapes = tuple(table[at] for at in index)
        maxlen, width, start = int(data["maxlen"]), int(data["width"]), int(data["start"])
        if (
            len(shapes) > maxlen
            or len(numbers) != len(shapes) * max(width, 0)
            or not 0 <= start < max(len(shapes), 1)
        ):
            raise ValueError("history: sizes do not agree")
        return cls(maxlen, width, start, numbers, shapes)


def _dump_shape(shape: _Shape | ProbeResult) -> list[Any]:
    kind = shape.error_kind.value if shape.error_kind is not None else None
    if isinstance(shape, _Shape):
        return [0, shape.ok, kind, shape.error_message, list(shape.phase_names), shape.details, shape.gauges]
    return [
        1,
        shape.ok,
        kind,
        shape.error_message,
        dict(shape.phases),
        shape.details,
        shape.gauges,
        shape.time,
        shape.duration,
        shape.latency,
    ]


def _load_shape(data: list[Any]) -> _Shape | ProbeResult:
    tag, ok, kind, message, phases, details, gauges = data[:7]
    error_kind = ErrorKind(kind) if kind is not None else None
    if tag == 0:
        return _Shape(bool(ok), error_kind, message, tuple(phases), dict(details), dict(gauges))
    time, duration, latency = data[7:10]
    return ProbeResult(
        time=float(time),
        ok=bool(ok),
        duration=float(duration),
        latency=None if latency is None else float(latency),
        error_kind=error_kind,
        error_message=message,
        phases=dict(phases),
        details=dict(details),
        gauges=dict(gauges),
    )
