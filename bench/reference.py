"""Reference tools measured in the same run: blackbox_exporter scheduled by Prometheus, and fping.

blackbox_exporter is deployed the way it runs in practice: a real Prometheus
scrapes `/probe?module=M&target=T` for every target at the scrape interval,
so each scrape is one probe and Prometheus does the scheduling and storage.
Probes and successes in a window come from Prometheus itself:
`count_over_time(up[W])` (one sample per scrape) and
`sum_over_time(probe_success[W])`, queried at the window's end.

fping runs twice: paced like a scheduler (`-c N -p 1000 -i 1`: every target
once a second, 1 ms between packets, i.e. 1,000 echoes/s for 1,000 targets)
and as fast as it goes (`-c 1 -i 0`, one echo per target), for the rate row.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bench.procs import Processes, free_port, wait_http
from bench.procstat import CpuWindow

BLACKBOX = "/usr/bin/prometheus-blackbox-exporter"
PROMETHEUS = "/usr/bin/prometheus"
FPING = "/usr/bin/fping"

# blackbox module per healthd probe type; blackbox has no SYN-only prober, so
# `syn` is compared with its full connect, the nearest thing it offers
MODULES = {"tcp": "tcp_connect", "syn": "tcp_connect", "icmp": "icmp", "http": "http_2xx"}

BLACKBOX_CONFIG = """\
modules:
  tcp_connect:
    prober: tcp
    timeout: 1s
    tcp: {preferred_ip_protocol: ip4}
  icmp:
    prober: icmp
    timeout: 1s
    icmp: {preferred_ip_protocol: ip4}
  http_2xx:
    prober: http
    timeout: 1s
    http: {preferred_ip_protocol: ip4}
"""


@dataclass(frozen=True)
class ReferenceWindow:
    seconds: float
    probes: float
    successes: float
    machine_cpu: float  # CPU seconds, all cores
    machine_share: float
    tool_cpu: dict[str, float]  # process name -> CPU seconds

    @property
    def failures(self) -> float:
        return self.probes - self.successes


class BlackboxStack:
    """blackbox_exporter plus a Prometheus that scrapes it for every target."""

    def __init__(
        self, procs: Processes, workdir: Path, module: str, targets: list[str], interval: float
    ) -> None:
        self.procs = procs
        self.targets = targets
        bb_port, self.prom_port = free_port(), free_port()
        (workdir / "blackbox.yml").write_text(BLACKBOX_CONFIG)
        scrape = f"{interval:g}s"
        prom_config = {
            "global": {"scrape_interval": scrape, "scrape_timeout": scrape, "evaluation_interval": "1m"},
            "scrape_configs": [
                {
                    "job_name": "blackbox",
                    "metrics_path": "/probe",
                    "params": {"module": [module]},
                    "static_configs": [{"targets": targets}],
                    "relabel_configs": [
                        {"source_labels": ["__address__"], "target_label": "__param_target"},
                        {"source_labels": ["__param_target"], "target_label": "instance"},
                        {"target_label": "__address__", "replacement": f"127.0.0.1:{bb_port}"},
                    ],
                }
            ],
        }
        (workdir / "prometheus.yml").write_text(json.dumps(prom_config, indent=1))
        storage = workdir / f"tsdb-{module}"
        self.blackbox = procs.start(
            "blackbox",
            [
                BLACKBOX,
                f"--config.file={workdir / 'blackbox.yml'}",
                f"--web.listen-address=127.0.0.1:{bb_port}",
                "--log.level=warn",
            ],
        )
        wait_http(f"http://127.0.0.1:{bb_port}/-/healthy", timeout=30, proc=self.blackbox)
        self.prometheus = procs.start(
            "prometheus",
            [
                PROMETHEUS,
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={storage}",
                f"--web.listen-address=127.0.0.1:{self.prom_port}",
                "--log.level=warn",
            ],
        )
        wait_http(f"http://127.0.0.1:{self.prom_port}/-/ready", timeout=60, proc=self.prometheus)

    def query(self, expr: str, at: float) -> float:
        params = urllib.parse.urlencode({"query": expr, "time": f"{at:.3f}"})
        url = f"http://127.0.0.1:{self.prom_port}/api/v1/query?{params}"
        with urllib.request.urlopen(url, timeout=30) as answer:
            data = json.load(answer)
        result = data["data"]["result"]
        return float(result[0]["value"][1]) if result else 0.0

    def wait_all_scraped(self, timeout: float) -> None:
        """Until every target has been scraped at least once (Prometheus spreads their offsets)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.query("count(up)", time.time()) >= len(self.targets):
                return
            time.sleep(0.5)
        raise TimeoutError(f"Prometheus did not scrape all {len(self.targets)} targets within {timeout:.0f}s")

    def measure(self, seconds: float, extra_pids: dict[str, int]) -> ReferenceWindow:
        pids = {"blackbox": self.blackbox.pid, "prometheus": self.prometheus.pid, **extra_pids}
        window = CpuWindow(pids)
        window.begin()
        time.sleep(seconds)
        window.finish()
        end = time.time()
        span = max(1, round(window.seconds))
        # let the last scrapes of the window land in the TSDB before asking
        time.sleep(1.5)
        probes = self.query(f"sum(count_over_time(up[{span}s]))", end)
        successes = self.query(f"sum(sum_over_time(probe_success[{span}s]))", end)
        return ReferenceWindow(
            seconds=span,
            probes=probes,
            successes=successes,
            machine_cpu=window.machine_cpu,
            machine_share=window.machine_share,
            tool_cpu={name: window.cpu(name) for name in pids},
        )

    def stop(self) -> None:
        self.procs.stop("prometheus")
        self.procs.stop("blackbox")


@dataclass(frozen=True)
class FpingRun:
    echoes: int
    received: int
    seconds: float  # wall time of the run
    cpu: float  # fping's own user + system (rusage), start-up included
    machine_cpu: float


_SUMMARY = re.compile(rb"xmt/rcv/%loss = (\d+)/(\d+)/")


def fping(targets: list[str], workdir: Path, *, count: int, paced: bool, timeout: float) -> FpingRun:
    """One fping run over `targets`; paced = every target once a second, 1 ms between packets."""
    listing = workdir / "fping-targets.txt"
    listing.write_text("\n".join(targets) + "\n")
    pacing = ["-p", "1000", "-i", "1"] if paced else ["-i", "0"]
    argv = [FPING, "-q", "-c", str(count), *pacing, "-f", str(listing)]
    window = CpuWindow({})
    window.begin()
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    killer = threading.Timer(timeout, proc.kill)  # bounded even if fping hangs
    killer.start()
    try:
        assert proc.stderr is not None
        stderr = proc.stderr.read()
        # wait4, not Popen.wait: it gives this child's own rusage
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        killer.cancel()
        elapsed = time.monotonic() - started
        window.finish()
        if proc.stderr is not None:
            proc.stderr.close()
    sent = received = 0
    for match in _SUMMARY.finditer(stderr):
        sent += int(match.group(1))
        received += int(match.group(2))
    return FpingRun(sent, received, elapsed, usage.ru_utime + usage.ru_stime, window.machine_cpu)


def versions() -> dict[str, str]:
    out: dict[str, str] = {}
    for name, argv in {
        "blackbox_exporter": [BLACKBOX, "--version"],
        "prometheus": [PROMETHEUS, "--version"],
        "fping": [FPING, "--version"],
    }.items():
        try:
            text = subprocess.run(argv, capture_output=True, timeout=10, check=False)
        except OSError:
            out[name] = "missing"
            continue
        first = (text.stdout or text.stderr).decode(errors="replace").splitlines()
        out[name] = first[0].strip() if first else "?"
    return out


def available() -> dict[str, bool]:
    return {path: os.access(path, os.X_OK) for path in (BLACKBOX, PROMETHEUS, FPING)}
