"""A live daemon for the status page tests: real probes to loopback targets, with one service
in each state (up, degraded, down, unknown) and hostile strings where the page shows text."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer
from healthd.api import STORE
from healthd.app import create_app
from healthd.config import load_config
from healthd.store import Store

# what a hostile or broken target may send back; the page must show it as text
HTML_BODY = '<img src=x onerror="alert(1)"><script>alert(2)</script><b>bold</b>'
SCRIPT_NAME = "<script>alert(1)</script>"

MakeServer = Callable[..., Awaitable[TestServer]]


@dataclass
class Lab:
    server: TestServer  # the daemon's HTTP server
    app: web.Application
    flip: asyncio.Server  # the listener of payments/flip: close it and that check goes down
    config: Path

    @property
    def store(self) -> Store:
        return self.app[STORE]

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))


async def _targets(aiohttp_server: MakeServer) -> TestServer:
    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="all good")

    async def hostile(request: web.Request) -> web.Response:
        return web.Response(text=HTML_BODY, content_type="text/html")

    async def hang(request: web.Request) -> web.Response:
        await asyncio.Event().wait()  # never answers: the check stays unknown until its timeout
        raise AssertionError("unreachable")

    app = web.Application()
    app.router.add_get("/ok", ok)
    app.router.add_get("/hostile", hostile)
    app.router.add_get("/hang", hang)
    return await aiohttp_server(app)


def lab_config(http: str, up: str, flip: str, closed: str, server: str = "") -> str:
    return f"""\
server:
  listen: 127.0.0.1:0
{server}
defaults: {{interval: 1s, timeout: 800ms, rise: 1, fall: 1, history: 30}}
services:
  - name: shop
    labels: {{team: web, tier: "1"}}
    checks:
      - {{type: tcp, target: "{up}"}}
      - {{name: home, type: http, url: "{http}/ok"}}
  - name: payments
    labels: {{team: money, owner: "{SCRIPT_NAME}"}}
    checks:
      - {{name: flip, type: tcp, target: "{flip}"}}
      - {{name: api, type: http, url: "{http}/hostile", body_regex: "^OK$"}}
  - name: cache
    labels: {{team: infra}}
    checks:
      - {{type: tcp, target: "{closed}"}}
  - name: search
    labels: {{team: infra}}
    checks:
      - {{name: slow, type: http, url: "{http}/hang", interval: 60s, timeout: 30s}}
"""


async def wait_until(predicate: Callable[[], bool], seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


@asynccontextmanager
async def lab(tmp_path: Path, aiohttp_server: MakeServer, server: str = "") -> AsyncIterator[Lab]:
    targets = await _targets(aiohttp_server)
    http = str(targets.make_url("")).rstrip("/")
    up = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    flip = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    path = tmp_path / "healthd.yaml"
    ports = [s.sockets[0].getsockname()[1] for s in (up, flip)] + [closed.getsockname()[1]]
    up_t, flip_t, closed_t = (f"127.0.0.1:{p}" for p in ports)
    path.write_text(lab_config(http, up_t, flip_t, closed_t, server))
    try:
        app = create_app(load_config(path), path)
        daemon = await aiohttp_server(app)
        found = Lab(daemon, app, flip, path)
        await wait_until(lambda: settled(found.store))
        yield found
    finally:
        for listener in (up, flip):
            listener.close()
        closed.close()


def settled(store: Store) -> bool:
    """Every check but search/slow (which never answers) has its first verdict."""
    return all(s.status.value != "unknown" for s in store.all_states() if s.info.key != ("search", "slow"))


def statuses(store: Store) -> dict[str, Any]:
    return {f"{s.info.service}/{s.info.name}": s.status.value for s in store.all_states()}


def backfill(store: Store, now: float, days: int = 90) -> None:
    """Feed simulated past results to the uptime aggregates, for the screenshots only: one probe
    every 10 minutes for `days`, with a few outages, so the bars and sparklines have something
    to show. Deterministic (no randomness), so screenshots only change when the page does."""
    step = 600.0
    for n, state in enumerate(sorted(store.all_states(), key=lambda s: s.info.key)):
        start = now - days * 86400
        for i in range(int(days * 86400 / step)):
            t = start + i * step
            hour = int(t // 3600)
            slot = i % 6  # which 10 minutes of the hour
            outage = ((hour + n * 13) % 41 == 0 and slot < 2) or ((hour + n * 29) % 113 == 0 and slot < 5)
            latency = 0.002 + 0.0015 * (1 + ((i * 37 + n * 11) % 17) / 17) * (
                1.6 if hour % 24 in (9, 10, 11) else 1
            )
            state.uptime.observe(t, not outage, None if outage else latency, False)
