"""The two YAML parsers behind `yaml_source.parse` agree: same data, same errors, same lines.

libyaml (the default, when PyYAML has it) and PyYAML's pure-Python parser feed
the same composer, so every bound gives the same message at the same line on
both; a syntax error libyaml finds is worded by PyYAML's parser (up to
SAME_WORDS_BYTES), so that too reads the same.
"""

from __future__ import annotations

from typing import Any

import pytest
from healthd.config.yaml_compose import MAX_DEPTH
from healthd.config.yaml_source import LIBYAML, SAME_WORDS_BYTES, YamlProblem, parse

from tests.fuzz.configs import random_config_file
from tests.test_config_hardening import CASES, TCP, bomb

needs_libyaml = pytest.mark.skipif(LIBYAML is None, reason="this PyYAML has no libyaml")

SYNTAX = "YAML syntax error: "

# more bad YAML than the hardening table has: syntax, aliases, anchors, keys, documents
BAD: list[tuple[str, str]] = [
    ("unclosed flow list", "services: [\n"),
    ("unclosed flow mapping", "a: {b: 1\n"),
    ("tab indentation", "a:\n\t- 1\n"),
    ("bad indentation", "a:\n  b: 1\n c: 2\n"),
    ("mapping in a plain scalar", "a: b: c\n"),
    ("unterminated quote", 'a: "abc\n'),
    ("bad escape", 'a: "\\q"\n'),
    ("undefined alias", "a: *nope\n"),
    ("anchor defined twice", "a: &x 1\nb: &x 2\n"),
    ("anchor defined twice on a list", "a: &x [1]\nb: &x [2]\n"),
    ("two documents", "a: 1\n---\nb: 2\n"),
    ("only a comment", "# nothing\n"),
    ("empty", ""),
    ("duplicate key in flow", "{a: 1, a: 2}\n"),
    ("duplicate key nested", "a:\n  b: 1\n  c: 2\n  b: 3\n"),
    ("duplicate int key", "1: a\n'1': b\n1: c\n"),
    (
        "merge key twice is fine, a key twice is not",
        "base: &b {x: 1}\nc:\n  <<: *b\n  <<: *b\n  y: 1\n  y: 2\n",
    ),
    ("recursive alias deep inside", "a: &a\n  b:\n    c: [1, *a]\n"),
    ("block nesting past the cap", "".join(f"{' ' * i}k{i}:\n" for i in range(MAX_DEPTH + 2)) + "v: 1\n"),
    ("dash nesting past the cap", "- " * (MAX_DEPTH + 5) + "x\n"),
    ("flow nesting at the cap", "x: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + "\n"),
    ("flow nesting one past", "x: " + "[" * MAX_DEPTH + "]" * MAX_DEPTH + "\n"),
    ("bomb in a mapping", bomb(8).replace("[", "{k: [").replace("]", "]}")),
    ("CRLF lines", TCP.replace("\n", "\r\n") + "        colour: red\r\n"),
    ("lone CR lines", "a: 1\rb: 2\rb: 3\n"),
    ("NEL", "a: 1\x85b: 2\nb: 3\n"),
    ("BOM", "\ufeffa: 1\na: 2\n"),
    ("tag on a mapping", "a: !!str {b: 1}\n"),
    ("unknown tag", "a: !custom 1\n"),
    ("set", "a: !!set {x, y}\n"),
    ("timestamp", "a: 2001-12-14t21:59:43.10-05:00\n"),
    ("binary", "a: !!binary aGVsbG8=\n"),
    ("omap", "a: !!omap [x: 1, y: 2]\n"),
    ("merge of a list", "a: &a [1]\nb:\n  <<: *a\n"),
]


@needs_libyaml
@pytest.mark.parametrize(("text", "data"), [("{name?: x}\n", {"name?": "x"}), ("{a: b\tc}\n", {"a": "b\tc"})])
def test_libyaml_reads_what_pyyaml_refuses(text: str, data: Any) -> None:
    assert outcome(text, pure=False) == ("data", data)
    assert outcome(text, pure=True)[1][1] in LENIENT


def outcome(text: str, *, pure: bool) -> tuple[str, Any]:
    try:
        data, _, _ = parse(text, pure=pure)
    except YamlProblem as problem:
        return "error", (problem.line, problem.message)
    return "data", data


# what PyYAML's parser refuses and libyaml (as YAML 1.2 allows) reads: a tab inside a plain
# scalar, a `?` inside a flow key (`{name?: x}`); a file with one goes on to its next problem
LENIENT = (
    f"{SYNTAX}found character '\\t' that cannot start any token",
    f"{SYNTAX}expected ',' or '}}', but got '?'",
)


def assert_same(text: str) -> bool:
    """Both paths give the same data or the same error; False for a known leniency of libyaml."""
    fast, pure = outcome(text, pure=False), outcome(text, pure=True)
    if fast != pure and pure[0] == "error" and pure[1][1] in LENIENT:
        return False
    assert fast == pure, (text[:200], fast, pure)
    return True


@needs_libyaml
@pytest.mark.parametrize("text", [case[1] for case in CASES], ids=[case[0] for case in CASES])
def test_hardening_cases_agree(text: str) -> None:
    assert assert_same(text)


@needs_libyaml
@pytest.mark.parametrize("text", [case[1] for case in BAD], ids=[case[0] for case in BAD])
def test_bad_yaml_agrees(text: str) -> None:
    assert assert_same(text)


@needs_libyaml
def test_fuzz_corpus_agrees() -> None:
    """The config fuzzer's first cases (valid and not), decoded as the loader would."""
    compared = lenient = 0
    for seed in range(600):
        raw = random_config_file(seed)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            continue
        lenient += not assert_same(text)
        compared += 1
    assert compared > 500
    assert lenient <= compared // 100  # 6 of 1,891 in the first 2,000 seeds


@pytest.mark.parametrize("pure", [False, True], ids=["libyaml", "pure"])
@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("a: &x 1\nb: &x 2\n", 2, "anchor &x is defined twice, first on line 1"),
        ("a: *nope\n", 1, "YAML syntax error: found undefined alias 'nope'"),
        ("a: 1\n---\nb: 2\n", 2, "YAML syntax error: but found another document"),
        ("{a: 1, a: 2}\n", 1, "key 'a' is given twice, first on line 1"),
        ("a: 1\rb: 2\rb: 3\n", 1, "key 'b' is given twice, first on line 1"),  # a lone CR is no `\n`
        ("a: 1\r\nb: 2\r\nb: 3\r\n", 3, "key 'b' is given twice, first on line 2"),
        ("x: " + "[" * 100_000 + "]" * 100_000 + "\n", 1, f"nested more than {MAX_DEPTH} levels deep"),
    ],
)
def test_errors_and_lines(text: str, line: int, message: str, pure: bool) -> None:
    if not pure and LIBYAML is None:
        pytest.skip("this PyYAML has no libyaml")
    assert outcome(text, pure=pure) == ("error", (line, message))


@needs_libyaml
def test_a_big_file_keeps_libyamls_words() -> None:
    """Past SAME_WORDS_BYTES a syntax error is not parsed again: libyaml's words, libyaml's line."""
    text = "# padding\n" * (SAME_WORDS_BYTES // 10 + 1) + "services: [\n"
    line = text.count("\n") + 1
    assert outcome(text, pure=False) == ("error", (line, f"{SYNTAX}did not find expected node content"))
    small = outcome("services: [\n", pure=False)
    assert small == ("error", (2, f"{SYNTAX}expected the node content, but found '<stream end>'"))


def test_aliases_share_data_and_merge_keys_resolve() -> None:
    data, _, _ = parse("base: &b {x: 1, y: 2}\nc:\n  <<: *b\n  y: 3\nl: &l [1]\nm: *l\n")
    assert data == {"base": {"x": 1, "y": 2}, "c": {"x": 1, "y": 3}, "l": [1], "m": [1]}
    assert data["l"] is data["m"]
