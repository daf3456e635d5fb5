"""Badges: small two-part SVGs ("label | message") for a README. Pure: text in, SVG out."""

from __future__ import annotations

from xml.sax.saxutils import escape

from healthd.page import view

# Okabe-Ito based, dark enough for white 11px text (contrast >= 4.5:1)
COLOURS = {"up": "#00704f", "down": "#b03a00", "degraded": "#8a5a00", "unknown": "#5c6670"}
LABEL_COLOUR = "#3b4148"
KINDS = ("status", "uptime")
WINDOWS = ("1h", "24h", "7d", "30d")

# Verdana 11px advance widths, roughly: narrow, wide and the rest (shields.io's font)
_NARROW, _WIDE = set("fijlrt.,:;!|'() "), set("mwMW@%")


def text_width(text: str) -> int:
    return round(sum(3.6 if c in _NARROW else 10.0 if c in _WIDE else 7.0 for c in text))


def uptime_colour(ratio: float | None) -> str:
    level = view.bar_level(ratio)
    return {"ok": COLOURS["up"], "warn": COLOURS["degraded"], "bad": COLOURS["down"]}.get(
        level, COLOURS["unknown"]
    )


def render(label: str, message: str, colour: str) -> str:
    """An SVG badge; both texts are escaped, so any name is safe to show."""
    label, message = label[:60], message[:40]
    left, right = text_width(label) + 12, text_width(message) + 12
    width = left + right
    lx, mx = left / 2, left + right / 2
    title = escape(f"{label}: {message}")
    label_text, message_text = escape(label), escape(message)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="20" role="img" '
        f'aria-label="{title}"><title>{title}</title>'
        f'<rect width="{left}" height="20" fill="{LABEL_COLOUR}"/>'
        f'<rect x="{left}" width="{right}" height="20" fill="{colour}"/>'
        '<g fill="#fff" text-anchor="middle" font-family="Verdana,DejaVu Sans,sans-serif" font-size="11">'
        f'<text x="{lx}" y="14">{label_text}</text><text x="{mx}" y="14">{message_text}</text></g></svg>'
    )


def status_badge(label: str, status: str) -> str:
    return render(label, f"{view.ICONS.get(status, '?')} {status}", COLOURS.get(status, COLOURS["unknown"]))


def uptime_badge(label: str, window: str, ratio: float | None) -> str:
    message = "no data" if ratio is None else view.percent(ratio)
    return render(f"{label} {window}", message, uptime_colour(ratio))
