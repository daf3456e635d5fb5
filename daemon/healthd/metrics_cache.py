"""Each check's sample lines kept between scrapes, per family, rendered again only on change.

At 10,000 checks about a tenth get a result between two scrapes; writing the other nine
tenths again was most of a scrape. A check's lines (`metrics_text.write_check`) change only
when `CheckState.changes` moves (a result), a reload replaces its `info`, a snapshot restore
its `uptime` or a worker's seed sets its `status` (`_seen`). Its uptime gauges also depend
on the clock, but only through the UTC hour (the 24 h window is whole hours, the 30 d one
whole days), so they are written again, all of them, when the hour changes.

The document joins the kept pieces family by family, in the order a fresh render writes
them (`metrics_text.family_order`), so it is byte for byte what `CheckText` writes. What
compresses happens in two threads while the event loop waits: the histograms of the checks
written again, and for a gzip answer every other family (`healthd.deflate`).
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial

from healthd.deflate import CrcTree, Deflated, PieceCompressor, deflated, joined
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
from healthd.store import CheckInfo, CheckState, Status
from healthd.uptime import HOUR, Uptime

_Seen = tuple[int, CheckInfo, Uptime, Status]  # what a check's lines were written from
_THREADS = 2  # zlib, not Python, is the work: more threads would only keep more malloc arenas


def _seen(state: CheckState) -> _Seen:
    return (state.changes, state.info, state.uptime, state.status)


class _Lines:
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
    lines = _Lines()
    write_uptime(state, labels.labels, hour * HOUR, lines)
    return lines.encoded().get(UPTIME, b"")


@dataclass(frozen=True, slots=True)
class _Histograms:
    """Every check's histogram lines, each check's compressed on its own, with the CRC-32 and
    size of its text: a gzip answer takes them as they are (`healthd.deflate.joined`)."""

    pieces: list[bytes]
    tree: CrcTree

    def moved(self, moved: list[int | None]) -> _Histograms:
        crcs, sizes = self.tree.crcs, self.tree.sizes
        crcs, sizes = (
            [0 if at is None else crcs[at] for at in moved],
            [0 if at is None else sizes[at] for at in moved],
        )
        tree = CrcTree(crcs, sizes, combine=False)  # combined by the next gzip scrape's thread
        return _Histograms([b"" if at is None else self.pieces[at] for at in moved], tree)

    def updated(self, texts: Mapping[int, bytes], crc: bool) -> _Histograms:
        """A copy with the lines of the checks in `texts` (by position) compressed in; the
        CRC-32 of them all is worked out only if asked for (`crc`: a gzip answer)."""
        pieces, compressor = list(self.pieces), PieceCompressor()
        for index, text in texts.items():
            pieces[index] = compressor.piece(text) if text else b""
        changes = {index: (zlib.crc32(text), len(text)) for index, text in texts.items()}
        tree = self.tree.updated(changes, combine=crc)
        return _Histograms(pieces, tree)


class KeptLines:
    """Every check's lines, kept as columns: a list per family, a check's lines at its position.

    Joining a family is then one `bytes.join` of its column. Positions follow the store's
    order; they are laid out again only when the set of checks (or their order) changed.
    The histograms, two thirds of the text, are kept compressed (a tenth of their size).
    """

    def __init__(self) -> None:
        self._states: list[CheckState] = []
        self._seen: list[_Seen | None] = []
        self._hour: int | None = None  # the hour every check's uptime gauges were written for
        self._written: list[tuple[str, ...]] = []  # the families each check's lines are in
        self._dynamic: list[tuple[str, ...]] = []  # of which phases and gauges, for their order
        self._order: dict[str, None] | None = {}  # those in the order they first appear; None: stale
        self._columns: dict[str, list[bytes]] = {UPTIME: []}  # but the histograms:
        self._histograms = _Histograms([], CrcTree((), ()))
        self._pending: dict[int, bytes] = {}  # histogram text written, not compressed yet, by position
        self._compressed: dict[str, Deflated] = {}  # families whose lines did not change since

    def _lay_out(self, states: list[CheckState]) -> None:
        """New positions for `states`, moving over what was kept of the checks still there."""
        old = {state.info.key: index for index, state in enumerate(self._states)}
        moved = [old.get(state.info.key) for state in states]
        self._seen = [None if at is None else self._seen[at] for at in moved]
        self._written = [() if at is None else self._written[at] for at in moved]
        self._dynamic = [() if at is None else self._dynamic[at] for at in moved]
        self._order, self._compressed = None, {}
        self._histograms = self._histograms.moved(moved)
        self._pending = {new: self._pending[at] for new, at in enumerate(moved) if at in self._pending}
        families = {UPTIME, *(family for written in self._written for family in written)} - {HISTOGRAM}
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
        seen = self._seen
        changed = [index for index, state in enumerate(states) if seen[index] != _seen(state)]
        for done, index in enumerate(changed, 1):
            state = states[index]
            self._write(index, state, labels_of(state.info), hour)
            if done % 16 == 0:
                await slices.pause_if_due()
        if hour != self._hour:  # the others' uptime gauges: written for an hour gone by
            written = set(changed)
            for index, state in enumerate(states):
                if index not in written:
                    self._set(UPTIME, index, _uptime(state, labels_of(state.info), hour))
                if index % 16 == 0:
                    await slices.pause_if_due()
            self._hour = hour

    def _write(self, index: int, state: CheckState, labels: CheckLabels, hour: int | None) -> None:
        written = _Lines()
        write_check(state, labels.labels, written)
        if hour is not None:
            write_uptime(state, labels.labels, hour * HOUR, written)
        lines = written.encoded()
        self._set(UPTIME, index, lines.pop(UPTIME, b""))
        self._pending[index] = lines.pop(HISTOGRAM, b"")
        for family in self._written[index]:
            if family not in lines:
                self._set(family, index, b"")
        for family, text in lines.items():
            self._set(family, index, text)
        self._written[index], self._seen[index] = tuple(lines), _seen(state)
        dynamic = tuple(family for family in lines if family.startswith((PHASE, GAUGE)))
        if dynamic != self._dynamic[index]:
            self._dynamic[index], self._order = dynamic, None

    def _set(self, family: str, index: int, text: bytes) -> None:
        column = self._columns.get(family)
        if column is None:
            column = self._columns[family] = [b""] * len(self._states)
        if column[index] != text:  # most lines are as they were: the counters of transitions, ...
            column[index] = text
            self._compressed.pop(family, None)

    async def join(
        self,
        histograms: bool,
        uptime: bool,
        gauge_help: Mapping[str, str],
        openmetrics: bool,
        gzip: bool,
        slices: LoopSlices,
    ) -> list[bytes | Deflated]:
        """The per-check families: each one's head, then its lines of every check in order.

        The histograms written again are compressed, and for gzip every other family whose
        lines changed since, in threads (zlib lets go of the GIL); the jobs work on copies, so
        a scrape given up meanwhile changes nothing (its checks' histograms stay pending)."""
        if self._order is None:
            self._order = dict.fromkeys(family for dynamic in self._dynamic for family in dynamic)
        histogram_job = _HistogramJob(self._histograms, dict(self._pending), gzip)  # a copy, for the thread
        parts: list[bytes | Deflated] = []
        jobs: list[tuple[int, str, Callable[[], Deflated]]] = []  # by position in `parts`
        for family in family_order(self._order, histograms, uptime):
            parts.append(family_head(family, gauge_help, openmetrics))
            part = histogram_job if family == HISTOGRAM else self._lines_of(family, gzip)
            if callable(part):
                jobs.append((len(parts), family, part))
                part = b""  # filled in below
            parts.append(part)
            await slices.pause_if_due()
        if not histograms:
            jobs.append((-1, HISTOGRAM, histogram_job))  # only to empty `_pending`
        jobs.sort(key=lambda job: job[1] != HISTOGRAM)  # the longest first
        for (at, family, _), part in zip(jobs, await _run([job for _, _, job in jobs]), strict=True):
            if at >= 0:
                parts[at] = part
            if family != HISTOGRAM:
                self._compressed[family] = part
        self._histograms, self._pending = histogram_job.updated(), {}
        return parts

    def _lines_of(self, family: str, gzip: bool) -> bytes | Deflated | Callable[[], Deflated]:
        """A family's lines of every check: joined, compressed as kept, or a job to compress them."""
        if not gzip:
            return b"".join(self._columns.get(family, ()))
        compressed = self._compressed.get(family)
        if compressed is not None:
            return compressed
        return partial(_deflated_column, list(self._columns.get(family, ())))  # a copy, for the thread


def _deflated_column(column: list[bytes]) -> Deflated:
    return deflated(b"".join(column))


class _HistogramJob:
    """Compresses the histograms written again into a copy of the kept ones; joins them all."""

    def __init__(self, kept: _Histograms, pending: dict[int, bytes], crc: bool) -> None:
        self._kept, self._pending, self._crc = kept, pending, crc
        self._updated: _Histograms | None = None

    def __call__(self) -> Deflated:
        updated = self._updated = self._kept.updated(self._pending, self._crc)
        return joined(updated.pieces, updated.tree, self._crc)

    def updated(self) -> _Histograms:
        assert self._updated is not None, "the job has not run"
        return self._updated


async def _run(jobs: list[Callable[[], Deflated]]) -> list[Deflated]:
    """What the jobs return, in order; `_THREADS` threads each take the next job in turn."""
    results: list[Deflated | None] = [None] * len(jobs)
    queue = iter(enumerate(jobs))  # shared: each next() is one step under the GIL

    def work() -> None:
        for at, job in queue:
            results[at] = job()

    await asyncio.gather(*(asyncio.to_thread(work) for _ in range(min(_THREADS, len(jobs)))))
    return [result for result in results if result is not None]
