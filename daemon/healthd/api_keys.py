"""The app's typed keys the API's handlers read: the store, the auth settings, and the
callables the app supplies (reload, `/metrics` rendering, the OpenAPI document)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from healthd.api_auth import Auth
from healthd.api_listing import ListingCache
from healthd.api_table import Route
from healthd.events import EventHub
from healthd.store import Store


@dataclass(frozen=True)
class ReloadOutcome:
    ok: bool
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


STORE = web.AppKey("store", Store)
AUTH = web.AppKey("auth", Auth)
Reloader = Callable[[], Awaitable[ReloadOutcome]]
MetricsRenderer = Callable[[bool, bool], Awaitable[bytes]]  # arguments: OpenMetrics, gzip
RELOAD: web.AppKey[Reloader] = web.AppKey("reload")
RENDER_METRICS: web.AppKey[MetricsRenderer] = web.AppKey("render_metrics")
OpenApiSource = Callable[[Auth], bytes]  # the document for the auth mode in force
OPENAPI: web.AppKey[OpenApiSource] = web.AppKey("openapi")
EVENTS = web.AppKey("events", EventHub)
LISTING = web.AppKey("listing", ListingCache)  # made by `api.add_routes`
ROUTE_POLICY: web.AppKey[dict[tuple[str, str], Route]] = web.AppKey("route_policy")
