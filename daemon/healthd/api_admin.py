"""The API's routes about the daemon itself: events, reload, this document, health, `/metrics`."""

from __future__ import annotations

from aiohttp import web

from healthd.api_errors import error_response, json_response
from healthd.api_keys import AUTH, EVENTS, OPENAPI, RELOAD, RENDER_METRICS, STORE
from healthd.api_models import EventsResponse, HealthResponse, ReadyResponse, ReloadResponse, StartingResponse
from healthd.api_services import MAX_HISTORY_LIMIT
from healthd.api_table import Access, QueryParam, Route
from healthd.scrape import OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE, wants_gzip, wants_openmetrics
from healthd.sse import stream_events

MAX_EVENT_ID = 2**63 - 1
EVENT_LIMIT = QueryParam(
    "limit", "how many of the newest events at most (JSON only)", 1, MAX_HISTORY_LIMIT, 100
)
LAST_EVENT_ID = QueryParam(
    "last_event_id", "resume after this event (the Last-Event-ID header wins)", 0, MAX_EVENT_ID, 41
)
EVENT_STREAM = "text/event-stream"


async def get_events(request: web.Request) -> web.StreamResponse:
    hub = request.app[EVENTS]
    after, limit = _last_event_id(request), EVENT_LIMIT.parse(request.query)  # both checked in both modes
    if EVENT_STREAM in request.headers.get("Accept", ""):
        return await stream_events(request, hub, after)
    events = hub.recent(limit or 100)
    return web.Response(
        body=b'{"events":[' + b",".join(event.json for event in events) + b"]}",
        content_type="application/json",
    )


def _last_event_id(request: web.Request) -> int | None:
    """The header if sent (a blank one, as an EventSource may send, means none), else the query's."""
    header = request.headers.get("Last-Event-ID")
    if header is None:
        return LAST_EVENT_ID.parse(request.query)  # present but empty is a bad parameter, as for any other
    if header.strip() == "":
        return None
    return LAST_EVENT_ID.parse({LAST_EVENT_ID.name: header.strip()})


async def reload_config(request: web.Request) -> web.Response:
    outcome = await request.app[RELOAD]()
    if not outcome.ok:
        return error_response(
            400, "invalid_config", "the new config was rejected; the old one keeps running", outcome.errors
        )
    return json_response({"added": outcome.added, "removed": outcome.removed, "changed": outcome.changed})


async def openapi(request: web.Request) -> web.Response:
    body = request.app[OPENAPI](request.app[AUTH])
    return web.Response(body=body, content_type="application/json")


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    if not request.app[STORE].daemon.ready:
        return json_response({"status": "starting"}, status=503)
    return json_response({"status": "ready"})


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


# what a stream sends: a comment at once, then an `id`/`event`/`data` block per event (healthd.sse)
_STREAM_EXAMPLE = (
    ": connected\n\n"
    'id: 2\nevent: check\ndata: {"id":2,"time":"2026-01-02T03:04:05.678Z","type":"check",'
    '"service":"web","check":"tcp","status":"down","previous":"up"}\n\n'
)

ADMIN_ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/api/v1/events",
        get_events,
        "Recent events as JSON; with 'Accept: text/event-stream', a live Server-Sent Events stream",
        EventsResponse,
        query=(EVENT_LIMIT, LAST_EVENT_ID),
        access=Access.READ,
        other_content_types=(EVENT_STREAM,),
        example=_STREAM_EXAMPLE,
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
