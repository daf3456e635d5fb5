"""What the status page shows, as plain values: pure functions, no I/O, no aiohttp.

Input is the same JSON-shaped data the API serves (check and bucket dicts);
output is what the templates print. Everything here is testable with literals.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import groupby
from typing import Any
from urllib.parse import urlencode

STATUSES = ("down", "degraded", "unknown", "up")  # page order: what needs a look first
CHECK_STATUSES = ("down", "unknown", "up")
RANK = {status: rank for rank, status in enumerate(STATUSES)}
ICONS = {"up": "✓", "down": "✕", "degraded": "!", "unknown": "?"}
PAGE_SIZE = 50  # check rows per page: the page stays small and fast whatever the installation's size
BAR_MODES = {"hours": ("90h", "1h"), "days": ("90d", "1d")}  # ?bars= -> (window, step) of the series
UPTIME_WINDOWS = ("24h", "7d", "30d")
NO_DATA = "\N{EN DASH}"  # shown where a number is unknown


class BadQuery(ValueError):
    """A page query value we cannot use; the message says which and why."""


@dataclass(frozen=True)
class Filters:
    q: str = ""
    status: str = ""
    label: str = ""  # "key" or "key=value"
    page: int = 1
    bars: str = "hours"

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> Filters:
        unknown = sorted(set(query) - {"q", "status", "label", "page", "bars"})
        if unknown:
            raise BadQuery(f"unknown query parameter(s): {', '.join(unknown)}")
        status, bars, page = query.get("status", ""), query.get("bars", "hours"), query.get("page", "1")
        if status and status not in STATUSES:
            raise BadQuery(f"status must be one of {', '.join(STATUSES)}")
        if bars not in BAR_MODES:
            raise BadQuery("bars must be hours or days")
        if not page.isdigit() or int(page) < 1:
            raise BadQuery("page must be a whole number from 1")
        q, label = query.get("q", "").strip()[:200], query.get("label", "").strip()[:200]
        return cls(q=q, status=status, label=label, page=int(page), bars=bars)

    def url(self, **changes: Any) -> str:
        """This page's query string with some values changed; defaults left out."""
        values = {"q": self.q, "status": self.status, "label": self.label, "bars": self.bars}
        values.update({k: v for k, v in changes.items() if k != "page"})
        pairs = [(k, str(v)) for k, v in values.items() if v and not (k == "bars" and v == "hours")]
        page = changes.get("page", 1)
        if page != 1:
            pairs.append(("page", str(page)))
        return "?" + urlencode(pairs) if pairs else "?"


@dataclass
class Counts:
    services: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    checks: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CHECK_STATUSES, 0))

    @property
    def overall(self) -> str:
        """The banner's verdict over every service."""
        total = sum(self.services.values())
        for status in ("down", "degraded"):
            if self.services[status]:
                return status
        if total and self.services["up"] == total:
            return "up"
        return "unknown"

    @property
    def headline(self) -> str:
        down, degraded = self.services["down"], self.services["degraded"]
        return {
            "down": f"{down} service{'s' if down != 1 else ''} down",
            "degraded": f"{degraded} service{'s' if degraded != 1 else ''} degraded",
            "up": "All services up",
            "unknown": "Waiting for first results" if sum(self.services.values()) else "No services",
        }[self.overall]


def label_matches(wanted: str, labels: Mapping[str, str]) -> bool:
    key, sep, value = wanted.partition("=")
    if not sep:
        key, sep, value = wanted.partition(":")
    key, value = key.strip(), value.strip()
    if key not in labels:
        return False
    return not sep or labels[key] == value


def row_matches(filters: Filters, service: tuple[str, str], check: tuple[str, str]) -> bool:
    """Whether a check row passes the filters; `service` and `check` are (name, status).

    `status=degraded` picks whole services (a degraded service is a mix); the
    other statuses pick checks, so `status=down` also finds the down checks of
    degraded services.
    """
    if filters.q:
        needle = filters.q.lower()
        if needle not in service[0].lower() and needle not in check[0].lower():
            return False
    if filters.status == "degraded":
        return service[1] == "degraded"
    return not filters.status or check[1] == filters.status


def pages(total_rows: int) -> int:
    return max(1, math.ceil(total_rows / PAGE_SIZE))


# ---- times and numbers ----------------------------------------------------------------


def parse_time(value: str | None) -> float | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def short_duration(seconds: float) -> str:
    """`42s`, `5m`, `3h 4m`, `2d 5h`: how long a state has lasted."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h {seconds % 3600 // 60}m"
    return f"{seconds // 86400}d {seconds % 86400 // 3600}h"


def utc_text(stamp: float | None, with_seconds: bool = True) -> str:
    if stamp is None:
        return "never"
    fmt = "%Y-%m-%d %H:%M:%S UTC" if with_seconds else "%Y-%m-%d %H:%M UTC"
    return datetime.fromtimestamp(stamp, UTC).strftime(fmt)


def iso_text(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def percent(ratio: float | None) -> str:
    """Uptime as people read it: 100%, 99.95%, 87.3%; NO_DATA without data."""
    if ratio is None:
        return NO_DATA
    if ratio >= 1:
        return "100%"
    value = math.floor(ratio * 10000) / 100  # never round 99.996% up to 100%
    return f"{value:.2f}%" if value >= 99 else f"{value:.1f}%"


def latency_text(ms: float | None) -> str:
    if ms is None:
        return NO_DATA
    return f"{ms:.0f} ms" if ms >= 100 else f"{ms:.1f} ms" if ms >= 1 else f"{ms * 1000:.0f} µs"


# ---- bars and sparkline ---------------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    level: str  # ok, warn, bad, none: a CSS class
    title: str  # the tooltip


def bar_level(ratio: float | None) -> str:
    if ratio is None:
        return "none"
    return "ok" if ratio >= 0.999 else "warn" if ratio >= 0.95 else "bad"


def bars(buckets: Sequence[Mapping[str, Any]] | None, mode: str) -> list[Bar]:
    """One bar per bucket, oldest first; 90 grey bars when there is no series yet."""
    if not buckets:
        return [Bar("none", "no data")] * 90
    out = []
    for bucket in buckets:
        start = parse_time(bucket.get("start"))
        when = utc_text(start, with_seconds=False)[: 10 if mode == "days" else None]
        ratio = bucket.get("ratio")
        if not bucket.get("probes"):
            out.append(Bar("none", f"{when}: no data"))
            continue
        down = float(bucket.get("down_seconds") or 0.0)
        extra = f", down {short_duration(down)}" if down >= 1 else ""
        title = f"{when}: {percent(ratio)} up, {bucket['probes']} probes{extra}"
        out.append(Bar(bar_level(ratio), title))
    return out


@dataclass(frozen=True)
class Run:
    level: str
    start: int
    length: int


@dataclass(frozen=True)
class Strip:
    """The bars of one check on the list page: runs of equal colour (one SVG rect each, so a steady
    check costs one element, not 90) and a summary; per-bar tooltips come from the series."""

    runs: list[Run]
    count: int
    summary: str


def strip(buckets: Sequence[Mapping[str, Any]] | None, mode: str) -> Strip:
    period = "days" if mode == "days" else "hours"
    if not buckets:
        return Strip([Run("none", 0, 90)], 90, f"last 90 {period}: no data yet")
    levels = [bar_level(b.get("ratio")) if b.get("probes") else "none" for b in buckets]
    runs: list[Run] = []
    start = 0
    for level, group in groupby(levels):
        length = len(list(group))
        runs.append(Run(level, start, length))
        start += length
    probes = sum(int(b.get("probes") or 0) for b in buckets or ())
    successes = sum(int(b.get("successes") or 0) for b in buckets or ())
    if not probes:
        return Strip(runs, len(levels), f"last {len(levels)} {period}: no data yet")
    short = sum(1 for level in levels if level in ("warn", "bad"))
    summary = f"last {len(levels)} {period}: {percent(successes / probes)} up"
    if short:
        summary += f", {short} {period if short != 1 else period[:-1]} below 99.9%"
    return Strip(runs, len(levels), summary)


@dataclass(frozen=True)
class Sparkline:
    path: str  # SVG path data in a 0..WIDTH x 0..HEIGHT box
    title: str


SPARK_WIDTH, SPARK_HEIGHT = 120, 28


def sparkline(buckets: Sequence[Mapping[str, Any]] | None) -> Sparkline | None:
    """Mean latency per bucket as one SVG path; gaps where a bucket has no latency."""
    means = [_mean_of(b) for b in buckets or ()]
    known = [m for m in means if m is not None]
    if len(known) < 2:
        return None
    low, high = min(known), max(known)
    span = (high - low) or 1.0
    step = SPARK_WIDTH / max(len(means) - 1, 1)
    parts, pen_down = [], False
    for i, mean in enumerate(means):
        if mean is None:
            pen_down = False
            continue
        y = SPARK_HEIGHT - 2 - (mean - low) / span * (SPARK_HEIGHT - 4)
        parts.append(f"{'L' if pen_down else 'M'}{i * step:.1f} {y:.1f}")
        pen_down = True
    title = f"mean latency {latency_text(low)} to {latency_text(high)}, last {latency_text(known[-1])}"
    return Sparkline(" ".join(parts), title)


def _mean_of(bucket: Mapping[str, Any]) -> float | None:
    latency = bucket.get("latency_ms") or {}
    mean = latency.get("mean") if isinstance(latency, Mapping) else None
    return float(mean) if mean is not None else None


def uptime_texts(uptime: Mapping[str, float | None] | None) -> list[tuple[str, str]]:
    """[(window, "99.95%")] for the windows the page shows; NO_DATA where unknown."""
    return [(w, percent((uptime or {}).get(w))) for w in UPTIME_WINDOWS]
