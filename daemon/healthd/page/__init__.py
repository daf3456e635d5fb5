"""The status page: server-rendered HTML at `/` and `/status`, live through the event stream,
plus README badges. `ROUTES` joins the API's route table (so OpenAPI documents them too)."""

from __future__ import annotations

from typing import Any

from healthd.api_table import Access, Handler, QueryParam, Route
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

_BADGE_ERRORS = (404,)
_TEXT = {"type": "string"}
_BARS = QueryParam("bars", "hours or days: 90 of them per bar strip", schema={"enum": ["hours", "days"]})
_PAGE_QUERY = (
    QueryParam("q", "only services or checks whose name holds this (any case)", schema=_TEXT),
    QueryParam("status", "down, up, unknown (checks) or degraded (services)", schema=_TEXT),
    QueryParam("label", "KEY, KEY=VALUE or KEY:VALUE of a service label", schema=_TEXT),
    _BARS,
    QueryParam("page", "which page of 50 checks", schema={"type": "integer", "minimum": 1}),
)
_BADGE_QUERY = (
    QueryParam("kind", "what the badge says", schema={"enum": ["status", "uptime"], "default": "status"}),
    QueryParam("window", "uptime window", schema={"enum": ["1h", "24h", "7d", "30d"], "default": "24h"}),
)
_HTML = "<!doctype html><html lang=en><title>healthd status</title>...</html>"
_LOGIN_FIELDS: dict[str, Any] = {
    "type": "object",
    "required": ["token"],
    "properties": {
        "token": {"type": "string", "description": "the API token (server.token_file)"},
        "next": {
            "type": "string",
            "description": "the page to go to after (a path on this host)",
            "default": "/",
        },
    },
}
# the form the login page posts (multipart/form-data with the same fields is read the same way;
# listing both breaks the client openapi-python-client generates)
_LOGIN_FORM: dict[str, Any] = {
    "required": False,  # without one the answer is the form again, with 401
    "content": {
        "application/x-www-form-urlencoded": {
            "schema": _LOGIN_FIELDS,
            "example": {"token": "s3cret", "next": "/"},
        },
    },
}
_SVG = '<svg xmlns="http://www.w3.org/2000/svg" width="90" height="20" role="img">...</svg>'
_REDIRECT = (303,)  # to the form's `next` (login) or to / (logout), with Set-Cookie


def _html(
    method: str, path: str, handler: Handler, summary: str, errors: tuple[int, ...], **extra: Any
) -> Route:
    """A route of the page that answers HTML."""
    return Route(
        method,
        path,
        handler,
        summary,
        None,
        errors,
        content_type="text/html",
        tag="page",
        example=_HTML,
        **extra,
    )


#: the status page's two addresses: (path, operation id; "" names it after the handler)
_STATUS_PAGES = (("/", "status_page_root"), ("/status", ""))
#: the badges: (path, handler, whose badge)
_BADGES = (
    ("/api/v1/services/{service}/badge.svg", service_badge, "A service's"),
    ("/api/v1/services/{service}/checks/{check}/badge.svg", check_badge, "A check's"),
)

ROUTES: tuple[Route, ...] = (
    *(
        _html(
            "GET",
            path,
            status_page,
            "The status page (HTML)",
            (400,),
            query=_PAGE_QUERY,
            access=Access.SESSION,
            operation_id=operation_id,
        )
        for path, operation_id in _STATUS_PAGES
    ),
    _html(
        "GET",
        "/status/{service}/{check}",
        check_page,
        "One check's page: uptime, history, recent failures (HTML)",
        (400, 404),
        query=(_BARS,),
        access=Access.SESSION,
    ),
    _html("GET", "/login", login_form, "The page's login form (HTML)", ()),
    _html(
        "POST",
        "/login",
        login,
        "Trade the token (form field `token`) for an HttpOnly, SameSite=Strict session cookie",
        (*_REDIRECT, 401),
        request_body=_LOGIN_FORM,
    ),
    _html("POST", "/logout", logout, "End the page's session", _REDIRECT),
    Route(
        "GET",
        "/static/{name}",
        static_file,
        "The page's CSS and JS (cached for good when `v` is the file's content hash)",
        None,
        (404,),
        (QueryParam("v", "the file's content hash, from the page's links", schema=_TEXT),),
        content_type="text/css",
        other_content_types=("text/javascript",),
        tag="page",
        example="body { margin: 0 }",
    ),
    *(
        Route(
            "GET",
            path,
            handler,
            f"{whose} status or uptime badge (?kind=status|uptime&window=1h|24h|7d|30d)",
            None,
            _BADGE_ERRORS,
            _BADGE_QUERY,
            access=Access.READ,
            content_type="image/svg+xml",
            tag="badges",
            example=_SVG,
        )
        for path, handler, whose in _BADGES
    ),
)

__all__ = ["ASSETS", "ROUTES", "compress_middleware", "load_assets"]
