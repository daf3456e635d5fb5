"""Options every check takes, and the HOST:PORT target of the TCP-family checks."""

from __future__ import annotations

from collections.abc import Iterator
from functools import cached_property
from ipaddress import IPv4Address, IPv6Address
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from healthd.config.types import (
    Duration,
    HostPort,
    Name,
    check_label_names,
    format_duration,
    label_names_schema,
    split_host_port,
)

IpFamily = Literal["auto", "ipv4", "ipv6"]
# labels healthd puts on per-check series itself
_RESERVED_LABELS = frozenset({"service", "check", "type", "target", "le", "result", "to", "phase"})


class CheckBase(BaseModel):
    """Options every check takes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: the option that names what is probed (`healthd probe TYPE TARGET` fills it)
    TARGET_FIELD: ClassVar[str] = "target"

    name: Name
    type: str
    interval: Duration = 10.0
    timeout: Duration = 2.0
    rise: int = Field(2, ge=1, le=100)
    fall: int = Field(3, ge=1, le=100)
    history: int = Field(120, ge=1, le=10_000)
    #: used while the check is between states (failing but not yet down, or recovering)
    transition_interval: Duration | None = None
    #: used while the check is down (and not recovering)
    down_interval: Duration | None = None
    source_ip: IPv4Address | IPv6Address | None = None
    interface: str | None = Field(None, min_length=1, max_length=15)
    ip_family: IpFamily = "auto"
    labels: dict[str, str] = Field(  # on this check's series (file_sd sets them)
        default_factory=dict, json_schema_extra=label_names_schema(_RESERVED_LABELS)
    )

    @field_validator("labels")
    @classmethod
    def _labels_are_prometheus_names(cls, labels: dict[str, str]) -> dict[str, str]:
        return check_label_names(labels, _RESERVED_LABELS)

    @model_validator(mode="after")
    def _timeout_within_interval(self) -> CheckBase:
        for name in ("interval", "transition_interval", "down_interval"):
            interval = getattr(self, name)
            if interval is not None and self.timeout > interval:
                raise ValueError(
                    f"timeout {format_duration(self.timeout)} exceeds {name} {format_duration(interval)}"
                )
        if self.source_ip is not None and self.ip_family != "auto":
            wanted = 4 if self.ip_family == "ipv4" else 6
            if self.source_ip.version != wanted:
                raise ValueError(f"source_ip {self.source_ip} is not {self.ip_family}")
        return self

    @property
    def display_target(self) -> str:
        """What the API and the metrics' `target` label show for this check."""
        raise NotImplementedError

    @cached_property  # found once per check, not walked again for every failed run
    def secrets(self) -> tuple[str, ...]:
        """Every secret in this check's config, to redact from its messages."""
        return tuple(secret_values(self))


class HostPortCheck(CheckBase):
    """A check aimed at `HOST:PORT`."""

    target: HostPort

    # Parsed once, on first use: probes read them on every run. (Not pydantic private
    # attributes: reading one of those costs ~3 µs, a cached property ~0.1 µs.)
    @cached_property
    def host(self) -> str:
        return split_host_port(self.target)[0]

    @cached_property
    def port(self) -> int:
        return split_host_port(self.target)[1]

    @property
    def display_target(self) -> str:
        return self.target


def secret_values(value: object, depth: int = 0) -> Iterator[str]:
    """Every secret (`SecretStr`) in a check's config, to redact from its messages."""
    if depth > 8:  # configs are shallow; the bound only guards the recursion
        return
    if isinstance(value, SecretStr):
        yield value.get_secret_value()
    elif isinstance(value, BaseModel):
        for item in vars(value).values():
            yield from secret_values(item, depth + 1)
    elif isinstance(value, dict):
        for item in value.values():
            yield from secret_values(item, depth + 1)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from secret_values(item, depth + 1)
