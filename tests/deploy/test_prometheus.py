"""deploy/prometheus/: promtool on the config and rules, and a real Prometheus scraping a real healthd."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import need
from tests.deploy.live import KNOWN_CHECK, REPO, SERVICE, Daemon, Prometheus, wait_for

PROM_DIR = REPO / "deploy/prometheus"


def promtool(*args: str, stdin: str | None = None, cwd: Path = PROM_DIR) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [need("promtool"), *args], input=stdin, capture_output=True, text=True, timeout=60, cwd=cwd
    )


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((PROM_DIR / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_promtool_accepts_the_config() -> None:
    done = promtool("check", "config", "prometheus.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 1 rule files found" in done.stdout


def test_promtool_accepts_the_rules() -> None:
    done = promtool("check", "rules", "alerts.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_rule_unit_tests_pass() -> None:
    done = promtool("test", "rules", "alerts_test.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_rule_unit_tests_catch_a_changed_threshold(tmp_path: Path) -> None:
    """The unit tests are sharp: loosening one threshold makes them fail."""
    shutil.copy(PROM_DIR / "alerts_test.yml", tmp_path)
    rules = (PROM_DIR / "alerts.yml").read_text()
    loosened = rules.replace("packet_loss_ratio[5m]) > 0.2", "packet_loss_ratio[5m]) > 0.6")
    assert loosened != rules
    (tmp_path / "alerts.yml").write_text(loosened)
    done = promtool("test", "rules", "alerts_test.yml", cwd=tmp_path)
    assert done.returncode != 0
    assert "HealthdIcmpLossHigh" in done.stdout + done.stderr


def test_every_alert_has_a_unit_test_where_it_fires() -> None:
    tests = yaml.safe_load((PROM_DIR / "alerts_test.yml").read_text())["tests"]
    fired = {case["alertname"] for test in tests for case in test["alert_rule_test"] if case["exp_alerts"]}
    quiet = {
        case["alertname"] for test in tests for case in test["alert_rule_test"] if not case["exp_alerts"]
    }
    names = {rule["alert"] for rule in alert_rules()}
    assert names - fired == set(), "alerts never shown firing"
    assert names - quiet == set(), "alerts never shown staying quiet"


def test_every_alert_has_severity_and_text() -> None:
    for rule in alert_rules():
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert set(rule["annotations"]) == {"summary", "description"}, rule["alert"]


def test_live_metrics_pass_promtool_lint(healthd: Daemon) -> None:
    done = promtool("check", "metrics", stdin=healthd.metrics())
    assert done.returncode == 0 and not done.stdout.strip() and not done.stderr.strip(), (
        done.stdout + done.stderr
    )


def test_prometheus_scrapes_healthd_and_answers_queries(prometheus: Prometheus) -> None:
    selector = f'{{job="healthd", service="{SERVICE}", check="{KNOWN_CHECK}"}}'
    found = wait_for(
        "Prometheus to scrape healthd",
        lambda: prometheus.query(f"probe_success{selector}"),
        30,
        prometheus.log,
    )
    (sample,) = found
    assert sample["value"][1] == "1", sample
    assert sample["metric"]["type"] == "tcp" and sample["metric"]["instance"].startswith("127.0.0.1:")
    (up,) = prometheus.query(f"healthd_check_up{selector}")
    assert up["value"][1] == "1", up
    print(f"\nprobe_success{selector} -> {sample}\nhealthd_check_up{selector} -> {up}")

    (target,) = prometheus.api("targets")["activeTargets"]
    assert target["health"] == "up" and target["labels"]["job"] == "healthd", target


def test_prometheus_evaluates_every_rule_without_error(prometheus: Prometheus) -> None:
    expected = {rule["alert"] for rule in alert_rules()}

    def evaluated() -> list[dict[str, Any]] | None:
        rules = [rule for group in prometheus.api("rules")["groups"] for rule in group["rules"]]
        done = all(not rule["lastEvaluation"].startswith("0001") for rule in rules)
        return rules if done and rules else None

    rules = wait_for("every rule to be evaluated", evaluated, 30, prometheus.log)
    assert {rule["name"] for rule in rules} == expected
    for rule in rules:
        assert rule["health"] == "ok", rule
    # everything the test probes is up and healthd is scraped: nothing may fire
    firing = [alert for alert in prometheus.api("alerts")["alerts"] if alert["state"] == "firing"]
    assert firing == [], firing


@pytest.mark.parametrize("expr", ["probe_success", "healthd_probe_duration_seconds_bucket"])
def test_series_carry_the_check_labels(prometheus: Prometheus, expr: str) -> None:
    series = wait_for(expr, lambda: prometheus.query(f'{expr}{{job="healthd"}}'), 30, prometheus.log)
    for sample in series:
        assert {"service", "check", "type", "target", "job", "instance"} <= set(sample["metric"])


def test_prometheus_scrapes_openmetrics(prometheus: Prometheus) -> None:
    """Prometheus asks for OpenMetrics first; its metadata then names counter families without _total."""

    def metadata() -> dict[str, Any] | None:
        found = prometheus.api("targets/metadata", match_target='{job="healthd"}')
        return {entry["metric"]: entry for entry in found} or None

    entries = wait_for("target metadata", metadata, 30, prometheus.log)
    assert entries["healthd_probes"]["type"] == "counter", entries.get("healthd_probes")
    assert "healthd_probes_total" not in entries
    assert entries["healthd_probe_duration_seconds"]["type"] == "histogram"
    assert entries["healthd_probe_duration_seconds"]["help"].startswith("Duration of whole probes")
    (target,) = prometheus.api("targets")["activeTargets"]
    assert target["health"] == "up" and target["lastError"] == "", target
