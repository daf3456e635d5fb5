"""healthd_build_info and healthd_notifications_total, scraped from a real running app."""

from __future__ import annotations

import platform
from pathlib import Path

from healthd import __version__
from healthd.app import create_app
from healthd.config import load_config
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import TcpServer
from tests.test_api import MakeClient


async def test_build_info_and_zeroed_notification_counters(
    tmp_path: Path, tcp_server: TcpServer, closed_port: int, aiohttp_client: MakeClient
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(f"""\
server: {{listen: "127.0.0.1:0"}}
notify:
  webhooks:
    - {{name: ops, url: "http://127.0.0.1:{closed_port}/", retries: 0}}
services:
  - name: web
    checks:
      - type: tcp
        target: {tcp_server.target}
""")
    client = await aiohttp_client(create_app(load_config(path), path))
    text = await (await client.get("/metrics")).text()
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    build = (("event_loop", "asyncio"), ("python", platform.python_version()), ("version", __version__))
    assert samples[("healthd_build_info", build)] == 1.0
    assert [key for key in samples if key[0] == "healthd_build_info"] == [("healthd_build_info", build)]
    for result in ("sent", "failed", "dropped"):  # present from the start, so rate() works at once
        key = ("healthd_notifications_total", (("receiver", "ops"), ("result", result)))
        assert key in samples
