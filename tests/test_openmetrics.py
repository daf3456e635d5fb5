"""/metrics in both formats: OpenMetrics when asked (checked by prometheus-client's parser), HEAD,
labelled gauges, and the same samples in both formats."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from healthd.app import create_app
from healthd.config import load_config
from healthd.gauges import gauge_key, split_gauge_key
from healthd.results import ProbeResult
from healthd.scrape import OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE, MetricsRenderer, wants_openmetrics
from healthd.store import CheckInfo, ServiceInfo, Store
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from tests.conftest import TcpServer

Client = TestClient[Any, web.Application]
MakeClient = Callable[[web.Application], Awaitable[Client]]

TLS = CheckInfo("web", "https", "http", 'https://h/"q"', rise=1, fall=1, history=10)
PROMETHEUS_ACCEPT = (  # what Prometheus 2.42 sends
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


def store_with_labelled_gauges() -> Store:
    store = Store(probe_histograms=True)
    store.apply([ServiceInfo("web", {"team": "core"}, (TLS,))])
    gauges = {
        "probe_http_ssl": 1.0,
        gauge_key("probe_tls_version_info", version="TLS 1.3"): 1.0,
        gauge_key("probe_ssl_last_chain_expiry_timestamp_seconds", subject='CN="odd"\\', serial_no="1f"): 2e9,
    }
    for t in range(3):
        store.record(TLS.key, ProbeResult(time=t, ok=t != 1, duration=0.01, latency=0.005, gauges=gauges))
    store.record_lag(0.002)
    return store


def samples(families: Any) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {(s.name, frozenset(s.labels.items())): s.value for f in families for s in f.samples}


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (PROMETHEUS_ACCEPT, True),
        ("application/openmetrics-text; version=1.0.0", True),
        ("Application/OpenMetrics-Text", True),
        ("text/plain;version=0.0.4", False),
        ("", False),
        ("*/*", False),
        ("application/openmetrics-text;q=0, text/plain", False),
    ],
)
def test_content_negotiation(accept: str, expected: bool) -> None:
    assert wants_openmetrics(accept) is expected


def test_gauge_keys_round_trip() -> None:
    assert split_gauge_key("probe_http_ssl") == ("probe_http_ssl", "")
    key = gauge_key("probe_tls_version_info", version='a"b')
    assert split_gauge_key(key) == ("probe_tls_version_info", ',version="a\\"b"')


async def test_openmetrics_parses_and_matches_the_text_format() -> None:
    renderer = MetricsRenderer(store_with_labelled_gauges())
    om = (await renderer.render(openmetrics=True)).decode()
    text = (await renderer.render(openmetrics=False)).decode()
    assert om.endswith("\n# EOF\n") and om.count("# EOF") == 1
    assert "# EOF" not in text
    om_families = list(parse_openmetrics(om))  # strict: raises on anything OpenMetrics forbids
    text_families = list(parse_text(text))
    kinds = {f.name: f.type for f in om_families}
    assert kinds["healthd_probes"] == "counter" and kinds["healthd_probe_duration_seconds"] == "histogram"
    assert kinds["probe_tls_version_info"] == "gauge"
    om_samples, text_samples = samples(om_families), samples(text_families)
    # process_* values move between the two renders; every healthd and probe sample is equal
    ours = {k: v for k, v in text_samples.items() if not k[0].startswith("process_")}
    assert ours and all(om_samples[k] == v for k, v in ours.items())
    check = {"service": "web", "check": "https", "type": "http", "target": TLS.target}
    tls = frozenset({**check, "version": "TLS 1.3"}.items())
    assert om_samples[("probe_tls_version_info", tls)] == 1.0
    chain = frozenset({**check, "subject": 'CN="odd"\\', "serial_no": "1f"}.items())
    assert om_samples[("probe_ssl_last_chain_expiry_timestamp_seconds", chain)] == 2e9
    assert "# HELP healthd_probe_duration_seconds Duration of whole probes" in om


def config_text(target: str) -> str:
    return f"""\
server:
  listen: 127.0.0.1:0
defaults: {{interval: 1s, timeout: 500ms, rise: 1, fall: 1}}
services:
  - name: web
    checks:
      - type: tcp
        target: {target}
"""


async def test_the_endpoint_negotiates_and_answers_head(
    tmp_path: Path, tcp_server: TcpServer, aiohttp_client: MakeClient
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(config_text(tcp_server.target))
    client = await aiohttp_client(create_app(load_config(path), path))

    text = await client.get("/metrics")
    assert text.status == 200 and text.headers["Content-Type"] == TEXT_CONTENT_TYPE
    assert "# EOF" not in await text.text()
    om = await client.get("/metrics", headers={"Accept": PROMETHEUS_ACCEPT})
    assert om.status == 200 and om.headers["Content-Type"] == OPENMETRICS_CONTENT_TYPE
    body = await om.text()
    assert body.endswith("# EOF\n")
    assert {f.name for f in parse_openmetrics(body)} >= {
        "healthd_checks",
        "healthd_config_last_reload_successful",
    }

    head = await client.head("/metrics", headers={"Accept": PROMETHEUS_ACCEPT})
    assert head.status == 200 and head.headers["Content-Type"] == OPENMETRICS_CONTENT_TYPE
    assert await head.read() == b""
    assert int(head.headers["Content-Length"]) > 0
