"""State survives a restart of the real daemon process: after `kill -9` and after a clean stop."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from healthd import snapshot
from healthd.statefile import FILE_NAME

from tests.test_cli import HEALTHD, free_port, get


@pytest.fixture
def listener() -> Iterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield f"127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


def write_config(path: Path, port: int, target: str, state_dir: Path) -> Path:
    path.write_text(f"""\
server: {{listen: 127.0.0.1:{port}}}
state_dir: {state_dir}
snapshot_interval: 1s
services:
  - name: web
    checks:
      - {{type: tcp, target: "{target}", interval: 200ms, timeout: 100ms}}
""")
    return path


def start(config: Path, port: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen([*HEALTHD, "run", "-c", str(config)], stderr=subprocess.PIPE, text=True)
    wait_until(lambda: ready(port), what="the daemon to be ready")
    return proc


def ready(port: int) -> bool:
    try:
        return get(f"http://127.0.0.1:{port}/readyz")[0] == 200
    except OSError:
        return False


def wait_until(predicate: Any, what: str, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def detail(port: int) -> dict[str, Any]:
    status, body = get(f"http://127.0.0.1:{port}/api/v1/services/web/checks/tcp")
    assert status == 200
    result: dict[str, Any] = json.loads(body)
    return result


def probes(port: int) -> int:
    return sum(detail(port)["counters"].values())


def wait_for_writes(path: Path, count: int) -> None:
    """Until `count` more snapshots have been written (each write renames a new file in)."""
    for _ in range(count):
        before = path.stat().st_ino if path.exists() else None
        wait_until(lambda: path.exists() and path.stat().st_ino != before, what="a snapshot write")  # noqa: B023


def stop(proc: subprocess.Popen[str], sig: int) -> str:
    proc.send_signal(sig)
    try:
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.communicate(timeout=5)[1]


def test_kill_9_then_restart_keeps_state_history_and_uptime(tmp_path: Path, listener: str) -> None:
    port, state_dir = free_port(), tmp_path / "state"
    config = write_config(tmp_path / "c.yaml", port, listener, state_dir)
    proc = start(config, port)
    try:
        wait_until(lambda: probes(port) >= 5, what="five probes")
        seen = probes(port)
        wait_for_writes(state_dir / FILE_NAME, 2)  # the second one was captured after `seen`
        before = detail(port)
    finally:
        proc.kill()  # SIGKILL: no final snapshot
        proc.communicate(timeout=5)
    killed_at = time.time()

    proc = start(config, port)
    try:
        after = detail(port)
        history = json.loads(get(f"http://127.0.0.1:{port}/api/v1/services/web/checks/tcp/history")[1])
    finally:
        stderr = stop(proc, signal.SIGTERM)
    assert "restored the state of 1 checks" in stderr
    assert sum(after["counters"].values()) >= seen
    assert after["windows"]["1h"]["probes"] >= seen
    assert after["since"] == before["since"] and after["status"] == "up"
    times = [datetime.fromisoformat(r["time"]).timestamp() for r in history["results"]]
    assert sum(t < killed_at for t in times) >= seen - 1  # results from before the kill are back


def test_clean_stop_writes_a_final_snapshot(tmp_path: Path, listener: str) -> None:
    port, state_dir = free_port(), tmp_path / "state"
    config = write_config(tmp_path / "c.yaml", port, listener, state_dir)
    proc = start(config, port)
    try:
        wait_until(lambda: probes(port) >= 3, what="three probes")
        seen = probes(port)
    finally:
        stop(proc, signal.SIGTERM)
    records = snapshot.decode((state_dir / FILE_NAME).read_bytes())
    assert sum(records["web/tcp"]["counts"].values()) >= seen
