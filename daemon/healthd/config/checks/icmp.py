"""The `icmp` check: echo requests to a host."""

from __future__ import annotations

import re
from ipaddress import IPv6Address
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, model_validator

from healthd.config.checks.base import CheckBase
from healthd.config.types import Duration, format_duration

_HOSTNAME = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,252})$")


def _check_host(value: object) -> object:
    """A host to ping: a name, an IPv4 address or an IPv6 address (no port, no brackets)."""
    if not isinstance(value, str):
        return value
    if value.startswith("[") or ("." in value and value.count(":") == 1):
        raise ValueError(f"{value!r}: an icmp target is a host without port or brackets, e.g. ::1")
    if ":" in value:
        try:
            IPv6Address(value.partition("%")[0])
        except ValueError:
            raise ValueError(f"{value!r} is neither a host name nor an IP address") from None
    elif not _HOSTNAME.match(value):
        raise ValueError(f"{value!r} is neither a host name nor an IP address")
    return value


Host = Annotated[str, BeforeValidator(_check_host)]


class IcmpCheck(CheckBase):
    """ICMP echo: `count` requests `packet_interval` apart; loss and RTT statistics over them."""

    type: Literal["icmp"]
    target: Host
    count: int = Field(1, ge=1, le=1000)
    # spacing within one probe's requests; 100ms keeps count 5 well inside the 2s default timeout
    packet_interval: Duration = Field(0.1, ge=0.001)
    payload_size: int = Field(56, ge=0, le=65_507)  # ping's default: 64-byte ICMP messages
    ttl: int | None = Field(None, ge=1, le=255)
    dont_fragment: bool = False
    # None: success when any reply arrives; a ratio: success when the loss is at most this
    max_loss: float | None = Field(None, ge=0, lt=1)

    @model_validator(mode="after")
    def _requests_fit_in_timeout(self) -> IcmpCheck:
        spread = (self.count - 1) * self.packet_interval
        if spread >= self.timeout:
            raise ValueError(
                f"count {self.count} requests {format_duration(self.packet_interval)} apart take "
                f"{format_duration(spread)}, leaving no time for replies within timeout "
                f"{format_duration(self.timeout)}: lower count or packet_interval, or raise timeout"
            )
        return self

    @property
    def host(self) -> str:
        return self.target

    @property
    def display_target(self) -> str:
        return self.target
