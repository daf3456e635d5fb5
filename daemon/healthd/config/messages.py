"""The words of config errors: our phrasing for pydantic's error types, hints, one-line rendering.

Pure functions: the loader decides where a problem is, this module how it reads.
"""

from __future__ import annotations

import datetime
import difflib
import re
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from healthd.config.checks import CHECK_MODELS
from healthd.config.yaml_source import PathKey

#: a config with more problems than this lists the first ones and counts the rest
MAX_PROBLEMS = 100
#: longest line of an error (a quoted value is cut before this)
MAX_LINE = 400

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_.-]+$")

_TYPE_WORDS = {
    "int": "a whole number",
    "float": "a number",
    "bool": "true or false",
    "string": "a string",
    "dict": "a mapping",
    "list": "a list",
    "model": "a mapping",
    "model_attributes": "a mapping",
}
_COMPARISONS = {
    "greater_than": "must be greater than {gt}",
    "greater_than_equal": "must be at least {ge}",
    "less_than": "must be less than {lt}",
    "less_than_equal": "must be at most {le}",
    "string_too_short": "must be at least {min_length} characters long",
    "string_too_long": "must be at most {max_length} characters long",
    "too_long": "takes at most {max_length} items",
    "multiple_of": "must be a multiple of {multiple_of}",
}
# what a list that must not be empty holds, by the option's name
_ITEM_NAMES = {"services": "service", "checks": "check", "expect_status": "status"}


class Problem(NamedTuple):
    line: int
    text: str  # "path: reason"


def render(name: str, problems: Iterable[Problem]) -> list[str]:
    """`FILE:LINE: path: reason` lines, by line, each once, one line each, at most MAX_PROBLEMS."""
    ordered = sorted(dict.fromkeys(problems), key=lambda problem: problem.line)
    lines = [one_line(f"{name}:{problem.line}: {problem.text}") for problem in ordered[:MAX_PROBLEMS]]
    if len(ordered) > MAX_PROBLEMS:
        lines.append(f"{name}: ... and {len(ordered) - MAX_PROBLEMS} more problems")
    return lines


def one_line(text: str) -> str:
    """Control characters escaped, length bounded: a message never spans lines."""
    text = _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)
    return text if len(text) <= MAX_LINE else text[: MAX_LINE - 3] + "..."


def dotted(path: PathKey) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            key = part if _PLAIN_KEY.match(part) else repr(part)
            out += f".{key}" if out else key
    return out


def did_you_mean(key: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.7)
    return f" (did you mean {close[0]!r}?)" if close else ""


def reason(err: Mapping[str, Any], path: PathKey, known_keys: Iterable[str]) -> str:
    """One pydantic error in our words."""
    kind: str = err["type"]
    ctx: Mapping[str, Any] = err.get("ctx") or {}
    if kind == "extra_forbidden":
        return "unknown option" + did_you_mean(str(path[-1]) if path else "", known_keys)
    if kind == "missing":
        return "required option missing"
    if kind == "union_tag_invalid":
        return f"unknown check type {ctx.get('tag')!r} (expected one of {', '.join(CHECK_MODELS)})"
    if kind == "union_tag_not_found":
        return f"'type' is required (one of {', '.join(CHECK_MODELS)})"
    if kind == "too_short":
        return _too_short(path, ctx)
    if kind in _COMPARISONS:
        return _COMPARISONS[kind].format(**ctx) + _got(err)
    if kind == "string_pattern_mismatch":
        return f"must match {str(ctx.get('pattern', '')).strip('^$')}" + _got(err)
    base = kind.removesuffix("_type").removesuffix("_parsing").removesuffix("_from_float")
    if base in _TYPE_WORDS and kind != base:
        return f"must be {_TYPE_WORDS[base]}" + _got(err)
    return _their_words(str(err["msg"]))


def _too_short(path: PathKey, ctx: Mapping[str, Any]) -> str:
    wanted = int(ctx.get("min_length", 1))
    option = next((part for part in reversed(path) if isinstance(part, str)), "")
    item = _ITEM_NAMES.get(option, "item")
    return f"needs at least one {item}" if wanted == 1 else f"needs at least {wanted} {item}s"


def _got(err: Mapping[str, Any]) -> str:
    value = err.get("input")
    if isinstance(value, bool | int | float | str) or value is None:
        text = repr(value)
        return f", not {text if len(text) <= 60 else text[:60] + '...'}"
    return f", not {_TYPE_NAMES.get(type(value), 'a ' + type(value).__name__)}"


_TYPE_NAMES: dict[type, str] = {
    dict: "a mapping",
    list: "a list",
    bytes: "binary data",
    set: "a set",
    datetime.date: "a date",
    datetime.datetime: "a timestamp",
}


def _their_words(message: str) -> str:
    message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return message.replace("Input should be", "must be").replace("Input is", "is")
