"""The snapshot form of a `HistoryCopy`: plain values and little-endian arrays. Pure.

Snapshot format 2 keeps a history as its times (doubles), ticks (uint32, see
`healthd.history.to_ticks`) and float details and gauges (doubles), each distinct
shape written once with an index per slot. Format 1 kept every number as a double,
`width` per slot; `load` still reads it, rounding durations to the tick as an
append would.
"""

from __future__ import annotations

import math
import sys
from array import array
from collections.abc import Mapping
from typing import Any

from healthd.history import NUMBER, History, HistoryCopy, Template, _filled, _Shape
from healthd.results import ErrorKind, ProbeResult


def dump(copy: HistoryCopy) -> dict[str, Any]:
    """Plain values and little-endian bytes; each distinct shape is written once."""
    table: dict[int, int] = {}
    shapes: list[list[Any]] = []
    index = array("I")
    for shape in copy.shapes:
        at = table.get(id(shape))
        if at is None:
            at = table[id(shape)] = len(shapes)
            shapes.append(_dump_shape(shape))
        index.append(at)
    return {
        "maxlen": copy.maxlen,
        "tick_width": copy.tick_width,
        "float_width": copy.float_width,
        "start": copy.start,
        "times": _le(copy.times),
        "ticks": _le(copy.ticks),
        "floats": _le(copy.floats),
        "shapes": shapes,
        "index": _le(index),
    }


def load(data: Mapping[str, Any]) -> HistoryCopy:
    """The inverse of `dump` (or a format-1 history); raises ValueError, KeyError or TypeError."""
    if "numbers" in data:
        return _load_format_1(data)
    times, ticks, floats = _array("d", data["times"]), _array("I", data["ticks"]), _array("d", data["floats"])
    table = [_load_shape(shape) for shape in data["shapes"]]
    shapes = tuple(table[at] for at in _array("I", data["index"]))
    maxlen, start = int(data["maxlen"]), int(data["start"])
    tick_width, float_width = int(data["tick_width"]), int(data["float_width"])
    if (
        len(shapes) > maxlen
        or len(times) != len(shapes)
        or len(ticks) != len(shapes) * max(tick_width, 0)
        or len(floats) != len(shapes) * max(float_width, 0)
        or (shapes and tick_width < 2)
        or not 0 <= start < max(len(shapes), 1)
        or any(_wider(shape, tick_width, float_width) for shape in table)
    ):
        raise ValueError("history: sizes do not agree")
    return HistoryCopy(maxlen, tick_width, float_width, start, times, ticks, floats, shapes)


def _wider(shape: _Shape | ProbeResult, tick_width: int, float_width: int) -> bool:
    """A shape with more numbers than a slot holds (reading it would take its neighbour's)."""
    if not isinstance(shape, _Shape):
        return False
    return len(shape.phase_names) > tick_width - 2 or shape.floats > float_width


def _load_format_1(data: Mapping[str, Any]) -> HistoryCopy:
    """Format 1: `width` doubles a slot (time, duration, latency, phases, float details and gauges)."""
    numbers = _array("d", data["numbers"])
    table = [_load_shape(shape) for shape in data["shapes"]]
    shapes = [table[at] for at in _array("I", data["index"])]
    maxlen, width, start = int(data["maxlen"]), int(data["width"]), int(data["start"])
    count = len(shapes)
    if count > maxlen or len(numbers) != count * max(width, 0) or not 0 <= start < max(count, 1):
        raise ValueError("history: sizes do not agree")
    slots = ((start + i) % count for i in range(count))
    results = (_format_1_result(shapes[slot], numbers, slot * width) for slot in slots)
    return History.of(maxlen, results).copy()


def _format_1_result(shape: _Shape | ProbeResult, numbers: array[float], at: int) -> ProbeResult:
    if isinstance(shape, ProbeResult):
        return shape
    time, duration, latency = numbers[at : at + 3]
    values = iter(numbers[at + 3 : at + 3 + len(shape.phase_names) + shape.floats])
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


def _le(values: array[Any]) -> bytes:
    if sys.byteorder == "little":
        return values.tobytes()
    swapped = values[:]
    swapped.byteswap()
    return swapped.tobytes()


def _array(code: str, data: bytes) -> array[Any]:
    values = array(code)
    values.frombytes(data)
    if sys.byteorder != "little":
        values.byteswap()
    return values


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
