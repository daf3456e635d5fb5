"""The status page over HTTP against a live daemon: content, escaping, filters, login, gzip, badges."""

from __future__ import annotations

import asyncio
import gzip
import re
import time
import urllib.parse
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path

import aiohttp
import pytest
from healthd.app import service_infos
from healthd.config import load_config
from healthd.results import ErrorKind, ProbeResult
from healthd.store import CheckInfo, ServiceInfo
from markupsafe import escape  # what Jinja2 escapes with

from tests.pagelab import HTML_BODY, SCRIPT_NAME, Lab, MakeServer, lab


class Scripts(HTMLParser):
    """Collects every <script> tag: its src and whether it has a body (an inline script)."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.inline: list[str] = []
        self._inside = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self.scripts.append(dict(attrs))
            self._inside = True
        if any(name.startswith("on") or name == "style" for name, _ in attrs):
            self.inline.append(f"{tag} {attrs}")  # handlers and style attributes are inline code too

    def handle_endtag(self, tag: str) -> None:
        self._inside = self._inside and tag != "script"

    def handle_data(self, data: str) -> None:
        if self._inside and data.strip():
            self.inline.append(data)


@pytest.fixture
async def running(tmp_path: Path, aiohttp_server: MakeServer) -> AsyncIterator[Lab]:
    async with lab(tmp_path, aiohttp_server) as found:
        yield found


async def get(lab_: Lab, path: str, **kwargs: object) -> tuple[int, str, aiohttp.ClientResponse]:
    async with aiohttp.ClientSession() as session, session.get(lab_.url(path), **kwargs) as answer:  # type: ignore[arg-type]
        return answer.status, await answer.text(), answer


def counts(html: str) -> dict[str, int]:
    return {k: int(v) for k, v in re.findall(r'data-count="([a-z-]+)">(\d+)<', html)}


def rows(html: str) -> dict[str, str]:
    return dict(re.findall(r'<li class="check st-\w+" data-id="([^"]+)" data-status="(\w+)">', html))


async def test_page_shows_every_state_with_counts_down_first(running: Lab) -> None:
    for path in ("/", "/status"):
        status, html, answer = await get(running, path)
        assert status == 200 and answer.content_type == "text/html"
        assert counts(html) == {
            "services-down": 1,
            "services-degraded": 1,
            "services-unknown": 1,
            "services-up": 1,
            "checks-down": 2,
            "checks-unknown": 1,
            "checks-up": 3,
        }
        assert 'data-overall="down"' in html and "1 service down" in html
        assert rows(html) == {
            "cache/tcp": "down",
            "payments/api": "down",
            "payments/flip": "up",
            "search/slow": "unknown",
            "shop/tcp": "up",
            "shop/home": "up",
        }
        order = re.findall(r'<details class="service st-(\w+)" data-service="(\w+)"', html)
        assert order == [("down", "cache"), ("degraded", "payments"), ("unknown", "search"), ("up", "shop")]
        # inside a service, the down check comes first
        assert html.index('data-id="payments/api"') < html.index('data-id="payments/flip"')
        assert "refused" in html and 'href="/status/payments/api"' in html
        # uptime from the same aggregates the API serves: shop is all up, cache all down so far
        assert "<dt>24h</dt><dd>100%</dd>" in html and "<dt>24h</dt><dd>0.0%</dd>" in html
        assert 'class="l-ok" x="89" width="1"' in html and 'class="l-bad" x="89" width="1"' in html


async def test_no_inline_script_and_a_csp_that_forbids_them(running: Lab) -> None:
    for path in ("/", "/status/payments/api", "/login"):
        _, html, answer = await get(running, path)
        csp = answer.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe-inline" not in csp
        parser = Scripts()
        parser.feed(html)
        assert parser.inline == []
        assert all(s.get("src", "").startswith("/static/page.js?v=") for s in parser.scripts)  # type: ignore[union-attr]


async def test_config_and_probe_strings_are_escaped(running: Lab) -> None:
    _, html, _ = await get(running, "/")
    assert SCRIPT_NAME not in html and "<img src=x" not in html and "<b>bold</b>" not in html
    assert "owner=&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert escape(HTML_BODY[:40]) in html  # the body excerpt in the body_mismatch message
    _, detail, _ = await get(running, "/status/payments/api")
    assert "<img src=x" not in detail and "&lt;script&gt;alert(2)&lt;/script&gt;" in detail


async def test_a_service_named_like_a_script_is_text(running: Lab) -> None:
    # config names cannot hold '<' (they must match [A-Za-z0-9_.-]+), so put one in the store
    store = running.store
    hostile = ServiceInfo(
        SCRIPT_NAME, {"x": SCRIPT_NAME}, (CheckInfo(SCRIPT_NAME, "c", "tcp", "t", 1, 1, 5),)
    )
    store.apply([*service_infos(load_config(running.config)), hostile])
    _, html, _ = await get(running, "/")
    assert SCRIPT_NAME not in html
    assert '<h2 class="svc-name">&lt;script&gt;alert(1)&lt;/script&gt;</h2>' in html
    status, badge, _ = await get(running, "/api/v1/services/%3Cscript%3Ealert(1)%3C%2Fscript%3E/badge.svg")
    assert status == 200 and SCRIPT_NAME not in badge and "&lt;script&gt;" in badge


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("?status=down", {"cache/tcp", "payments/api"}),
        ("?status=up", {"payments/flip", "shop/tcp", "shop/home"}),
        ("?status=unknown", {"search/slow"}),
        ("?status=degraded", {"payments/api", "payments/flip"}),
        ("?q=HOME", {"shop/home"}),
        ("?q=pay", {"payments/api", "payments/flip"}),
        ("?label=team=infra", {"cache/tcp", "search/slow"}),
        ("?label=team:infra&status=down", {"cache/tcp"}),
        ("?label=tier", {"shop/tcp", "shop/home"}),
        ("?q=nothing-like-this", set()),
    ],
)
async def test_filters(running: Lab, query: str, expected: set[str]) -> None:
    status, html, _ = await get(running, "/" + query)
    assert status == 200
    assert set(rows(html)) == expected
    assert counts(html)["checks-down"] == 2  # the banner always counts everything


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("?status=sideways", "status must be one of"),
        ("?page=0", "page must be"),
        ("?bars=weeks", "bars must be"),
        ("?color=red", "unknown query parameter(s): color"),
    ],
)
async def test_bad_page_queries_are_a_clear_400(running: Lab, query: str, reason: str) -> None:
    status, html, _ = await get(running, "/" + query)
    assert status == 400 and reason in html


async def test_check_page_has_history_and_failures(running: Lab) -> None:
    status, html, _ = await get(running, "/status/cache/tcp")
    assert status == 200
    history = re.findall(r'<tr class="(ok|fail)">', html)
    assert history and set(history) == {"fail"}
    assert '<ol class="failures">' in html and "refused" in html
    assert html.count("<rect ") == 90  # one bar per period, each with its own tooltip
    assert re.search(r"<title>\d{4}-\d\d-\d\d \d\d:00 UTC: 0.0% up, \d+ probes", html)  # this hour
    assert '<th scope="row">24h</th><td>0.0%</td>' in html  # the uptime windows table
    status, _, _ = await get(running, "/status/cache/nope")
    assert status == 404
    status, _, _ = await get(running, "/status/cache/tcp?x=1")
    assert status == 400


async def test_gzip_for_text_and_none_when_not_asked(running: Lab) -> None:
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        for path in ("/", "/static/page.css", "/static/page.js", "/api/v1/services", "/api/v1/openapi.json"):
            async with session.get(running.url(path), headers={"Accept-Encoding": "gzip"}) as answer:
                assert answer.headers.get("Content-Encoding") == "gzip", path
                assert answer.headers["Vary"].endswith("Accept-Encoding")
                plain = gzip.decompress(await answer.read())
            async with session.get(running.url(path), headers={"Accept-Encoding": "identity"}) as answer:
                assert "Content-Encoding" not in answer.headers
                assert await answer.read() == plain or path == "/"  # the page shows times that move on
        async with session.get(running.url("/metrics"), headers={"Accept-Encoding": "gzip"}) as answer:
            assert (
                answer.headers["Content-Encoding"] == "gzip"
                and answer.headers["Vary"] == "Accept, Accept-Encoding"
            )
        stream = {"Accept-Encoding": "gzip", "Accept": "text/event-stream"}
        async with session.get(running.url("/api/v1/events"), headers=stream) as answer:
            assert answer.status == 200 and "Content-Encoding" not in answer.headers  # a stream stays plain


async def test_head_twin_sends_no_gzip_bytes_on_a_kept_alive_connection(running: Lab) -> None:
    """A HEAD that would be gzipped as a GET: its headers, then at once the next response."""
    url = urllib.parse.urlsplit(running.url("/"))
    assert url.hostname is not None and url.port is not None
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    try:
        head = "HEAD {} HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n"
        writer.write((head.format("/") + "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").encode())
        await writer.drain()
        first = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        status_line = await asyncio.wait_for(reader.readuntil(b"\r\n"), 10)
    finally:
        writer.close()
        await writer.wait_closed()
    assert first.startswith(b"HTTP/1.1 200") and b"Accept-Encoding" in first  # Vary still says so
    assert b"Content-Encoding" not in first  # identity: no gzip stream to start and never end
    assert status_line == b"HTTP/1.1 200 OK\r\n"  # no gzip header or trailer in between


async def test_static_files_are_versioned(running: Lab) -> None:
    _, html, _ = await get(running, "/")
    css = re.search(r'href="(/static/page\.css\?v=\w+)"', html)
    assert css is not None
    _, _, answer = await get(running, css.group(1))
    assert "immutable" in answer.headers["Cache-Control"]
    _, _, answer = await get(running, "/static/page.css")
    assert answer.headers["Cache-Control"] == "no-cache"
    status, body, _ = await get(running, "/static/secret.txt")
    assert status == 404 and '"not_found"' in body


async def test_badges(running: Lab) -> None:
    status, svg, answer = await get(running, "/api/v1/services/cache/badge.svg")
    assert status == 200 and answer.content_type == "image/svg+xml"
    assert svg.startswith("<svg") and ">cache<" in svg and "down" in svg
    _, svg, _ = await get(running, "/api/v1/services/shop/checks/home/badge.svg?kind=status")
    assert "shop/home" in svg and "up" in svg
    _, svg, _ = await get(running, "/api/v1/services/shop/badge.svg?kind=uptime&window=30d")
    assert "shop 30d" in svg and ">100%<" in svg  # every probe of shop so far succeeded
    _, svg, _ = await get(running, "/api/v1/services/cache/checks/tcp/badge.svg?kind=uptime")
    assert ">0.0%<" in svg
    for bad in ("?kind=colour", "?window=1y", "?size=big"):
        status, body, _ = await get(running, "/api/v1/services/shop/badge.svg" + bad)
        assert status == 400 and '"bad_request"' in body
    for missing in ("/api/v1/services/nope/badge.svg", "/api/v1/services/shop/checks/nope/badge.svg"):
        status, body, _ = await get(running, missing)
        assert status == 404 and '"not_found"' in body


async def test_protect_reads_needs_a_login(tmp_path: Path, aiohttp_server: MakeServer) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("page-s3cret\n")
    server = f"  token_file: {token_file}\n  protect_reads: true"
    jar = aiohttp.CookieJar(unsafe=True)  # keep cookies of an IP address, as browsers do
    async with (
        lab(tmp_path, aiohttp_server, server=server) as running,
        aiohttp.ClientSession(cookie_jar=jar) as session,
    ):
        async with session.get(running.url("/")) as answer:
            html = await answer.text()
            assert answer.status == 401 and 'action="/login"' in html and "cache" not in html
        for api_path in ("/api/v1/services", "/api/v1/services/cache/badge.svg"):
            async with session.get(running.url(api_path)) as answer:
                assert answer.status == 401
        async with session.post(running.url("/login"), data={"token": "wrong", "next": "/"}) as answer:
            assert answer.status == 401 and "not right" in await answer.text()
        form = {"token": "page-s3cret", "next": "//elsewhere.invalid/"}
        async with session.post(running.url("/login"), data=form, allow_redirects=False) as answer:
            assert answer.status == 303 and answer.headers["Location"] == "/"
            cookie = answer.headers["Set-Cookie"]
            assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "page-s3cret" not in cookie
        async with session.get(running.url("/")) as answer:
            assert answer.status == 200 and 'data-id="cache/tcp"' in await answer.text()
        async with session.get(running.url("/api/v1/services")) as answer:
            assert answer.status == 200
        sse = {"Accept": "text/event-stream"}  # what the page's EventSource sends, with the cookie
        async with session.get(running.url("/api/v1/events"), headers=sse) as answer:
            assert answer.status == 200 and answer.content_type == "text/event-stream"
        async with session.post(running.url("/api/v1/reload")) as answer:
            assert answer.status == 401  # the cookie reads; it never mutates (no CSRF through it)
        async with session.post(running.url("/logout"), allow_redirects=False) as answer:
            assert answer.status == 303
        async with session.get(running.url("/")) as answer:
            assert answer.status == 401


async def test_pages_of_fifty_checks(tmp_path: Path, aiohttp_server: MakeServer) -> None:
    async with lab(tmp_path, aiohttp_server) as running:
        infos = [
            ServiceInfo(
                f"svc{i:03d}",
                {},
                tuple(CheckInfo(f"svc{i:03d}", f"c{j}", "tcp", "t", 1, 1, 5) for j in range(6)),
            )
            for i in range(20)
        ]
        running.store.apply(infos)
        for info in (check for service in infos for check in service.checks):
            running.store.record(info.key, ProbeResult(time.time(), True, 0.001, 0.001))
        failure = ProbeResult(time.time(), False, 0.001, None, ErrorKind.REFUSED, "refused")
        running.store.record(("svc005", "c3"), failure)
        _, first, _ = await get(running, "/")
        _, last, _ = await get(running, "/?page=3")
        _, beyond, _ = await get(running, "/?page=99")
        assert len(rows(first)) == 50 and len(rows(last)) == 20 and rows(beyond) == rows(last)
        assert "Checks 101\N{EN DASH}120 of 120" in last and 'rel="prev"' in last and 'rel="next"' not in last
        # down first; a long list collapses the services that are up
        assert next(iter(rows(first))) == "svc005/c3"
        assert re.findall(r'<details class="service st-(\w+)" data-service="(\w+)" open>', first) == [
            ("degraded", "svc005")
        ]
