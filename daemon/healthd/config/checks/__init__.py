"""One config model per check type, joined in a union discriminated on `type`.

`MODELS` is the one list: the union (`Check`) and the by-name table
(`CHECK_MODELS`) are derived from it, and `healthd.probes` refuses to start
unless each model has its probe. A new probe type adds its model's module
here and one entry to `MODELS`.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import TYPE_CHECKING, Annotated, Union, get_args

from pydantic import Field

from healthd.config.checks.base import CheckBase, HostPortCheck, IpFamily
from healthd.config.checks.http import HttpCheck, redact_url
from healthd.config.checks.icmp import IcmpCheck
from healthd.config.checks.tcp import SynCheck, TcpCheck

MODELS: tuple[type[CheckBase], ...] = (TcpCheck, SynCheck, IcmpCheck, HttpCheck)


def type_name(model: type[CheckBase]) -> str:
    """The `type:` a model stands for: its `type` field is `Literal["NAME"]`."""
    field = model.model_fields.get("type")
    names = get_args(field.annotation) if field is not None else ()
    if len(names) != 1 or not isinstance(names[0], str):
        raise TypeError(f"{model.__name__}.type must be Literal['<name>'], the check type it stands for")
    return names[0]


#: type name -> model, for the loader (defaults that apply) and the one-shot CLI.
CHECK_MODELS = MappingProxyType({type_name(model): model for model in MODELS})

if TYPE_CHECKING:  # mypy cannot follow a union built at run time; the code needs only the base
    Check = CheckBase
else:
    Check = Annotated[Union[MODELS], Field(discriminator="type")]  # noqa: UP007 (a tuple of types)

__all__ = [
    "CHECK_MODELS",
    "MODELS",
    "Check",
    "CheckBase",
    "HostPortCheck",
    "HttpCheck",
    "IcmpCheck",
    "IpFamily",
    "SynCheck",
    "TcpCheck",
    "redact_url",
    "type_name",
]
