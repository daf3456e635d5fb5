"""`GET /api/v1/services` over HTTP: written in pieces to a client that takes no gzip, whole
(and compressed by the app's middleware) to one that does; the same bytes either way."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from healthd import api, page
from healthd.api_listing import ListingCache, services_json
from healthd.results import ProbeResult
from healthd.store import CheckInfo, ServiceInfo, Store

Client = TestClient[Any, web.Application]
CHECKS = 3_000  # ~1.3 MB of listing


def filled_store() -> Store:
    store = Store()
    services = [
        ServiceInfo(
            f"s{s:02d}",
            {"team": "core"},
            tuple(CheckInfo(f"s{s:02d}", f"c{c:03d}", "tcp", "127.0.0.1:1", 1, 1, 5) for c in range(100)),
        )
        for s in range(CHECKS // 100)
    ]
    store.apply(services)
    at = time.time() - 10  # in the same 1 h window for the whole test
    for info in (info for service in services for info in service.checks):
        store.record(info.key, ProbeResult(at, True, 2e-4, 1e-4, phases={"connect": 1e-4}))
    return store


@pytest.fixture
async def client(aiohttp_client: Any) -> Client:
    app = web.Application(middlewares=[page.compress_middleware, api.error_middleware])
    app[api.STORE], app[api.AUTH] = filled_store(), api.Auth()
    api.add_routes(app)
    made: Client = await aiohttp_client(app)
    return made


async def expected(client: Client) -> bytes:
    store = client.app[api.STORE]
    return await services_json(ListingCache(), store, store.services, time.time())


async def test_a_client_without_gzip_gets_the_pieces_as_one_body(client: Client) -> None:
    resp = await client.get("/api/v1/services", headers={"Accept-Encoding": "identity"})
    body = await resp.read()
    assert resp.status == 200 and resp.content_type == "application/json"
    assert "Content-Encoding" not in resp.headers and "Transfer-Encoding" not in resp.headers
    assert int(resp.headers["Content-Length"]) == len(body) > 1_000_000
    assert body == await expected(client)


async def test_a_gzip_client_gets_it_compressed_and_head_gets_the_length(client: Client) -> None:
    resp = await client.get("/api/v1/services", headers={"Accept-Encoding": "gzip"})
    assert resp.headers["Content-Encoding"] == "gzip" and resp.headers["Vary"] == "Accept-Encoding"
    body = await resp.read()  # inflated by the client
    assert body == await expected(client)
    head = await client.head("/api/v1/services", headers={"Accept-Encoding": "identity"})
    assert int(head.headers["Content-Length"]) == len(body) and await head.read() == b""


async def test_a_client_leaving_mid_answer_is_no_error(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    for _ in range(3):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the answer waits on the server
        sock.connect(("127.0.0.1", client.port))
        reader, writer = await asyncio.open_connection(sock=sock)
        writer.write(b"GET /api/v1/services HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await reader.readexactly(1024)).startswith(b"HTTP/1.1 200")
        writer.transport.abort()  # leaves with most of the answer unread
    resp = await client.get("/api/v1/services", headers={"Accept-Encoding": "identity"})
    assert resp.status == 200 and await resp.read() == await expected(client)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
