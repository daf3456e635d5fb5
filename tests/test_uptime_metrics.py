"""healthd_check_uptime_ratio{window}: values from the uptime windows, absent without probes, switchable."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest
from healthd.metrics import Exposition
from healthd.results import ErrorKind, ProbeResult
from healthd.store import CheckInfo, ServiceInfo, Store
from prometheus_client.parser import text_string_to_metric_families

FLAKY = CheckInfo("web", "tcp", "tcp", "127.0.0.1:80", rise=1, fall=1, history=10)
QUIET = CheckInfo("web", "quiet", "tcp", "127.0.0.1:81", rise=1, fall=1, history=10)


def store_with_results() -> Store:
    store = Store()
    store.apply([ServiceInfo("web", {}, (FLAKY, QUIET))])
    now = time.time()
    for n in range(4):  # three successes, one failure, all within the last minute
        ok = n != 1
        result = ProbeResult(
            time=now - 40 + 10 * n,
            ok=ok,
            duration=0.001,
            latency=0.001 if ok else None,
            error_kind=None if ok else ErrorKind.REFUSED,
            error_message=None if ok else "refused",
        )
        store.record(FLAKY.key, result)
    return store


def uptime_samples(text: str) -> dict[tuple[str, str], float]:
    return {
        (s.labels["check"], s.labels["window"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "healthd_check_uptime_ratio"
    }


def test_uptime_ratio_gauges_for_24h_and_30d() -> None:
    text = Exposition(store_with_results()).render().decode()
    assert uptime_samples(text) == {("tcp", "24h"): 0.75, ("tcp", "30d"): 0.75}  # quiet: no probes, absent
    assert "# TYPE healthd_check_uptime_ratio gauge" in text


def test_uptime_ratio_gauges_can_be_switched_off() -> None:
    text = Exposition(store_with_results(), uptime_ratio=False).render().decode()
    assert uptime_samples(text) == {} and "healthd_check_uptime_ratio" not in text


def test_promtool_accepts_the_uptime_gauges() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("needs promtool (Debian package prometheus, installed by `make test` as root)")
    text = Exposition(store_with_results()).render()
    done = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
