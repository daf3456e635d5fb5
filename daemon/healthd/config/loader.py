"""Load a YAML config into `Config`, reporting every mistake as `FILE:LINE: path: reason`.

YAML is composed into nodes first so that each key and list item keeps its
line; pydantic's error locations are then walked back through the data to
the nearest line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from healthd.config.checks import CHECK_MODELS, CheckBase
from healthd.config.model import Config
from healthd.errors import ConfigError

PathKey = tuple[str | int, ...]
Lines = dict[PathKey, int]

# options a `defaults:` block may not set: they identify a check
_NOT_DEFAULTABLE = {"name", "type", "target", "url"}


def load_config(path: str | Path) -> Config:
    """Read, merge defaults, validate. Raises ConfigError listing every problem."""
    name = str(path)
    text = _read_text(Path(path))
    data, lines = _parse_yaml(name, text)
    return build_config(name, data, lines)


def locator(path: str | Path) -> Callable[[PathKey], str]:
    """`FILE:LINE: dotted.path` of a place in a config file, for warnings about a config that loaded.

    A config directory (several files merged) gets `DIR: dotted.path`, without a line.
    """
    name = str(path)
    if not Path(path).is_file():
        return lambda where: f"{name}: {_dotted(where)}"
    _, lines = _parse_yaml(name, _read_text(Path(path)))
    return lambda where: f"{name}:{_line(lines, where)}: {_dotted(where)}"


def build_config(name: str, data: Any, lines: Lines | None = None) -> Config:
    """Validate already-parsed data (used by `load_config` and by tests)."""
    lines = lines if lines is not None else {}
    if not isinstance(data, dict):
        raise ConfigError([f"{name}:1: the config must be a mapping with a 'services' key"])
    errors: list[str] = []
    data = _merge_defaults(name, data, lines, errors)
    errors.extend(_duplicate_names(name, data, lines))
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        errors.extend(_format_error(name, data, lines, err) for err in exc.errors())
        config = None
    if errors:
        raise ConfigError(sorted(_unique(errors), key=_line_number))
    assert config is not None
    return config


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}: no such file"]) from None
    except IsADirectoryError:
        raise ConfigError([f"{path}: is a directory, expected a YAML file"]) from None
    except PermissionError:
        raise ConfigError([f"{path}: permission denied"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not UTF-8 text ({exc.reason})"]) from None


def _parse_yaml(name: str, text: str) -> tuple[Any, Lines]:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise ConfigError([f"{name}:1: the config is empty"])
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise ConfigError([f"{name}:{line}: YAML syntax error: {exc.problem}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{name}:1: YAML error: {exc}"]) from None
    finally:
        loader.dispose()
    lines: Lines = {(): node.start_mark.line + 1}
    _record_lines(node, (), lines)
    return data, lines


def _record_lines(node: yaml.Node, path: PathKey, lines: Lines) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key_path = (*path, str(key_node.value))
            lines[key_path] = key_node.start_mark.line + 1
            _record_lines(value_node, key_path, lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*path, index)] = item.start_mark.line + 1
            _record_lines(item, (*path, index), lines)


def _all_check_fields() -> set[str]:
    return {field for model in CHECK_MODELS.values() for field in model.model_fields}


def _merge_defaults(name: str, data: dict[str, Any], lines: Lines, errors: list[str]) -> dict[str, Any]:
    """Copy `defaults` into every check that takes the option and does not set it."""
    data = dict(data)
    defaults = data.pop("defaults", None) or {}
    if not isinstance(defaults, dict):
        errors.append(f"{name}:{_line(lines, ('defaults',))}: defaults: must be a mapping")
        return data
    known = _all_check_fields()
    for key in defaults:
        if key in _NOT_DEFAULTABLE or key not in known:
            reason = "cannot be set in defaults" if key in _NOT_DEFAULTABLE else "unknown option"
            errors.append(f"{name}:{_line(lines, ('defaults', key))}: defaults.{key}: {reason}")
    for si, service in _items(data.get("services")):
        for ci, check in _items(service.get("checks") if isinstance(service, dict) else None):
            if not isinstance(check, dict):
                continue
            model = CHECK_MODELS.get(str(check.get("type")), CheckBase)
            merged = dict(check)
            merged.setdefault("name", check.get("type"))
            for key, value in defaults.items():
                if key in model.model_fields and key not in _NOT_DEFAULTABLE and key not in check:
                    merged[key] = value
                    lines[("services", si, "checks", ci, key)] = _line(lines, ("defaults", key))
            service["checks"][ci] = merged
    return data


def _items(value: Any) -> Iterator[tuple[int, Any]]:
    return enumerate(value) if isinstance(value, list) else iter(())


def _duplicate_names(name: str, data: dict[str, Any], lines: Lines) -> Iterator[str]:
    seen_services: set[str] = set()
    for si, service in _items(data.get("services")):
        if not isinstance(service, dict):
            continue
        service_name = service.get("name")
        if isinstance(service_name, str):
            if service_name in seen_services:
                path: PathKey = ("services", si, "name")
                yield f"{name}:{_line(lines, path)}: {_dotted(path)}: duplicate service name {service_name!r}"
            seen_services.add(service_name)
        seen_checks: set[str] = set()
        for ci, check in _items(service.get("checks")):
            check_name = check.get("name") if isinstance(check, dict) else None
            if not isinstance(check_name, str):
                continue
            if check_name in seen_checks:
                path = ("services", si, "checks", ci, "name")
                yield (
                    f"{name}:{_line(lines, path)}: {_dotted(path)}: duplicate check name "
                    f"{check_name!r} in service {service_name!r} (name defaults to the type)"
                )
            seen_checks.add(check_name)


def _format_error(name: str, data: Any, lines: Lines, err: ErrorDetails) -> str:
    path = _data_path(data, err["loc"])
    missing_key = err["type"] == "missing" and err["loc"] and isinstance(err["loc"][-1], str)
    if missing_key:
        path = (*path, err["loc"][-1])
    elif err["type"].startswith("union_tag"):
        path = (*path, "type")
    return f"{name}:{_line(lines, path)}: {_dotted(path) or '(top level)'}: {_reason(err)}"


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


def _reason(err: ErrorDetails) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown option"
    if kind == "missing":
        return "required option missing"
    if kind == "union_tag_invalid":
        tag = (err.get("ctx") or {}).get("tag")
        return f"unknown check type {tag!r} (expected one of {', '.join(CHECK_MODELS)})"
    if kind == "union_tag_not_found":
        return f"'type' is required (one of {', '.join(CHECK_MODELS)})"
    message = err["msg"]
    return message.removeprefix("Value error, ").removeprefix("Assertion failed, ")


def _line(lines: Lines, path: PathKey) -> int:
    while path not in lines and path:
        path = path[:-1]
    return lines.get(path, 1)


def _dotted(path: PathKey) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _line_number(error: str) -> int:
    parts = error.split(":")
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


def _unique(errors: list[str]) -> list[str]:
    return list(dict.fromkeys(errors))
