"""YAML text -> plain data plus the line of every key, with hard bounds on what a file may cost.

PyYAML's safe loader is extended, not replaced:

- nesting is capped (the composer and constructor recurse once per level);
- aliases are counted as what they expand to: a document whose expanded size
  passes `MAX_NODES` is refused as it is composed, so a 500-byte "billion
  laughs" file costs microseconds, not gigabytes;
- an alias to a node that is still being composed (`x: &x [*x]`) is refused;
- a key given twice in one mapping is an error naming both lines;
- any exception a scalar's constructor raises (`!!int 1.2.3.4`, `!!bool shop`,
  `2001-13-45`, a 5,000-digit integer) becomes an error at that scalar's line.

Every failure is a `YamlProblem(line, message)`; lines are 1-based.
"""

from __future__ import annotations

import bisect
from collections.abc import Hashable
from typing import Any

import yaml

PathKey = tuple[str | int, ...]

#: deepest nesting of mappings and lists (a real config nests about 6 levels)
MAX_DEPTH = 64
#: nodes the document may expand to, counting every alias in full
MAX_NODES = 1_000_000


class YamlProblem(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that keeps a running expanded size and the anchors being composed."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.lines = LineCounter(text)
        self._depth = 0
        self._open_anchors: list[str] = []
        self._sizes: dict[int, int] = {}

    def fetch_flow_collection_start(self, token_class: type[yaml.Token]) -> None:
        # the scanner looks ahead through `[[[[...` before the composer sees any depth
        if self.flow_level >= MAX_DEPTH:
            raise YamlProblem(self.lines(self.get_mark()), f"nested more than {MAX_DEPTH} levels deep")
        super().fetch_flow_collection_start(token_class)

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self._open_anchors:
                raise YamlProblem(self.lines(event.start_mark), f"alias *{event.anchor} refers to itself")
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise YamlProblem(self.lines(event.start_mark), f"nested more than {MAX_DEPTH} levels deep")
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            self._open_anchors.append(anchor)
        node = super().compose_node(parent, index)
        assert node is not None  # only an alias to an unknown anchor gives None, and that raises
        if anchor is not None:
            self._open_anchors.pop()
        self._depth -= 1
        self._count(node)
        return node

    def _count(self, node: yaml.Node) -> None:
        if isinstance(node, yaml.MappingNode):
            size = 1 + sum(self._sizes[id(k)] + self._sizes[id(v)] for k, v in node.value)
            _refuse_duplicate_keys(node, self.lines)
        elif isinstance(node, yaml.SequenceNode):
            size = 1 + sum(self._sizes[id(item)] for item in node.value)
        else:
            size = 1
        if size > MAX_NODES:
            raise YamlProblem(
                self.lines(node.start_mark),
                f"the document expands to more than {MAX_NODES:,} values (aliases count in full)",
            )
        self._sizes[id(node)] = size

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (yaml.YAMLError, YamlProblem):
            raise
        except Exception as exc:  # the constructors raise ValueError, KeyError, OverflowError...
            raise YamlProblem(self.lines(node.start_mark), _constructor_reason(node, exc)) from None


def _refuse_duplicate_keys(node: yaml.MappingNode, lines: LineCounter) -> None:
    first: dict[Hashable, int] = {}
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = (key_node.tag, key_node.value)  # `1:` and `"1":` are different keys
        line = lines(key_node.start_mark)
        if key in first:
            raise YamlProblem(line, f"key {_short(key[1])} is given twice, first on line {first[key]}")
        first[key] = line


def _constructor_reason(node: yaml.Node, exc: Exception) -> str:
    tag = node.tag.rsplit(":", 1)[-1] if node.tag.startswith("tag:yaml.org,2002:") else node.tag
    value = node.value if isinstance(node, yaml.ScalarNode) else ""
    detail = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
    return f"cannot read {_short(value)} as !!{tag}: {detail}"


def parse(text: str) -> tuple[Any, yaml.Node, LineCounter]:
    """The document's data, its root node and its line counter (for `line_of`). Raises YamlProblem."""
    try:
        loader = _BoundedLoader(text)  # the reader checks characters here already
    except yaml.reader.ReaderError as exc:
        raise YamlProblem(_reader_line(text, exc), f"YAML error: {_reader_reason(exc)}") from None
    try:
        node = loader.get_single_node()
        if node is None:
            raise YamlProblem(1, "the config is empty")
        return loader.construct_document(node), node, loader.lines
    except yaml.reader.ReaderError as exc:
        raise YamlProblem(_reader_line(text, exc), f"YAML error: {_reader_reason(exc)}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        raise YamlProblem(loader.lines(mark), f"YAML syntax error: {problem}") from None
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
        unusual = any(char in text for char in "\r\x85\u2028\u2029")
        self._newlines = [i for i, char in enumerate(text) if char == "\n"] if unusual else None

    def __call__(self, mark: Any) -> int:
        if mark is None:
            return 1
        if self._newlines is None:
            return int(mark.line) + 1
        return bisect.bisect_left(self._newlines, int(mark.index)) + 1


def _reader_line(text: str, exc: yaml.reader.ReaderError) -> int:
    position = exc.position if isinstance(exc.position, int) else 0
    return text.count("\n", 0, position) + 1


def _reader_reason(exc: yaml.reader.ReaderError) -> str:
    char = exc.character
    code = ord(char) if isinstance(char, str) else int(char)
    return f"control character U+{code:04X} is not allowed in YAML (write it as an escape in double quotes)"


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
