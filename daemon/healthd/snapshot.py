"""Snapshots of the store: capture, encode, decode, restore. Pure: no file I/O.

A snapshot file is a 20-byte header and a msgpack body:

    offset  size  field
    0       8     magic b"HEALTHD\\x00"
    8       2     format version, little-endian (FORMAT_VERSION)
    10      2     reserved, zero
    12      4     length of the body in bytes, little-endian
    16      4     CRC-32 of the body, little-endian
    20      ...   body: zlib stream (RFC 1950) of a msgpack map {"written": unix time,
                  "checks": [check, ...]}

Each check is a msgpack map (see `_record`); numeric series are little-endian
arrays in msgpack bin fields. Readers ignore map keys they do not know, so a
later release may add keys without a version bump; removing or changing one
bumps the version.

`capture` runs on the event loop and only copies (arrays are memcpy'd, results
are immutable); `encode` and `decode` run in an executor thread (msgpack's C
packer and zlib; zlib lets go of the GIL while it works). Compression matters:
most uptime buckets of a young check are zero, so the file shrinks ~10x.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgpack

from healthd import history_form
from healthd.config import format_check_id
from healthd.history import History, HistoryCopy
from healthd.loop_slices import LoopSlices
from healthd.store import CheckState, Status, Store
from healthd.uptime import Uptime

MAGIC = b"HEALTHD\x00"
FORMAT_VERSION = 2  # 2: histories keep durations as ticks, hourly counts are uint16
_READS = (1, 2)  # a record says its layout by its keys and sizes (history_form, Uptime.load)
_HEADER = struct.Struct("<8sHxxII")


class SnapshotError(ValueError):
    """The bytes are not a snapshot this release can read; the message says why."""


@dataclass(frozen=True, slots=True)
class CheckCopy:
    """One check's state, copied: nothing in it is shared with the live store but immutable values."""

    record: dict[str, Any]  # scalars and copied containers
    history: HistoryCopy
    failures: HistoryCopy


@dataclass(frozen=True, slots=True)
class Snapshot:
    written: float
    checks: list[CheckCopy]  # `encode` empties it as it goes (see there)


def _copy(state: CheckState) -> CheckCopy:
    info, histogram = state.info, state.duration_histogram
    record = {
        "id": format_check_id(info.key),
        "type": info.type,
        "target": info.target,
        "status": state.status.value,
        "since": state.since,
        "streak_ok": state.streak_ok,
        "streak_fail": state.streak_fail,
        "counts": dict(state.counts),
        "transitions": dict(state.transitions),
        "last_success": state.last_success,
        "last_failure": state.last_failure,
        "uptime": state.uptime.dump(),
        "durations": None if histogram is None else [list(histogram.counts), histogram.sum],
    }
    return CheckCopy(record, state.history.copy(), state.failures.copy())


async def capture(store: Store, now: float) -> Snapshot:
    """Copy every check, handing the loop back between slices of copying
    (each check is copied whole, so it is consistent in itself)."""
    slices = LoopSlices()
    copies: list[CheckCopy] = []
    for state in list(store.all_states()):
        copies.append(_copy(state))
        await slices.pause_if_due()
    return Snapshot(now, copies)


def encode(snapshot: Snapshot) -> bytes:
    """The file's bytes; empties `snapshot.checks`. Packed and compressed one check at a time:
    each C call is short, so the thread running this hands the GIL back to the event loop often."""
    packer = msgpack.Packer(default=str)
    compressor = zlib.compressobj(1)  # level 1: most of the gain at a fraction of the time
    head = packer.pack_map_header(2) + packer.pack("written") + packer.pack(snapshot.written)
    parts = [
        compressor.compress(head + packer.pack("checks") + packer.pack_array_header(len(snapshot.checks)))
    ]
    checks = snapshot.checks
    checks.reverse()  # popped from the end, so in order
    while checks:
        # each copy is freed as soon as it is packed: freeing all 10,000 at the end is one
        # uninterruptible cascade of deallocations, ~40 ms with the GIL held (measured)
        copy = checks.pop()
        history, failures = history_form.dump(copy.history), history_form.dump(copy.failures)
        record = {**copy.record, "history": history, "failures": failures}
        del copy
        parts.append(compressor.compress(packer.pack(record)))
    parts.append(compressor.flush())
    crc = 0
    for part in parts:  # piecewise, so the header goes in front with one join: no second copy
        crc = zlib.crc32(part, crc)
    header = _HEADER.pack(MAGIC, FORMAT_VERSION, sum(map(len, parts)), crc)
    return b"".join([header, *parts])


def decode(data: bytes) -> dict[str, dict[str, Any]]:
    """Check records by `SERVICE/CHECK`. Raises SnapshotError saying what is wrong."""
    if len(data) < _HEADER.size or not data.startswith(MAGIC):
        raise SnapshotError("not a healthd snapshot")
    _, version, length, crc = _HEADER.unpack_from(data)
    if version not in _READS:
        raise SnapshotError(f"format version {version}, this release reads versions 1 and 2")
    body = data[_HEADER.size :]
    if len(body) != length:
        raise SnapshotError(f"truncated: {len(body)} of {length} bytes")
    if zlib.crc32(body) != crc:
        raise SnapshotError("corrupt: checksum mismatch")
    try:
        top = msgpack.unpackb(zlib.decompress(body), raw=False)
        return {str(record["id"]): record for record in top["checks"]}
    except (ValueError, KeyError, TypeError, zlib.error, msgpack.UnpackException) as exc:
        raise SnapshotError(f"corrupt: {exc}") from None


def restore(store: Store, records: Mapping[str, dict[str, Any]]) -> int:
    """Load the records of checks whose id, type and target are unchanged; returns how many.

    Raises SnapshotError if a matching record is malformed (the caller starts fresh)."""
    restored = 0
    for state in store.all_states():
        info = state.info
        record = records.get(format_check_id(info.key))
        if record is None or record.get("type") != info.type or record.get("target") != info.target:
            continue
        try:
            _load_into(state, record)
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise SnapshotError(f"corrupt record {format_check_id(info.key)}: {exc}") from None
        restored += 1
    return restored


def _load_into(state: CheckState, record: Mapping[str, Any]) -> None:
    # build everything first, so a bad record leaves the state untouched
    history = History.from_copy(history_form.load(record["history"]))
    if history.maxlen != state.info.history:
        history = history.resized(state.info.history)
    failures = History.from_copy(history_form.load(record["failures"]))
    uptime = Uptime.load(record["uptime"])
    uptime.forget_open_stretch()  # the time healthd was not running is not counted as down
    status = Status(record["status"])
    counts = {str(k): int(v) for k, v in record["counts"].items()}
    transitions = {str(k): int(v) for k, v in record["transitions"].items()}
    state.status, state.since = status, _float_or_none(record["since"])
    state.streak_ok, state.streak_fail = int(record["streak_ok"]), int(record["streak_fail"])
    state.counts, state.transitions = counts, {**state.transitions, **transitions}
    state.last_success = _float_or_none(record["last_success"])
    state.last_failure = _float_or_none(record["last_failure"])
    state.history, state.failures, state.uptime = history, failures, uptime
    state.last = history[-1] if len(history) else None
    durations, histogram = record.get("durations"), state.duration_histogram
    if durations is not None and histogram is not None and len(durations[0]) == len(histogram.counts):
        histogram.counts = [int(c) for c in durations[0]]
        histogram.sum = float(durations[1])


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)
