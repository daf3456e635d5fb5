"""What `/metrics` answers: the format the scraper asked for, and the whole document.

Prometheus asks for OpenMetrics first (`Accept: application/openmetrics-text;...`);
anything else gets the text format 0.0.4. The per-check families come from
`healthd.metrics.Exposition`, then the daemon's own, then the process collector.

The document is built on the event loop in slices of a few milliseconds, as
pieces; joining and gzip (Prometheus sends `Accept-Encoding: gzip`) happen in
threads, where zlib and bytes.join release the GIL, so neither holds the loop.
For gzip the per-check families come compressed (the histograms are kept so between
scrapes) and go into the gzip member as they are (`healthd.deflate.gzip_member`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.registry import Collector

from healthd.deflate import Deflated, gzip_member
from healthd.metrics import Exposition, generate_openmetrics
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
        parts = await self._exposition.render_parts(openmetrics=openmetrics, gzip=gzip)
        if openmetrics:
            parts.append(generate_openmetrics(self._process))  # ends with the one # EOF
        else:
            parts.append(generate_latest(self._process))
        return await asyncio.to_thread(gzip_join if gzip else plain_join, parts)


def plain_join(parts: Sequence[bytes | Deflated]) -> bytes:
    return b"".join([part if isinstance(part, bytes) else part.text() for part in parts])


def gzip_join(parts: Sequence[bytes | Deflated]) -> bytes:
    """One gzip member of the parts, in order (`healthd.deflate.gzip_member`)."""
    return gzip_member(parts)
