"""How an API route is declared, once, for the router, the OpenAPI document and the fuzz suite.

A route names its handler, its response model, the errors it may answer, its query
parameters (parsed here, so the documented bounds are the enforced ones), who may call
it, and links to the operations its answer leads to. Adding a route is one `Route(...)`.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from aiohttp import web
from pydantic import BaseModel

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# ASCII digits only: str.isdigit() also takes superscript and full-width digits
_WHOLE_NUMBER = re.compile(r"[0-9]{1,20}")  # 2**64 has 20 digits; int() of more costs time


class Access(StrEnum):
    OPEN = "open"  # never needs the token (health, metrics, this document)
    READ = "read"  # needs the token when server.protect_reads is on
    MUTATE = "mutate"  # needs the token whenever one is configured
    # a status page: with protect_reads its handler answers the login form (401) to a request
    # with neither the token nor the page's session cookie
    SESSION = "session"


class BadParameter(ValueError):
    """A query parameter outside its declared form or range; the API answers 400."""


@dataclass(frozen=True)
class QueryParam:
    name: str
    description: str
    minimum: int = 0
    maximum: int = 0
    example: int | None = None
    schema: Mapping[str, Any] | None = None  # instead of an integer range (its handler parses it)

    def parse(self, query: Mapping[str, str]) -> int | None:
        """The parameter's value, None when absent; BadParameter unless ASCII digits in range."""
        raw = query.get(self.name)
        if raw is None:
            return None
        if not _WHOLE_NUMBER.fullmatch(raw) or not self.minimum <= int(raw) <= self.maximum:
            raise BadParameter(f"{self.name} must be a whole number from {self.minimum} to {self.maximum}")
        return int(raw)


@dataclass(frozen=True)
class Link:
    """An OpenAPI link: the answer of this route gives the parameters of `operation_id`."""

    name: str
    operation_id: str
    parameters: Mapping[str, str]  # parameter -> runtime expression, e.g. "$response.body#/name"


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    response: type[BaseModel] | None  # None: not a JSON model (e.g. /metrics)
    errors: tuple[int, ...] = ()  # besides 200; 400 and (where a token applies) 401 are added
    query: tuple[QueryParam, ...] = ()
    access: Access = Access.OPEN
    content_type: str = "application/json"
    other_content_types: tuple[str, ...] = ()  # the answer also sent as these (text), by Accept
    operation_id: str = ""  # default: the handler's name
    tag: str = ""  # default: the path's first segment after /api/v1/
    example: str | dict[str, object] | None = None  # for a non-model answer or other_content_types
    error_models: Mapping[int, type[BaseModel]] = field(default_factory=dict)  # non-ErrorResponse bodies
    links: tuple[Link, ...] = ()
    request_body: Mapping[str, Any] | None = None  # an OpenAPI Request Body Object, as it stands

    @property
    def op_id(self) -> str:
        return self.operation_id or self.handler.__name__

    @property
    def group(self) -> str:
        if self.tag:
            return self.tag
        parts = [p for p in self.path.removeprefix("/api/v1").split("/") if p]
        return parts[0] if parts else "api"
