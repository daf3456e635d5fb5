"""Several vantage points: deploy/prometheus/locations.yml, by promtool and over two live instances."""

from __future__ import annotations

import shutil
import socket
import socketserver
import subprocess
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import yaml

from tests.deploy.conftest import need
from tests.deploy.live import REPO, Prometheus, free_port, http_get, prometheus_with, stop, wait_for
from tests.test_cluster_processes import HEALTHD

PROM_DIR = REPO / "deploy/prometheus"


def promtool(*args: str, cwd: Path = PROM_DIR) -> subprocess.CompletedProcess[str]:
    return subprocess.run([need("promtool"), *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def test_promtool_accepts_the_rules_and_the_scrape_config() -> None:
    for args in (("check", "rules", "locations.yml"), ("check", "config", "locations-scrape.yml")):
        done = promtool(*args)
        assert done.returncode == 0, done.stdout + done.stderr


def test_rule_unit_tests_pass_and_are_sharp(tmp_path: Path) -> None:
    done = promtool("test", "rules", "locations_test.yml")
    assert done.returncode == 0 and "SUCCESS" in done.stdout, done.stdout + done.stderr
    shutil.copy(PROM_DIR / "locations_test.yml", tmp_path)
    rules = (PROM_DIR / "locations.yml").read_text()
    for change in (("ratio >= 0.5", "ratio > 0.5"), ("count >= 2", "count >= 1")):
        (tmp_path / "locations.yml").write_text(rules.replace(*change))
        assert promtool("test", "rules", "locations_test.yml", cwd=tmp_path).returncode != 0, change


@contextmanager
def instance(config: Path, workdir: Path, name: str) -> Iterator[str]:
    port = free_port()
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        cmd = [str(HEALTHD), "run", "-c", str(config), "--listen", f"127.0.0.1:{port}"]
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(
            f"{name} to be ready", lambda: http_get(f"http://127.0.0.1:{port}/readyz")[0] == 200, 20, log
        )
        yield f"127.0.0.1:{port}"
    finally:
        stop(process)


@contextmanager
def prometheus(targets: dict[str, str], workdir: Path) -> Iterator[Prometheus]:
    """locations-scrape.yml aimed at our instances, at 1 s."""
    config = yaml.safe_load((PROM_DIR / "locations-scrape.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(PROM_DIR / name) for name in config["rule_files"]]
    (job,) = config["scrape_configs"]
    job.update(scrape_timeout="1s")
    job["static_configs"] = [{"targets": [a], "labels": {"location": loc}} for loc, a in targets.items()]
    with prometheus_with(need("prometheus"), workdir, config) as server:
        yield server


@contextmanager
def accepting_server() -> Iterator[int]:
    """A listener on 127.0.0.1 that accepts and closes; yields its port."""
    server = socketserver.TCPServer(("127.0.0.1", 0), socketserver.BaseRequestHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_two_locations_agree_on_the_same_checks(tmp_path: Path) -> None:
    need("prometheus")
    with socket.socket() as closed, ExitStack() as stack:
        up = stack.enter_context(accepting_server())
        closed.bind(("127.0.0.1", 0))  # bound, not listening: RST
        down = closed.getsockname()[1]
        config = tmp_path / "config.yaml"
        checks = [
            {"type": "tcp", "name": "open", "target": f"127.0.0.1:{up}"},
            {"type": "tcp", "name": "closed", "target": f"127.0.0.1:{down}"},
        ]
        defaults = {"interval": "200ms", "timeout": "100ms", "rise": 1, "fall": 1}
        config.write_text(
            yaml.safe_dump({"defaults": defaults, "services": [{"name": "web", "checks": checks}]})
        )
        addresses = {loc: stack.enter_context(instance(config, tmp_path, loc)) for loc in ("eu", "us")}
        server = stack.enter_context(prometheus(addresses, tmp_path))

        def ratios() -> dict[str, float] | None:
            found = server.query("healthd:check_down_locations:ratio")
            counts = server.query("healthd:check_locations:count")
            if len(found) < 2 or any(c["value"][1] != "2" for c in counts) or len(counts) < 2:
                return None
            return {s["metric"]["check"]: float(s["value"][1]) for s in found}

        assert wait_for("both locations' verdicts", ratios, 30, server.log) == {"open": 0.0, "closed": 1.0}
        pending = wait_for(
            "the alert to be pending",
            lambda: server.query('ALERTS{alertname="HealthdCheckDownFromHalfTheLocations"}'),
            15,
            server.log,
        )
        assert [(a["metric"]["check"], a["metric"]["alertstate"]) for a in pending] == [("closed", "pending")]
