"""YAML events -> the node graph, within hard bounds, without recursion.

Our own composer, fed by either parser's event stream (libyaml's through
`yaml.CSafeLoader`, or PyYAML's pure-Python one), so both paths refuse the
same documents with the same words at the same lines:

- nesting deeper than `MAX_DEPTH` (an explicit stack: a 100,000-level file
  cannot overflow the C stack as libyaml's own composer would);
- a document whose expanded size, counting every alias in full, passes
  `MAX_NODES` (each node's size is computed once, when it closes, and an
  alias adds its anchor's size: a "billion laughs" file costs microseconds);
- an alias to a node that is still open (`x: &x [*x]`);
- a key given twice in one mapping (naming both lines).

Every failure is a `YamlProblem(line, message)`; lines are 1-based.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Protocol

import yaml

#: deepest nesting of mappings and lists (a real config nests about 6 levels)
MAX_DEPTH = 64
#: nodes the document may expand to, counting every alias in full
MAX_NODES = 1_000_000

_MERGE = "tag:yaml.org,2002:merge"


class YamlProblem(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


class EventSource(Protocol):
    """What both loaders offer: their parser's events and their resolver."""

    def get_event(self) -> Any: ...

    def resolve(self, kind: type[yaml.Node], value: Any, implicit: Any) -> str: ...


@dataclass(slots=True)
class _Open:
    """A mapping or list being composed."""

    node: yaml.CollectionNode
    anchor: str | None
    size: int = 1
    key: yaml.Node | None = None  # a mapping's key waiting for its value
    keys: dict[Hashable, Any] | None = None  # a mapping's (tag, value) -> mark; None for a list


class Composer:
    """One document's node graph from `source`'s events; `lines` turns a mark into a line."""

    def __init__(self, source: EventSource, lines: Callable[[Any], int]) -> None:
        self._source = source
        self._lines = lines
        self._anchors: dict[str, yaml.Node] = {}
        self._sizes: dict[int, int] = {}  # id(collection node) -> expanded size, for aliases
        self._stack: list[_Open] = []
        self._open_anchors: set[str] = set()

    def single_document(self) -> yaml.Node | None:
        """The root node, or None for an empty stream. Raises YamlProblem, yaml.YAMLError."""
        get = self._source.get_event
        get()  # StreamStartEvent
        event = get()
        if isinstance(event, yaml.StreamEndEvent):
            return None
        root = self._document()
        get()  # DocumentEndEvent
        event = get()
        if not isinstance(event, yaml.StreamEndEvent):
            raise YamlProblem(self._lines(event.start_mark), "YAML syntax error: but found another document")
        return root

    def _document(self) -> yaml.Node:
        """Composes from the event after DocumentStart to the root's last event.

        One loop over events with an explicit stack (a reason for its length: the cases
        are the five event kinds, and splitting them costs a call per event)."""
        get, stack = self._source.get_event, self._stack
        while True:
            event = get()
            if isinstance(event, yaml.AliasEvent):
                node = self._alias(event)
            elif isinstance(event, yaml.ScalarEvent):
                tag = event.tag
                if tag is None or tag == "!":
                    tag = self._source.resolve(yaml.ScalarNode, event.value, event.implicit)
                start: Any = event.start_mark  # libyaml's Mark type or PyYAML's
                end: Any = event.end_mark
                node = yaml.ScalarNode(tag, event.value, start, end, event.style)
                self._register(event.anchor, node)
            elif isinstance(event, yaml.CollectionStartEvent):
                self._start(event)
                continue
            else:  # SequenceEndEvent or MappingEndEvent
                node = self._end(event)
            if not stack:
                return node
            self._attach(stack[-1], node)

    def _alias(self, event: Any) -> yaml.Node:
        anchor = event.anchor
        if anchor in self._open_anchors:
            raise YamlProblem(self._lines(event.start_mark), f"alias *{anchor} refers to itself")
        node = self._anchors.get(anchor)
        if node is None:
            line = self._lines(event.start_mark)
            raise YamlProblem(line, f"YAML syntax error: found undefined alias {anchor!r}")
        return node

    def _register(self, anchor: str | None, node: yaml.Node) -> None:
        if anchor is None:
            return
        first = self._anchors.get(anchor)
        if first is not None:
            raise YamlProblem(
                self._lines(node.start_mark),
                f"anchor &{anchor} is defined twice, first on line {self._lines(first.start_mark)}",
            )
        self._anchors[anchor] = node

    def _start(self, event: Any) -> None:
        if len(self._stack) >= MAX_DEPTH:
            raise YamlProblem(self._lines(event.start_mark), f"nested more than {MAX_DEPTH} levels deep")
        kind = yaml.MappingNode if isinstance(event, yaml.MappingStartEvent) else yaml.SequenceNode
        tag = event.tag
        if tag is None or tag == "!":
            tag = self._source.resolve(kind, None, event.implicit)
        node = kind(tag, [], event.start_mark, None, flow_style=event.flow_style)
        self._register(event.anchor, node)
        if event.anchor is not None:
            self._open_anchors.add(event.anchor)
        self._stack.append(_Open(node, event.anchor, keys={} if kind is yaml.MappingNode else None))

    def _end(self, event: Any) -> yaml.Node:
        done = self._stack.pop()
        done.node.end_mark = event.end_mark
        if done.anchor is not None:
            self._open_anchors.discard(done.anchor)
        self._sizes[id(done.node)] = done.size
        return done.node

    def _attach(self, parent: _Open, node: yaml.Node) -> None:
        parent.size += self._sizes.get(id(node), 1)  # only collections are in _sizes
        if parent.size > MAX_NODES:
            raise YamlProblem(
                self._lines(parent.node.start_mark),
                f"the document expands to more than {MAX_NODES:,} values (aliases count in full)",
            )
        if parent.keys is None:  # a list
            parent.node.value.append(node)
        elif parent.key is None:
            parent.key = node
            if isinstance(node, yaml.ScalarNode) and node.tag != _MERGE:
                key = (node.tag, node.value)  # `1:` and `"1":` are different keys
                first = parent.keys.get(key)
                if first is not None:
                    line, first_line = self._lines(node.start_mark), self._lines(first)
                    reason = f"key {short(node.value)} is given twice, first on line {first_line}"
                    raise YamlProblem(line, reason)
                parent.keys[key] = node.start_mark
        else:
            parent.node.value.append((parent.key, node))
            parent.key = None


def short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
