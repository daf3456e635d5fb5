"""Uptime, failures and filters in the REST API, over a real running app and real probes."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from healthd.app import create_app
from healthd.config import load_config

from tests.conftest import TcpServer
from tests.test_api import Client, MakeClient, config_text, wait_for

WINDOWS = ["1h", "24h", "7d", "30d"]


@pytest.fixture
async def client(
    tmp_path: Path, tcp_server: TcpServer, closed_port: int, aiohttp_client: MakeClient
) -> Client:
    path = tmp_path / "config.yaml"
    extra = f"""\
  - name: all-down
    checks:
      - {{type: tcp, target: "127.0.0.1:{closed_port}", interval: 200ms, timeout: 100ms}}
"""
    text = config_text(tcp_server.target, f"127.0.0.1:{closed_port}", extra=extra)
    path.write_text(
        text.replace("interval: 1s", "interval: 200ms").replace("timeout: 500ms", "timeout: 100ms")
    )
    client = await aiohttp_client(create_app(load_config(path), path))

    async def closed_failed_twice() -> bool:
        body = await (await client.get("/api/v1/services/web/checks/closed")).json()
        return len(body["failures"]) >= 2 and body["last"] is not None

    await wait_for(closed_failed_twice)
    return client


async def get_json(client: Client, url: str, status: int = 200) -> Any:
    resp = await client.get(url)
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/json"
    return await resp.json()


async def test_every_check_in_every_listing_has_since_last_times_and_uptime(client: Client) -> None:
    listing = await get_json(client, "/api/v1/services")
    one = await get_json(client, "/api/v1/services/web")
    for service in [*listing["services"], one]:
        assert set(service["uptime"]) == set(WINDOWS)
        for check in service["checks"]:
            assert {"since", "last_success", "last_failure", "uptime"} <= set(check)
            assert set(check["uptime"]) == set(WINDOWS)
    checks = {c["name"]: c for c in one["checks"]}
    assert checks["tcp"]["uptime"]["1h"] == 1.0 and checks["tcp"]["last_failure"] is None
    assert checks["closed"]["uptime"]["30d"] == 0.0 and checks["closed"]["last_success"] is None
    datetime.fromisoformat(checks["closed"]["last_failure"])
    assert 0.0 < one["uptime"]["24h"] < 1.0  # one check always up, one always down


async def test_check_detail_has_windows_and_failures(client: Client) -> None:
    detail = await get_json(client, "/api/v1/services/web/checks/closed")
    assert list(detail["windows"]) == WINDOWS
    for name, window in detail["windows"].items():
        assert window["probes"] >= 2 and window["successes"] == 0 and window["ratio"] == 0.0
        assert window["down_seconds"] > 0
        expected = {"mean", "p50", "p95", "p99"} if name in ("1h", "24h") else {"mean"}
        assert set(window["latency_ms"]) == expected
        assert window["latency_ms"]["mean"] is None  # no successful probe
    failures = detail["failures"]
    assert all(f["ok"] is False and f["error"]["kind"] == "refused" for f in failures)
    assert [f["time"] for f in failures] == sorted((f["time"] for f in failures), reverse=True)
    up = await get_json(client, "/api/v1/services/web/checks/tcp")
    hour = up["windows"]["1h"]
    assert hour["ratio"] == 1.0 and hour["down_seconds"] == 0.0 and up["failures"] == []
    assert hour["latency_ms"]["mean"] > 0 and hour["latency_ms"]["p50"] <= hour["latency_ms"]["p99"]


@pytest.mark.parametrize(("status", "names"), [("down", ["all-down"]), ("degraded", ["web"]), ("up", [])])
async def test_services_filter_by_status(client: Client, status: str, names: list[str]) -> None:
    body = await get_json(client, f"/api/v1/services?status={status}")
    assert [s["name"] for s in body["services"]] == names


async def test_history_filters(client: Client) -> None:
    failures = await get_json(client, "/api/v1/services/web/checks/closed/history?ok=false")
    assert failures["results"] and all(not r["ok"] for r in failures["results"])
    assert (await get_json(client, "/api/v1/services/web/checks/closed/history?ok=true"))["results"] == []
    results = (await get_json(client, "/api/v1/services/web/checks/tcp/history"))["results"]
    middle = results[len(results) // 2]["time"]
    newer = await get_json(
        client, f"/api/v1/services/web/checks/tcp/history?since={middle.replace('+', '%2B')}"
    )
    assert newer["results"] == [r for r in results if r["time"] >= middle]
    limited = await get_json(client, f"/api/v1/services/web/checks/tcp/history?since={middle}&limit=1")
    assert limited["results"] == results[:1]


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("/api/v1/services?state=down", "state"),
        ("/api/v1/services/web?verbose=1&x=2", "verbose, x"),
        ("/api/v1/services/web/checks/tcp?window=1h", "window"),
        ("/api/v1/services/web/checks/tcp/history?limt=5", "limt"),
        ("/api/v1/services/web/checks/tcp/uptime?windw=24h", "windw"),
        ("/healthz?probe=1", "probe"),
        ("/metrics?module=tcp", "module"),
    ],
)
async def test_unknown_query_parameters_are_named_in_a_400(client: Client, url: str, named: str) -> None:
    body = await get_json(client, url, status=400)
    assert f"unknown query parameter(s): {named}" in body["error"]["message"]


@pytest.mark.parametrize(
    "query",
    [
        "status=broken",
        "ok=no",
        "since=yesterday",
        "since=2026-12-01T10:00:00",  # no offset
    ],
)
async def test_bad_filter_values_are_a_400(client: Client, query: str) -> None:
    url = "/api/v1/services" if query.startswith("status") else "/api/v1/services/web/checks/tcp/history"
    body = await get_json(client, f"{url}?{query}", status=400)
    assert body["error"]["code"] == "bad_request" and query.split("=")[0] in body["error"]["message"]


@pytest.mark.parametrize(
    ("window", "step", "count"), [("90h", "1h", 90), ("90d", "1d", 90), ("1h", "1m", 60)]
)
async def test_uptime_series(client: Client, window: str, step: str, count: int) -> None:
    body = await get_json(client, f"/api/v1/services/web/checks/tcp/uptime?window={window}&step={step}")
    assert (body["service"], body["check"], body["window"], body["step"]) == ("web", "tcp", window, step)
    buckets = body["buckets"]
    assert len(buckets) == count
    starts = [datetime.fromisoformat(b["start"]) for b in buckets]
    assert starts == sorted(starts)
    filled = [b for b in buckets if b["probes"]]
    assert filled and filled[-1] in buckets[-2:]  # the newest results, at most one boundary back
    assert all(b["ratio"] == 1.0 and b["latency_ms"]["mean"] > 0 for b in filled)
    assert buckets[0]["probes"] == 0 and buckets[0]["ratio"] is None
    assert buckets[0]["latency_ms"] == {"mean": None}


async def test_uptime_series_default_and_unsupported(client: Client) -> None:
    body = await get_json(client, "/api/v1/services/web/checks/tcp/uptime")
    assert (body["window"], body["step"], len(body["buckets"])) == ("24h", "1h", 24)
    bad = await get_json(client, "/api/v1/services/web/checks/tcp/uptime?window=2h&step=1m", status=400)
    assert "step=1m with window up to 1h" in bad["error"]["message"]
    missing = await get_json(client, "/api/v1/services/web/checks/nope/uptime", status=404)
    assert missing["error"]["code"] == "not_found"


async def test_openapi_covers_the_uptime_route_and_filters(client: Client) -> None:
    doc = await get_json(client, "/api/v1/openapi.json")
    uptime = doc["paths"]["/api/v1/services/{service}/checks/{check}/uptime"]["get"]
    assert {p["name"] for p in uptime["parameters"]} == {"service", "check", "window", "step"}
    history = doc["paths"]["/api/v1/services/{service}/checks/{check}/history"]["get"]
    assert {"ok", "since", "limit"} <= {p["name"] for p in history["parameters"]}
    schemas = doc["components"]["schemas"]
    assert set(schemas["UptimeRatios"]["properties"]) == set(WINDOWS)
    assert "windows" in schemas["CheckDetail"]["properties"]
