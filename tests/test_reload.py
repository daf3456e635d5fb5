"""Reload keeps what it can: timing-only changes keep state, history and uptime (real app)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from healthd.app import DAEMON, create_app
from healthd.config import CheckKey, diff_configs, load_config

from tests.conftest import TcpServer
from tests.test_api import Client, MakeClient, wait_for


def config_text(target: str, timing: str, second: str) -> str:
    return f"""\
server: {{listen: 127.0.0.1:0}}
services:
  - name: web
    checks:
      - {{type: tcp, target: "{target}", {timing}}}
      - {{name: other, type: tcp, target: "{second}", interval: 200ms, timeout: 100ms}}
"""


async def check_body(client: Client, name: str) -> dict[str, Any]:
    resp = await client.get(f"/api/v1/services/web/checks/{name}")
    assert resp.status == 200
    body: dict[str, Any] = await resp.json()
    return body


async def test_timing_only_change_keeps_state_history_uptime_and_metrics(
    tmp_path: Path, tcp_server: TcpServer, closed_port: int, aiohttp_client: MakeClient
) -> None:
    path = tmp_path / "config.yaml"
    timing = "interval: 200ms, timeout: 100ms, rise: 1, fall: 1, history: 50"
    path.write_text(config_text(tcp_server.target, timing, f"127.0.0.1:{closed_port}"))
    client = await aiohttp_client(create_app(load_config(path), path))
    store = client.app[DAEMON].store

    async def enough_results() -> bool:
        tcp, other = store.check(("web", "tcp")), store.check(("web", "other"))
        return tcp is not None and other is not None and len(tcp.history) >= 4 and len(other.history) >= 2

    await wait_for(enough_results)
    before = await check_body(client, "tcp")
    assert before["status"] == "up"

    new_timing = "interval: 300ms, timeout: 150ms, rise: 2, fall: 4, history: 3"
    path.write_text(config_text(tcp_server.target, new_timing, f"127.0.0.1:{closed_port + 0}"))
    scrape_before = await (await client.get("/metrics")).text()
    resp = await client.post("/api/v1/reload")
    assert resp.status == 200
    assert (await resp.json())["changed"] == ["web/tcp"]
    scrape_after = await (await client.get("/metrics")).text()

    after = await check_body(client, "tcp")
    assert after["status"] == "up" and after["since"] == before["since"]
    assert sum(after["counters"].values()) >= sum(before["counters"].values())
    assert after["windows"]["1h"]["probes"] >= before["windows"]["1h"]["probes"] >= 4
    history = await (await client.get("/api/v1/services/web/checks/tcp/history")).json()
    assert len(history["results"]) == 3  # resized to the new `history`, newest kept
    assert history["results"][0]["time"] >= before["last"]["time"]
    assert after["settings"]["rise"] == 2 and after["settings"]["history"] == 3
    up_line = 'healthd_check_up{service="web",check="tcp",type="tcp",target="' + tcp_server.target + '"} 1.0'
    assert up_line in scrape_before and up_line in scrape_after  # alerts do not reset


async def test_identity_change_restarts_the_check(
    tmp_path: Path, tcp_server: TcpServer, closed_port: int, aiohttp_client: MakeClient
) -> None:
    path = tmp_path / "config.yaml"
    timing = "interval: 200ms, timeout: 100ms, rise: 1, fall: 1"
    path.write_text(config_text(tcp_server.target, timing, f"127.0.0.1:{closed_port}"))
    client = await aiohttp_client(create_app(load_config(path), path))
    store = client.app[DAEMON].store

    async def has_results() -> bool:
        state = store.check(("web", "tcp"))
        return state is not None and len(state.history) >= 2

    await wait_for(has_results)
    path.write_text(config_text(f"127.0.0.1:{closed_port}", timing, f"127.0.0.1:{closed_port}"))
    assert (await client.post("/api/v1/reload")).status == 200
    state = store.check(("web", "tcp"))
    assert state is not None and state.info.target == f"127.0.0.1:{closed_port}"
    assert len(state.history) <= 1 and all(not r.ok for r in state.history)  # nothing from the old target


def test_diff_tells_timing_changes_from_identity_changes(tmp_path: Path) -> None:
    def load(timing: str, target: str = "127.0.0.1:1") -> Any:
        path = tmp_path / "c.yaml"
        path.write_text(config_text(target, timing, "127.0.0.1:2"))
        return load_config(path)

    base = load("interval: 3s")
    retimed = load("interval: 2s, timeout: 1s, rise: 3, fall: 4, history: 7")
    moved = load("interval: 3s", target="127.0.0.1:3")
    rebound = load("interval: 3s, source_ip: 127.0.0.1")
    key = CheckKey("web", "tcp")
    assert diff_configs(base, retimed).changed == (key,) and diff_configs(base, retimed).reset == ()
    assert diff_configs(base, moved).reset == (key,)
    assert diff_configs(base, rebound).reset == (key,)  # what is probed changed: its source
    assert diff_configs(base, base).changed == ()
