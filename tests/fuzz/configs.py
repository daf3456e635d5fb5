"""Config files for the fuzzer: a generator of near-valid configs and a mutator of their text.

The generator builds configs from the real option names and plausible values,
so most cases get deep into validation; values are swapped for hostile ones
(huge numbers, NaN, control characters, nesting, wrong types). The mutator
then works on the YAML text: tags, anchors and aliases, alias bombs,
duplicated or dropped lines, control characters, truncation and encodings.

Every choice goes through a `Chooser`: hypothesis draws (`config_files()`, which
shrinks a failure to a small case) or a seeded `random.Random`
(`random_config_file`, ~20x cheaper per case, for the large runs).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, Protocol, TypeVar

import yaml
from healthd.config import CHECK_MODELS
from hypothesis import strategies as st

from tests.fuzz.values import (
    ALL_KEYS,
    CHARS,
    CHECK_OPTIONS,
    CONTROL,
    ENCODINGS,
    HOSTILE,
    PIECES,
    PLAUSIBLE,
    RIGHT,
    TAGS,
    TARGET_FOR,
    TARGET_VALUES,
    TARGETS,
    TYPOS,
)

T = TypeVar("T")


class Chooser(Protocol):
    def choice(self, options: Sequence[T]) -> T: ...
    def integer(self, low: int, high: int) -> int: ...


class Drawn:
    """Choices drawn by hypothesis (recorded, so a failure shrinks)."""

    def __init__(self, draw: st.DrawFn) -> None:
        self._draw = draw

    def choice(self, options: Sequence[T]) -> T:
        return self._draw(st.sampled_from(options))

    def integer(self, low: int, high: int) -> int:
        return self._draw(st.integers(low, high))


class Seeded:
    """Choices from a seeded random.Random: cheap, reproducible from the seed."""

    def __init__(self, seed: int) -> None:
        self._random = random.Random(seed)

    def choice(self, options: Sequence[T]) -> T:
        return self._random.choice(options)

    def integer(self, low: int, high: int) -> int:
        return self._random.randint(low, high)


def text(c: Chooser, most: int = 12) -> str:
    return "".join(c.choice(CHARS) for _ in range(c.integer(0, most)))


def key(c: Chooser) -> str:
    kind = c.integer(0, 9)
    return c.choice(TYPOS) if kind == 0 else text(c, 8) if kind == 1 else c.choice(ALL_KEYS)


def value(c: Chooser, depth: int = 0) -> Any:
    """A plausible value most of the time, else a hostile one, a random one, or a container."""
    kind = c.integer(0, 9)
    if kind <= 4:
        return c.choice(PLAUSIBLE)
    if kind <= 6:
        return c.choice(HOSTILE)
    if kind == 7:
        return c.choice([c.integer(-(2**70), 2**70), text(c), float(c.integer(-9, 9)) / 7, None, True])
    if depth >= 3:
        return text(c)
    if c.integer(0, 1):
        return [value(c, depth + 1) for _ in range(c.integer(0, 3))]
    return {key(c): value(c, depth + 1) for _ in range(c.integer(0, 3))}


# a right value for each option, so that many cases are valid and reach the end of validation
def option_value(c: Chooser, option: str) -> Any:
    right = RIGHT.get(option)
    return c.choice(right) if right and c.integer(0, 2) else value(c)


def clean_check(c: Chooser) -> dict[str, Any]:
    """A valid check: its own type's options, right values."""
    kind = c.choice(list(CHECK_MODELS))
    made: dict[str, Any] = {"type": kind, TARGETS[kind]: c.choice(TARGET_FOR[kind])}
    options = [option for option in CHECK_MODELS[kind].model_fields if option in RIGHT]
    for _ in range(c.integer(0, 4)):
        option = c.choice(options)
        made[option] = c.choice(RIGHT[option])
    return made


def check(c: Chooser) -> dict[str, Any]:
    kind = c.choice([*CHECK_MODELS, *CHECK_MODELS, "gopher"])
    targets = TARGET_VALUES if c.integer(0, 5) == 0 else TARGET_FOR.get(kind, TARGET_FOR["tcp"])
    made: dict[str, Any] = {"type": kind, TARGETS.get(kind, "target"): c.choice(targets)}
    for _ in range(c.integer(0, 4)):
        option = c.choice(CHECK_OPTIONS) if c.integer(0, 5) else key(c)
        made[option] = option_value(c, option)
    if c.integer(0, 9) == 0:
        del made[c.choice(list(made))]
    return made


def clean_config(c: Chooser) -> dict[str, Any]:
    services = [
        {"name": f"s{index}", "checks": [{"name": f"c{n}", **clean_check(c)} for n in range(c.integer(1, 4))]}
        for index in range(c.integer(1, 3))
    ]
    data: dict[str, Any] = {"services": services}
    if c.integer(0, 1):
        data["defaults"] = {"interval": c.choice(RIGHT["interval"]), "rise": c.choice(RIGHT["rise"])}
    return data


def config(c: Chooser) -> dict[str, Any]:
    """A config as data: mostly the right shape, with some wrong keys, types and values."""
    services = []
    for index in range(c.integer(0, 3)):
        service: dict[str, Any] = {
            "name": f"s{index}" if c.integer(0, 3) else c.choice(["web", "bad name", "x" * 200, ""]),
            "checks": [check(c) for _ in range(c.integer(0, 4))],
        }
        for number, made in enumerate(service["checks"]):
            if c.integer(0, 3):
                made.setdefault("name", f"c{number}")
        if c.integer(0, 3) == 0:
            service["labels"] = {text(c, 8): value(c, 2) for _ in range(c.integer(0, 3))}
        services.append(service)
    data: dict[str, Any] = {"services": services}
    if c.integer(0, 1):
        options = [c.choice(CHECK_OPTIONS) if c.integer(0, 3) else key(c) for _ in range(c.integer(0, 4))]
        data["defaults"] = {option: option_value(c, option) for option in options}
    for section in ("server", "scheduler", "metrics"):
        if c.integer(0, 5) == 0:
            data[section] = {key(c): value(c) for _ in range(c.integer(0, 3))}
    if c.integer(0, 4) == 0:
        data[key(c)] = value(c)
    return data


def _value_spots(text: str) -> list[int]:
    return [i + 2 for i in range(len(text) - 1) if text[i : i + 2] == ": "]


def _tag(text: str, c: Chooser) -> str:
    spots = _value_spots(text)
    if not spots:
        return text
    at = c.choice(spots)
    return text[:at] + c.choice(TAGS) + " " + text[at:]


def _alias(text: str, c: Chooser) -> str:
    spots = _value_spots(text)
    if len(spots) < 2:
        return text
    first = c.integer(0, len(spots) - 2)
    second = c.integer(first + 1, len(spots) - 1)
    a, b = spots[first], spots[second]
    name = c.choice(["a", "b", "x"])
    alias = c.choice([f"*{name} ", "*undefined ", f"[*{name}, *{name}] "])
    return text[:a] + f"&{name} " + text[a:b] + alias + text[b:]


def _bomb(text: str, c: Chooser) -> str:
    levels, width = c.integer(1, 9), c.integer(1, 12)
    lines = [f"b0: &b0 [{', '.join(['x'] * width)}]"]
    lines += [f"b{i}: &b{i} [{', '.join([f'*b{i - 1}'] * width)}]" for i in range(1, levels)]
    if c.integer(0, 1):
        lines.append(f"r: &r [*r, {c.choice(['1', '*b0'])}]")
    return "\n".join(lines) + "\n" + text


def _line_op(text: str, c: Chooser) -> str:
    lines = text.splitlines(keepends=True)
    if not lines:
        return text
    at = c.integer(0, len(lines) - 1)
    op = c.choice(["duplicate", "drop", "indent", "dedent"])
    if op == "duplicate":
        lines.insert(at, lines[at])
    elif op == "drop":
        del lines[at]
    elif op == "indent":
        lines[at] = "  " + lines[at]
    else:
        lines[at] = lines[at].lstrip()
    return "".join(lines)


def _insert(text: str, c: Chooser) -> str:
    at = c.integer(0, len(text))
    return text[:at] + c.choice(CONTROL if c.integer(0, 1) else PIECES) + text[at:]


def _truncate(text: str, c: Chooser) -> str:
    return text[: c.integer(0, len(text))]


MUTATIONS = [_tag, _alias, _bomb, _line_op, _insert, _truncate]


def config_file(c: Chooser) -> bytes:
    """The bytes of a config file: a generated config as YAML, mutated, in some encoding."""
    mode = c.integer(0, 2)  # 0: a valid config; 1: a valid config mutated; 2: a wrong config mutated
    rendered = yaml.dump(
        clean_config(c) if mode < 2 else config(c),
        Dumper=yaml.CSafeDumper,  # the C emitter: generating must cost less than loading
        sort_keys=False,
        allow_unicode=bool(c.integer(0, 1)),
        default_flow_style=c.choice([False, None, True]),
    )
    for _ in range(0 if mode == 0 else c.integer(1, 3)):
        rendered = c.choice(MUTATIONS)(rendered, c)
    encoding = "utf-8" if mode == 0 else c.choice(ENCODINGS)
    raw = rendered.encode(encoding, errors="surrogatepass" if encoding.startswith("utf") else "replace")
    if raw and mode and c.integer(0, 19) == 0:  # a flipped byte
        at = c.integer(0, len(raw) - 1)
        raw = raw[:at] + bytes([raw[at] ^ c.integer(1, 255)]) + raw[at + 1 :]
    return raw


@st.composite
def config_files(draw: st.DrawFn) -> bytes:
    return config_file(Drawn(draw))


def random_config_file(seed: int) -> bytes:
    return config_file(Seeded(seed))
