"""REST API: aiohttp handlers over the store. Handlers read; they never probe.

Routes are declared once in `ROUTES` (see `api_table`); the router, the OpenAPI
document and the fuzz suite are all built from that table, so none can miss a route.
Every GET route answers HEAD too.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web
from pydantic import BaseModel

from healthd import api_dicts, api_query
from healthd.api_models import (
    CheckDetail,
    CheckSummary,
    ErrorBody,
    ErrorResponse,
    EventsResponse,
    HealthResponse,
    HistoryResponse,
    ReadyResponse,
    ReloadResponse,
    Result,
    SeriesBucketModel,
    ServiceModel,
    ServicesResponse,
    StartingResponse,
    UptimeRatios,
    UptimeSeries,
)
from healthd.api_table import Access, BadParameter, Handler, Link, QueryParam, Route
from healthd.config import CheckKey
from healthd.events import EventHub
from healthd.scrape import OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE, wants_gzip, wants_openmetrics
from healthd.sse import stream_events
from healthd.store import CheckState, ServiceInfo, Status, Store
from healthd.uptime import WINDOW_NAMES, series_shape

log = logging.getLogger(__name__)

MAX_HISTORY_LIMIT = 10_000
LIMIT = QueryParam("limit", "how many results at most", 1, MAX_HISTORY_LIMIT, example=10)


@dataclass(frozen=True)
class ReloadOutcome:
    ok: bool
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass
class Auth:
    """Mutable: a reload may change the token."""

    token: str = ""  # "" when no token is configured
    protect_reads: bool = False


STORE = web.AppKey("store", Store)
AUTH = web.AppKey("auth", Auth)
Reloader = Callable[[], Awaitable[ReloadOutcome]]
MetricsRenderer = Callable[[bool, bool], Awaitable[bytes]]  # arguments: OpenMetrics, gzip
RELOAD: web.AppKey[Reloader] = web.AppKey("reload")
RENDER_METRICS: web.AppKey[MetricsRenderer] = web.AppKey("render_metrics")
OpenApiSource = Callable[[Auth], bytes]  # the document for the auth mode in force
OPENAPI: web.AppKey[OpenApiSource] = web.AppKey("openapi")
EVENTS = web.AppKey("events", EventHub)
MAX_EVENT_ID = 2**63 - 1
EVENT_LIMIT = QueryParam(
    "limit", "how many of the newest events at most (JSON only)", 1, MAX_HISTORY_LIMIT, 100
)
LAST_EVENT_ID = QueryParam(
    "last_event_id", "resume after this event (the Last-Event-ID header wins)", 0, MAX_EVENT_ID, 41
)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, errors: list[str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.errors = status, code, message, errors


def json_response(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(body=model.model_dump_json(), status=status, content_type="application/json")


def error_response(status: int, code: str, message: str, errors: list[str] | None = None) -> web.Response:
    return json_response(ErrorResponse(error=ErrorBody(code=code, message=message, errors=errors)), status)


# ---- handlers -------------------------------------------------------------------------


def _service_model(store: Store, service: ServiceInfo, now: float) -> ServiceModel:
    states = store.states_of(service)
    counts = [[state.uptime.counts(name, now) for name in WINDOW_NAMES] for state in states]
    totals = [(sum(c[w][0] for c in counts), sum(c[w][1] for c in counts)) for w in range(len(WINDOW_NAMES))]
    return ServiceModel(
        name=service.name,
        status=store.status_of(service).value,
        labels=dict(service.labels),
        uptime=UptimeRatios.of(totals),
        checks=[CheckSummary.of(s, now, UptimeRatios.of(c)) for s, c in zip(states, counts, strict=True)],
    )


def _find_service(request: web.Request) -> ServiceInfo:
    name = request.match_info["service"]
    service = request.app[STORE].service(name)
    if service is None:
        raise ApiError(404, "not_found", f"no service named {name!r}")
    return service


def _find_check(request: web.Request) -> CheckState:
    service = _find_service(request)
    name = request.match_info["check"]
    state = request.app[STORE].check(CheckKey(service.name, name))
    if state is None:
        raise ApiError(404, "not_found", f"service {service.name!r} has no check named {name!r}")
    return state


_STATUSES = tuple(s.value for s in (Status.UP, Status.DOWN, Status.DEGRADED, Status.UNKNOWN))


async def list_services(request: web.Request) -> web.Response:
    store = request.app[STORE]
    wanted = api_query.choice("status", request.query.get("status"), _STATUSES)
    services = [s for s in store.services if wanted is None or store.status_of(s).value == wanted]
    # plain dicts, not models: the one listing of every check (see api_dicts)
    body = await api_dicts.services_json(store, services, time.time())
    return web.Response(body=body, content_type="application/json")


async def get_service(request: web.Request) -> web.Response:
    return json_response(_service_model(request.app[STORE], _find_service(request), time.time()))


async def get_check(request: web.Request) -> web.Response:
    return json_response(CheckDetail.of(_find_check(request), time.time()))


async def get_history(request: web.Request) -> web.Response:
    state = _find_check(request)
    limit = LIMIT.parse(request.query) or len(state.history) or 1
    ok = api_query.boolean("ok", request.query.get("ok"))
    since = api_query.timestamp("since", request.query.get("since"))
    newest = []
    for result in reversed(state.history):
        # times are shown to the microsecond: a result's own shown time selects it
        if since is not None and result.time < since - 5e-7:
            break  # newest first: the rest are older still
        if ok is None or result.ok is ok:
            newest.append(Result.of(result))
            if len(newest) == limit:
                break
    return json_response(HistoryResponse(results=newest))


async def get_uptime(request: web.Request) -> web.Response:
    state = _find_check(request)
    window, step = request.query.get("window", "24h"), request.query.get("step", "1h")
    try:
        window_seconds, step_seconds = series_shape(window, step)
    except ValueError as exc:
        raise api_query.QueryError(str(exc)) from None
    buckets = state.uptime.series(window_seconds, step_seconds, time.time())
    return json_response(
        UptimeSeries(
            service=state.info.service,
            check=state.info.name,
            window=window,
            step=step,
            buckets=[SeriesBucketModel.of(bucket) for bucket in buckets],
        )
    )


async def get_events(request: web.Request) -> web.StreamResponse:
    hub = request.app[EVENTS]
    after, limit = _last_event_id(request), EVENT_LIMIT.parse(request.query)  # both checked in both modes
    if "text/event-stream" in request.headers.get("Accept", ""):
        return await stream_events(request, hub, after)
    events = hub.recent(limit or 100)
    return web.Response(
        body=b'{"events":[' + b",".join(event.json for event in events) + b"]}",
        content_type="application/json",
    )


def _last_event_id(request: web.Request) -> int | None:
    raw = request.headers.get("Last-Event-ID", request.query.get("last_event_id"))
    if raw is None or raw.strip() == "":
        return None
    return LAST_EVENT_ID.parse({LAST_EVENT_ID.name: raw.strip()})


async def reload_config(request: web.Request) -> web.Response:
    outcome = await request.app[RELOAD]()
    if not outcome.ok:
        return error_response(
            400, "invalid_config", "the new config was rejected; the old one keeps running", outcome.errors
        )
    return json_response(
        ReloadResponse(added=outcome.added, removed=outcome.removed, changed=outcome.changed)
    )


async def openapi(request: web.Request) -> web.Response:
    body = request.app[OPENAPI](request.app[AUTH])
    return web.Response(body=body, content_type="application/json")


async def healthz(request: web.Request) -> web.Response:
    return json_response(HealthResponse(status="ok"))


async def readyz(request: web.Request) -> web.Response:
    if not request.app[STORE].daemon.ready:
        return json_response(StartingResponse(status="starting"), status=503)
    return json_response(ReadyResponse(status="ready"))


async def metrics(request: web.Request) -> web.Response:
    openmetrics = wants_openmetrics(request.headers.get("Accept", ""))
    gzip = wants_gzip(request.headers.get("Accept-Encoding", ""))
    body = await request.app[RENDER_METRICS](openmetrics, gzip)
    headers = {
        "Content-Type": OPENMETRICS_CONTENT_TYPE if openmetrics else TEXT_CONTENT_TYPE,
        "Vary": "Accept, Accept-Encoding",
    }
    if gzip:
        headers["Content-Encoding"] = "gzip"
    return web.Response(body=body, headers=headers)


# ---- the route table -----------------------------------------------------------------

_SERVICE_LINK = Link("service", "get_service", {"service": "$response.body#/services/0/name"})
_CHECK_LINK = Link(
    "check", "get_check", {"service": "$response.body#/name", "check": "$response.body#/checks/0/name"}
)
_HISTORY_LINK = Link(
    "history", "get_history", {"service": "$response.body#/service", "check": "$response.body#/name"}
)

ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/api/v1/services",
        list_services,
        "All services with their checks",
        ServicesResponse,
        query=(QueryParam("status", "only services in this state", schema={"enum": list(_STATUSES)}),),
        access=Access.READ,
        links=(_SERVICE_LINK,),
    ),
    Route(
        "GET",
        "/api/v1/services/{service}",
        get_service,
        "One service",
        ServiceModel,
        (404,),
        access=Access.READ,
        links=(_CHECK_LINK,),
    ),
    Route(
        "GET",
        "/api/v1/services/{service}/checks/{check}",
        get_check,
        "One check with counters and settings",
        CheckDetail,
        (404,),
        access=Access.READ,
        links=(_HISTORY_LINK,),
    ),
    Route(
        "GET",
        "/api/v1/services/{service}/checks/{check}/history",
        get_history,
        "Recent results of one check, newest first",
        HistoryResponse,
        (404,),
        (
            LIMIT,
            QueryParam("ok", "only successes (true) or failures (false)", schema={"type": "boolean"}),
            QueryParam(
                "since",
                "only results that started at or after this RFC 3339 time",
                schema={"type": "string", "format": "date-time"},
            ),
        ),
        access=Access.READ,
    ),
    Route(
        "GET",
        "/api/v1/services/{service}/checks/{check}/uptime",
        get_uptime,
        "Uptime buckets of one check, oldest first (for graphs)",
        UptimeSeries,
        (404,),
        (
            QueryParam(
                "window",
                "span of the series: up to 1h for step 1m, 168h (7d) for 1h, 90d for 1d",
                schema={"type": "string", "pattern": "^[1-9][0-9]*[mhd]$", "default": "24h"},
            ),
            QueryParam("step", "bucket size", schema={"enum": ["1m", "1h", "1d"], "default": "1h"}),
        ),
        access=Access.READ,
    ),
    Route(
        "GET",
        "/api/v1/events",
        get_events,
        "Recent events as JSON; with 'Accept: text/event-stream', a live Server-Sent Events stream",
        EventsResponse,
        query=(EVENT_LIMIT, LAST_EVENT_ID),
        access=Access.READ,
    ),
    Route(
        "POST",
        "/api/v1/reload",
        reload_config,
        "Reload the config file; on errors the old config keeps running",
        ReloadResponse,
        access=Access.MUTATE,
        tag="config",
    ),
    Route(
        "GET",
        "/api/v1/openapi.json",
        openapi,
        "This document, as it applies to the daemon's current token settings",
        None,
        tag="meta",
        example={"openapi": "3.1.0", "info": {"title": "healthd", "version": "0.1.0"}, "paths": {}},
    ),
    Route("GET", "/healthz", healthz, "200 while the process serves", HealthResponse, tag="health"),
    Route(
        "GET",
        "/readyz",
        readyz,
        "200 once the config is loaded and the scheduler runs; 503 with status starting before",
        ReadyResponse,
        (503,),
        tag="health",
        error_models={503: StartingResponse},
    ),
    Route(
        "GET",
        "/metrics",
        metrics,
        "Prometheus text exposition; OpenMetrics when Accept asks for application/openmetrics-text",
        None,
        content_type="text/plain",
        other_content_types=("application/openmetrics-text",),
        tag="metrics",
        example="# HELP probe_success Whether the last probe succeeded\n# TYPE probe_success gauge\n"
        'probe_success{check="tcp",service="web",target="127.0.0.1:5432",type="tcp"} 1.0\n',
    ),
)


ROUTE_POLICY: web.AppKey[dict[tuple[str, str], Route]] = web.AppKey("route_policy")


def add_routes(app: web.Application, routes: tuple[Route, ...] = ROUTES) -> None:
    policy = app.setdefault(ROUTE_POLICY, {})
    for route in routes:
        app.router.add_route(route.method, route.path, route.handler)
        policy[(route.method, route.path)] = route
        if route.method == "GET":  # HEAD answers with GET's headers; aiohttp drops the body
            app.router.add_route("HEAD", route.path, route.handler)


# ---- middleware: auth and JSON errors -------------------------------------------------


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


SESSION_COOKIE = "healthd_session"


def session_value(token: str) -> str:
    """The status page's login cookie: derived from the token, so a new token ends every session."""
    return hmac.new(token.encode(), b"healthd status page session", "sha256").hexdigest()


def _needs_token(request: web.Request) -> bool:
    if request.match_info.http_exception is not None:
        return False  # no such path or method: the 404/405 says nothing a token protects
    resource = request.match_info.route.resource
    method = "GET" if request.method == "HEAD" else request.method
    route = request.app[ROUTE_POLICY].get((method, resource.canonical)) if resource is not None else None
    if route is None:
        return request.method not in ("GET", "HEAD")
    if route.access is Access.READ:
        return request.app[AUTH].protect_reads
    return route.access is Access.MUTATE  # OPEN, and SESSION pages that ask for the login themselves


def authorized(request: web.Request, token: str) -> bool:
    """A bearer token; for reads also the status page's session cookie (mutations keep needing
    the header, so no other site can make a browser reload the config)."""
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    # aiohttp keeps bytes that are not UTF-8 as surrogates: give them back as bytes, never raise
    presented = given.strip().encode("utf-8", "surrogateescape")
    if scheme.lower() == "bearer" and hmac.compare_digest(presented, token.encode()):
        return True
    cookie = request.cookies.get(SESSION_COOKIE, "").encode("utf-8", "surrogateescape")
    reading = request.method in ("GET", "HEAD")
    return reading and bool(cookie) and hmac.compare_digest(cookie, session_value(token).encode())


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        token = request.app[AUTH].token
        if token and _needs_token(request) and not authorized(request, token):
            response = error_response(
                401, "unauthorized", "this endpoint needs 'Authorization: Bearer <token>'"
            )
            response.headers["WWW-Authenticate"] = "Bearer"
            return response
        _check_query(request)
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message, exc.errors)
    except BadParameter as exc:
        return error_response(400, "bad_request", str(exc))
    except api_query.QueryError as exc:
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
