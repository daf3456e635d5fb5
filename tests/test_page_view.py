"""The page's pure logic with literals: filters, numbers, bars, sparkline, badges."""

from __future__ import annotations

from xml.etree import ElementTree

import pytest
from healthd.page import badge, view


def bucket(start: str, probes: int, successes: int, mean: float | None = None, down: float = 0.0) -> dict:
    ratio = successes / probes if probes else None
    return {
        "start": start,
        "probes": probes,
        "successes": successes,
        "ratio": ratio,
        "down_seconds": down,
        "latency_ms": {"mean": mean},
    }


def test_filters_parse_and_rebuild_their_url() -> None:
    filters = view.Filters.parse({"q": " web ", "status": "down", "label": "team=core", "page": "2"})
    assert (filters.q, filters.status, filters.label, filters.page, filters.bars) == (
        "web", "down", "team=core", 2, "hours",
    )  # fmt: skip
    assert filters.url(page=3) == "?q=web&status=down&label=team%3Dcore&page=3"
    assert filters.url(bars="days") == "?q=web&status=down&label=team%3Dcore&bars=days"
    assert view.Filters().url() == "?"


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"nope": "1", "x": "2"}, "unknown query parameter(s): nope, x"),
        ({"status": "UP"}, "status must be one of down, degraded, unknown, up"),
        ({"bars": "weeks"}, "bars must be hours or days"),
        ({"page": "-1"}, "page must be a whole number from 1"),
    ],
)
def test_bad_filters(query: dict[str, str], message: str) -> None:
    with pytest.raises(view.BadQuery, match=message.replace("(", r"\(").replace(")", r"\)")):
        view.Filters.parse(query)


@pytest.mark.parametrize(
    ("wanted", "labels", "match"),
    [
        ("team=core", {"team": "core"}, True),
        ("team:core", {"team": "core"}, True),
        ("team=core", {"team": "edge"}, False),
        ("team", {"team": "edge"}, True),
        ("tier", {"team": "edge"}, False),
    ],
)
def test_label_matches(wanted: str, labels: dict[str, str], match: bool) -> None:
    assert view.label_matches(wanted, labels) is match


def test_row_matches_degraded_picks_whole_services() -> None:
    degraded = view.Filters(status="degraded")
    assert view.row_matches(degraded, ("web", "degraded"), ("tcp", "up"))
    assert not view.row_matches(degraded, ("db", "down"), ("tcp", "down"))
    down = view.Filters(status="down", q="WEB")
    assert view.row_matches(down, ("web", "degraded"), ("tcp", "down"))
    assert not view.row_matches(down, ("web", "degraded"), ("tcp", "up"))


def test_counts_overall_and_headline() -> None:
    counts = view.Counts()
    assert (counts.overall, counts.headline) == ("unknown", "No services")
    counts.services.update(up=3)
    assert (counts.overall, counts.headline) == ("up", "All services up")
    counts.services.update(degraded=2)
    assert (counts.overall, counts.headline) == ("degraded", "2 services degraded")
    counts.services.update(down=1)
    assert (counts.overall, counts.headline) == ("down", "1 service down")


@pytest.mark.parametrize(
    ("ratio", "text"),
    [
        (None, "\N{EN DASH}"),
        (1.0, "100%"),
        (0.99996, "99.99%"),
        (0.9995, "99.95%"),
        (0.873, "87.3%"),
        (0.0, "0.0%"),
    ],
)
def test_percent_never_rounds_up_to_100(ratio: float | None, text: str) -> None:
    assert view.percent(ratio) == text


def test_durations_and_latency() -> None:
    assert [view.short_duration(s) for s in (5, 300, 3 * 3600 + 240, 2 * 86400 + 5 * 3600)] == [
        "5s", "5m", "3h 4m", "2d 5h",
    ]  # fmt: skip
    assert [view.latency_text(ms) for ms in (None, 0.25, 12.34, 250.4)] == [
        "\N{EN DASH}", "250 µs", "12.3 ms", "250 ms",
    ]  # fmt: skip


def test_bars_levels_and_tooltips() -> None:
    series = [
        bucket("2026-12-01T08:00:00Z", 0, 0),
        bucket("2026-12-01T09:00:00Z", 360, 360),
        bucket("2026-12-01T10:00:00Z", 360, 350, down=100),
        bucket("2026-12-01T11:00:00Z", 100, 10, down=3000),
    ]
    bars = view.bars(series, "hours")
    assert [b.level for b in bars] == ["none", "ok", "warn", "bad"]
    assert bars[0].title == "2026-12-01 08:00 UTC: no data"
    assert bars[2].title == "2026-12-01 10:00 UTC: 97.2% up, 360 probes, down 1m"
    assert view.bars(series, "days")[1].title.startswith("2026-12-01: 100% up")
    assert [b.level for b in view.bars(None, "hours")] == ["none"] * 90


def test_strip_is_runs_of_equal_colour() -> None:
    series = [bucket(f"2026-12-01T{h:02d}:00:00Z", 10, 10) for h in range(5)] + [
        bucket("2026-12-01T05:00:00Z", 10, 0)
    ]
    strip = view.strip(series, "hours")
    assert [(r.level, r.start, r.length) for r in strip.runs] == [("ok", 0, 5), ("bad", 5, 1)]
    assert strip.summary == "last 6 hours: 83.3% up, 1 hour below 99.9%"
    assert view.strip(None, "days").summary == "last 90 days: no data yet"
    assert len(view.strip(None, "days").runs) == 1


def test_sparkline_scales_to_its_box_and_breaks_at_gaps() -> None:
    series = [bucket("t", 1, 1, 10.0), bucket("t", 1, 1, 30.0), bucket("t", 0, 0), bucket("t", 1, 1, 20.0)]
    spark = view.sparkline(series)
    assert spark is not None
    assert spark.path == "M0.0 26.0 L40.0 2.0 M120.0 14.0"
    assert spark.title == "mean latency 10.0 ms to 30.0 ms, last 20.0 ms"
    assert view.sparkline([bucket("t", 1, 1, 5.0)]) is None  # one point is no line
    assert view.sparkline(None) is None


def test_badges_are_valid_svg_with_escaped_text() -> None:
    svg = badge.status_badge("<b>&web</b>", "down")
    root = ElementTree.fromstring(svg)  # well-formed XML, whatever the name
    assert root.tag.endswith("svg") and "<b>" not in svg
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert texts == ["<b>&web</b>", "✕ down"]
    assert badge.COLOURS["down"] in svg
    uptime = ElementTree.fromstring(badge.uptime_badge("web", "24h", 0.9995))
    assert [t.text for t in uptime.iter("{http://www.w3.org/2000/svg}text")] == ["web 24h", "99.95%"]
    assert "no data" in badge.uptime_badge("web", "7d", None)
    assert badge.text_width("mmm") > badge.text_width("iii")


def contrast(a: str, b: str) -> float:
    def luminance(colour: str) -> float:
        channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_badge_text_meets_wcag_aa() -> None:
    for colour in [*badge.COLOURS.values(), badge.LABEL_COLOUR]:
        assert contrast("#ffffff", colour) >= 4.5, colour
