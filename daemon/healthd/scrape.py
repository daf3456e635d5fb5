"""What `/metrics` answers: the format the scraper asked for, and the whole document.

Prometheus asks for OpenMetrics first (`Accept: application/openmetrics-text;...`);
anything else gets the text format 0.0.4. The per-check families come from
`healthd.metrics.Exposition`, then the daemon's own, then the process collector.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.registry import Collector

from healthd.metrics import Exposition, generate_openmetrics
from healthd.store import Store

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def wants_openmetrics(accept: str) -> bool:
    """Whether an Accept header asks for OpenMetrics (as Prometheus does when it may scrape it)."""
    for media_range in accept.split(","):
        kind, *params = (part.strip() for part in media_range.split(";"))
        if kind.lower() == "application/openmetrics-text" and _quality(params) > 0:
            return True
    return False


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

    async def render(self, openmetrics: bool = False) -> bytes:
        checks = await self._exposition.render_async(openmetrics=openmetrics)
        if openmetrics:
            return checks + generate_openmetrics(self._process)  # ends with the one # EOF
        return checks + generate_latest(self._process)
