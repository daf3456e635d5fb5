"""The scrape-time collector: names, labels and values against the store; promtool's lint."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from healthd.metrics import Exposition
from healthd.results import ErrorKind, ProbeResult
from healthd.store import CheckInfo, ServiceInfo, Store
from prometheus_client.parser import text_string_to_metric_families

UP = CheckInfo("web", "tcp", "tcp", "127.0.0.1:80", rise=1, fall=1, history=10)
DOWN = CheckInfo("web", "closed", "tcp", "127.0.0.1:1", rise=1, fall=1, history=10)
NEW = CheckInfo("db", "tcp", "tcp", "[::1]:5432", rise=1, fall=1, history=10)


def ok(t: float, seconds: float = 0.002) -> ProbeResult:
    return ProbeResult(
        time=t,
        ok=True,
        duration=seconds,
        latency=seconds / 2,
        phases={"resolve": 0.0, "connect": seconds / 2},
    )


def refused(t: float) -> ProbeResult:
    return ProbeResult(
        time=t, ok=False, duration=0.001, latency=None, error_kind=ErrorKind.REFUSED, error_message="refused"
    )


@pytest.fixture
def store() -> Store:
    store = Store()
    store.apply([ServiceInfo("web", {"team": "core"}, (UP, DOWN)), ServiceInfo("db", {}, (NEW,))])
    for t in range(3):
        store.record(UP.key, ok(float(t)))
        store.record(DOWN.key, refused(float(t)))
    store.record(UP.key, refused(3.0))  # UP goes down (fall 1) ...
    store.record(UP.key, ok(4.0, seconds=0.03))  # ... and back up
    store.record_lag(0.002)
    store.record_lag(0.3)
    return store


def scrape(store: Store) -> str:
    return Exposition(store).render().decode()


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def labels(info: CheckInfo, **extra: str) -> frozenset[tuple[str, str]]:
    return frozenset(
        {
            "service": info.service,
            "check": info.name,
            "type": info.type,
            "target": info.target,
            **extra,
        }.items()
    )


def test_values_match_the_store(store: Store) -> None:
    got = samples(scrape(store))
    assert got[("probe_success", labels(UP))] == 1.0
    assert got[("probe_success", labels(DOWN))] == 0.0
    assert got[("probe_duration_seconds", labels(UP))] == 0.03
    assert got[("healthd_check_up", labels(UP))] == 1.0
    assert got[("healthd_check_up", labels(DOWN))] == 0.0
    assert ("healthd_check_up", labels(NEW)) not in got  # absent while unknown
    assert ("probe_success", labels(NEW)) not in got
    assert got[("healthd_probes_total", labels(UP, result="success"))] == 4.0
    assert got[("healthd_probes_total", labels(UP, result="refused"))] == 1.0
    assert got[("healthd_probes_total", labels(DOWN, result="refused"))] == 3.0
    assert got[("healthd_check_transitions_total", labels(UP, to="down"))] == 1.0
    assert got[("healthd_check_transitions_total", labels(UP, to="up"))] == 1.0
    assert got[("healthd_probe_duration_seconds_count", labels(UP))] == 5.0
    assert got[("healthd_probe_duration_seconds_bucket", labels(UP, le="0.0025"))] == 4.0
    assert got[("probe_tcp_duration_seconds", labels(UP, phase="connect"))] == 0.015
    assert got[("healthd_service_info", frozenset({"service": "web", "team": "core"}.items()))] == 1.0
    assert got[("healthd_scheduler_lag_seconds_count", frozenset())] == 2.0
    assert got[("healthd_scheduler_lag_seconds_bucket", frozenset({"le": "0.005"}.items()))] == 1.0
    assert got[("healthd_config_last_reload_successful", frozenset())] == 1.0
    assert got[("healthd_checks", frozenset({"status": "unknown"}.items()))] == 1.0


def test_removed_checks_vanish(store: Store) -> None:
    store.apply([ServiceInfo("db", {}, (NEW,))])
    text = scrape(store)
    assert 'service="web"' not in text


def test_histograms_switched_off_are_not_exported() -> None:
    store = Store(probe_histograms=False)
    store.apply([ServiceInfo("web", {}, (UP,))])
    store.record(UP.key, ok(0.0))
    assert "healthd_probe_duration_seconds" not in scrape(store)


def test_promtool_accepts_the_exposition(store: Store) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("needs promtool (Debian package prometheus, installed by `make test` as root)")
    result = subprocess.run(
        [promtool, "check", "metrics"], input=scrape(store), capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == "", result.stdout + result.stderr
