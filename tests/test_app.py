"""The app's lifecycle: what probes keep between runs is closed at shutdown."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from healthd.app import create_app
from healthd.config import load_config

from tests.fds import new_fds, new_fds_settled, open_fds


async def test_shutdown_closes_shared_probe_sockets(tmp_path: Path) -> None:
    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    target = web.Application()
    target.router.add_get("/", ok)
    async with TestServer(target, host="127.0.0.1") as server:
        path = tmp_path / "config.yaml"
        path.write_text(f"""\
server: {{listen: "127.0.0.1:0"}}
defaults: {{interval: 1s, timeout: 500ms}}
services:
  - name: shared
    checks:
      - type: icmp
        target: 127.0.0.1
      - type: http
        url: http://127.0.0.1:{server.port}/
        keepalive: true
""")
        before = open_fds()
        client = TestClient(TestServer(create_app(load_config(path), path)))
        await client.start_server()
        for _ in range(60):
            body = await (await client.get("/api/v1/services/shared")).json()
            if all(check["last"] is not None for check in body["checks"]):
                break
            await asyncio.sleep(0.05)
        assert all(check["last"] is not None for check in body["checks"]), body
        assert new_fds(before)  # the ICMP socket and the pooled HTTP connection are open
        await client.close()
        await asyncio.sleep(0)
        assert await new_fds_settled(before) == set()
