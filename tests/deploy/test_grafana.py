"""deploy/grafana/healthd.json: valid, complete, and naming only metrics a live healthd exports.

Every metric named by a dashboard query or an alert rule is one test case. A
metric of a probe type that is not built yet (not in `healthd.probes.PROBES`)
skips with the reason; once the probe lands the case must find the metric in
the live /metrics, so this test gets stricter by itself.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from healthd.config import CHECK_MODELS
from healthd.probes import PROBES
from prometheus_client.parser import text_string_to_metric_families

from tests.deploy.live import REPO, SERVICE, Daemon, Prometheus, wait_for
from tests.deploy.promql import metric_names

DASHBOARD = REPO / "deploy/grafana/healthd.json"
ALERTS = REPO / "deploy/prometheus/alerts.yml"
FROM_PROMETHEUS = {"up"}  # made by Prometheus at scrape time, not by healthd
PROBE_TYPES = {"tcp", "syn", "icmp", "http"} | set(CHECK_MODELS)  # the contract's, and any newer
# metric prefix -> the check (by name, as tests/deploy/live.py configures it) that exports it
NEEDS_CHECK = {"probe_ssl_": "https"}


def load_dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # collapsed rows hold their panels


def dashboard_exprs() -> list[str]:
    dashboard = load_dashboard()
    exprs = [t["expr"] for p in panels(dashboard) for t in p.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            exprs.append(variable["query"]["query"])
    return exprs


def alert_exprs() -> list[str]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def named_metrics() -> list[str]:
    names = set().union(*(metric_names(e) for e in dashboard_exprs() + alert_exprs()))
    return sorted(names - FROM_PROMETHEUS)


def live_sample_names(text: str) -> set[str]:
    return {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}


# ---- the dashboard itself --------------------------------------------------------------


def test_dashboard_is_valid_json_with_unique_ids_and_a_datasource_variable() -> None:
    dashboard = load_dashboard()
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
            assert target["expr"].strip(), panel["title"]


def test_panels_fit_the_grid_without_overlapping() -> None:
    boxes = [(p["title"], p["gridPos"]) for p in panels(load_dashboard())]
    for title, g in boxes:
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24 and g["h"] > 0, title
    for i, (a_title, a) in enumerate(boxes):
        for b_title, b in boxes[i + 1 :]:
            apart = (
                a["x"] + a["w"] <= b["x"]
                or b["x"] + b["w"] <= a["x"]
                or a["y"] + a["h"] <= b["y"]
                or b["y"] + b["h"] <= a["y"]
            )
            assert apart, f"{a_title!r} overlaps {b_title!r}"


@pytest.mark.parametrize(
    ("title", "metric"),
    [
        ("Service status", "healthd_check_up"),
        ("Probe latency percentiles", "healthd_probe_duration_seconds_bucket"),
        ("ICMP packet loss", "healthd_icmp_packet_loss_ratio"),
        ("HTTP phases", "probe_http_duration_seconds"),
        ("State transitions", "healthd_check_transitions_total"),
    ],
)
def test_dashboard_has_the_panels_operators_asked_for(title: str, metric: str) -> None:
    (panel,) = [p for p in panels(load_dashboard()) if p["title"] == title]
    assert any(metric in metric_names(t["expr"]) for t in panel["targets"])
    if metric.endswith("_bucket"):
        assert all("histogram_quantile(" in t["expr"] for t in panel["targets"])


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('probe_success{job=~"$job", check="a{b}"}', {"probe_success"}),
        (
            "histogram_quantile(0.99, sum by (service, le) (rate(x_bucket{a='b'}[$__rate_interval])))",
            {"x_bucket"},
        ),
        ("count by (svc) (up_metric == 0) == count by (svc) (up_metric) offset 5m", {"up_metric"}),
        (
            "(probe_ssl_earliest_cert_expiry - time()) / 86400 < 14 and on (instance) other",
            {
                "probe_ssl_earliest_cert_expiry",
                "other",
            },
        ),
        ("sum(rate(a_total[5m:1m])) * 1e3 unless vector(1)", {"a_total"}),
        ('label_values(healthd_service_info{job=~"$job"}, instance)', {"healthd_service_info"}),
    ],
)
def test_metric_name_extraction(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


# ---- against a live healthd ------------------------------------------------------------


def _needed_check(metric: str) -> str | None:
    """The check type (or fixture check name) whose probe exports `metric`, if type-specific."""
    for prefix, check in NEEDS_CHECK.items():
        if metric.startswith(prefix):
            return check
    match = re.match(r"(?:probe|healthd)_([a-z0-9]+)_", metric)
    if match and match.group(1) in PROBE_TYPES:
        return match.group(1)
    return None


@pytest.mark.parametrize("metric", named_metrics())
def test_every_named_metric_is_exported_by_healthd(healthd: Daemon, metric: str) -> None:
    check = _needed_check(metric)
    if check is not None and check not in healthd.checks:
        pytest.skip(
            f"{metric} comes from the {check!r} check, which the live daemon cannot run yet "
            f"(healthd.probes.PROBES has {sorted(PROBES)})"
        )
    if check is not None and _cannot_run_here(healthd, check):
        pytest.skip(f"{metric} needs the {check!r} check to run, and this user may not (CI runs as root)")
    exported = wait_for(f"{metric} in /metrics", lambda: metric in live_sample_names(healthd.metrics()), 5)
    assert exported


def _cannot_run_here(healthd: Daemon, check: str) -> bool:
    """The check failed for lack of privilege (e.g. ICMP without CAP_NET_RAW or ping_group_range)."""
    last = healthd.get_json(f"/api/v1/services/{SERVICE}/checks/{check}")["last"]
    return last is not None and (last["error"] or {}).get("kind") == "permission"


def test_every_dashboard_query_is_valid_promql_for_a_real_prometheus(prometheus: Prometheus) -> None:
    """Grafana's variables filled in as "All" and a 1m rate window; Prometheus parses the rest."""
    for expr in dashboard_exprs():
        if expr.startswith("label_values("):
            continue
        promql = expr.replace("$__rate_interval", "1m").replace('"$job"', '".*"')
        promql = promql.replace('"$instance"', '".*"').replace('"$service"', '".*"')
        assert "$" not in promql, promql
        prometheus.query(promql)  # asserts status == success
