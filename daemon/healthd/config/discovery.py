"""Targets from Prometheus `file_sd` files, turned into checks by a service's check templates.

A file_sd file (JSON, or YAML) is a list of target groups:

    [{"targets": ["10.0.0.1:443", "10.0.0.2:443"], "labels": {"zone": "a"}}]

A service with `targets_from: {file: PATH}` treats its `checks` as templates:
each template yields one check per target, its string options filled in
(`{{target}}`, `{{host}}`, `{{port}}`, `{{labels.NAME}}`), named from the
target unless the template names it, and carrying the group's labels
(Prometheus-internal `__*` labels dropped). A template without its target
option (`target`, `url`) gets `{{target}}`. A target listed twice keeps its
first group. Parsing is pure; `read_groups` is the one function that reads.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from healthd.config import messages
from healthd.config.checks import CHECK_MODELS
from healthd.config.loader import read_text
from healthd.config.messages import Problem
from healthd.config.yaml_source import PathKey, YamlProblem, parse
from healthd.errors import ConfigError

Report = Callable[[PathKey, str], None]

_PLACEHOLDER = re.compile(r"\{\{\s*([^}]*?)\s*\}\}")
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True)
class Target:
    address: str
    labels: dict[str, str]

    @property
    def values(self) -> dict[str, str]:
        host, sep, port = self.address.rpartition(":")
        if not sep or not port.isdigit():
            host, port = self.address, ""
        values = {"target": self.address, "host": host.strip("[]"), "port": port}
        values.update({f"labels.{name}": value for name, value in self.labels.items()})
        return values


def read_groups(path: Path) -> list[Target]:
    """The targets of one file_sd file. Raises ConfigError (`FILE[:LINE]: reason`).

    Read as a config file is: size-capped, YAML through the bounded parser; JSON
    with duplicate keys and too deep nesting refused as well.
    """
    text = read_text(path)
    if not text.strip():
        return []  # a tool with nothing to report may leave the file empty
    try:
        data = json.loads(text, object_pairs_hook=_unique_keys) if path.suffix == ".json" else parse(text)[0]
    except json.JSONDecodeError as exc:
        raise ConfigError([f"{path}:{exc.lineno}: JSON syntax error: {exc.msg}"]) from None
    except _DuplicateKey as exc:
        raise ConfigError([f"{path}: key {exc.key!r} is given twice"]) from None
    except RecursionError:
        raise ConfigError([f"{path}: nested too deeply"]) from None
    except YamlProblem as problem:
        raise ConfigError(messages.render(str(path), [Problem(problem.line, problem.message)])) from None
    return parse_groups(str(path), data)


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refused when a key repeats (YAML files get the same from the parser)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def parse_groups(name: str, data: Any) -> list[Target]:
    """Validate the file_sd structure; unique targets in file order."""
    if not isinstance(data, list):
        raise ConfigError([f"{name}: a file_sd file is a list of {{targets: [...], labels: {{...}}}}"])
    errors: list[str] = []
    targets: dict[str, Target] = {}
    for index, group in enumerate(data):
        if not isinstance(group, dict) or set(group) - {"targets", "labels"}:
            errors.append(f"{name}: [{index}]: expected only 'targets' and 'labels'")
            continue
        addresses, labels = group.get("targets", []), group.get("labels") or {}
        if not isinstance(addresses, list) or not all(isinstance(a, str) and a for a in addresses):
            errors.append(f"{name}: [{index}].targets: must be a list of non-empty strings")
            continue
        if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
            errors.append(f"{name}: [{index}].labels: must map label names to strings")
            continue
        kept = {str(k): v for k, v in labels.items() if not str(k).startswith("__")}
        for address in addresses:
            targets.setdefault(address, Target(address, kept))
    if errors:
        raise ConfigError(errors)
    return list(targets.values())


def expand_checks(templates: list[Any], targets: list[Target], report: Report) -> list[tuple[int, Any]]:
    """(template index, check) for every template and target, in target order.

    Problems are reported at the generated check's path (`checks[N]`, N counting generated checks).
    """
    checks: list[tuple[int, Any]] = []
    for target in targets:
        for index, template in enumerate(templates):
            if not isinstance(template, dict):
                checks.append((index, template))  # validation reports it
                continue
            checks.append((index, _fill(template, target, ("checks", len(checks)), report)))
    return checks


def _fill(template: dict[str, Any], target: Target, path: PathKey, report: Report) -> dict[str, Any]:
    model = CHECK_MODELS.get(str(template.get("type")))
    check = dict(template)
    if model is not None:
        check.setdefault(model.TARGET_FIELD, "{{target}}")
    check.setdefault("name", _UNSAFE_NAME.sub("_", target.address))
    filled: dict[str, Any] = _substitute(check, target.values, path, report)
    own = filled.get("labels")
    filled["labels"] = {**target.labels, **(own if isinstance(own, dict) else {})}
    return filled


def _substitute(node: Any, values: dict[str, str], path: PathKey, report: Report) -> Any:
    if isinstance(node, dict):
        return {k: _substitute(v, values, (*path, str(k)), report) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute(v, values, (*path, i), report) for i, v in enumerate(node)]
    if not isinstance(node, str) or "{{" not in node:
        return node

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in values:
            return values[name]
        if not name.startswith("labels."):
            report(path, f"unknown placeholder {{{{{name}}}}} (use target, host, port or labels.NAME)")
        return ""  # a label this target lacks is empty, as in Prometheus

    text = _PLACEHOLDER.sub(replace, node)
    if path[-1] == "name":  # a filled-in name must still be a valid check name
        text = _UNSAFE_NAME.sub("_", text)
    return text
