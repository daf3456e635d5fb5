"""The daemon under a descriptor limit it cannot meet (issue 11 item 4).

`prlimit --nofile=256` and 600 checks against a blackholed target (a namespace
that DROPs every TCP segment) plus healthy canaries on loopback: before the fix
the canaries flipped to "cannot open socket: Too many open files", /healthz
stalled and stderr got tens of thousands of tracebacks. Now no canary goes down,
the API answers throughout, stderr stays small and a SIGHUP to a smaller config
takes effect without a restart.
"""

from __future__ import annotations

import json
import shutil
import signal
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.live import free_port, http_get, stop, wait_for
from tests.netlab import Namespace, skip_unless_root

NOFILE = 256
BLACKHOLED = 600
CANARIES = 5
LOAD_SECONDS = 20.0
# one transition line per check and a few more; before the fix: tens of thousands of lines
STDERR_LINES = BLACKHOLED + CANARIES + 50


class _Accept(socketserver.BaseRequestHandler):
    def handle(self) -> None:  # accept and close: a healthy TCP service
        pass


@contextmanager
def canary_listener() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Accept)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def config(canary_port: int, blackhole: str | None) -> dict[str, Any]:
    canaries = [
        {"name": f"c{i}", "type": "tcp", "target": f"127.0.0.1:{canary_port}", "interval": "1s"}
        for i in range(CANARIES)
    ]
    services: list[dict[str, Any]] = [{"name": "canary", "checks": canaries}]
    if blackhole is not None:
        dropped = [
            {"name": f"b{i}", "type": "tcp", "target": f"{blackhole}:9", "interval": "4s", "timeout": "4s"}
            for i in range(BLACKHOLED)
        ]
        services.append({"name": "blackhole", "checks": dropped})
    return {"defaults": {"rise": 1, "fall": 1, "timeout": "1s"}, "services": services}


def canaries_down(url: str) -> int:
    status, body = http_get(f"{url}/metrics", timeout=5)
    assert status == 200
    total = 0.0
    for line in body.decode().splitlines():
        canary = line.startswith("healthd_check_transitions_total{") and 'service="canary"' in line
        if canary and 'to="down"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def canary_statuses(url: str) -> list[str]:
    status, body = http_get(f"{url}/api/v1/services/canary", timeout=2)
    assert status == 200, body[:200]
    return [check["status"] for check in json.loads(body)["checks"]]


def test_no_false_verdict_and_a_bounded_log_when_descriptors_run_out(
    netns: Namespace, tmp_path: Path
) -> None:
    skip_unless_root("prlimit", "iptables")
    netns.iptables("-A", "INPUT", "-p", "tcp", "-j", "DROP")
    healthd = Path(sys.executable).parent / "healthd"
    assert shutil.which("prlimit")
    with canary_listener() as canary_port:
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(config(canary_port, netns.ns_ip)))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        stderr_path = tmp_path / "stderr"
        cmd = [
            "prlimit",
            f"--nofile={NOFILE}",
            str(healthd),
            "run",
            "-c",
            str(path),
            "--listen",
            f"127.0.0.1:{port}",
        ]
        with stderr_path.open("wb") as stderr:
            process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            wait_for("/readyz", lambda: http_get(f"{url}/readyz")[0] == 200, 15, stderr_path)
            wait_for("the canaries up", lambda: canary_statuses(url) == ["up"] * CANARIES, 15, stderr_path)
            deadline = time.monotonic() + LOAD_SECONDS
            while time.monotonic() < deadline:  # bounded: LOAD_SECONDS of 0.5 s rounds
                assert http_get(f"{url}/healthz", timeout=2)[0] == 200
                assert set(canary_statuses(url)) == {"up"}
                time.sleep(0.5)
            assert canaries_down(url) == 0
            warning = stderr_path.read_text()
            assert "RLIMIT_NOFILE 256" in warning, warning[-2000:]

            path.write_text(yaml.safe_dump(config(canary_port, None)))
            process.send_signal(signal.SIGHUP)
            wait_for(
                "the smaller config",
                lambda: http_get(f"{url}/api/v1/services/blackhole")[0] == 404,
                15,
                stderr_path,
            )
            assert set(canary_statuses(url)) == {"up"}
            assert canaries_down(url) == 0
        finally:
            stop(process)
    text = stderr_path.read_text()
    assert len(text.splitlines()) < STDERR_LINES, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
