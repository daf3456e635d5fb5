"""Small value types of the config: durations, names, HOST:PORT targets."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated

from annotated_types import Gt
from pydantic import BeforeValidator, PlainSerializer, StringConstraints

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: object) -> float:
    """`250ms`, `10s`, `1.5s`, `2m`, `1h` or a plain number of seconds -> seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like '10s'")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    raise ValueError(f"invalid duration {value!r}: use a number of seconds or e.g. 250ms, 10s, 2m, 1h")


def format_duration(seconds: float) -> str:
    """The shortest readable form, e.g. 0.25 -> '250ms', 10.0 -> '10s'."""
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    for unit, size in (("h", 3600.0), ("m", 60.0)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    Gt(0),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
]

Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]+$", max_length=128)]

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


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


HostPort = Annotated[str, BeforeValidator(_check_host_port)]
