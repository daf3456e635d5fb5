"""Where a config comes from: one file or a directory of them, `${VAR}`s, and file_sd targets.

A directory means every `*.yaml`/`*.yml` file in it (hidden ones skipped, so
a ConfigMap's `..data` does not count twice), in name order, merged:
services from all files, every other section at most once. The merged
document is validated as one whose lines run on from file to file, and each
error's line is then mapped back to its own file, so errors keep the
`FILE:LINE: path: reason` form.
"""

from __future__ import annotations

import bisect
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from healthd.config import discovery, env
from healthd.config.loader import Lines, PathKey, _parse_yaml, _read_text, build_config
from healthd.config.model import Config
from healthd.errors import ConfigError

_MERGED = "[merged]"  # the name the merged document is validated under, replaced afterwards
_SUFFIXES = (".yaml", ".yml")
_SERVICE_PATH = re.compile(r"^ services\[(\d+)\](?:\.checks\[(\d+)\])?")


@dataclass(frozen=True)
class Loaded:
    config: Config
    watched: tuple[Path, ...]  # config files and directories, discovery files: a change means reload


@dataclass
class _Merge:
    """The merged document and what it takes to map its lines back to files."""

    data: dict[str, Any] = field(default_factory=dict)
    lines: Lines = field(default_factory=lambda: {(): 1})  # of all but the services
    service_lines: list[Lines] = field(default_factory=list)  # each service's, below it
    starts: list[int] = field(default_factory=list)  # first merged line of each file
    files: list[Path] = field(default_factory=list)
    next_line: int = 1
    service_files: list[Path] = field(default_factory=list)  # by index in data["services"]
    local_index: list[int] = field(default_factory=list)  # ... and its index in that file
    templates: dict[int, list[int]] = field(default_factory=dict)  # service -> each check's template
    errors: list[str] = field(default_factory=list)

    def line(self, path: PathKey) -> int:
        if path[:1] == ("services",) and len(path) > 1 and isinstance(path[1], int):
            lines, rest = self.service_lines[path[1]], path[2:]
            while rest not in lines and rest:
                rest = rest[:-1]
            if rest in lines:
                return lines[rest]
            path = ("services",)
        while path not in self.lines and path:
            path = path[:-1]
        return self.lines.get(path, 1)

    def all_lines(self) -> Lines:
        lines = dict(self.lines)
        for index, below in enumerate(self.service_lines):
            lines.update({("services", index, *rest): line for rest, line in below.items()})
        return lines

    def report(self, path: PathKey, reason: str) -> None:
        self.errors.append(f"{_MERGED}:{self.line(path)}: {_dotted(path)}: {reason}")

    def locate(self, line: int) -> str:
        """`FILE:LINE` of a merged line."""
        index = max(bisect.bisect_right(self.starts, line) - 1, 0)
        return f"{self.files[index]}:{line - self.starts[index] + 1}"

    def relocate(self, error: str) -> str:
        if not error.startswith(_MERGED + ":"):
            return error
        _, line_text, rest = error.split(":", 2)
        return f"{self.locate(int(line_text))}:{_SERVICE_PATH.sub(self._file_path, rest)}"

    def _file_path(self, match: re.Match[str]) -> str:
        """The path as the file has it: its own service index, a check's template index."""
        service, check = int(match.group(1)), match.group(2)
        path = f" services[{self.local_index[service]}]"
        if check is not None:
            templates = self.templates.get(service)
            path += f".checks[{templates[int(check)] if templates else check}]"
        return path


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> Config:
    return load(path, environ).config


def load(path: str | Path, environ: Mapping[str, str] | None = None) -> Loaded:
    """Read, merge, expand, validate. Raises ConfigError listing every problem."""
    root = Path(path)
    files = _files_of(root)
    merge = _Merge()
    environ = os.environ if environ is None else environ
    for file in files:
        _add_file(merge, file, environ)
    watched = [root, *_discover(merge)]
    try:
        config = build_config(_MERGED, merge.data, merge.all_lines()) if not merge.errors else None
    except ConfigError as exc:
        merge.errors.extend(exc.errors)
        config = None
    if config is None:
        ordered = sorted(dict.fromkeys(merge.errors), key=_merged_line)
        # one template's mistake shows once, not once per target
        raise ConfigError(list(dict.fromkeys(merge.relocate(error) for error in ordered)))
    return Loaded(config, tuple(watched))


def _files_of(root: Path) -> list[Path]:
    if not root.is_dir():
        return [root]
    try:
        names = sorted(p for p in root.iterdir() if p.suffix in _SUFFIXES and not p.name.startswith("."))
    except OSError as exc:
        raise ConfigError([f"{root}: cannot list the directory: {exc.strerror}"]) from None
    files = [p for p in names if p.is_file()]
    if not files:
        raise ConfigError([f"{root}: no *.yaml files in the directory"])
    return files


def _add_file(merge: _Merge, file: Path, environ: Mapping[str, str]) -> None:
    try:
        text = _read_text(file)
        data, lines = _parse_yaml(str(file), text)
    except ConfigError as exc:
        merge.errors.extend(exc.errors)
        return
    offset = merge.next_line
    merge.starts.append(offset)
    merge.files.append(file)
    merge.next_line += text.count("\n") + 1
    if not isinstance(data, dict):
        merge.errors.append(f"{_MERGED}:{offset}: the config must be a mapping with a 'services' key")
        return
    local = _Merge()
    per_service: dict[int, Lines] = {}
    for path, line in lines.items():  # one pass: each service's lines apart, below it
        if path[:1] == ("services",) and len(path) > 1 and isinstance(path[1], int):
            per_service.setdefault(path[1], {})[path[2:]] = line + offset - 1
        else:
            local.lines[path] = line + offset - 1
    services = data.get("services")
    local.service_lines = (
        [per_service.get(i, {}) for i in range(len(services))] if isinstance(services, list) else []
    )
    data = env.expand(data, environ, local.report)
    merge.errors.extend(local.errors)
    for key, value in data.items():
        if key == "services":
            if isinstance(value, list):
                _add_services(merge, file, value, local.service_lines)
            else:
                local.report((key,), "must be a list of services")
                merge.errors.append(local.errors[-1])
        elif key in merge.data:
            first = merge.locate(merge.line((key,)))
            merge.errors.append(f"{_MERGED}:{local.lines[(key,)]}: {key}: already set at {first}")
        else:
            merge.data[key] = value
            merge.lines.update({p: line for p, line in local.lines.items() if p[:1] == (key,)})


def _add_services(merge: _Merge, file: Path, services: list[Any], lines: list[Lines]) -> None:
    listing = merge.data.setdefault("services", [])
    for local_index, service in enumerate(services):
        name = service.get("name") if isinstance(service, dict) else None
        if isinstance(name, str):
            first = _index_of(listing, name)
            if first is not None and merge.service_files[first] != file:
                # the same file's duplicates are the loader's to report
                where = merge.locate(merge.line(("services", first, "name")))
                line = lines[local_index].get(("name",), 1)
                merge.errors.append(
                    f"{merge.locate(line)}: services[{local_index}].name: "
                    f"duplicate service name {name!r}, first defined at {where}"
                )
                continue
        merge.service_lines.append(lines[local_index])
        listing.append(service)
        merge.service_files.append(file)
        merge.local_index.append(local_index)


def _index_of(services: list[Any], name: str) -> int | None:
    for index, service in enumerate(services):
        if isinstance(service, dict) and service.get("name") == name:
            return index
    return None


def _discover(merge: _Merge) -> list[Path]:
    """Replace each `targets_from` service's templates by its checks; the discovery files read."""
    read: list[Path] = []
    for index, service in enumerate(merge.data.get("services", [])):
        if not isinstance(service, dict) or "targets_from" not in service:
            continue
        source = service.pop("targets_from")
        where: PathKey = ("services", index, "targets_from")
        if not isinstance(source, dict) or set(source) != {"file"} or not isinstance(source["file"], str):
            merge.report(where, "must be {file: PATH} (a Prometheus file_sd file, JSON or YAML)")
            continue
        path = merge.service_files[index].parent / source["file"]
        read.append(path)
        try:
            targets = discovery.read_groups(path)
        except ConfigError as exc:
            merge.errors.extend(exc.errors)
            continue
        _replace_templates(merge, index, service, targets)
    return read


def _replace_templates(merge: _Merge, index: int, service: dict[str, Any], targets: list[Any]) -> None:
    templates = service.get("checks")
    if not isinstance(templates, list) or not templates:
        merge.report(("services", index, "checks"), "targets_from needs at least one check template")
        return

    problems: list[tuple[PathKey, str]] = []
    checks = discovery.expand_checks(templates, targets, lambda path, why: problems.append((path, why)))
    lines = merge.service_lines[index]
    template_lines: dict[int, Lines] = {}
    for path, line in list(lines.items()):
        if path[:1] == ("checks",) and len(path) > 1 and isinstance(path[1], int):
            template_lines.setdefault(path[1], {})[path[2:]] = line
            del lines[path]
    for new_index, (template_index, _) in enumerate(checks):  # a generated check has its template's lines
        for rest, line in template_lines.get(template_index, {}).items():
            lines[("checks", new_index, *rest)] = line
    service["checks"] = [check for _, check in checks]
    merge.templates[index] = [template_index for template_index, _ in checks]
    for path, reason in problems:  # reported now that the generated checks have lines
        merge.report(("services", index, *path), reason)


def _merged_line(error: str) -> int:
    parts = error.split(":")
    return int(parts[1]) if error.startswith(_MERGED) and parts[1].isdigit() else 1 << 40


def _dotted(path: PathKey) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out
