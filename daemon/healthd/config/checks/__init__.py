"""One config model per check type, joined in a union discriminated on `type`.

A new probe type adds its module here and its model to `Check` and
`CHECK_MODELS`; nothing else in the config machinery changes.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from healthd.config.checks.base import CheckBase, HostPortCheck, IpFamily
from healthd.config.checks.http import HttpCheck, redact_url
from healthd.config.checks.icmp import IcmpCheck
from healthd.config.checks.tcp import SynCheck, TcpCheck

Check = Annotated[TcpCheck | SynCheck | IcmpCheck | HttpCheck, Field(discriminator="type")]

#: type name -> model, for the loader (defaults that apply) and the one-shot CLI.
CHECK_MODELS: dict[str, type[CheckBase]] = {
    "tcp": TcpCheck,
    "syn": SynCheck,
    "icmp": IcmpCheck,
    "http": HttpCheck,
}

__all__ = [
    "CHECK_MODELS",
    "Check",
    "CheckBase",
    "HostPortCheck",
    "HttpCheck",
    "IcmpCheck",
    "IpFamily",
    "SynCheck",
    "TcpCheck",
    "redact_url",
]
