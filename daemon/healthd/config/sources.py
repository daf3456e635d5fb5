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
from healthd.config.loader import Lines, build_config, compacted, gc_paused, read_document
from healthd.config.messages import dotted
from healthd.config.model import Config
from healthd.config.yaml_source import PathKey
from healthd.errors import ConfigError

_MERGED = "[merged]"  # the name the merged document is validated under, replaced afterwards
_SUFFIXES = (".yaml", ".yml")
_SERVICE_PATH = re.compile(r"^ services\[(\d+)\](?:\.checks\[(\d+)\])?")


@dataclass(frozen=True)
class Loaded:
    config: Config
    watched: tuple[Path, ...]  # config files and directories, discovery files: a change means reload


@dataclass(frozen=True)
class _Source:
    """One file of the merged document: its lines, and where they start in the merged one."""

    path: Path
    lines: Lines
    start: int

    def line(self, path: PathKey) -> int:
        return self.start + self.lines.line(path) - 1


@dataclass
class _Merge:
    """The merged document and what it takes to map its lines back to files."""

    root: Path  # the config file or directory, named by an error at no line
    data: dict[str, Any] = field(default_factory=dict)
    sources: list[_Source] = field(default_factory=list)
    next_line: int = 1
    sections: dict[str, _Source] = field(default_factory=dict)  # top-level key -> its file
    services: list[tuple[_Source, int]] = field(default_factory=list)  # its file, its index there
    templates: dict[int, list[int]] = field(default_factory=dict)  # service -> each check's template
    errors: list[str] = field(default_factory=list)

    def line(self, path: PathKey) -> int:
        """The merged line of a merged path."""
        if path[:1] == ("services",) and len(path) > 1 and isinstance(path[1], int):
            source, local = self.services[path[1]]
            rest = path[2:]
            templates = self.templates.get(path[1])
            if templates and rest[:1] == ("checks",) and len(rest) > 1 and isinstance(rest[1], int):
                rest = ("checks", templates[rest[1]], *rest[2:])  # a generated check: its template
            return source.line(("services", local, *rest))
        section = self.sections.get(str(path[0])) if path else None
        return section.line(path) if section is not None else 1

    def report(self, path: PathKey, reason: str) -> None:
        self.errors.append(f"{_MERGED}:{self.line(path)}: {dotted(path)}: {reason}")

    def locate(self, line: int) -> str:
        """`FILE:LINE` of a merged line."""
        starts = [source.start for source in self.sources]
        source = self.sources[max(bisect.bisect_right(starts, line) - 1, 0)]
        return f"{source.path}:{line - source.start + 1}"

    def relocate(self, error: str) -> str:
        if not error.startswith(_MERGED + ":"):
            return error
        line_text, _, rest = error.removeprefix(_MERGED + ":").partition(":")
        if not line_text.isdigit():  # about the whole config, e.g. "... and 200 more problems"
            return f"{self.root}:{error.removeprefix(_MERGED + ':')}"
        return f"{self.locate(int(line_text))}:{_SERVICE_PATH.sub(self._file_path, rest)}"

    def _file_path(self, match: re.Match[str]) -> str:
        """The path as the file has it: its own service index, a check's template index."""
        service, check = int(match.group(1)), match.group(2)
        path = f" services[{self.services[service][1]}]"
        if check is not None:
            templates = self.templates.get(service)
            path += f".checks[{templates[int(check)] if templates else check}]"
        return path


class _MergedLines(Lines):
    """What the loader asks of lines, answered from the merge."""

    def __init__(self, merge: _Merge) -> None:
        super().__init__()
        self._merge = merge

    def line(self, path: PathKey) -> int:
        return self._merge.line(self.source(path))


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> Config:
    return load(path, environ).config


def load(path: str | Path, environ: Mapping[str, str] | None = None) -> Loaded:
    """Read, merge, expand, validate. Raises ConfigError listing every problem."""
    with gc_paused():
        return _load(Path(path), os.environ if environ is None else environ)


def _load(root: Path, environ: Mapping[str, str]) -> Loaded:
    merge = _Merge(root)
    for file in _files_of(root):
        _add_file(merge, file, environ)
    watched = [root, *_discover(merge)]
    config = None
    if not merge.errors:
        try:
            config = build_config(_MERGED, compacted(merge.data), _MergedLines(merge))
        except ConfigError as exc:
            merge.errors.extend(exc.errors)
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
        data, lines, count = read_document(file)
    except ConfigError as exc:
        merge.errors.extend(exc.errors)
        return
    source = _Source(file, lines, merge.next_line)
    merge.sources.append(source)
    merge.next_line += count
    if not isinstance(data, dict):
        merge.errors.append(f"{_MERGED}:{source.start}: the config must be a mapping with a 'services' key")
        return

    def report(path: PathKey, reason: str) -> None:
        merge.errors.append(f"{_MERGED}:{source.line(path)}: {dotted(path)}: {reason}")

    data = env.expand(data, environ, report)
    for key, value in data.items():
        if key == "services":
            if isinstance(value, list):
                _add_services(merge, source, value)
            else:
                report((key,), "must be a list of services")
        elif key in merge.sections:
            first = merge.locate(merge.line((key,)))
            merge.errors.append(f"{_MERGED}:{source.line((key,))}: {key}: already set at {first}")
        else:
            merge.data[key] = value
            merge.sections[key] = source


def _add_services(merge: _Merge, source: _Source, services: list[Any]) -> None:
    listing = merge.data.setdefault("services", [])
    merge.sections.setdefault("services", source)
    for local_index, service in enumerate(services):
        name = service.get("name") if isinstance(service, dict) else None
        first = _index_of(listing, name) if isinstance(name, str) else None
        if first is not None and merge.services[first][0] is not source:
            # the same file's duplicates are the loader's to report
            where = merge.locate(merge.line(("services", first, "name")))
            line = source.line(("services", local_index, "name"))
            merge.errors.append(
                f"{merge.locate(line)}: services[{local_index}].name: "
                f"duplicate service name {name!r}, first defined at {where}"
            )
            continue
        listing.append(service)
        merge.services.append((source, local_index))


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
        path = merge.services[index][0].path.parent / source["file"]
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
    service["checks"] = [check for _, check in checks]
    merge.templates[index] = [template_index for template_index, _ in checks]
    for path, reason in problems:  # reported now that the generated checks map to their templates
        merge.report(("services", index, *path), reason)


def _merged_line(error: str) -> int:
    parts = error.split(":")
    return int(parts[1]) if error.startswith(_MERGED) and parts[1].isdigit() else 1 << 40
