"""Each check's sample lines kept between scrapes, per family, rendered again only on change.

At 10,000 checks about a tenth get a result between two scrapes; writing the other nine
tenths again was most of a scrape. A check's lines (`metrics_text.write_check`) depend only
on what `_state_key` lists: a result moves `Uptime.observed` (a local error only the
counts), a reload replaces `info`, a snapshot restore replaces `uptime`, a worker's seed
sets `status`. Its uptime gauges also depend on the clock, but only through the UTC hour
(the 24 h window is whole hours, the 30 d one whole days), so they are kept with the hour
they were written for and written again when it changes.

The document joins the kept pieces family by family, in the order a fresh render writes
them (`metrics_text.family_order`), so it is byte for byte what `CheckText` writes.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from healthd.loop_slices import LoopSlices
from healthd.metrics_text import (
    GAUGE,
    HISTOGRAM,
    PHASE,
    UPTIME,
    CheckLabels,
    family_head,
    family_order,
    write_check,
    write_uptime,
)
from healthd.store import CheckInfo, CheckState
from healthd.uptime import HOUR


def _state_key(state: CheckState) -> tuple[object, ...]:
    uptime = state.uptime
    return (state, state.info, state.status, state.last, uptime, uptime.observed, sum(state.counts.values()))


class _Pieces:
    """One check's lines being written: text by family key, in the order first written."""

    __slots__ = ("texts",)

    def __init__(self) -> None:
        self.texts: dict[str, list[str]] = {}

    def write(self, family: str, text: str) -> None:
        texts = self.texts.get(family)
        if texts is None:
            self.texts[family] = [text]
        else:
            texts.append(text)

    def encoded(self) -> dict[str, bytes]:
        return {family: "".join(texts).encode() for family, texts in self.texts.items()}


def _uptime(state: CheckState, labels: CheckLabels, hour: int | None) -> bytes:
    if hour is None:
        return b""
    pieces = _Pieces()
    write_uptime(state, labels.labels, hour * HOUR, pieces)
    return pieces.encoded().get(UPTIME, b"")


def deflated(text: bytes) -> bytes:
    """`text` as raw deflate blocks that end on a byte and refer to nothing before them."""
    # a 4 KB window finds the label set repeated on every line; the small state (~80 KB)
    # stays under malloc's mmap threshold, which a default compressor's 256 KB would not
    compressor = zlib.compressobj(1, zlib.DEFLATED, -12, 7)
    return compressor.compress(text) + compressor.flush(zlib.Z_SYNC_FLUSH)


@dataclass(frozen=True, slots=True)
class DeflatedLines:
    """A family's lines of every check, each check's compressed on its own (`deflated`):
    joined, they are one deflate stream but its end, whose CRC-32 combines `crcs`."""

    fragments: list[bytes]
    crcs: list[int]
    sizes: list[int]  # of each fragment's text

    def text(self) -> bytes:
        return zlib.decompressobj(-zlib.MAX_WBITS).decompress(b"".join(self.fragments))


class KeptLines:
    """Every check's lines, kept as columns: a list per family, a check's lines at its position.

    Joining a family is then one `bytes.join` of its column. Positions follow the store's
    order; they are laid out again only when the set of checks (or their order) changed.
    The histograms, two thirds of the text, are kept compressed (a tenth of their size):
    a gzip answer takes them as they are (`DeflatedLines`).
    """

    def __init__(self) -> None:
        self._states: list[CheckState] = []
        self._keys: list[tuple[object, ...] | None] = []
        self._hours: list[int | None] = []
        self._written: list[tuple[str, ...]] = []  # the families each check's lines are in
        self._dynamic: list[tuple[str, ...]] = []  # of which phases and gauges, for their order
        self._order: dict[str, None] | None = {}  # those in the order they first appear; None: stale
        self._columns: dict[str, list[bytes]] = {UPTIME: [], HISTOGRAM: []}
        self._crcs: list[int] = []  # of each check's histogram text, and its size
        self._sizes: list[int] = []

    def _lay_out(self, states: list[CheckState]) -> None:
        """New positions for `states`, moving over what was kept of the checks still there."""
        old = {state.info.key: index for index, state in enumerate(self._states)}
        moved = [old.get(state.info.key) for state in states]
        self._keys = [None if at is None else self._keys[at] for at in moved]
        self._hours = [None if at is None else self._hours[at] for at in moved]
        self._written = [() if at is None else self._written[at] for at in moved]
        self._dynamic = [() if at is None else self._dynamic[at] for at in moved]
        self._order = None
        self._crcs = [0 if at is None else self._crcs[at] for at in moved]
        self._sizes = [0 if at is None else self._sizes[at] for at in moved]
        families = {UPTIME, HISTOGRAM, *(family for written in self._written for family in written)}
        self._columns = {
            family: [b"" if at is None else self._columns[family][at] for at in moved] for family in families
        }
        self._states = states

    async def collect(
        self,
        states: list[CheckState],
        labels_of: Callable[[CheckInfo], CheckLabels],
        hour: int | None,
        slices: LoopSlices,
    ) -> None:
        """Bring every check's lines up to date: written again where they changed."""
        if states != self._states:
            self._lay_out(states)
        keys, hours = self._keys, self._hours
        for index, state in enumerate(states):
            key = _state_key(state)
            if key != keys[index]:
                self._write(index, state, labels_of(state.info), key, hour)
            elif hour != hours[index]:
                hours[index] = hour
                self._columns[UPTIME][index] = _uptime(state, labels_of(state.info), hour)
            if index % 16 == 0:
                await slices.pause_if_due()

    def _write(
        self, index: int, state: CheckState, labels: CheckLabels, key: tuple[object, ...], hour: int | None
    ) -> None:
        pieces = _Pieces()
        write_check(state, labels.labels, pieces)
        if hour is not None:
            write_uptime(state, labels.labels, hour * HOUR, pieces)
        lines = pieces.encoded()
        self._columns[UPTIME][index], self._hours[index] = lines.pop(UPTIME, b""), hour
        for family in self._written[index]:
            if family not in lines:
                self._columns[family][index] = b""
        histogram = lines.pop(HISTOGRAM, b"")
        self._crcs[index], self._sizes[index] = zlib.crc32(histogram), len(histogram)
        self._columns[HISTOGRAM][index] = deflated(histogram) if histogram else b""
        for family, text in lines.items():
            column = self._columns.get(family)
            if column is None:
                column = self._columns[family] = [b""] * len(self._states)
            column[index] = text
        self._written[index], self._keys[index] = tuple(lines), key
        dynamic = tuple(family for family in lines if family.startswith((PHASE, GAUGE)))
        if dynamic != self._dynamic[index]:
            self._dynamic[index], self._order = dynamic, None

    async def join(
        self,
        histograms: bool,
        uptime: bool,
        gauge_help: Mapping[str, str],
        openmetrics: bool,
        slices: LoopSlices,
    ) -> list[bytes | DeflatedLines]:
        """The per-check families: each one's head, then its lines of every check in order."""
        if self._order is None:
            self._order = dict.fromkeys(family for dynamic in self._dynamic for family in dynamic)
        parts: list[bytes | DeflatedLines] = []
        for family in family_order(self._order, histograms, uptime):
            parts.append(family_head(family, gauge_help, openmetrics))
            if family == HISTOGRAM:  # copies: the next scrape may change the columns meanwhile
                parts.append(DeflatedLines(list(self._columns[family]), list(self._crcs), list(self._sizes)))
            else:
                parts.append(b"".join(self._columns.get(family, ())))
            await slices.pause_if_due()
        return parts
