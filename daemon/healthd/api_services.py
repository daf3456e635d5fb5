"""The API's reads of services and checks: the listing, one service, one check, its history
and its uptime series. Handlers read the store; they never probe."""

from __future__ import annotations

import logging
import time

from aiohttp import web

from healthd import api_dicts, api_listing, api_query
from healthd.api_errors import ApiError, json_response
from healthd.api_keys import LISTING, STORE
from healthd.api_models import CheckDetail, HistoryResponse, ServiceModel, ServicesResponse, UptimeSeries
from healthd.api_table import Access, Link, QueryParam, Route
from healthd.config import CheckKey
from healthd.store import CheckState, ServiceInfo, Status
from healthd.uptime import series_shape

log = logging.getLogger(__name__)

MAX_HISTORY_LIMIT = 10_000
LIMIT = QueryParam("limit", "how many results at most", 1, MAX_HISTORY_LIMIT, example=10)
STATUSES = tuple(s.value for s in (Status.UP, Status.DOWN, Status.DEGRADED, Status.UNKNOWN))


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


def _json(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/json")


async def _streamed(request: web.Request, parts: list[bytes]) -> web.StreamResponse:
    """One JSON body written as its pieces: a 4.4 MB answer joined, joined again with the headers
    by aiohttp (Python 3.11) and copied by asyncio where the socket did not take it all cost
    ~9 ms of a read here. The handler waits while the socket is full, the loop free meanwhile."""
    response = web.StreamResponse()
    response.content_type, response.content_length = "application/json", sum(map(len, parts))
    await response.prepare(request)
    try:
        for part in parts:
            await response.write(part)
        await response.write_eof()
    except ConnectionError:  # the client left mid-answer: there is no one to tell
        log.debug("GET %s: the client left before the end of the answer", request.path)
    return response


async def list_services(request: web.Request) -> web.StreamResponse:
    store = request.app[STORE]
    wanted = api_query.choice("status", request.query.get("status"), STATUSES)
    services = [s for s in store.services if wanted is None or store.status_of(s).value == wanted]
    parts = await api_listing.services_parts(request.app[LISTING], store, services, time.time())
    # HEAD: aiohttp drops a whole answer's body; gzip: the app's compress_middleware (if any)
    # takes only a whole answer, and compresses it off the loop
    if request.method == "HEAD" or "gzip" in request.headers.get("Accept-Encoding", "").lower():
        return _json(b"".join(parts))
    return await _streamed(request, parts)


async def get_service(request: web.Request) -> web.Response:
    service = _find_service(request)
    return _json(request.app[LISTING].service_json(request.app[STORE], service, time.time()))


async def get_check(request: web.Request) -> web.Response:
    return json_response(api_dicts.detail_dict(_find_check(request), time.time()))


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
            newest.append(result)
            if len(newest) == limit:
                break
    return json_response(api_dicts.history_dict(newest))


async def get_uptime(request: web.Request) -> web.Response:
    state = _find_check(request)
    window, step = request.query.get("window", "24h"), request.query.get("step", "1h")
    try:
        window_seconds, step_seconds = series_shape(window, step)
    except ValueError as exc:
        raise api_query.QueryError(str(exc)) from None
    buckets = state.uptime.series(window_seconds, step_seconds, time.time())
    return json_response(api_dicts.series_dict(state, window, step, buckets))


_SERVICE_LINK = Link("service", "get_service", {"service": "$response.body#/services/0/name"})
_CHECK_LINK = Link(
    "check", "get_check", {"service": "$response.body#/name", "check": "$response.body#/checks/0/name"}
)
_HISTORY_LINK = Link(
    "history", "get_history", {"service": "$response.body#/service", "check": "$response.body#/name"}
)

SERVICE_ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/api/v1/services",
        list_services,
        "All services with their checks",
        ServicesResponse,
        query=(QueryParam("status", "only services in this state", schema={"enum": list(STATUSES)}),),
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
)
