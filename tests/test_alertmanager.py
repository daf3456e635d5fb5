"""Alerts in a real Alertmanager (Debian's prometheus-alertmanager) on loopback: fire, then resolve."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from healthd.alerting.alertmanager import AlertmanagerNotifier
from healthd.alerting.payload import CHECK_ALERT, SERVICE_ALERT
from healthd.app import DAEMON, create_app
from healthd.config import AlertmanagerConfig, load_config
from healthd.events import EventHub

from tests.deploy.live import free_port
from tests.test_api import Client, MakeClient

BINARY = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
needs_alertmanager = pytest.mark.skipif(
    BINARY is None, reason="prometheus-alertmanager is not installed (.ci/install-test-tools.sh installs it)"
)
AM_CONFIG = 'route: {receiver: "null", group_wait: 0s}\nreceivers: [{name: "null"}]\n'


@asynccontextmanager
async def alertmanager(workdir: Path, port: int = 0) -> AsyncIterator[str]:
    """Alertmanager on 127.0.0.1 with its own storage, clustering off; yields its base URL."""
    assert BINARY is not None
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "alertmanager.yml").write_text(AM_CONFIG)
    process = await asyncio.create_subprocess_exec(
        BINARY,
        f"--config.file={workdir / 'alertmanager.yml'}",
        f"--storage.path={workdir}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    try:
        address = None
        async with asyncio.timeout(10):
            while address is None:
                line = (await process.stderr.readline()).decode()
                if not line:
                    raise AssertionError("alertmanager exited before listening")
                if found := re.search(r'msg="Listening on" address=(\S+)', line):
                    address = found.group(1)
        drain = asyncio.create_task(process.stderr.read())  # keep its pipe from filling
        yield f"http://{address}"
        drain.cancel()
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                async with asyncio.timeout(5):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()


async def am_alerts(session: aiohttp.ClientSession, base: str) -> list[dict[str, Any]]:
    async with session.get(f"{base}/api/v2/alerts") as resp:
        assert resp.status == 200
        alerts: list[dict[str, Any]] = await resp.json()
        return alerts


async def wait_alerts(
    session: aiohttp.ClientSession, base: str, want: set[str], within: float = 10.0
) -> list[dict[str, Any]]:
    """Poll (bounded) until the active alerts' names are exactly `want`."""
    alerts: list[dict[str, Any]] = []
    async with asyncio.timeout(within):
        while True:
            try:
                alerts = await am_alerts(session, base)
            except aiohttp.ClientError:
                alerts = []
            if {a["labels"]["alertname"] for a in alerts} == want and len(alerts) == len(want):
                return alerts
            await asyncio.sleep(0.1)


def healthd_config(path: Path, target_port: int, am_url: str, notify: bool = True) -> Path:
    notify_section = f"""\
notify:
  alertmanager:
    url: {am_url}
    external_url: http://healthd.test:9180/
    severity: page
    resend_interval: 1s
    timeout: 1s
"""
    path.write_text(f"""\
server: {{listen: "127.0.0.1:0"}}
defaults: {{interval: 300ms, timeout: 200ms, rise: 1, fall: 1}}
{notify_section if notify else ""}
services:
  - name: shop
    labels: {{team: payments}}
    checks:
      - name: api
        type: tcp
        target: 127.0.0.1:{target_port}
""")
    return path


async def resolve_by_coming_up(target: socket.socket, session: aiohttp.ClientSession, am: str) -> None:
    """Start answering on the target's port; wait (bounded) until Alertmanager has no alert left."""

    async def close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    target.listen(16)
    server = await asyncio.start_server(close, sock=target)
    try:
        await wait_alerts(session, am, set())
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
def target() -> Iterator[socket.socket]:
    """A port on 127.0.0.1 that refuses connections until the test starts listening on it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock
    finally:
        sock.close()


@needs_alertmanager
async def test_alert_fires_then_resolves(
    tmp_path: Path, target: socket.socket, aiohttp_client: MakeClient
) -> None:
    port = target.getsockname()[1]
    async with alertmanager(tmp_path / "am") as am, aiohttp.ClientSession() as session:
        path = healthd_config(tmp_path / "healthd.yaml", port, am)
        client: Client = await aiohttp_client(create_app(load_config(path), path))
        alerts = await wait_alerts(session, am, {CHECK_ALERT, SERVICE_ALERT})
        by_name = {a["labels"]["alertname"]: a for a in alerts}
        check = by_name[CHECK_ALERT]
        assert check["labels"] == {
            "alertname": CHECK_ALERT,
            "service": "shop",
            "check": "api",
            "type": "tcp",
            "target": f"127.0.0.1:{port}",
            "team": "payments",
            "severity": "page",
        }
        assert check["annotations"]["error_kind"] == "refused"
        assert check["annotations"]["error_message"]
        assert check["generatorURL"] == "http://healthd.test:9180/api/v1/services/shop/checks/api"
        assert check["status"]["state"] == "active"
        assert by_name[SERVICE_ALERT]["labels"]["service"] == "shop"
        await resolve_by_coming_up(target, session, am)
        counts = client.app[DAEMON].notifications.counts
        assert counts[("alertmanager", "sent")] >= 2 and counts[("alertmanager", "failed")] == 0


@needs_alertmanager
async def test_alertmanager_down_at_first_gets_the_alert_once_it_is_up(
    tmp_path: Path, target: socket.socket, aiohttp_client: MakeClient
) -> None:
    am_port = free_port()  # Alertmanager starts only later, on this port
    am_url = f"http://127.0.0.1:{am_port}"
    path = healthd_config(tmp_path / "healthd.yaml", target.getsockname()[1], am_url)
    client: Client = await aiohttp_client(create_app(load_config(path), path))
    counts = client.app[DAEMON].notifications.counts
    async with asyncio.timeout(10):
        while counts[("alertmanager", "failed")] < 2:
            await asyncio.sleep(0.05)
    # probing went on meanwhile
    detail = await (await client.get("/api/v1/services/shop/checks/api")).json()
    assert detail["status"] == "down" and detail["counters"]["refused"] >= 2
    async with alertmanager(tmp_path / "am", am_port) as am, aiohttp.ClientSession() as session:
        await wait_alerts(session, am, {CHECK_ALERT, SERVICE_ALERT})
        await resolve_by_coming_up(target, session, am)


def test_payload_times_and_resolution_without_network() -> None:
    now = [1_000.0]
    counted: list[tuple[str, str]] = []
    config = AlertmanagerConfig(url="http://127.0.0.1:1", resend_interval=60)
    notifier = AlertmanagerNotifier(
        config,
        "http://h:1",
        lambda name: {"team": "x"},
        lambda *key: counted.append(key),
        clock=lambda: now[0],
    )
    hub = EventHub(clock=lambda: now[0])
    hub.listen(notifier.on_event)
    down = {
        "service": "s",
        "check": "c",
        "check_type": "tcp",
        "target": "127.0.0.1:1",
        "status": "down",
        "previous": "up",
        "error": {"kind": "timeout", "message": "no answer within 2s"},
        "latency_ms": None,
    }
    hub.publish("check", **down)
    now[0] = 1_030.0
    hub.publish("check", **{**down, "error": {"kind": "refused", "message": "refused"}})  # still down
    (alert,) = notifier.payload()
    assert alert["startsAt"] == "1970-01-01T00:16:40.000Z"  # the first time it went down
    assert alert["endsAt"] == "1970-01-01T00:21:10.000Z"  # now + 4 resend intervals
    assert alert["annotations"]["error_kind"] == "refused"
    now[0] = 1_040.0
    hub.publish("check", **{**down, "status": "up", "previous": "down", "error": None})
    (resolved,) = notifier.payload()
    assert resolved["endsAt"] == "1970-01-01T00:17:20.000Z" and notifier.firing == []
    hub.publish("check", **down)
    hub.publish("reload", added=[], removed=["s/c"], changed=[])  # a removed check's alert resolves
    assert notifier.firing == [] and json.dumps(notifier.payload())


@needs_alertmanager
async def test_reload_that_adds_alertmanager_sends_what_is_down_already(
    tmp_path: Path, target: socket.socket, aiohttp_client: MakeClient
) -> None:
    async with alertmanager(tmp_path / "am") as am, aiohttp.ClientSession() as session:
        path = healthd_config(tmp_path / "healthd.yaml", target.getsockname()[1], am, notify=False)
        client: Client = await aiohttp_client(create_app(load_config(path), path))
        async with asyncio.timeout(10):
            while (await (await client.get("/api/v1/services/shop/checks/api")).json())["status"] != "down":
                await asyncio.sleep(0.05)
        assert await am_alerts(session, am) == []
        healthd_config(path, target.getsockname()[1], am)
        assert (await client.post("/api/v1/reload")).status == 200
        alerts = await wait_alerts(session, am, {CHECK_ALERT, SERVICE_ALERT})
        assert {a["labels"]["service"] for a in alerts} == {"shop"}
