"""The status page: server-rendered HTML at `/` and `/status`, live through the event stream,
plus README badges. `ROUTES` joins the API's route table (so OpenAPI documents them too)."""

from __future__ import annotations

from healthd.api import QueryParam, Route
from healthd.page.handlers import (
    ASSETS,
    check_badge,
    check_page,
    compress_middleware,
    load_assets,
    login,
    login_form,
    logout,
    service_badge,
    static_file,
    status_page,
)

_BADGE_ERRORS = (400, 401, 404)
_TEXT = {"type": "string"}
_PAGE_QUERY = (
    QueryParam("q", "only services or checks whose name holds this (any case)", schema=_TEXT),
    QueryParam("status", "down, up, unknown (checks) or degraded (services)", schema=_TEXT),
    QueryParam("label", "KEY, KEY=VALUE or KEY:VALUE of a service label", schema=_TEXT),
    QueryParam("bars", "hours or days: 90 of them per bar strip", schema={"enum": ["hours", "days"]}),
    QueryParam("page", "which page of 50 checks", schema={"type": "integer", "minimum": 1}),
)
_BADGE_QUERY = (
    QueryParam("kind", "what the badge says", schema={"enum": ["status", "uptime"], "default": "status"}),
    QueryParam("window", "uptime window", schema={"enum": ["1h", "24h", "7d", "30d"], "default": "24h"}),
)

ROUTES: tuple[Route, ...] = (
    Route(
        "GET", "/", status_page, "The status page (HTML)", None, (400,), _PAGE_QUERY, content_type="text/html"
    ),
    Route(
        "GET",
        "/status",
        status_page,
        "The status page (HTML)",
        None,
        (400,),
        _PAGE_QUERY,
        content_type="text/html",
    ),
    Route(
        "GET",
        "/status/{service}/{check}",
        check_page,
        "One check's page: uptime, history, recent failures (HTML)",
        None,
        content_type="text/html",
    ),
    Route("GET", "/login", login_form, "The page's login form", None, content_type="text/html", public=True),
    Route(
        "POST",
        "/login",
        login,
        "Trade the token for an HttpOnly, SameSite=Strict session cookie",
        None,
        (401,),
        content_type="text/html",
        public=True,
    ),
    Route("POST", "/logout", logout, "End the page's session", None, content_type="text/html", public=True),
    Route("GET", "/static/{name}", static_file, "Its CSS and JS", None, (404,), content_type="text/css"),
    Route(
        "GET",
        "/api/v1/services/{service}/badge.svg",
        service_badge,
        "A service's status or uptime badge (?kind=status|uptime&window=1h|24h|7d|30d)",
        None,
        _BADGE_ERRORS,
        _BADGE_QUERY,
        api_read=True,
        content_type="image/svg+xml",
    ),
    Route(
        "GET",
        "/api/v1/services/{service}/checks/{check}/badge.svg",
        check_badge,
        "A check's status or uptime badge (?kind=status|uptime&window=1h|24h|7d|30d)",
        None,
        _BADGE_ERRORS,
        _BADGE_QUERY,
        api_read=True,
        content_type="image/svg+xml",
    ),
)

__all__ = ["ASSETS", "ROUTES", "compress_middleware", "load_assets"]
