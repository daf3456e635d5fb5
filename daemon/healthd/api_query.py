"""Query-string parsing for the REST API: pure functions that raise `QueryError`."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime


class QueryError(ValueError):
    """A bad query parameter; the API answers 400 with the message."""


def unknown_parameters(given: Iterable[str], allowed: Collection[str]) -> None:
    unknown = sorted({name for name in given if name not in allowed})
    if unknown:
        known = ", ".join(sorted(allowed)) if allowed else "none"
        raise QueryError(f"unknown query parameter(s): {', '.join(unknown)} (this endpoint takes: {known})")


def choice(name: str, raw: str | None, choices: Collection[str]) -> str | None:
    if raw is None:
        return None
    if raw not in choices:
        raise QueryError(f"{name} must be one of {', '.join(choices)}, not {raw!r}")
    return raw


def boolean(name: str, raw: str | None) -> bool | None:
    if raw is None:
        return None
    if raw not in ("true", "false"):
        raise QueryError(f"{name} must be true or false, not {raw!r}")
    return raw == "true"


def timestamp(name: str, raw: str | None) -> float | None:
    """An RFC 3339 time with its offset (e.g. 2026-12-01T10:00:00Z) -> unix seconds."""
    if raw is None:
        return None
    try:
        # an unescaped "+" of an offset arrives as a space
        parsed = datetime.fromisoformat(raw.replace(" ", "+"))
    except ValueError:
        raise QueryError(f"{name} must be an RFC 3339 time such as 2026-12-01T10:00:00Z") from None
    if parsed.tzinfo is None:
        raise QueryError(f"{name} needs a UTC offset or Z, e.g. 2026-12-01T10:00:00Z")
    return parsed.timestamp()
