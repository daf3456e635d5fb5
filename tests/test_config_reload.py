"""A hostile config on reload (issue 11 item 2): a JSON 400, the old config running, the gauge at 0,
and READY=1 after RELOADING=1 when the reload came from SIGHUP."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from healthd import app as app_module
from healthd.app import create_app
from healthd.config import load_config

from tests.conftest import TcpServer
from tests.test_api import Client, MakeClient, config_text
from tests.test_cli import HEALTHD, Notifications, free_port, get, write_config
from tests.test_config_hardening import NESTED_REGEX, bomb

HOSTILE = {
    "alias bomb": bomb(7, width=10),
    "recursive alias": "x: &x [*x]\n",
    "constructor error": "services: !!bool shop\n",
    "control character": "services:\x07\n",
    "nesting": "x: " + "[" * 600 + "]" * 600 + "\n",
    "regex recursion": f"services: [{{name: a, checks: [{{type: http, url: 'http://127.0.0.1:1/', body_regex: '{NESTED_REGEX}'}}]}}]\n",
    "infinite interval": "services: [{name: a, checks: [{type: tcp, target: '127.0.0.1:1', interval: .inf}]}]\n",
}


async def gauge(client: Client) -> str:
    text = await (await client.get("/metrics")).text()
    return next(
        line for line in text.splitlines() if line.startswith("healthd_config_last_reload_successful ")
    )


@pytest.fixture
async def running(
    tmp_path: Path, tcp_server: TcpServer, closed_port: int, aiohttp_client: MakeClient
) -> tuple[Client, Path, str]:
    path = tmp_path / "config.yaml"
    good = config_text(tcp_server.target, f"127.0.0.1:{closed_port}")
    path.write_text(good)
    return await aiohttp_client(create_app(load_config(path), path)), path, good


@pytest.mark.parametrize("text", HOSTILE.values(), ids=HOSTILE.keys())
async def test_hostile_reload_is_a_400_and_keeps_the_old_config(
    running: tuple[Client, Path, str], text: str
) -> None:
    client, path, good = running
    path.write_text(text)
    resp = await client.post("/api/v1/reload")
    assert resp.status == 400
    body = await resp.json()
    assert body["error"]["code"] == "invalid_config"
    assert all(line.startswith(f"{path}:") for line in body["error"]["errors"]), body
    services = await (await client.get("/api/v1/services")).json()
    assert [svc["name"] for svc in services["services"]] == ["web"]
    assert await gauge(client) == "healthd_config_last_reload_successful 0.0"
    path.write_text(good)
    assert (await client.post("/api/v1/reload")).status == 200
    assert await gauge(client) == "healthd_config_last_reload_successful 1.0"


async def test_a_loader_bug_is_still_a_400(
    running: tuple[Client, Path, str], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The safety net behind the loader: an exception it should never raise is still answered."""
    client, path, _ = running

    def broken(_: object) -> None:
        raise RuntimeError("injected loader bug")

    monkeypatch.setattr(app_module, "load", broken)
    resp = await client.post("/api/v1/reload")
    assert resp.status == 400
    assert (await resp.json())["error"]["errors"] == [
        f"{path}: internal error reading the config (see the log)"
    ]
    assert await gauge(client) == "healthd_config_last_reload_successful 0.0"
    assert "injected loader bug" in caplog.text  # the traceback goes to the log, not the client


def test_sighup_with_a_hostile_config_answers_ready(tmp_path: Path, closed_port: int) -> None:
    port = free_port()
    config = write_config(tmp_path / "c.yaml", port, f"127.0.0.1:{closed_port}")
    notes = Notifications(tmp_path / "notify.sock")
    proc = subprocess.Popen(
        [*HEALTHD, "run", "-c", str(config)],
        env={**os.environ, "NOTIFY_SOCKET": str(notes.path)},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        notes.wait_for("READY=1")
        for name, text in HOSTILE.items():
            config.write_text(text)
            notes.seen.clear()
            proc.send_signal(signal.SIGHUP)
            notes.wait_for("RELOADING=1")
            notes.wait_for("READY=1")
            assert any("(last reload failed)" in message for message in notes.seen), (name, notes.seen)
            assert get(f"http://127.0.0.1:{port}/readyz")[0] == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        stderr = proc.communicate(timeout=10)[1]
        notes.sock.close()
    assert stderr.count("reload rejected, the old config keeps running") == len(HOSTILE)
    assert "Traceback" not in stderr and "never retrieved" not in stderr
