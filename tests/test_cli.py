"""The command line and the daemon as a real process: exit codes, signals, notify, cleanup."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from healthd import loops
from healthd.app import worker_count
from healthd.config import load

from tests.conftest import TcpServer

HEALTHD = [sys.executable, "-m", "healthd"]


def healthd(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*HEALTHD, *args], capture_output=True, text=True, timeout=30, env={**os.environ, **(env or {})}
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(path: Path, port: int, target: str, extra: str = "") -> Path:
    path.write_text(f"""\
server:
  listen: 127.0.0.1:{port}
defaults: {{interval: 1s, timeout: 500ms}}
services:
  - name: self
    checks:
      - type: tcp
        target: 127.0.0.1:{port}
  - name: other
    checks:
      - type: tcp
        target: {target}
{extra}""")
    return path


def test_version() -> None:
    result = healthd("--version")
    assert result.returncode == 0 and result.stdout.startswith("healthd ")


def test_check_config_ok_and_bad(tmp_path: Path) -> None:
    good = write_config(tmp_path / "good.yaml", 9180, "127.0.0.1:1")
    result = healthd("check-config", "-c", str(good))
    assert (result.returncode, result.stdout.strip()) == (0, "OK: 2 services, 2 checks")
    bad = tmp_path / "bad.yaml"
    bad.write_text("services:\n  - name: a\n    checks:\n      - {type: tcp, target: x, rise: 0}\n")
    result = healthd("check-config", "-c", str(bad))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith(f"{bad}:4: ") for line in lines)
    assert "Traceback" not in result.stderr


def test_config_path_from_environment(tmp_path: Path) -> None:
    path = write_config(tmp_path / "c.yaml", 9180, "127.0.0.1:1")
    result = healthd("check-config", env={"HEALTHD_CONFIG": str(path)})
    assert result.returncode == 0


@pytest.mark.parametrize("setup", ["missing", "directory", "empty"])
def test_unusable_config_exits_2_with_one_line(tmp_path: Path, setup: str) -> None:
    path = tmp_path / "c.yaml"
    if setup == "directory":
        path.mkdir()
    elif setup == "empty":
        path.write_text("")
    result = healthd("run", "-c", str(path))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_probe_one_shot(tcp_server_process: TcpServer, closed_port: int) -> None:
    result = healthd("probe", "tcp", tcp_server_process.target)
    assert result.returncode == 0, result.stderr
    assert f"tcp {tcp_server_process.target}: ok" in result.stdout and "connect" in result.stdout
    result = healthd("probe", "tcp", f"127.0.0.1:{closed_port}", "--json")
    assert result.returncode == 1
    body = json.loads(result.stdout)
    assert body["ok"] is False and body["error"]["kind"] == "refused"


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_probe_runs_on_the_loop_asked_for(tcp_server_process: TcpServer, loop: str) -> None:
    if loop == "uvloop" and not loops.uvloop_available():
        pytest.skip("uvloop is not installed")
    result = healthd("probe", "tcp", tcp_server_process.target, "--loop", loop, "-v")
    assert result.returncode == 0, result.stderr
    assert f"probing on the {loop} event loop" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["probe", "tcp", "127.0.0.1:1", "--loop", "trio"],
        ["probe", "tcp", "nonsense"],
        ["probe", "tcp", "127.0.0.1:1", "--count", "3"],
        ["probe", "tcp", "127.0.0.1:1", "--timeout", "soon"],
        ["probe", "gopher", "x:1"],
        ["bogus-flag-only", "--x"],
    ],
)
def test_probe_usage_errors_exit_2(args: list[str]) -> None:
    result = healthd(*args)
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr


@pytest.fixture
def tcp_server_process() -> Iterator[TcpServer]:
    """A blocking listener usable across processes (the CLI runs in a subprocess)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    try:
        yield TcpServer("127.0.0.1", sock.getsockname()[1])
    finally:
        sock.close()


class Notifications:
    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.path = path
        self.seen: list[str] = []

    def wait_for(self, field: str, seconds: float = 10.0) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if any(field in message.split("\n") for message in self.seen):
                return
            try:
                self.seen.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue
        raise AssertionError(f"no {field} in {self.seen}")


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def test_daemon_lifecycle_notify_reload_and_clean_stop(tmp_path: Path, closed_port: int) -> None:
    port = free_port()
    config = write_config(tmp_path / "c.yaml", port, f"127.0.0.1:{closed_port}")
    notes = Notifications(tmp_path / "notify.sock")
    env = {**os.environ, "NOTIFY_SOCKET": str(notes.path), "WATCHDOG_USEC": "400000"}
    proc = subprocess.Popen(
        [*HEALTHD, "run", "-c", str(config)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        notes.wait_for("READY=1")
        assert get(f"http://127.0.0.1:{port}/readyz")[0] == 200
        notes.wait_for("WATCHDOG=1")
        # nothing but the probing workers (scheduler.workers: auto on this machine's CPUs),
        # forked by the zygote, the one child
        wanted = worker_count(load(config).config)
        if wanted > 1:
            [zygote] = children_of(proc.pid)
            assert Path(f"/proc/{zygote}/comm").read_text().strip() == "healthd-zygote"
            names = sorted(Path(f"/proc/{pid}/comm").read_text().strip() for pid in children_of(zygote))
            assert names == [f"healthd-w{index}" for index in range(wanted)]
        else:
            assert children_of(proc.pid) == []
        for _ in range(60):  # the closed port goes down within a couple of intervals
            body = json.loads(get(f"http://127.0.0.1:{port}/api/v1/services/other")[1])
            if body["status"] == "down":
                break
            time.sleep(0.1)
        assert body["status"] == "down"

        write_config(
            config,
            port,
            f"127.0.0.1:{closed_port}",
            extra="  - name: added\n    checks:\n      - {type: tcp, target: '127.0.0.1:1'}\n",
        )
        notes.seen.clear()
        proc.send_signal(signal.SIGHUP)
        notes.wait_for("RELOADING=1")
        notes.wait_for("READY=1")
        assert get(f"http://127.0.0.1:{port}/api/v1/services/added")[0] == 200

        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
        assert time.monotonic() - started < 2.0
        notes.wait_for("STOPPING=1")
    finally:
        if proc.poll() is None:
            proc.kill()
        stderr = proc.communicate(timeout=5)[1]
        notes.sock.close()
    assert "is down, was unknown: refused" in stderr  # transitions logged with their cause
    assert "config reloaded: 1 added" in stderr
    with socket.socket() as sock:  # the API port was released
        assert sock.connect_ex(("127.0.0.1", port)) != 0


def test_port_in_use_exits_1_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = write_config(tmp_path / "c.yaml", port, "127.0.0.1:1")
        result = healthd("run", "-c", str(config))
    assert result.returncode == 1
    assert "cannot listen on 127.0.0.1" in result.stderr and "Traceback" not in result.stderr


def run_until_ready(config: Path, port: int, *extra: str, stop: int = signal.SIGTERM) -> str:
    """Start the daemon, wait (bounded) until /readyz answers, stop it; its stderr."""
    proc = subprocess.Popen([*HEALTHD, "run", "-c", str(config), *extra], stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(300):  # bounded: start-up includes the probing workers' (seconds when loaded)
            if get_status(port) == 200:
                break
            time.sleep(0.1)
        proc.send_signal(stop)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        stderr = proc.communicate(timeout=5)[1]
    return stderr


def test_json_logs(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path / "c.yaml", port, "127.0.0.1:1")
    stderr = run_until_ready(config, port, "--log-format", "json", stop=signal.SIGINT)
    lines = [json.loads(line) for line in stderr.splitlines()]
    assert any("listening on" in entry["message"] for entry in lines)
    assert all({"time", "level", "logger", "message"} <= set(entry) for entry in lines)


def get_status(port: int) -> int:
    try:
        return get(f"http://127.0.0.1:{port}/readyz")[0]
    except OSError:
        return 0


def test_icmp_mode_is_in_the_start_up_log(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "c.yaml"
    config.write_text(f"""\
server: {{listen: "127.0.0.1:{port}"}}
services:
  - name: ping
    checks:
      - {{type: icmp, target: 127.0.0.1, interval: 1h}}
""")
    stderr = run_until_ready(config, port)
    # said at start, before any probe ran (the first one is up to an hour away)
    assert "ICMP IPv4 checks" in stderr, stderr
    assert "ICMP IPv6 checks" not in stderr
