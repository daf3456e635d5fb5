"""What `/metrics` answers: the format the scraper asked for, and the whole document.

Prometheus asks for OpenMetrics first (`Accept: application/openmetrics-text;...`);
anything else gets the text format 0.0.4. The per-check families come from
`healthd.metrics.Exposition`, then the daemon's own, then the process collector.

The document is built on the event loop in slices of a few milliseconds, as
pieces; joining and gzip (Prometheus sends `Accept-Encoding: gzip`) happen in
a thread, where zlib and bytes.join release the GIL, so neither holds the loop.
The histograms are kept compressed between scrapes and go into the gzip member as
they are (`gzip_join`).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import struct
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import cast

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.registry import Collector

from healthd.metrics import Exposition, generate_openmetrics
from healthd.metrics_cache import DeflatedLines
from healthd.store import Store

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def wants_openmetrics(accept: str) -> bool:
    """Whether an Accept header asks for OpenMetrics (as Prometheus does when it may scrape it)."""
    return _accepts(accept, "application/openmetrics-text")


def wants_gzip(accept_encoding: str) -> bool:
    """Whether an Accept-Encoding header takes gzip (`*` counts; `gzip;q=0` refuses it)."""
    return _accepts(accept_encoding, "gzip") or (
        _accepts(accept_encoding, "*") and not _refuses(accept_encoding, "gzip")
    )


def _accepts(header: str, token: str) -> bool:
    return any(kind == token and _quality(params) > 0 for kind, params in _items(header))


def _refuses(header: str, token: str) -> bool:
    return any(kind == token and _quality(params) == 0 for kind, params in _items(header))


def _items(header: str) -> Iterable[tuple[str, list[str]]]:
    for item in header.split(","):
        kind, *params = (part.strip() for part in item.split(";"))
        yield kind.lower(), params


def _quality(params: list[str]) -> float:
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() == "q":
            try:
                return float(value)
            except ValueError:
                return 0.0
    return 1.0


class MetricsRenderer:
    """`/metrics` in either format: the per-check text, the daemon's families, the process."""

    def __init__(
        self,
        store: Store,
        gauge_help: Mapping[str, str] | None = None,
        extra: Iterable[Collector] = (),
        *,
        uptime_ratio: bool = True,  # healthd_check_uptime_ratio (metrics.uptime_ratio)
    ) -> None:
        self._store = store
        self._exposition = Exposition(store, gauge_help, uptime_ratio=uptime_ratio)
        self._process = CollectorRegistry(auto_describe=False)
        self._process.register(ProcessCollector(registry=None))
        for collector in extra:  # more families at the end, e.g. notification counters
            self._process.register(collector)

    async def render(self, openmetrics: bool = False, gzip: bool = False) -> bytes:
        """The document, gzip-compressed if asked (level 1: ~27x smaller, the fastest level)."""
        parts = await self._exposition.render_parts(openmetrics=openmetrics)
        if openmetrics:
            parts.append(generate_openmetrics(self._process))  # ends with the one # EOF
        else:
            parts.append(generate_latest(self._process))
        return await asyncio.to_thread(gzip_join if gzip else plain_join, parts)


def plain_join(parts: Sequence[bytes | DeflatedLines]) -> bytes:
    return b"".join([part if isinstance(part, bytes) else part.text() for part in parts])


def gzip_join(parts: Sequence[bytes | DeflatedLines]) -> bytes:
    """One gzip member of the parts, in order; zlib releases the GIL while it compresses.

    Text is compressed here; `DeflatedLines` already are, and go in as they are, after a
    full flush (byte-aligned, and nothing after it refers back): their CRC-32s combine
    into the member's. Without zlib's crc32_combine they are inflated and compressed again.
    """
    compressor = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS)  # raw: header and trailer are ours
    out, crc, size = [_GZIP_HEADER], 0, 0
    for part in parts:
        if isinstance(part, DeflatedLines) and _CRC32_COMBINE is not None:
            out += (compressor.flush(zlib.Z_FULL_FLUSH), *part.fragments)
            for fragment_crc, fragment_size in zip(part.crcs, part.sizes, strict=True):
                crc = _CRC32_COMBINE(crc, fragment_crc, fragment_size)
            size += sum(part.sizes)
        else:
            text = part if isinstance(part, bytes) else part.text()
            out.append(compressor.compress(text))
            crc, size = zlib.crc32(text, crc), size + len(text)
    out += (compressor.flush(), struct.pack("<II", crc, size & 0xFFFFFFFF))
    return b"".join(out)


_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # deflate, no name, no time, OS unknown


def _crc32_combine() -> Callable[[int, int, int], int] | None:
    """zlib's crc32_combine (the zlib module does not offer it), or None where it cannot be loaded."""
    for name in ("libz.so.1", ctypes.util.find_library("z")):
        try:
            function = ctypes.CDLL(name).crc32_combine
            break
        except (OSError, TypeError, AttributeError):  # TypeError: find_library found none
            continue
    else:
        return None
    function.restype, function.argtypes = ctypes.c_ulong, (ctypes.c_ulong, ctypes.c_ulong, ctypes.c_long)
    return cast(Callable[[int, int, int], int], function)


_CRC32_COMBINE = _crc32_combine()  # a constant: looked up once, at import
