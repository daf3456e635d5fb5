"""REST API over a real running app (real scheduler, real probes to loopback listeners)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from healthd import page
from healthd.api import ROUTES
from healthd.app import create_app
from healthd.config import load_config

from tests.conftest import TcpServer

Client = TestClient[Any, web.Application]
MakeClient = Callable[[web.Application], Awaitable[Client]]


def config_text(up: str, down: str, extra: str = "", server: str = "") -> str:
    return f"""\
server:
  listen: 127.0.0.1:0
{server}
defaults:
  interval: 1s
  timeout: 500ms
  rise: 1
  fall: 1
  history: 50
services:
  - name: web
    labels: {{team: core}}
    checks:
      - type: tcp
        target: {up}
      - name: closed
        type: tcp
        target: {down}
{extra}"""


def token_server(tmp_path: Path, token: str, protect_reads: bool = True) -> str:
    """The `server:` lines (after listen) for a token file holding `token`."""
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    return f"  token_file: {token_file}\n  protect_reads: {str(protect_reads).lower()}"


async def wait_for(predicate: Callable[[], Awaitable[bool]], seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.fixture
async def setup(
    tmp_path: Path, tcp_server: TcpServer, closed_port: int, aiohttp_client: MakeClient
) -> tuple[Client, Path]:
    path = tmp_path / "config.yaml"
    path.write_text(config_text(tcp_server.target, f"127.0.0.1:{closed_port}"))
    client = await aiohttp_client(create_app(load_config(path), path))

    async def both_have_results() -> bool:
        body = await (await client.get("/api/v1/services/web")).json()
        return all(check["last"] is not None for check in body["checks"])

    await wait_for(both_have_results)
    return client, path


async def test_services_and_statuses(setup: tuple[Client, Path]) -> None:
    client, _ = setup
    resp = await client.get("/api/v1/services")
    assert resp.status == 200
    body = await resp.json()
    (web_svc,) = body["services"]
    assert web_svc["name"] == "web" and web_svc["labels"] == {"team": "core"}
    assert web_svc["status"] == "degraded"
    checks = {c["name"]: c for c in web_svc["checks"]}
    assert checks["tcp"]["status"] == "up" and checks["tcp"]["last"]["ok"] is True
    assert checks["closed"]["status"] == "down"
    assert checks["closed"]["last"]["error"]["kind"] == "refused"
    assert checks["closed"]["last"]["latency_ms"] is None
    assert checks["tcp"]["last"]["time"].endswith("Z")


async def test_check_detail_and_history(setup: tuple[Client, Path]) -> None:
    client, _ = setup
    detail = await (await client.get("/api/v1/services/web/checks/closed")).json()
    assert detail["since"] is not None and detail["counters"]["refused"] >= 1
    assert detail["settings"]["timeout"] == "500ms" and detail["settings"]["type"] == "tcp"
    history = await (await client.get("/api/v1/services/web/checks/tcp/history?limit=1")).json()
    assert len(history["results"]) == 1 and history["results"][0]["ok"] is True


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/api/v1/services/nope", 404, "not_found"),
        ("/api/v1/services/web/checks/nope", 404, "not_found"),
        ("/api/v1/services/nope/checks/tcp/history", 404, "not_found"),
        ("/api/v1/services/web/checks/tcp/history?limit=-1", 400, "bad_request"),
        ("/api/v1/services/web/checks/tcp/history?limit=abc", 400, "bad_request"),
        ("/api/v1/services/web/checks/tcp/history?limit=0", 400, "bad_request"),
        ("/api/v1/services/web/checks/tcp/history?limit=99999999999999999999", 400, "bad_request"),
        ("/api/v1/services/web/checks/tcp/history?limit=\u00b2", 400, "bad_request"),
        ("/api/v1/services/web/checks/tcp/history?limit=\uff11", 400, "bad_request"),
        ("/api/v1/services/web/checks/tcp/history?limit=\u0663", 400, "bad_request"),
        ("/api/v1/services/web/checks/tcp/history?limit=" + "1" * 4301, 400, "bad_request"),
        ("/api/v1/services/web/checks/tcp/history?limit=%201", 400, "bad_request"),
        ("/api/v1/services/web/checks/tcp/history?limit=1.0", 400, "bad_request"),
        ("/api/v1/services/web/checks/tcp/history?limit=", 400, "bad_request"),
        ("/api/v1/events?last_event_id=9223372036854775808", 400, "bad_request"),
        ("/api/v1/events?last_event_id=\u00b2", 400, "bad_request"),
        ("/api/v1/events?last_event_id=", 400, "bad_request"),  # schemathesis found it accepted
        ("/api/v1/events?last_event_id=%201", 400, "bad_request"),
        ("/api/v1/events?limit=\uff11", 400, "bad_request"),
        ("/no/such/path", 404, "not_found"),
    ],
)
async def test_bad_requests_get_json_errors(
    setup: tuple[Client, Path], path: str, status: int, code: str
) -> None:
    client, _ = setup
    resp = await client.get(path)
    assert resp.status == status
    assert resp.content_type == "application/json"
    assert (await resp.json())["error"]["code"] == code


@pytest.mark.parametrize("value", ["\u00b2", "9223372036854775808", "-1", "1" * 4301])
async def test_bad_last_event_id_header_is_400(setup: tuple[Client, Path], value: str) -> None:
    client, _ = setup
    for accept in ("text/event-stream", "application/json"):
        resp = await client.get("/api/v1/events", headers={"Accept": accept, "Last-Event-ID": value})
        assert resp.status == 400 and (await resp.json())["error"]["code"] == "bad_request"


async def test_blank_last_event_id_header_means_none(setup: tuple[Client, Path]) -> None:
    """A blank header is no id (the header wins over the query, so the bad query is not read)."""
    client, _ = setup
    resp = await client.get("/api/v1/events?last_event_id=", headers={"Last-Event-ID": " "})
    assert resp.status == 200 and "events" in await resp.json()


async def test_wrong_method_is_json_405(setup: tuple[Client, Path]) -> None:
    client, _ = setup
    resp = await client.delete("/api/v1/services")
    assert resp.status == 405 and (await resp.json())["error"]["code"] == "method_not_allowed"


async def test_health_and_readiness(setup: tuple[Client, Path]) -> None:
    client, _ = setup
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/readyz")).status == 200


async def test_openapi_lists_every_registered_route(setup: tuple[Client, Path]) -> None:
    client, _ = setup
    doc = await (await client.get("/api/v1/openapi.json")).json()
    assert doc["openapi"].startswith("3.1")
    registered = {
        (route.method, route.resource.canonical)
        for route in client.app.router.routes()
        if route.resource is not None
    }
    documented = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    assert registered == documented
    gets = {path for method, path in registered if method == "GET"}
    assert {path for method, path in registered if method == "HEAD"} == gets
    assert len(registered) == len(ROUTES + page.ROUTES) + len(gets)
    schemas = doc["components"]["schemas"]
    ref = doc["paths"]["/api/v1/services"]["get"]["responses"]["200"]["content"]["application/json"][
        "schema"
    ]["$ref"]
    assert ref.rsplit("/", 1)[1] in schemas
    assert "ErrorResponse" in schemas


async def test_reload_adds_removes_changes_and_keeps_history(
    setup: tuple[Client, Path], tcp_server: TcpServer
) -> None:
    client, path = setup
    before = await (await client.get("/api/v1/services/web/checks/tcp/history")).json()
    text = path.read_text()
    text = text.replace("      - name: closed\n", "      - name: closed2\n")
    text += f"  - name: extra\n    checks:\n      - type: tcp\n        target: {tcp_server.target}\n        timeout: 400ms\n"
    path.write_text(text)
    resp = await client.post("/api/v1/reload")
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {
        "added": ["extra/tcp", "web/closed2"],
        "removed": ["web/closed"],
        "changed": [],
    }
    after = await (await client.get("/api/v1/services/web/checks/tcp/history")).json()
    assert len(after["results"]) >= len(before["results"]) >= 1  # unchanged check kept its history
    assert (await client.get("/api/v1/services/web/checks/closed")).status == 404
    path.write_text(text.replace("timeout: 400ms", "timeout: 300ms"))
    resp = await client.post("/api/v1/reload")
    assert (await resp.json())["changed"] == ["extra/tcp"]


async def test_bad_reload_keeps_old_config(setup: tuple[Client, Path]) -> None:
    client, path = setup
    path.write_text(path.read_text().replace("timeout: 500ms", "timeout: 5s"))
    resp = await client.post("/api/v1/reload")
    assert resp.status == 400
    body = await resp.json()
    assert body["error"]["code"] == "invalid_config"
    assert any("exceeds interval" in line for line in body["error"]["errors"])
    services = await (await client.get("/api/v1/services")).json()
    assert len(services["services"][0]["checks"]) == 2
    metrics = await (await client.get("/metrics")).text()
    assert "healthd_config_last_reload_successful 0.0" in metrics


async def test_token_guards_mutations_and_optionally_reads(
    tmp_path: Path, tcp_server: TcpServer, closed_port: int, aiohttp_client: MakeClient
) -> None:
    path = tmp_path / "config.yaml"
    server = token_server(tmp_path, "s3cret-token")
    path.write_text(config_text(tcp_server.target, f"127.0.0.1:{closed_port}", server=server))
    client = await aiohttp_client(create_app(load_config(path), path))
    assert (await client.post("/api/v1/reload")).status == 401
    wrong = {"Authorization": "Bearer nope"}
    assert (await client.post("/api/v1/reload", headers=wrong)).status == 401
    good = {"Authorization": "Bearer s3cret-token"}
    assert (await client.post("/api/v1/reload", headers=good)).status == 200
    assert (await client.get("/api/v1/services")).status == 401
    assert (await client.get("/api/v1/services", headers=good)).status == 200
    for open_path in ("/metrics", "/healthz", "/readyz"):
        assert (await client.get(open_path)).status == 200
    details = await (await client.get("/api/v1/services/web/checks/tcp", headers=good)).text()
    assert "s3cret-token" not in details
