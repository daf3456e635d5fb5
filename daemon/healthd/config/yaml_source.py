"""YAML text -> plain data plus the line of every key, with hard bounds on what a file may cost.

libyaml parses (`yaml.CSafeLoader`; a whole load is ~10x faster than with
PyYAML's pure-Python scanner) when PyYAML has it, else PyYAML's own parser;
either way the events go through our composer (`yaml_compose`: nesting,
expanded size, recursive aliases, duplicate keys, without recursion), then
PyYAML's safe constructor, guarded:

- a character YAML does not allow is refused before parsing, by one regex, so
  both parsers give the same error;
- any exception a scalar's constructor raises (`!!int 1.2.3.4`, `!!bool shop`,
  `2001-13-45`, a 5,000-digit integer) becomes an error at that scalar's line;
- a syntax error libyaml finds is reported as PyYAML's parser words it (the
  file is parsed again, up to `SAME_WORDS_BYTES`), so an error reads the same
  with or without libyaml. libyaml reads a tab inside a plain scalar and a `?`
  inside a flow key, which PyYAML's parser refuses (YAML 1.2 allows both).

Every failure is a `YamlProblem(line, message)`; lines are 1-based.
"""

from __future__ import annotations

import bisect
import re
from typing import Any

import yaml

from healthd.config.yaml_compose import MAX_DEPTH, MAX_NODES, Composer, YamlProblem, short

__all__ = ["MAX_DEPTH", "MAX_NODES", "LineCounter", "PathKey", "YamlProblem", "line_of", "parse"]

PathKey = tuple[str | int, ...]

#: libyaml's loader, when this PyYAML was built with it
LIBYAML: type[yaml.CSafeLoader] | None = yaml.CSafeLoader if yaml.__with_libyaml__ else None

#: a file libyaml refuses is parsed again by PyYAML's parser for the same words, up to this size
#: (PyYAML takes about 1 s for 100 KiB; a large generated file keeps libyaml's words)
SAME_WORDS_BYTES = 256 * 1024

_LINE_BREAKS_NOT_NEWLINE = re.compile("\r(?!\n)|[\x85\u2028\u2029]")


class _PureLoader(yaml.SafeLoader):
    def __init__(self, text: str, lines: LineCounter) -> None:
        super().__init__(text)
        self.lines = lines

    def fetch_flow_collection_start(self, token_class: type[yaml.Token]) -> None:
        # the scanner looks ahead through `[[[[...` before the composer sees any depth
        if self.flow_level >= MAX_DEPTH:
            raise YamlProblem(self.lines(self.get_mark()), f"nested more than {MAX_DEPTH} levels deep")
        super().fetch_flow_collection_start(token_class)


def _construct(loader: yaml.SafeLoader | yaml.CSafeLoader, node: yaml.Node, lines: LineCounter) -> Any:
    """The document's data; a constructor's exception becomes a YamlProblem at its node's line.

    The constructor keeps the nodes it is inside of in `recursive_objects` (in order, and
    left there when an exception passes): the last one is the node that failed. One `try`
    around the document, not one per node: the per-node wrapper took ~15% of a load."""
    try:
        return loader.construct_document(node)
    except (yaml.YAMLError, YamlProblem, RecursionError):
        raise
    except Exception as exc:  # the constructors raise ValueError, KeyError, OverflowError...
        failed = next(reversed(loader.recursive_objects), node)
        raise YamlProblem(lines(failed.start_mark), _constructor_reason(failed, exc)) from None


def _constructor_reason(node: yaml.Node, exc: Exception) -> str:
    tag = node.tag.rsplit(":", 1)[-1] if node.tag.startswith("tag:yaml.org,2002:") else node.tag
    value = node.value if isinstance(node, yaml.ScalarNode) else ""
    detail = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
    return f"cannot read {short(value)} as !!{tag}: {detail}"


def parse(text: str, *, pure: bool = False) -> tuple[Any, yaml.Node, LineCounter]:
    """The document's data, its root node and its line counter (for `line_of`). Raises YamlProblem.

    `pure` uses PyYAML's Python parser even when libyaml is there (for tests). A file that
    libyaml finds a syntax error in is parsed again by PyYAML's, up to `SAME_WORDS_BYTES`,
    so that the error reads the same with or without libyaml."""
    if LIBYAML is None or pure or len(text) > SAME_WORDS_BYTES:
        return _parse(text, pure=pure)
    try:
        return _parse(text, pure=False)
    except _SyntaxProblem:
        return _parse(text, pure=True)


class _SyntaxProblem(YamlProblem):
    """A parser's syntax error (the composer's own problems are the same on both paths)."""


def _parse(text: str, *, pure: bool) -> tuple[Any, yaml.Node, LineCounter]:
    lines = LineCounter(text)
    _refuse_characters(text)
    try:
        fast = LIBYAML is not None and not pure
        loader: _PureLoader | yaml.CSafeLoader = yaml.CSafeLoader(text) if fast else _PureLoader(text, lines)
    except yaml.reader.ReaderError as exc:  # behind `_refuse_characters`
        raise YamlProblem(_reader_line(text, exc), f"YAML error: {exc.reason}") from None
    try:
        node = Composer(loader, lines).single_document()
        if node is None:
            raise YamlProblem(1, "the config is empty")
        return _construct(loader, node, lines), node, lines
    except yaml.reader.ReaderError as exc:
        raise YamlProblem(_reader_line(text, exc), f"YAML error: {exc.reason}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        if problem == "exceeded maximum nesting depth":  # libyaml's scanner, looking ahead past ours
            raise _SyntaxProblem(lines(mark), f"nested more than {MAX_DEPTH} levels deep") from None
        raise _SyntaxProblem(lines(mark), f"YAML syntax error: {problem}") from None
    except yaml.YAMLError as exc:
        raise YamlProblem(1, f"YAML error: {str(exc).splitlines()[0][:200]}") from None
    except RecursionError:  # a guard behind MAX_DEPTH, should a PyYAML path recurse otherwise
        raise YamlProblem(1, "the document is nested too deeply") from None
    except YamlProblem:
        raise
    except Exception as exc:  # PyYAML's constructors raise more than YAMLError; none may escape
        raise YamlProblem(1, f"YAML error: {type(exc).__name__}: {str(exc)[:200]}") from None
    finally:
        loader.dispose()


def _refuse_characters(text: str) -> None:
    """The characters YAML does not allow, as PyYAML's reader defines them (libyaml agrees)."""
    found = yaml.reader.Reader.NON_PRINTABLE.search(text)
    if found is not None:
        code = ord(found.group())
        raise YamlProblem(
            text.count("\n", 0, found.start()) + 1,
            f"YAML error: control character U+{code:04X} is not allowed in YAML "
            "(write it as an escape in double quotes)",
        )


def line_of(root: yaml.Node, path: PathKey, lines: LineCounter) -> int | None:
    """The line of the deepest node on `path` (a key's line for a mapping entry)."""
    node, line = root, lines(root.start_mark)
    for part in path:
        child = _child(node, part, lines)
        if child is None:
            break
        line, node = child
    return line


def _child(node: yaml.Node, part: str | int, lines: LineCounter) -> tuple[int, yaml.Node] | None:
    if isinstance(node, yaml.MappingNode):
        # after construction merged `<<` entries come first: the last match is the one in force
        for key_node, value_node in reversed(node.value):
            if isinstance(key_node, yaml.ScalarNode) and str(key_node.value) == str(part):
                return lines(key_node.start_mark), value_node
    elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
        item = node.value[part]
        return lines(item.start_mark), item
    return None


class LineCounter:
    """A mark's 1-based line as editors and `grep -n` count it: by `\\n` only.

    YAML also breaks lines at a lone CR, NEL, U+2028 and U+2029; a file with
    those would otherwise get line numbers past its last line.
    """

    def __init__(self, text: str) -> None:
        # CRLF is one break for YAML and one `\n` for editors: only a lone CR and the rest differ
        unusual = _LINE_BREAKS_NOT_NEWLINE.search(text) is not None
        self._newlines = [m.start() for m in re.finditer("\n", text)] if unusual else None

    def __call__(self, mark: Any) -> int:
        if mark is None:
            return 1
        if self._newlines is None:
            return int(mark.line) + 1
        return bisect.bisect_left(self._newlines, int(mark.index)) + 1


def _reader_line(text: str, exc: yaml.reader.ReaderError) -> int:
    position = exc.position if isinstance(exc.position, int) else 0
    return text.count("\n", 0, position) + 1
