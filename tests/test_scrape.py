"""/metrics: gzip when the client takes it, the same document either way; rendering hands the loop back."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from healthd import api
from healthd.loop_slices import LoopSlices
from healthd.metrics import Exposition
from healthd.results import ProbeResult
from healthd.scrape import MetricsRenderer, gzip_join, wants_gzip
from healthd.store import CheckInfo, ServiceInfo, Store

Client = TestClient[Any, web.Application]
MakeClient = Callable[..., Awaitable[Client]]


def big_store(checks: int) -> Store:
    store = Store(probe_histograms=True)
    infos = tuple(
        CheckInfo("web", f"c{n}", "tcp", f"127.0.0.1:{1000 + n}", rise=1, fall=1, history=2)
        for n in range(checks)
    )
    store.apply([ServiceInfo("web", {}, infos)])
    for n, info in enumerate(infos):
        phases = {"resolve": 0.0, "connect": 1e-4 * n}
        store.record(info.key, ProbeResult(time=n, ok=n % 7 != 0, duration=1e-3, latency=1e-4, phases=phases))
    return store


@pytest.mark.parametrize(
    ("accept_encoding", "expected"),
    [
        ("gzip", True),
        ("gzip, deflate, br", True),  # aiohttp's client and browsers
        ("GZip;q=0.5", True),
        ("*", True),
        ("*, gzip;q=0", False),
        ("gzip;q=0", False),
        ("deflate", False),
        ("identity", False),
        ("", False),
    ],
)
def test_gzip_negotiation(accept_encoding: str, expected: bool) -> None:
    assert wants_gzip(accept_encoding) is expected


def test_gzip_join_is_one_member_of_the_chunks_in_order() -> None:
    chunks = [b"first\n", b"", b"second\n" * 1000]
    assert gzip.decompress(gzip_join(chunks)) == b"".join(chunks)


async def app_for(store: Store) -> web.Application:
    app = web.Application(middlewares=[api.error_middleware])
    app[api.STORE] = store
    app[api.AUTH] = api.Auth()
    app[api.RENDER_METRICS] = MetricsRenderer(store).render
    api.add_routes(app)
    return app


async def test_metrics_gzip_only_when_asked(aiohttp_client: MakeClient) -> None:
    client = await aiohttp_client(await app_for(big_store(50)), auto_decompress=False)
    plain = await client.get("/metrics", headers={"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in plain.headers
    body = await plain.read()
    zipped = await client.get("/metrics", headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in zipped.headers["Vary"]
    raw = await zipped.read()
    assert len(raw) < len(body) / 5
    unzipped = gzip.decompress(raw)
    # the process collector's figures move between scrapes; everything per check is the same
    per_check = [line for line in body.splitlines() if b'service="web"' in line]
    assert per_check and per_check == [line for line in unzipped.splitlines() if b'service="web"' in line]
    head = await client.head("/metrics", headers={"Accept-Encoding": "gzip"})
    assert head.status == 200 and head.headers["Content-Encoding"] == "gzip"


async def test_rendering_hands_the_loop_back_in_slices() -> None:
    store = big_store(500)
    exposition = Exposition(store)
    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    before = ticks
    chunks = await exposition.render_chunks(slices=LoopSlices(0, 0))  # pause at every chance: every 16 checks
    stop.set()
    await task
    assert ticks - before >= 500 // 16
    assert b"".join(chunks) == exposition.render()
