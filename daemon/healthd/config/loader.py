"""Load a YAML config into `Config`, reporting every mistake as `FILE:LINE: path: reason`.

The file is read with a size cap (`healthd.files`), parsed within hard bounds
(`yaml_source`), merged with `defaults:` and validated; pydantic's error
locations are walked back through the data to the YAML node's line. Nothing
but `ConfigError` leaves `load_config`.
"""

from __future__ import annotations

import contextlib
import gc
import pickle
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel, ValidationError

from healthd.config import messages
from healthd.config.checks import CHECK_MODELS, CheckBase
from healthd.config.messages import Problem
from healthd.config.model import Config
from healthd.config.yaml_source import LineCounter, PathKey, YamlProblem, line_of, parse
from healthd.errors import ConfigError
from healthd.files import MAX_CONFIG_BYTES, FileOptionError, read_file

# options a `defaults:` block may not set: they identify a check
_NOT_DEFAULTABLE = {"name", "type", "target", "url"}


class Lines:
    """Where each data path is written: the YAML nodes, plus paths copied from `defaults:`."""

    def __init__(self, root: yaml.Node | None = None, counter: LineCounter | None = None) -> None:
        self._root = root
        self._counter = counter or LineCounter("")
        self._copied: dict[PathKey, PathKey] = {}

    def copy(self, path: PathKey, source: PathKey) -> None:
        self._copied[path] = source

    def source(self, path: PathKey) -> PathKey:
        """The path as the user wrote it: a defaulted option is reported at `defaults.KEY`."""
        for size in range(len(path), 0, -1):
            origin = self._copied.get(path[:size])
            if origin is not None:
                return (*origin, *path[size:])
        return path

    def line(self, path: PathKey) -> int:
        if self._root is None:
            return 1
        return line_of(self._root, self.source(path), self._counter) or 1


def load_config(path: str | Path) -> Config:
    """Read, merge defaults, validate. Raises ConfigError listing every problem."""
    with gc_paused():
        data, lines, _ = read_document(path)
        return build_config(str(path), compacted(data), lines)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic GC while a config loads: a load allocates ~20 containers a check, and the
    collections that set off took ~40% of a 10,000-check load (measured). What it builds
    holds no cycles (recursive aliases are refused), so reference counting frees it."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def compacted(data: Any) -> Any:
    """A copy of parsed data in memory of its own, to build the models from.

    The parser allocates the data interleaved with its node tree (kept for line numbers); models
    built from it fill the holes between them, and once the tree and the data go, the allocator's
    arenas stay pinned by the models: 10,000 checks kept ~47 MB resident for ~15 MB live. Built
    from a copy made after the parse, the models sit in arenas apart and the parse's arenas are
    freed whole: ~28 MB (measured, docs/memory.md). Pickle is the fastest deep copy that also
    copies the strings (~25 ms for 10,000 checks); the bytes are ours, never read from outside.
    """
    return pickle.loads(pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL))


def read_document(path: str | Path) -> tuple[Any, Lines, int]:
    """One YAML file's data, where each path is written, and its number of lines. Raises ConfigError.

    Every config file goes through here (the size cap, the bounded parse), also each file of a
    config directory (`healthd.config.sources`).
    """
    name = str(path)
    text = read_text(path)
    try:
        data, root, counter = parse(text)
    except YamlProblem as problem:
        raise ConfigError(messages.render(name, [Problem(problem.line, problem.message)])) from None
    return data, Lines(root, counter), text.count("\n") + 1


def read_text(path: str | Path) -> str:
    """A config or discovery file's text, size-capped and UTF-8. Raises ConfigError."""
    try:
        return read_file(path, MAX_CONFIG_BYTES).decode("utf-8")
    except FileOptionError as exc:
        raise ConfigError([f"{path}: {exc.reason[:1].lower()}{exc.reason[1:]}"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})"]) from None


def locator(path: str | Path) -> Callable[[PathKey], str]:
    """`FILE:LINE: dotted.path` of a place in a config file, for warnings about a config that loaded.

    A config directory (several files merged) gets `DIR: dotted.path`, without a line.
    """
    name = str(path)
    if not Path(path).is_file():
        return lambda where: f"{name}: {messages.dotted(where)}"
    parsed: list[Lines] = []  # read at the first warning: most configs have none

    def locate(where: PathKey) -> str:
        if not parsed:
            parsed.append(read_document(path)[1])
        return f"{name}:{parsed[0].line(where)}: {messages.dotted(where)}"

    return locate


def build_config(name: str, data: Any, lines: Lines | None = None) -> Config:
    """Validate already-parsed data (used by `load_config` and by tests)."""
    lines = lines if lines is not None else Lines()
    if not isinstance(data, dict):
        raise ConfigError([f"{name}:1: the config must be a mapping with a 'services' key"])
    problems: list[Problem] = []
    data = _merge_defaults(data, lines, problems)
    problems.extend(_duplicate_names(data, lines))
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        problems.extend(_problem(data, lines, err) for err in exc.errors())
        config = None
    except RecursionError:  # data built by a caller without yaml_source's depth cap
        problems.append(Problem(1, "(top level): nested too deeply"))
        config = None
    if problems or config is None:
        raise ConfigError(messages.render(name, problems))
    return config


def _merge_defaults(data: dict[str, Any], lines: Lines, problems: list[Problem]) -> dict[str, Any]:
    """Copy `defaults` into every check that takes the option and does not set it.

    Builds new containers: a YAML alias may share one mapping between two places.
    """
    data = dict(data)
    defaults = data.pop("defaults", None) or {}
    if not isinstance(defaults, dict):
        problems.append(Problem(lines.line(("defaults",)), "defaults: must be a mapping"))
        return data
    problems.extend(_bad_defaults(defaults, lines))
    services = data.get("services")
    if not isinstance(services, list):
        return data
    # each type's options, looked up once: `model_fields` is a property, slow once per check
    fields = {name: frozenset(model.model_fields) for name, model in CHECK_MODELS.items()}
    data["services"] = [
        _service_with_defaults(si, service, defaults, lines, fields) for si, service in enumerate(services)
    ]
    return data


def _bad_defaults(defaults: Mapping[Any, Any], lines: Lines) -> Iterator[Problem]:
    known = _all_check_fields()
    for key in defaults:
        path: PathKey = ("defaults", str(key))
        if key in _NOT_DEFAULTABLE:
            yield Problem(lines.line(path), f"defaults.{key}: cannot be set in defaults")
        elif key not in known:
            hint = messages.did_you_mean(str(key), known - _NOT_DEFAULTABLE)
            yield Problem(lines.line(path), f"{messages.dotted(path)}: unknown option{hint}")


def _service_with_defaults(
    si: int, service: Any, defaults: Mapping[Any, Any], lines: Lines, fields: Mapping[str, frozenset[str]]
) -> Any:
    if not isinstance(service, dict) or not isinstance(service.get("checks"), list):
        return service
    checks = []
    for ci, check in enumerate(service["checks"]):
        if isinstance(check, dict):
            options = fields.get(str(check.get("type"))) or frozenset(CheckBase.model_fields)
            check = {"name": check.get("type"), **check}
            for key, value in defaults.items():
                if key in options and key not in _NOT_DEFAULTABLE and key not in check:
                    check[key] = value
                    lines.copy(("services", si, "checks", ci, key), ("defaults", key))
        checks.append(check)
    return {**service, "checks": checks}


def _all_check_fields() -> set[str]:
    return {field for model in CHECK_MODELS.values() for field in model.model_fields}


def _items(value: Any) -> Iterator[tuple[int, Any]]:
    return enumerate(value) if isinstance(value, list) else iter(())


def _duplicate_names(data: dict[str, Any], lines: Lines) -> Iterator[Problem]:
    seen_services: set[str] = set()
    for si, service in _items(data.get("services")):
        if not isinstance(service, dict):
            continue
        service_name = service.get("name")
        if isinstance(service_name, str):
            if service_name in seen_services:
                path: PathKey = ("services", si, "name")
                yield Problem(
                    lines.line(path), f"{messages.dotted(path)}: duplicate service name {service_name!r}"
                )
            seen_services.add(service_name)
        seen_checks: set[str] = set()
        for ci, check in _items(service.get("checks")):
            check_name = check.get("name") if isinstance(check, dict) else None
            if not isinstance(check_name, str):
                continue
            if check_name in seen_checks:
                path = ("services", si, "checks", ci, "name")
                yield Problem(
                    lines.line(path),
                    f"{messages.dotted(path)}: duplicate check name {check_name!r} in service "
                    f"{service_name!r} (name defaults to the type)",
                )
            seen_checks.add(check_name)


def _problem(data: Any, lines: Lines, err: Mapping[str, Any]) -> Problem:
    path = _data_path(data, err["loc"])
    loc = err["loc"]
    if err["type"] == "missing" and loc and isinstance(loc[-1], str):
        path = (*path, loc[-1])
    elif err["type"].startswith("union_tag"):
        path = (*path, "type")
    shown = lines.source(path)
    reason = messages.reason(err, path, _known_keys(data, path[:-1]))
    return Problem(lines.line(path), f"{messages.dotted(shown) or '(top level)'}: {reason}")


def _data_path(data: Any, loc: tuple[int | str, ...]) -> PathKey:
    """Follow pydantic's location through the data, skipping union tags (e.g. 'tcp')."""
    path: list[str | int] = []
    node = data
    for part in loc:
        in_mapping = isinstance(node, Mapping) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and part < len(node)
        if in_mapping or in_list:
            node = node[part]
        elif isinstance(node, Mapping) and node.get("type") == part:
            continue
        else:
            break
        path.append(part)
    return tuple(path)


def _known_keys(data: Any, path: PathKey) -> set[str]:
    """The options that the mapping at `path` takes, for "did you mean" hints."""
    annotation: Any = Config
    node: Any = data
    for part in path:
        if isinstance(part, str):  # `node` is the mapping that holds `part`
            model = _model_in(annotation, node)
            field = model.model_fields.get(part) if model is not None else None
            if field is None:
                return set()
            annotation = field.annotation
        node = _child(node, part)
    model = _model_in(annotation, node)
    if model is None:
        return set()
    return set(model.model_fields) | ({"defaults"} if model is Config else set())


def _child(node: Any, part: str | int) -> Any:
    if isinstance(node, dict):
        return node.get(part)
    if isinstance(node, list) and isinstance(part, int) and part < len(node):
        return node[part]
    return None


def _model_in(annotation: Any, node: Any) -> type[BaseModel] | None:
    """The model an annotation holds (through Optional, list, Annotated); a check by its type."""
    found: list[type[BaseModel]] = []
    pending = [annotation]
    while pending:
        item = pending.pop()
        if isinstance(item, type) and issubclass(item, BaseModel):
            found.append(item)
        else:
            pending.extend(get_args(item))
    if any(model in CHECK_MODELS.values() for model in found):
        check_type = node.get("type") if isinstance(node, dict) else None
        return CHECK_MODELS.get(str(check_type))
    return found[0] if len(found) == 1 else None
