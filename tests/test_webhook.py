"""Webhooks to real loopback aiohttp receivers: signed bodies, retries, bounded queues, isolation."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from healthd.app import DAEMON, create_app
from healthd.config import load_config
from healthd.errors import ConfigError

from tests.conftest import TcpServer
from tests.test_api import Client, MakeClient

SECRET = "whsec-0123456789"
HEADER_SECRET = "Bearer hook-header-secret"


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1 that records what it got and answers `status` after `delay`."""

    status: int = 200
    delay: float = 0.0
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.requests]


@asynccontextmanager
async def receiver(status: int = 200, delay: float = 0.0) -> AsyncIterator[Receiver]:
    hook = Receiver(status, delay)

    async def handle(request: web.Request) -> web.Response:
        hook.requests.append((dict(request.headers), await request.read()))
        if hook.delay:
            await asyncio.sleep(hook.delay)
        return web.Response(status=hook.status)

    app = web.Application()
    app.router.add_post("/hook", handle)
    async with TestServer(app, host="127.0.0.1") as server:
        hook.url = str(server.make_url("/hook"))
        yield hook


async def wait_until(predicate: Callable[[], bool], within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while not predicate():
            await asyncio.sleep(0.02)


def write_config(path: Path, up: str, down: str, hooks: str) -> Path:
    path.write_text(f"""\
server: {{listen: "127.0.0.1:0"}}
defaults: {{interval: 300ms, timeout: 200ms, rise: 1, fall: 1}}
notify:
  webhooks:
{hooks}
services:
  - name: web
    checks:
      - type: tcp
        target: {up}
      - name: closed
        type: tcp
        target: {down}
""")
    return path


async def start(
    aiohttp_client: MakeClient, tmp_path: Path, tcp_server: TcpServer, closed_port: int, hooks: str
) -> Client:
    path = write_config(tmp_path / "config.yaml", tcp_server.target, f"127.0.0.1:{closed_port}", hooks)
    return await aiohttp_client(create_app(load_config(path), path))


def counts(client: Client) -> dict[tuple[str, str], int]:
    return client.app[DAEMON].notifications.counts


async def test_signed_json_body_per_event(
    tmp_path: Path, tcp_server: TcpServer, closed_port: int, aiohttp_client: MakeClient
) -> None:
    async with receiver() as hook, receiver() as checks_only:
        hooks = f"""\
    - name: signed
      url: {hook.url}
      secret: {SECRET}
      headers: {{Authorization: "{HEADER_SECRET}"}}
    - name: checks-only
      url: {checks_only.url}
      events: [check]"""
        client = await start(aiohttp_client, tmp_path, tcp_server, closed_port, hooks)
        await wait_until(lambda: {"start", "check", "service"} <= {e["type"] for e in hook.events()})
        await wait_until(lambda: len(checks_only.events()) >= 2)
        for headers, body in hook.requests:
            expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            assert headers["X-Healthd-Signature"] == expected
            assert headers["Authorization"] == HEADER_SECRET
            assert headers["Content-Type"] == "application/json"
            event = json.loads(body)
            assert headers["X-Healthd-Event"] == event["type"]
            assert headers["X-Healthd-Delivery"] == str(event["id"])
        ids = [e["id"] for e in hook.events()]
        assert ids == sorted(ids)  # delivered in order
        down = next(e for e in hook.events() if e["type"] == "check" and e["check"] == "closed")
        assert down["status"] == "down" and down["error"]["kind"] == "refused"
        assert {e["type"] for e in checks_only.events()} == {"check"}
        assert all("X-Healthd-Signature" not in headers for headers, _ in checks_only.requests)
        # the receiver records a request before its answer reaches the sender's counter
        await wait_until(lambda: counts(client)[("signed", "sent")] == len(hook.requests))
        assert counts(client)[("signed", "failed")] == 0
        await client.close()  # what SIGTERM does: the stop event still goes out
        assert hook.events()[-1]["type"] == "stop"


async def test_failing_down_and_slow_receivers_disturb_nothing_else(
    tmp_path: Path,
    tcp_server: TcpServer,
    closed_port: int,
    aiohttp_client: MakeClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with (
        receiver() as good,
        receiver(status=500) as broken,
        receiver(delay=30) as slow,
    ):
        hooks = f"""\
    - {{name: good, url: {good.url}}}
    - {{name: broken, url: {broken.url}, retries: 2, backoff: 50ms, secret: {SECRET}}}
    - {{name: slow, url: {slow.url}, timeout: 1s, queue_size: 3, headers: {{X-Token: "{HEADER_SECRET}"}}}}
    - {{name: gone, url: "http://127.0.0.1:{closed_port}/hook", retries: 1, backoff: 50ms}}"""
        client = await start(aiohttp_client, tmp_path, tcp_server, closed_port, hooks)
        daemon = client.app[DAEMON]
        await wait_until(lambda: len(good.events()) >= 4)
        for n in range(20):  # a burst: the slow receiver's queue of 3 overflows
            daemon.events.publish("reload", added=[f"x/{n}"], removed=[], changed=[])
        await wait_until(lambda: sum(e["type"] == "reload" for e in good.events()) == 20)
        await wait_until(lambda: counts(client)[("broken", "failed")] >= 2)
        await wait_until(lambda: counts(client)[("gone", "failed")] >= 2)
        assert len(broken.requests) >= 3 * counts(client)[("broken", "failed")]  # 1 try + 2 retries each
        assert counts(client)[("slow", "dropped")] >= 15
        assert counts(client)[("slow", "sent")] == 0
        assert counts(client)[("good", "failed")] == 0 and counts(client)[("good", "dropped")] == 0
        # probing goes on at its pace meanwhile
        store = daemon.store
        probes = store.check(("web", "tcp")).counts["success"]  # type: ignore[union-attr]
        await wait_until(lambda: store.check(("web", "tcp")).counts["success"] >= probes + 3)  # type: ignore[union-attr]
        metrics = await (await client.get("/metrics")).text()
        assert 'healthd_notifications_total{receiver="slow",result="dropped"}' in metrics
        assert 'healthd_notifications_total{receiver="good",result="sent"}' in metrics
        exposed = metrics + json.dumps(await (await client.get("/api/v1/services")).json())
        exposed += await (await client.get("/api/v1/events?limit=10000")).text()
        exposed += caplog.text
        for secret in (SECRET, HEADER_SECRET, "hook-header-secret"):
            assert secret not in exposed
        assert "webhook broken: event" in caplog.text and "HTTP 500" in caplog.text
        warned = [r for r in caplog.records if r.levelno >= logging.WARNING and "webhook gone" in r.message]
        assert len(warned) == 1  # then quiet until it recovers
        ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("healthd"))
        assert "cannot connect" in ours and "/hook" not in ours  # never the URL


async def test_a_receiver_that_redirects_is_not_followed(
    tmp_path: Path, tcp_server: TcpServer, closed_port: int, aiohttp_client: MakeClient
) -> None:
    async with receiver(status=307) as moved:
        hooks = f"    - {{name: moved, url: {moved.url}, retries: 3, backoff: 10ms}}"
        client = await start(aiohttp_client, tmp_path, tcp_server, closed_port, hooks)
        await wait_until(lambda: counts(client)[("moved", "failed")] >= 1)
        assert len(moved.requests) == counts(client)[("moved", "failed")]  # a 3xx is final: no retries


@pytest.mark.parametrize(
    ("hooks", "error"),
    [
        (
            "    - url: ftp://127.0.0.1/x",
            "notify.webhooks[0].url: 'ftp://127.0.0.1/x' is not an http:// or https:// URL",
        ),
        (
            "    - {url: 'http://127.0.0.1:1/', events: [checks]}",
            "notify.webhooks[0].events[0]: must be 'check', 'service', 'reload', 'start' or 'stop'",
        ),
        (
            "    - {url: 'http://127.0.0.1:1/a'}\n    - {url: 'http://127.0.0.1:1/b'}",
            "notify.webhooks: two receivers named '127.0.0.1:1': give the webhooks distinct names",
        ),
        (
            "    - {url: 'http://127.0.0.1:1/', retries: -1}",
            "notify.webhooks[0].retries: must be at least 0, not -1",
        ),
        (
            "    - {url: 'http://127.0.0.1:1/', secrets: x}",
            "notify.webhooks[0].secrets: unknown option (did you mean 'secret'?)",
        ),
    ],
)
def test_bad_webhook_config_is_a_located_error(tmp_path: Path, hooks: str, error: str) -> None:
    path = write_config(tmp_path / "config.yaml", "127.0.0.1:1", "127.0.0.1:2", hooks)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert any(line.endswith(error) and line.startswith(f"{path}:") for line in caught.value.errors), (
        caught.value.errors
    )


def test_default_receiver_name_is_host_and_port_only(tmp_path: Path) -> None:
    hooks = "    - url: https://hooks.example.invalid:8443/services/T000/B000/s3cr3tpath?token=abc"
    config = load_config(write_config(tmp_path / "config.yaml", "127.0.0.1:1", "127.0.0.1:2", hooks))
    assert config.notify.webhooks[0].receiver == "hooks.example.invalid:8443"  # only parsed, never sent to


async def test_reload_swaps_receivers(
    tmp_path: Path, tcp_server: TcpServer, closed_port: int, aiohttp_client: MakeClient
) -> None:
    async with receiver() as first, receiver() as second:
        client = await start(
            aiohttp_client, tmp_path, tcp_server, closed_port, f"    - {{name: a, url: {first.url}}}"
        )
        await wait_until(lambda: any(e["type"] == "service" for e in first.events()))
        path = tmp_path / "config.yaml"
        path.write_text(path.read_text().replace(f"name: a, url: {first.url}", f"name: b, url: {second.url}"))
        assert (await client.post("/api/v1/reload")).status == 200
        await wait_until(lambda: any(e["type"] == "reload" for e in second.events()))
        assert all(e["type"] != "reload" for e in first.events())
        assert counts(client)[("b", "sent")] >= 1
        metrics = await (await client.get("/metrics")).text()
        assert 'receiver="b"' in metrics and 'receiver="a"' not in metrics  # a removed receiver's series go
