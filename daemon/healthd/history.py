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
    def numbers(self) -> int:
        """Doubles after time, duration and latency: phases, float details, float gauges."""
        return len(self.phase_names) + sum(value is NUMBER for _, value in (*self.details, *self.gauges))

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
            self._width = 3 + _Shape.of(result).numbers
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
        newest = self._shapes[self._start - 1] if self._shapes else None
        if isinstance(newest, _Shape) and newest.fits(result):
            return newest
        shape = _Shape.of(result)
        return shape if shape.numbers <= self._width - 3 else result  # too many numbers: kept whole

    def _numbers_of(self, result: ProbeResult) -> tuple[float, ...]:
        latency = math.nan if result.latency is None else result.latency
        values = [*result.phases.values(), *_floats(result.details), *_floats(result.gauges)]
        padding = (0.0,) * (self._width - 3 - len(values))
        return (result.time, result.duration, latency, *values, *padding)

    def _result(self, slot: int) -> ProbeResult:
        shape = self._shapes[slot]
        if isinstance(shape, ProbeResult):
            return shape
        offset = slot * self._width
        time, duration, latency = self._numbers[offset : offset + 3]
        values = iter(self._numbers[offset + 3 : offset + 3 + shape.numbers])
        return ProbeResult(
            time=time,
            ok=shape.ok,
            duration=duration,
            latency=None if math.isnan(latency) else latency,
            error_kind=shape.error_kind,
            error_message=shape.error_message,
            phases={name: next(values) for name in shape.phase_names},
            details=_filled(shape.details, values),
            gauges=_filled(shape.gauges, values),
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
    if isinstance(shape, _Shape):  # tag 2: details and gauges as [key, value, is_number] triples
        return [
            2,
            shape.ok,
            kind,
            shape.error_message,
            list(shape.phase_names),
            _dump_template(shape.details),
            _dump_template(shape.gauges),
        ]
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
    if tag == 0:  # written before float details moved into the numbers
        return _Shape.of_whole(bool(ok), error_kind, message, tuple(phases), dict(details), dict(gauges))
    if tag == 2:
        return _Shape(
            bool(ok), error_kind, message, tuple(phases), _load_template(details), _load_template(gauges)
        )
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


def _dump_template(template: Template) -> list[list[Any]]:
    """[key, value, is_number] triples (a marker object has no msgpack form)."""
    return [[key, None if value is NUMBER else value, value is NUMBER] for key, value in template]


def _load_template(data: list[list[Any]]) -> Template:
    return tuple((str(key), NUMBER if is_number else value) for key, value, is_number in data)
