"""`json_path` conditions of the HTTP probe: parse once at config load, evaluate on a JSON body.

Pure functions over plain values. The language (small on purpose)::

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from healthd.config.types import compile_regex

#: how much of a body, header or found value an error message quotes
EXCERPT_CHARS = 120
#: longest json_path condition a config may give
MAX_CONDITION_CHARS = 1000

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


def _json_excerpt(value: Any, limit: int = EXCERPT_CHARS) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"
