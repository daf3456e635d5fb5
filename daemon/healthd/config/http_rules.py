"""The HTTP probe's verdict: pure functions over a status code, headers and body bytes.

Nothing here does I/O, so every rule is tested with plain values. The config
uses the parsers (`parse_status`, `parse_condition`) to reject bad options at
load time; the probe uses `judge` on what the server sent.

The `json_path` condition language (small on purpose)::

    condition := path [op literal]
    path      := "$" step* | name step*
    step      := "." name | "[" integer "]" | "[" json-string "]"
    op        := "==" | "!=" | "<" | "<=" | ">" | ">=" | "=~"
    literal   := a JSON value: "UP", 3, 1.5, true, false, null

A bare path holds when the key exists. `==`/`!=` compare JSON values strictly
(`true` is not `1`); the ordering operators need two numbers or two strings;
`=~` searches a string value with the regex given as a JSON string.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from healthd.config.types import compile_regex
from healthd.results import ErrorKind

#: how much of a body or header value an error message quotes
EXCERPT_CHARS = 120

_STATUS = re.compile(r"^([1-5])(xx|\d\d)$")
#: longest json_path condition a config may give
MAX_CONDITION_CHARS = 1000


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


def _json_excerpt(value: Any, limit: int = EXCERPT_CHARS) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


# ---- json_path conditions ------------------------------------------------------------

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_INDEX = re.compile(r"\[(\d+)\]")
_QUOTED = re.compile(r'\[("(?:[^"\\]|\\.)*")\]')
_OP = re.compile(r"\s*(==|!=|<=|>=|=~|<|>)\s*")

Compare = Callable[[Any, Any], bool]
_ORDERING: dict[str, Compare] = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


@dataclass(frozen=True, slots=True)
class Condition:
    """One parsed `json_path` condition."""

    text: str
    path: tuple[str | int, ...]
    op: str | None = None
    value: Any = None
    regex: re.Pattern[str] | None = None


@lru_cache(maxsize=1024)
def parse_condition(text: str) -> Condition:
    """Parse one condition; ValueError names what is wrong and where."""
    source = text.strip()
    if not source:
        raise ValueError("empty json_path condition")
    if len(source) > MAX_CONDITION_CHARS:
        raise ValueError(f"json_path condition is {len(source)} characters, more than {MAX_CONDITION_CHARS}")
    path, pos = _parse_path(source)
    if pos == len(source):
        return Condition(source, path)
    op_match = _OP.match(source, pos)
    if not op_match:
        raise ValueError(
            f"json_path {source!r}: expected an operator (== != < <= > >= =~) at {source[pos:].strip()!r}"
        )
    op, literal_text = op_match.group(1), source[op_match.end() :]
    try:
        value = json.loads(literal_text)
    except (ValueError, RecursionError):  # json recurses once per nesting level
        raise ValueError(
            f'json_path {source!r}: {literal_text!r} is not a JSON value (quote strings: "UP")'
        ) from None
    regex = None
    if op == "=~":
        if not isinstance(value, str):
            raise ValueError(f"json_path {source!r}: =~ needs a regex in a JSON string")
        try:
            regex = compile_regex(value)
        except ValueError as exc:
            raise ValueError(f"json_path {source!r}: {exc}") from None
    elif op in _ORDERING and (_kind(value) not in ("number", "string")):
        raise ValueError(f"json_path {source!r}: {op} compares numbers or strings")
    return Condition(source, path, op, value, regex)


def _parse_path(source: str) -> tuple[tuple[str | int, ...], int]:
    steps: list[str | int] = []
    pos = 0
    if source.startswith("$"):
        pos = 1
    else:
        first = _NAME.match(source)
        if not first:
            raise ValueError(f"json_path {source!r}: a path starts with $ or a key name")
        steps.append(first.group())
        pos = first.end()
    while pos < len(source):
        if source[pos] == "." and (name := _NAME.match(source, pos + 1)):
            steps.append(name.group())
            pos = name.end()
        elif index := _INDEX.match(source, pos):
            steps.append(int(index.group(1)))
            pos = index.end()
        elif quoted := _QUOTED.match(source, pos):
            steps.append(json.loads(quoted.group(1)))
            pos = quoted.end()
        elif source[pos] in " =!<>":
            break
        else:
            raise ValueError(f"json_path {source!r}: cannot read the path at {source[pos:].strip()!r}")
    return tuple(steps), pos


_MISSING = object()


def _lookup(document: Any, path: Sequence[str | int]) -> tuple[Any, str]:
    """The value at `path`, or `_MISSING` and the reason it is missing."""
    node = document
    for depth, step in enumerate(path):
        where = _render_path(path[: depth + 1])
        if isinstance(step, int):
            if not isinstance(node, list):
                return _MISSING, f"{_render_path(path[:depth]) or '$'} is not a list"
            if step >= len(node):
                return _MISSING, f"{where} is out of range (list of {len(node)})"
        elif not isinstance(node, dict):
            return _MISSING, f"{_render_path(path[:depth]) or '$'} is not an object"
        elif step not in node:
            return _MISSING, f"{where} does not exist"
        node = node[step]
    return node, ""


def _render_path(path: Sequence[str | int]) -> str:
    out = ""
    for step in path:
        if isinstance(step, int):
            out += f"[{step}]"
        elif _NAME.fullmatch(step):
            out += f".{step}" if out else step
        else:
            out += f"[{json.dumps(step)}]"
    return out


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "list" if isinstance(value, list) else "object"


def _same(a: Any, b: Any) -> bool:
    """JSON equality: no Python coercions (True == 1), containers compared deeply."""
    if _kind(a) != _kind(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return bool(a == b)


def evaluate(condition: Condition, document: Any) -> str | None:
    """None when the condition holds, else why not."""
    found, missing_reason = _lookup(document, condition.path)
    if found is _MISSING:
        return f"json_path {condition.text}: {missing_reason}"
    op = condition.op
    if op is None:
        return None
    shown = _json_excerpt(found)
    if op in ("==", "!="):
        holds = _same(found, condition.value) == (op == "==")
    elif op == "=~":
        assert condition.regex is not None
        if not isinstance(found, str):
            return f"json_path {condition.text}: found {_kind(found)} {shown}, not a string"
        holds = condition.regex.search(found) is not None
    else:
        if _kind(found) != _kind(condition.value):
            return f"json_path {condition.text}: found {_kind(found)} {shown}, cannot compare with {op}"
        holds = _ORDERING[op](found, condition.value)
    return None if holds else f"json_path {condition.text}: found {shown}"


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
