"""Raw deflate pieces that splice into one gzip member without being compressed again.

A piece is text compressed on its own: it refers to nothing before it and ends on a byte
after a flush, with no final block. Pieces joined in any order are then one deflate stream
of their texts joined; a gzip member needs, besides, the CRC-32 of all that text, which
zlib's crc32_combine makes of the pieces' own CRCs (the zlib module does not offer it: it is
loaded from libz with ctypes, and where it cannot be, pieces are inflated and compressed again).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import itertools
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import cast


@dataclass(frozen=True, slots=True)
class Deflated:
    """Text as raw deflate `data`; `crc` is its text's CRC-32 (None where it cannot be
    combined into a member's: `text()` is compressed again then)."""

    data: bytes
    crc: int | None
    size: int  # of the text

    def text(self) -> bytes:
        return zlib.decompressobj(-zlib.MAX_WBITS).decompress(self.data)


class PieceCompressor:
    """Compresses texts into pieces, one after another, with one compressor.

    A full flush after each piece forgets what came before it, which is what a new
    compressor per piece would do, without setting one up (and zeroing its tables) each time.
    """

    def __init__(self) -> None:
        # for a check's lines: a 4 KB window finds the label set repeated on every line,
        # and the small state (~80 KB) stays under malloc's mmap threshold
        self._compressor = zlib.compressobj(1, zlib.DEFLATED, -12, 7)

    def piece(self, text: bytes) -> bytes:
        return self._compressor.compress(text) + self._compressor.flush(zlib.Z_FULL_FLUSH)


def deflated(text: bytes) -> Deflated:
    """`text` as one piece: the default window (up to 32 KB back) for long texts of many lines."""
    compressor = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS)
    return Deflated(
        compressor.compress(text) + compressor.flush(zlib.Z_SYNC_FLUSH), zlib.crc32(text), len(text)
    )


class CrcTree:
    """The CRC-32 and size of many pieces' texts joined, kept with those of runs of them.

    A binary tree: level 0 holds each piece's, each level above combines pairs of the one
    below. When k of n pieces change, about k·log2(n/k) pairs are combined again, not n
    pieces (a combine is a ctypes call, a microsecond or two), and only once the whole's CRC
    is asked for. Without crc32_combine only level 0 is kept, and the whole's CRC is unknown.
    """

    __slots__ = ("_dirty", "_levels")

    def __init__(self, crcs: Sequence[int], sizes: Sequence[int], combine: bool = True) -> None:
        """The tree of these pieces; without `combine`, left to the first `updated` that does."""
        self._levels = [(list(crcs), list(sizes))]
        self._dirty = set() if combine else set(range(len(crcs)))  # pieces not combined above yet
        while _CRC32_COMBINE is not None and len(self._levels[-1][0]) > 1:
            below = self._levels[-1]
            if combine:
                pairs = [_pair(*below, left) for left in range(0, len(below[0]), 2)]
            else:
                pairs = [(0, 0)] * ((len(below[0]) + 1) // 2)
            self._levels.append(([crc for crc, _ in pairs], [size for _, size in pairs]))

    @property
    def crcs(self) -> list[int]:
        return self._levels[0][0]

    @property
    def sizes(self) -> list[int]:
        return self._levels[0][1]

    @property
    def crc(self) -> int | None:
        """The whole's CRC-32; None if unknown (no crc32_combine, or `updated` without combining)."""
        if not self.crcs:
            return 0
        if self._dirty or (len(self._levels) == 1 and len(self.crcs) > 1):
            return None
        return self._levels[-1][0][0]

    @property
    def size(self) -> int:
        return sum(self.sizes)

    def updated(self, changes: Mapping[int, tuple[int, int]], combine: bool = True) -> CrcTree:
        """A copy with the pieces at the positions in `changes` given a new (CRC-32, size) and,
        with `combine`, the pairs above those (and above any changed before) combined again."""
        tree = CrcTree((), ())
        tree._levels = [(list(crcs), list(sizes)) for crcs, sizes in self._levels]
        crcs, sizes = tree._levels[0]
        for index, (crc, size) in changes.items():
            crcs[index], sizes[index] = crc, size
        dirty = self._dirty | set(changes)
        if not combine:
            tree._dirty = dirty
            return tree
        for below, above in itertools.pairwise(tree._levels):
            dirty = {index // 2 for index in dirty}
            for parent in dirty:
                above[0][parent], above[1][parent] = _pair(*below, 2 * parent)
        return tree


def _pair(crcs: list[int], sizes: list[int], left: int) -> tuple[int, int]:
    """The CRC-32 and size of the texts of pieces `left` and `left + 1` (if any) joined."""
    if left + 1 == len(crcs):
        return crcs[left], sizes[left]
    assert _CRC32_COMBINE is not None
    return _CRC32_COMBINE(crcs[left], crcs[left + 1], sizes[left + 1]), sizes[left] + sizes[left + 1]


def joined(pieces: Sequence[bytes], tree: CrcTree, crc: bool = True) -> Deflated:
    """Pieces joined in order, with the CRC-32 and size of their texts (`tree`), as one
    `Deflated`; without `crc` (to be inflated, not spliced) the CRC is left unknown."""
    return Deflated(b"".join(pieces), tree.crc if crc else None, tree.size)


def gzip_member(parts: Sequence[bytes | Deflated]) -> bytes:
    """One gzip member of the parts' texts, in order; `Deflated` parts go in as they are.

    Text is compressed here (level 1), and flushed in full before each `Deflated` part,
    so that nothing after it refers back past it."""
    compressor = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS)  # raw: header and trailer are ours
    out, crc, size = [_GZIP_HEADER], 0, 0
    for part in parts:
        if isinstance(part, Deflated) and part.crc is not None and _CRC32_COMBINE is not None:
            out += (compressor.flush(zlib.Z_FULL_FLUSH), part.data)
            crc, size = _CRC32_COMBINE(crc, part.crc, part.size), size + part.size
        else:
            text = part if isinstance(part, bytes) else part.text()
            out.append(compressor.compress(text))
            crc, size = zlib.crc32(text, crc), size + len(text)
    out += (compressor.flush(), (crc).to_bytes(4, "little"), (size & 0xFFFFFFFF).to_bytes(4, "little"))
    return b"".join(out)


_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # deflate, no name, no time, OS unknown


def _crc32_combine() -> Callable[[int, int, int], int] | None:
    """zlib's crc32_combine, or None where it cannot be loaded."""
    for name in ("libz.so.1", ctypes.util.find_library("z")):
        try:
            # PyDLL keeps the GIL: the call is shorter than handing the GIL over and back
            function = ctypes.PyDLL(name).crc32_combine
            break
        except (OSError, TypeError, AttributeError):  # TypeError: find_library found none
            continue
    else:
        return None
    function.restype, function.argtypes = ctypes.c_ulong, (ctypes.c_ulong, ctypes.c_ulong, ctypes.c_long)
    return cast(Callable[[int, int, int], int], function)


_CRC32_COMBINE = _crc32_combine()  # a constant: looked up once, at import
