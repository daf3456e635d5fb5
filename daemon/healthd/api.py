"""REST API: the route table, the router and the middleware (token, unknown parameters, JSON errors).

Routes are declared once in `ROUTES` (see `api_table`); the router, the OpenAPI
document and the fuzz suite are all built from that table, so none can miss a route.
Every GET route answers HEAD too. The handlers live by topic: `api_services` (services,
checks, history, uptime), `api_admin` (events, reload, health, `/metrics`); the answers
are built by `api_dicts`. The names other modules use are re-exported here.
"""

from __future__ import annotations

import logging

from aiohttp import web

from healthd import api_query
from healthd.api_admin import ADMIN_ROUTES, get_events
from healthd.api_auth import SESSION_COOKIE, Auth, authorized, needs_token, session_value
from healthd.api_errors import ApiError, error_response, json_response
from healthd.api_keys import (
    AUTH,
    EVENTS,
    LISTING,
    OPENAPI,
    RELOAD,
    RENDER_METRICS,
    ROUTE_POLICY,
    STORE,
    MetricsRenderer,
    OpenApiSource,
    Reloader,
    ReloadOutcome,
)
from healthd.api_listing import ListingCache
from healthd.api_services import SERVICE_ROUTES
from healthd.api_table import BadParameter, Handler, Route

__all__ = [
    "AUTH",
    "EVENTS",
    "OPENAPI",
    "RELOAD",
    "RENDER_METRICS",
    "ROUTES",
    "SESSION_COOKIE",
    "STORE",
    "ApiError",
    "Auth",
    "MetricsRenderer",
    "OpenApiSource",
    "ReloadOutcome",
    "Reloader",
    "add_routes",
    "authorized",
    "error_middleware",
    "error_response",
    "get_events",
    "json_response",
    "session_value",
]

log = logging.getLogger(__name__)

ROUTES: tuple[Route, ...] = SERVICE_ROUTES + ADMIN_ROUTES


def add_routes(app: web.Application, routes: tuple[Route, ...] = ROUTES) -> None:
    policy = app.setdefault(ROUTE_POLICY, {})
    app.setdefault(LISTING, ListingCache())
    for route in routes:
        app.router.add_route(route.method, route.path, route.handler)
        policy[(route.method, route.path)] = route
        if route.method == "GET":  # HEAD answers with GET's headers; aiohttp drops the body
            app.router.add_route("HEAD", route.path, route.handler)


_QUERY_NAMES = {(r.method, r.path): {q.name for q in r.query} for r in ROUTES}


def _check_query(request: web.Request) -> None:
    """Unknown query parameters are an error on every route, not silently ignored."""
    resource = request.match_info.route.resource
    if resource is None or not request.query:
        return
    method = "GET" if request.method == "HEAD" else request.method
    allowed = _QUERY_NAMES.get((method, resource.canonical))
    if allowed is not None:
        api_query.unknown_parameters(request.query.keys(), allowed)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        auth = request.app[AUTH]
        if (
            auth.token
            and needs_token(request, auth, request.app[ROUTE_POLICY])
            and not authorized(request, auth.token)
        ):
            response = error_response(
                401, "unauthorized", "this endpoint needs 'Authorization: Bearer <token>'"
            )
            response.headers["WWW-Authenticate"] = "Bearer"
            return response
        _check_query(request)
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message, exc.errors)
    except (BadParameter, api_query.QueryError) as exc:
        return error_response(400, "bad_request", str(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status, "http_error")
        response = error_response(exc.status, code, exc.reason)
        if exc.status == 405 and "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except Exception:
        log.exception("error serving %s %s", request.method, request.path)
        return error_response(500, "internal", "internal error; see the daemon's log")
