"""A running healthd (and a real Prometheus scraping it) for the deployment tests.

The daemon gets one check of every type in `daemon.probes.PROBES` at test time,
each aimed at a listener this module starts on 127.0.0.1, so the metrics it
exports grow by themselves as probe types land. Nothing leaves loopback.
"""

from __future__ import annotations

import http.server
import json
import signal
import socket
import socketserver
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trustme
import yaml
from healthd.config import CHECK_MODELS
from healthd.probes import PROBES
from pydantic import ValidationError

REPO = Path(__file__).resolve().parents[2]
SERVICE = "deploy-test"
KNOWN_CHECK = "tcp"  # the check whose series the Prometheus test queries


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_for(what: str, ready: Any, timeout: float, log: Path | None = None) -> Any:
    """Poll `ready()` (bounded in time) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = ready()
        except OSError:
            value = None
        if value:
            return value
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{tail}")


class _Quiet(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Accept(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        pass  # accept and close: all a TCP check needs


@dataclass
class Targets:
    tcp_port: int
    http_port: int
    https_port: int
    ca_file: Path  # the CA that signed the HTTPS server's certificate for 127.0.0.1


@contextmanager
def loopback_servers(workdir: Path) -> Iterator[Targets]:
    """A TCP listener, an HTTP server and an HTTPS server, all on 127.0.0.1."""
    ca = trustme.CA()
    ca_file = workdir / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(tls)
    https = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Quiet)
    https.socket = tls.wrap_socket(https.socket, server_side=True)
    servers: list[socketserver.TCPServer] = [
        socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Accept),
        http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Quiet),
        https,
    ]
    threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.1}) for s in servers]
    for thread in threads:
        thread.start()
    try:
        tcp, web, secure = (int(s.server_address[1]) for s in servers)
        yield Targets(tcp, web, secure, ca_file)
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
        for thread in threads:
            thread.join(timeout=5)


def check_for(kind: str, targets: Targets) -> dict[str, Any]:
    """A check of type `kind` aimed at our loopback listeners, whatever its target option is."""
    model = CHECK_MODELS[kind]
    base: dict[str, Any] = {"type": kind, "name": kind, "interval": "1s", "timeout": "500ms"}
    candidates = [f"http://127.0.0.1:{targets.http_port}/", f"127.0.0.1:{targets.tcp_port}", "127.0.0.1"]
    for target in candidates:
        options = {**base, model.TARGET_FIELD: target}
        try:
            model.model_validate(options)
        except ValidationError:
            continue
        return options
    raise AssertionError(f"no loopback target fits a {kind} check ({model.TARGET_FIELD}); extend check_for()")


def https_check(targets: Targets) -> dict[str, Any] | None:
    """An http check of our HTTPS server (for probe_ssl_*), trusting its certificate."""
    if "http" not in PROBES:
        return None
    model = CHECK_MODELS["http"]
    options = check_for("http", targets) | {
        "name": "https",
        model.TARGET_FIELD: f"https://127.0.0.1:{targets.https_port}/",
    }
    if "ca_file" in model.model_fields:
        return options | {"ca_file": str(targets.ca_file)}
    return None


def config_with_every_probe(targets: Targets) -> dict[str, Any]:
    checks = [check_for(kind, targets) for kind in sorted(PROBES)]
    tls = https_check(targets)
    if tls is not None:
        checks.append(tls)
    return {
        "defaults": {"rise": 1, "fall": 1},
        "services": [{"name": SERVICE, "labels": {"env": "test"}, "checks": checks}],
    }


@dataclass
class Daemon:
    url: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    checks: list[str] = field(default_factory=list)
    targets: Targets | None = None

    def get_json(self, path: str) -> Any:
        status, body = http_get(self.url + path)
        assert status == 200, f"GET {path}: {status} {body[:200]!r}"
        return json.loads(body)

    def metrics(self) -> str:
        status, body = http_get(self.url + "/metrics")
        assert status == 200, f"GET /metrics: {status}"
        return body.decode()

    def all_checks_have_a_result(self) -> bool:
        service = self.get_json(f"/api/v1/services/{SERVICE}")
        return all(check["last"] is not None for check in service["checks"])


def stop(process: subprocess.Popen[Any], grace: float = 5.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=grace)


@contextmanager
def running_daemon(
    workdir: Path, make_config: Callable[[Targets], dict[str, Any]] = config_with_every_probe
) -> Iterator[Daemon]:
    """healthd from this venv with one check per probe type (or `make_config`'s checks of
    our loopback listeners); yields once every check has run."""
    with loopback_servers(workdir) as targets:
        config = make_config(targets)
        config_path = workdir / "config.yaml"
        config_path.write_text(yaml.safe_dump(config))
        port = free_port()
        log = workdir / "healthd.log"
        healthd = Path(sys.executable).parent / "healthd"
        cmd = [str(healthd), "run", "-c", str(config_path), "--listen", f"127.0.0.1:{port}"]
        with log.open("wb") as log_file:
            process = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT)
        names = [check["name"] for check in config["services"][0]["checks"]]
        daemon = Daemon(f"http://127.0.0.1:{port}", port, process, log, names, targets)
        try:
            wait_for("healthd to answer /readyz", lambda: http_get(daemon.url + "/readyz")[0] == 200, 15, log)
            wait_for("every check to have a result", daemon.all_checks_have_a_result, 15, log)
            yield daemon
        finally:
            stop(process)


@dataclass
class Prometheus:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def api(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        status, body = http_get(f"{self.url}/api/v1/{path}{query}", timeout=5)
        answer = json.loads(body)
        assert status == 200 and answer["status"] == "success", f"{path} {params}: {status} {answer}"
        return answer["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", data
        return list(data["result"])


def prometheus_config(healthd_port: int) -> dict[str, Any]:
    """deploy/prometheus/prometheus.yml, aimed at the test's healthd and sped up to 1 s."""
    config: dict[str, Any] = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(REPO / "deploy/prometheus" / name) for name in config["rule_files"]]
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "healthd"]
    job.update(scrape_interval="1s", scrape_timeout="1s")
    job["static_configs"] = [{"targets": [f"127.0.0.1:{healthd_port}"]}]
    return config


@contextmanager
def running_prometheus(binary: str, workdir: Path, healthd_port: int) -> Iterator[Prometheus]:
    with prometheus_with(binary, workdir, prometheus_config(healthd_port)) as server:
        yield server


@contextmanager
def prometheus_with(binary: str, workdir: Path, config: dict[str, Any]) -> Iterator[Prometheus]:
    """A real Prometheus on a free loopback port running `config`; yields once it is ready."""
    config_path = workdir / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config))
    port = free_port()
    log = workdir / "prometheus.log"
    cmd = [
        binary,
        f"--config.file={config_path}",
        f"--storage.tsdb.path={workdir / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    with log.open("wb") as log_file:
        process = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT)
    server = Prometheus(f"http://127.0.0.1:{port}", process, log)
    try:
        wait_for("Prometheus to be ready", lambda: http_get(server.url + "/-/ready")[0] == 200, 30, log)
        yield server
    finally:
        stop(process)
