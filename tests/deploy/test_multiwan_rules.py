"""deploy/prometheus/multiwan.yml ("wan2 down while wan1 up") and deploy/examples/two-isp.yaml."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.deploy.live import REPO
from tests.deploy.test_prometheus import PROM_DIR, promtool

WAN1_UP = '(count by (job, instance) (healthd_check_up{service="wan1"} == 1) > 0)'


def test_promtool_accepts_the_multiwan_rules() -> None:
    done = promtool("check", "rules", "multiwan.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 2 rules found" in done.stdout


def test_multiwan_rule_unit_tests_pass() -> None:
    done = promtool("test", "rules", "multiwan_test.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_unit_tests_catch_a_rule_that_forgets_wan1(tmp_path: Path) -> None:
    """Dropping the "while wan1 is up" condition makes them fail: both uplinks down must stay quiet."""
    shutil.copy(PROM_DIR / "multiwan_test.yml", tmp_path)
    rules = (PROM_DIR / "multiwan.yml").read_text()
    careless = rules.replace(WAN1_UP, WAN1_UP.replace("== 1", ">= 0"))  # any wan1 check, up or not
    assert careless != rules
    (tmp_path / "multiwan.yml").write_text(careless)
    done = promtool("test", "rules", "multiwan_test.yml", cwd=tmp_path)
    assert done.returncode != 0
    assert "both uplinks down" in done.stdout + done.stderr


def test_the_two_isp_example_config_loads() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "healthd", "check-config", "-c", str(REPO / "deploy/examples/two-isp.yaml")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("OK: 3 services, 12 checks")
    # this host has no wan1/wan2: check-config says so, as warnings, and still accepts the file
    assert all(": warning: " in line for line in done.stderr.splitlines())
