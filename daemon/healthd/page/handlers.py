"""aiohttp handlers of the status page, its login, its static files and the badges.

Pages are rendered with Jinja2 with autoescaping on: every string from the
config or a probe reaches the HTML escaped. Scripts come only from our own
static file (the Content-Security-Policy forbids inline ones).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import quote

import jinja2
from aiohttp import web
from aiohttp.web_response import ContentCoding

from healthd import api
from healthd.api_table import Handler
from healthd.config import CheckKey
from healthd.page import badge, data, view
from healthd.store import ServiceInfo

PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
_SECURITY_HEADERS = {
    "Content-Security-Policy": PAGE_CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_STATIC_TYPES = {"page.css": "text/css", "page.js": "text/javascript"}
_COMPRESSIBLE = ("text/", "application/json", "image/svg+xml")
GZIP_MIN_BYTES = 1024  # smaller bodies gain nothing from gzip


@dataclass(frozen=True)
class Static:
    body: bytes
    content_type: str
    version: str  # content hash: the URL changes when the file does, so it may be cached for good


@dataclass(frozen=True)
class PageAssets:
    templates: jinja2.Environment
    static: dict[str, Static]


ASSETS = web.AppKey("page_assets", PageAssets)


def load_assets() -> PageAssets:
    files = resources.files("healthd.page") / "static"
    static = {}
    for name, content_type in _STATIC_TYPES.items():
        body = (files / name).read_bytes()
        static[name] = Static(body, content_type, hashlib.sha256(body).hexdigest()[:12])
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("healthd.page", "templates"),
        autoescape=True,  # every template here is HTML
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(asset=lambda name: f"/static/{name}?v={static[name].version}", icons=view.ICONS)
    env.filters.update(
        utc=view.utc_text,
        iso=view.iso_text,
        when=lambda text: view.utc_text(view.parse_time(text)),
        pathpart=lambda text: quote(str(text), safe=""),
        duration=view.short_duration,
        percent=view.percent,
        latency=view.latency_text,
    )
    return PageAssets(env, static)


def _html(request: web.Request, template: str, status: int = 200, **values: Any) -> web.Response:
    body = request.app[ASSETS].templates.get_template(template).render(**values)
    response = web.Response(text=body, status=status, content_type="text/html")
    response.headers.update(_SECURITY_HEADERS)
    if status == 401:  # RFC 9110: a 401 names its scheme (the form trades the bearer token)
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


def _reads_allowed(request: web.Request) -> bool:
    auth = request.app[api.AUTH]
    return not (auth.token and auth.protect_reads) or api.authorized(request, auth.token)


def _login_page(request: web.Request, status: int = 401, message: str = "") -> web.Response:
    return _html(request, "login.html", status, next=request.path_qs, message=message)


async def status_page(request: web.Request) -> web.Response:
    if not _reads_allowed(request):
        return _login_page(request)
    try:
        filters = view.Filters.parse(request.query)
    except view.BadQuery as exc:
        return _html(request, "message.html", 400, title="Bad request", message=str(exc))
    model = data.status_model(request.app[api.STORE], filters)
    return _html(request, "status.html", model=model, page_size=view.PAGE_SIZE)


async def check_page(request: web.Request) -> web.Response:
    if not _reads_allowed(request):
        return _login_page(request)
    store = request.app[api.STORE]
    name, check = request.match_info["service"], request.match_info["check"]
    service = store.service(name)
    state = store.check(CheckKey(name, check)) if service is not None else None
    if service is None or state is None:
        return _html(request, "message.html", 404, title="Not found", message=f"no check {name}/{check}")
    mode = request.query.get("bars", "hours")
    if mode not in view.BAR_MODES or set(request.query) - {"bars"}:
        return _html(request, "message.html", 400, title="Bad request", message="only ?bars=hours|days")
    model = data.check_model(store, service, state, mode)
    return _html(request, "check.html", model=model)


async def login_form(request: web.Request) -> web.Response:
    return _login_page(request, status=200)


async def login(request: web.Request) -> web.StreamResponse:
    """Trade the API token for a session cookie the page and its event stream can use."""
    try:
        form = await request.post()
    except ValueError as exc:  # e.g. multipart/form-data without a boundary
        return _html(request, "message.html", 400, title="Bad request", message=f"unreadable form: {exc}")
    given, target = str(form.get("token", "")), str(form.get("next", "/"))
    token = request.app[api.AUTH].token
    if not token or not hmac.compare_digest(given.strip().encode(), token.encode()):
        return _html(request, "login.html", 401, next=target, message="That token is not right.")
    if not target.startswith("/") or target.startswith("//"):  # never redirect off this host
        target = "/"
    response = web.HTTPSeeOther(target)  # raised: aiohttp redirects are exceptions
    response.set_cookie(
        api.SESSION_COOKIE,
        api.session_value(token),
        httponly=True,
        samesite="Strict",
        secure=request.secure,
        path="/",
    )
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    response = web.HTTPSeeOther("/")
    response.del_cookie(api.SESSION_COOKIE, path="/")
    raise response


async def static_file(request: web.Request) -> web.Response:
    asset = request.app[ASSETS].static.get(request.match_info["name"])
    if asset is None:
        raise api.ApiError(404, "not_found", "no such file")
    cached = request.query.get("v") == asset.version
    response = web.Response(body=asset.body, content_type=asset.content_type)
    response.headers["Cache-Control"] = "public, max-age=31536000, immutable" if cached else "no-cache"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


# ---- badges ---------------------------------------------------------------------------


def _badge_query(request: web.Request) -> tuple[str, str]:
    unknown = sorted(set(request.query) - {"kind", "window"})
    if unknown:
        raise api.ApiError(400, "bad_request", f"unknown query parameter(s): {', '.join(unknown)}")
    kind, window = request.query.get("kind", "status"), request.query.get("window", "24h")
    if kind not in badge.KINDS:
        raise api.ApiError(400, "bad_request", f"kind must be one of {', '.join(badge.KINDS)}")
    if window not in badge.WINDOWS:
        raise api.ApiError(400, "bad_request", f"window must be one of {', '.join(badge.WINDOWS)}")
    return kind, window


def _service(request: web.Request) -> ServiceInfo:
    service = request.app[api.STORE].service(request.match_info["service"])
    if service is None:
        raise api.ApiError(404, "not_found", "no such service")
    return service


def _svg(body: str) -> web.Response:
    response = web.Response(text=body, content_type="image/svg+xml")
    response.headers.update({"Cache-Control": "no-cache", "Content-Security-Policy": "default-src 'none'"})
    return response


async def service_badge(request: web.Request) -> web.Response:
    kind, window = _badge_query(request)
    store = request.app[api.STORE]
    service = _service(request)
    if kind == "status":
        return _svg(badge.status_badge(service.name, store.status_of(service).value))
    ratio = data.service_uptime(store, service, time.time()).get(window)
    return _svg(badge.uptime_badge(service.name, window, ratio))


async def check_badge(request: web.Request) -> web.Response:
    kind, window = _badge_query(request)
    service = _service(request)
    state = request.app[api.STORE].check(CheckKey(service.name, request.match_info["check"]))
    if state is None:
        raise api.ApiError(404, "not_found", f"service {service.name!r} has no such check")
    label = f"{state.info.service}/{state.info.name}"
    if kind == "status":
        return _svg(badge.status_badge(label, state.status.value))
    ratio = data.check_uptime(state, time.time()).get(window)
    return _svg(badge.uptime_badge(label, window, ratio))


# ---- gzip -----------------------------------------------------------------------------


def _size(response: web.Response) -> int:
    body = response.body
    if isinstance(body, bytes | bytearray):
        return len(body)
    size = getattr(body, "size", None)  # a str body becomes a payload that knows its size
    return size if isinstance(size, int) else 0


@web.middleware
async def compress_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """gzip text answers for clients that take it (streams, such as SSE, and HEAD are left alone)."""
    response = await handler(request)
    if (
        isinstance(response, web.Response)
        and not response.prepared
        and "Content-Encoding" not in response.headers  # /metrics compresses itself, off the loop
        and "gzip" in request.headers.get("Accept-Encoding", "").lower()
        and response.content_type.startswith(_COMPRESSIBLE)
        and _size(response) >= GZIP_MIN_BYTES
    ):
        # HEAD stays identity: aiohttp's compressor writes gzip's header and trailer even when the
        # body is dropped, which a keep-alive client reads as the start of the next response
        if request.method != "HEAD":
            response.enable_compression(ContentCoding.gzip)
        vary = response.headers.get("Vary")  # keep what the handler varies on (e.g. /metrics: Accept)
        if not vary:
            response.headers["Vary"] = "Accept-Encoding"
        elif "accept-encoding" not in vary.lower():
            response.headers["Vary"] = f"{vary}, Accept-Encoding"
    return response
