"""The HTTP probe's verdict: pure functions over a status code, headers and body bytes.

Nothing here does I/O, so every rule is tested with plain values. The config
uses the parsers (`parse_status`, and `json_path.parse_condition` for the
`json_path` conditions) to reject bad options at load time; the probe uses
`judge` on what the server sent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from healthd.config.json_path import EXCERPT_CHARS, evaluate, parse_condition
from healthd.results import ErrorKind

_STATUS = re.compile(r"^([1-5])(xx|\d\d)$")


def parse_status(value: object) -> str:
    """`200`, `"200"` or a class like `"2xx"` -> its normal form; ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{value!r} is not a status code (e.g. 200) or class (e.g. 2xx)")
    text = str(value).strip().lower()
    if not _STATUS.match(text):
        raise ValueError(f"{value!r} is not a status code from 100 to 599 or a class like 2xx")
    return text


def status_matches(code: int, patterns: Iterable[str]) -> bool:
    text = str(code)
    return any(p == text or (p.endswith("xx") and p[0] == text[0]) for p in patterns)


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """A quoted, one-line, bounded rendering of `text` for error messages."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} chars)"


# ---- the verdict -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Expectations:
    """What a response must look like; built from the check's options."""

    status: tuple[str, ...] = ("2xx",)
    body_regex: re.Pattern[str] | None = None
    body_not_regex: re.Pattern[str] | None = None
    headers: Mapping[str, re.Pattern[str]] | None = None
    json_path: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Observed:
    """What the server sent, as far as it was read."""

    status: int
    headers: Mapping[str, Sequence[str]]  # lower-case name -> every value sent
    body: bytes
    charset: str = "utf-8"
    truncated: bool = False  # reading stopped at max_body_bytes
    location: str | None = None  # redirect target, for the message of an unexpected 3xx


@dataclass(frozen=True, slots=True)
class Mismatch:
    kind: ErrorKind
    message: str


def judge(expect: Expectations, seen: Observed) -> Mismatch | None:
    """The first rule the response breaks: status, then headers, then body; None if none."""
    if not status_matches(seen.status, expect.status):
        where = f" (Location: {seen.location})" if seen.location else ""
        message = f"status {seen.status}{where}, expected {', '.join(expect.status)}"
        return Mismatch(ErrorKind.HTTP_STATUS, message)
    reason = _headers_reason(expect.headers or {}, seen.headers) or _body_reason(expect, seen)
    return Mismatch(ErrorKind.BODY_MISMATCH, reason) if reason else None


def _headers_reason(expected: Mapping[str, re.Pattern[str]], headers: Mapping[str, Sequence[str]]) -> str:
    for name, pattern in expected.items():
        values = headers.get(name.lower(), ())
        if not values:
            return f"header {name} is missing (expected /{pattern.pattern}/)"
        if not any(pattern.search(value) for value in values):
            shown = ", ".join(excerpt(v) for v in values[:3])
            return f"header {name}: {shown} does not match /{pattern.pattern}/"
    return ""


def decode_body(body: bytes, charset: str) -> str:
    try:
        return body.decode(charset, errors="replace")
    except LookupError:  # a charset Python does not know: read it as UTF-8
        return body.decode("utf-8", errors="replace")


def _body_reason(expect: Expectations, seen: Observed) -> str:
    if not (expect.body_regex or expect.body_not_regex or expect.json_path):
        return ""
    text = decode_body(seen.body, seen.charset)
    cut = f" (first {len(seen.body)} bytes)" if seen.truncated else ""
    if expect.body_regex and not expect.body_regex.search(text):
        return f"body{cut} does not match /{expect.body_regex.pattern}/: {excerpt(text)}"
    if expect.body_not_regex and (hit := expect.body_not_regex.search(text)):
        return f"body matches body_not_regex /{expect.body_not_regex.pattern}/ at {excerpt(hit.group())}"
    if expect.json_path:
        if seen.truncated:
            return f"body truncated at {len(seen.body)} bytes (max_body_bytes): json_path needs all of it"
        try:
            document = json.loads(text)
        except ValueError as exc:
            return f"body is not JSON ({exc}): {excerpt(text)}"
        for condition in expect.json_path:
            reason = evaluate(parse_condition(condition), document)
            if reason:
                return reason
    return ""
