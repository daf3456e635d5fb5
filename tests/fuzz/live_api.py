"""A live `healthd run` for the API suites: checks that are up and down, a token mode, its log.

The daemon probes a small HTTP server this module runs on 127.0.0.1 (a tcp and an http
check, both up) and a bound but closed port (down): every answer shape the API has
(results with and without errors, services degraded) occurs. Nothing leaves loopback.
"""

from __future__ import annotations

import http.server
import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TOKEN = "fuzz-token-0123456789"


class _Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"ok\n")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class LiveApi:
    url: str  # http://127.0.0.1:PORT
    token: str | None
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _config(target: str, closed: int, token_file: Path | None, protect_reads: bool) -> str:
    server = (
        f"  token_file: {token_file}\n  protect_reads: {str(protect_reads).lower()}\n" if token_file else ""
    )
    return f"""\
server:
  listen: 127.0.0.1:9180
{server}defaults:
  interval: 1s
  timeout: 500ms
  history: 20
services:
  - name: web
    labels: {{team: core}}
    checks:
      - type: tcp
        target: {target}
      - type: http
        url: http://{target}/
      - name: closed
        type: tcp
        target: 127.0.0.1:{closed}
  - name: db
    checks:
      - type: tcp
        target: {target}
"""


def _get(url: str, token: str | None = None) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=1) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _every_check_has_a_result(api: LiveApi) -> bool:
    status, body = _get(api.url + "/api/v1/services", api.token)
    if status != 200:
        return False
    services = json.loads(body)["services"]
    return all(check["last"] is not None for service in services for check in service["checks"])


@contextmanager
def live_api(tmp: Path, *, token: bool = False, protect_reads: bool = False) -> Iterator[LiveApi]:
    """`healthd run` on a free loopback port until the block ends; every check has a result."""
    target = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    threading.Thread(target=target.serve_forever, daemon=True).start()
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    token_file = None
    if token:
        token_file = tmp / "token"
        token_file.write_text(TOKEN + "\n")
    config = tmp / "healthd.yaml"
    config.write_text(
        _config(f"127.0.0.1:{target.server_port}", closed.getsockname()[1], token_file, protect_reads)
    )
    port, log = _free_port(), tmp / "healthd.log"
    with log.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "healthd", "run", "-c", str(config), "--listen", f"127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    api = LiveApi(f"http://127.0.0.1:{port}", TOKEN if token else None, log)
    try:
        deadline = time.monotonic() + 45  # bounded; start-up includes the probing workers'
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if _every_check_has_a_result(api):
                    break
            except OSError:
                pass
            time.sleep(0.1)
        else:
            raise AssertionError(f"healthd did not start probing:\n{api.log_text()[-2000:]}")
        yield api
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        target.shutdown()
        target.server_close()
        closed.close()
