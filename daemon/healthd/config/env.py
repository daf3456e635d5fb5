"""`${VAR}` in config values: replaced by the environment variable, an unset one is an error.

`$${` stands for a literal `${`. Only string values are expanded (keys are
not): a whole-value `${PORT}` becomes the text "8080", which the models then
read as the number they expect. Pure: the environment is passed in.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

PathKey = tuple[str | int, ...]
Report = Callable[[PathKey, str], None]

_REFERENCE = re.compile(r"\$\$\{|\$\{([^}]*)\}")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def expand(data: Any, environ: Mapping[str, str], report: Report) -> Any:
    """A copy of `data` with every `${VAR}` replaced; each problem goes to `report(path, reason)`."""
    return _walk(data, (), environ, report)


def _walk(node: Any, path: PathKey, environ: Mapping[str, str], report: Report) -> Any:
    if isinstance(node, dict):
        return {key: _walk(value, (*path, str(key)), environ, report) for key, value in node.items()}
    if isinstance(node, list):
        return [_walk(item, (*path, index), environ, report) for index, item in enumerate(node)]
    if isinstance(node, str) and "$" in node:
        return _expand_text(node, path, environ, report)
    return node


def _expand_text(text: str, path: PathKey, environ: Mapping[str, str], report: Report) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:  # `$${`
            return "${"
        if not _NAME.match(name):
            report(path, f"${{{name}}} is not a valid environment variable reference")
        elif name not in environ:
            report(path, f"environment variable {name} is not set (write $${{ for a literal ${{)")
        else:
            return environ[name]
        return match.group(0)

    return _REFERENCE.sub(replace, text)
