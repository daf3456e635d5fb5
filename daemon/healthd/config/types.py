"""Small value types of the config: durations, names, HOST:PORT targets."""

from __future__ import annotations

import ipaddress
import math
import re
import warnings
from pathlib import Path
from typing import Annotated

from pydantic import (
    AfterValidator,
    BeforeValidator,
    JsonValue,
    PlainSerializer,
    StringConstraints,
    WithJsonSchema,
)

from healthd import files

_UNIT_SECONDS = {
    "w": 604_800.0,
    "d": 86_400.0,
    "h": 3600.0,
    "m": 60.0,
    "s": 1.0,
    "ms": 0.001,
    "us": 0.000_001,
    "µs": 0.000_001,
}
# Go/Prometheus style: one or more NUMBER UNIT parts, largest unit first (`1h30m`, `1m30s`, `14d`)
_PART = re.compile(r"(\d{1,15}(?:\.\d{1,9})?)(ms|us|µs|w|d|h|m|s)", re.ASCII)
_BARE = re.compile(r"^\d{1,15}(?:\.\d{1,9})?$", re.ASCII)
_MAX_TEXT = 64
_HINT = "use e.g. 250ms, 10s, 1m30s, 2h, 14d or a number of seconds"

#: the range every duration option takes unless it says otherwise
MIN_DURATION = 0.001
MAX_DURATION = 7 * 86_400.0
#: certificate lifetimes are counted in days
MAX_CERT_DURATION = 3650 * 86_400.0


def parse_duration(value: object) -> float:
    """`250ms`, `10s`, `1.5s`, `1m30s`, `2h`, `14d`, `1w` or a plain number of seconds -> seconds.

    Raises ValueError for anything else, including NaN and infinities.
    """
    if isinstance(value, bool):
        raise ValueError(f"a duration is a string with a unit or a number of seconds: {_HINT}")
    if isinstance(value, int):
        if abs(value) > 10**15:  # float() of a 400-digit integer overflows
            raise ValueError(f"a duration of {len(str(abs(value)))} digits is out of range")
        return float(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"duration {value} is not a finite number of seconds")
        return value
    if isinstance(value, str) and len(value) <= _MAX_TEXT:
        seconds = _parse_text(value.strip())
        if seconds is not None:
            return seconds
    shown = value if not isinstance(value, str) or len(value) <= _MAX_TEXT else value[:_MAX_TEXT] + "..."
    raise ValueError(f"invalid duration {shown!r}: {_HINT}")


def _parse_text(text: str) -> float | None:
    if _BARE.match(text):
        return float(text)
    total, pos, last_size = 0.0, 0, math.inf
    while pos < len(text):
        match = _PART.match(text, pos)
        if match is None:
            return None
        size = _UNIT_SECONDS[match.group(2)]
        if size >= last_size:  # units must shrink: `30s1m` or `1m1m` is a typo
            return None
        total += float(match.group(1)) * size
        pos, last_size = match.end(), size
    return total if pos else None


def format_duration(seconds: float) -> str:
    """The shortest readable form, e.g. 0.25 -> '250ms', 10.0 -> '10s', 90.0 -> '1m30s'."""
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    if seconds != int(seconds) or seconds < 60:
        return f"{seconds:g}s"
    out, left = "", int(seconds)
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)):
        if left >= size:
            out += f"{left // size}{unit}"
            left %= size
    return out


def _in_range(low: float, high: float) -> AfterValidator:
    def check(seconds: float) -> float:
        if not low <= seconds <= high:
            shown = format_duration(seconds) if seconds > 0 else f"{seconds:g}"
            raise ValueError(f"must be from {format_duration(low)} to {format_duration(high)}, not {shown}")
        return seconds

    return AfterValidator(check)


def _duration_schema(low: float, high: float) -> WithJsonSchema:
    return WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": DURATION_PATTERN},
                {"type": "number", "minimum": low, "maximum": high},
            ],
            "description": f"a duration from {format_duration(low)} to {format_duration(high)}: {_HINT}",
        }
    )


#: what `parse_duration` accepts as text, for the JSON Schema
DURATION_PATTERN = (
    r"^\s*(?=[^\s])(\d{1,15}(\.\d{1,9})?|(\d{1,15}(\.\d{1,9})?w)?(\d{1,15}(\.\d{1,9})?d)?(\d{1,15}(\.\d{1,9})?h)?"
    r"(\d{1,15}(\.\d{1,9})?m)?(\d{1,15}(\.\d{1,9})?s)?(\d{1,15}(\.\d{1,9})?ms)?(\d{1,15}(\.\d{1,9})?(us|µs))?)\s*$"
)


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    _in_range(MIN_DURATION, MAX_DURATION),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
    _duration_schema(MIN_DURATION, MAX_DURATION),
]

CertDuration = Annotated[
    float,
    BeforeValidator(parse_duration),
    _in_range(MIN_DURATION, MAX_CERT_DURATION),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
    _duration_schema(MIN_DURATION, MAX_CERT_DURATION),
]

#: longest regex a config may give
MAX_REGEX_CHARS = 4096


def compile_regex(pattern: str) -> re.Pattern[str]:
    """`re.compile`, with every way it can fail as a ValueError naming the reason."""
    if len(pattern) > MAX_REGEX_CHARS:
        raise ValueError(f"regex is {len(pattern)} characters, more than {MAX_REGEX_CHARS}")
    shown = repr(pattern) if len(pattern) <= 60 else repr(pattern[:60]) + "..."
    try:
        with warnings.catch_warnings():
            # e.g. "possible nested set": Python warns that the meaning will change
            warnings.simplefilter("error")
            return re.compile(pattern)
    except FutureWarning as exc:
        raise ValueError(f"ambiguous regex {shown}: {exc} (escape the character)") from None
    except re.error as exc:
        raise ValueError(f"invalid regex {shown}: {exc}") from None
    except RecursionError:  # the parser recurses once per nested group
        raise ValueError(f"invalid regex {shown}: nested too deeply") from None
    except OverflowError:  # a{99999999999999999999}
        raise ValueError(f"invalid regex {shown}: a repeat count is too large") from None


def _pem_file(path: Path) -> Path:
    files.check_file(path, files.MAX_PEM_BYTES)
    return path


def _secret_file(path: Path) -> Path:
    files.read_secret(path)
    return path


# regular files within a size cap; FIFOs and devices refused (see healthd.files)
PemFile = Annotated[Path, AfterValidator(_pem_file)]
SecretPath = Annotated[Path, AfterValidator(_secret_file)]


NAME_PATTERN = r"^[A-Za-z0-9_.-]+$"
Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN, max_length=128)]

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def label_names_schema(reserved: frozenset[str]) -> dict[str, JsonValue]:
    """The JSON Schema part that `check_label_names` enforces (for `healthd schema`)."""
    names: list[JsonValue] = [*sorted(reserved)]
    return {"propertyNames": {"pattern": "^(?!__)[a-zA-Z_][a-zA-Z0-9_]*$", "not": {"enum": names}}}


def check_label_names(labels: dict[str, str], reserved: frozenset[str]) -> dict[str, str]:
    """Prometheus label names, none of them one that healthd sets itself."""
    for key in labels:
        if not _LABEL_NAME.match(key) or key.startswith("__"):
            raise ValueError(f"label name {key!r} must match [a-zA-Z_][a-zA-Z0-9_]*")
        if key in reserved:
            raise ValueError(f"label name {key!r} is reserved")
    return labels


def split_host_port(value: str, allow_port_zero: bool = False) -> tuple[str, int]:
    """Split `HOST:PORT` / `[IPv6]:PORT`; raise ValueError with a readable reason.

    Port 0 ("any free port") makes sense only for a listening address.
    """
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError(f"{value!r} is not [IPv6]:PORT")
        port_text = rest[1:]
        try:
            ipaddress.IPv6Address(host.split("%")[0])
        except ValueError:
            raise ValueError(f"{host!r} in brackets is not an IPv6 address") from None
    else:
        host, sep, port_text = value.rpartition(":")
        if not sep or not host:
            raise ValueError(f"{value!r} is not HOST:PORT")
        if ":" in host:
            raise ValueError(f"{value!r}: write an IPv6 address in brackets, [addr]:port")
    lowest = 0 if allow_port_zero else 1
    if not port_text.isdigit() or not lowest <= int(port_text) < 65536:
        raise ValueError(f"port {port_text!r} is not a number from {lowest} to 65535")
    return host, int(port_text)


def _check_host_port(value: object) -> object:
    if isinstance(value, str):
        split_host_port(value)
    return value


#: HOST:PORT or [IPv6]:PORT, as far as a pattern can tell (the port's range is checked in code)
HOST_PORT_PATTERN = r"^(\[[^\[\]]+\]|[^:\[\]]+):[0-9]{1,5}$"
HostPort = Annotated[
    str, BeforeValidator(_check_host_port), WithJsonSchema({"type": "string", "pattern": HOST_PORT_PATTERN})
]
