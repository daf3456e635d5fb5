"""Three real shard processes on one config of 1,000 checks, scraped by a real Prometheus.

The checks aim at a closed port on 127.0.0.1 (answered by RST: the cheapest
probe there is) every 4 s. Prometheus computes its own `hashmod` of
service/check on every series it scrapes, so the test also shows that
healthd's arithmetic is Prometheus' arithmetic.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from healthd import cluster

from tests.deploy.conftest import need
from tests.deploy.live import Prometheus, free_port, http_get, prometheus_with, stop, wait_for

HEALTHD = Path(sys.executable).parent / "healthd"
KEYS = [f"svc{i % 37}/check-{i}" for i in range(1000)]


@dataclass
class Shard:
    index: int
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def services(self) -> dict[str, Any]:
        status, body = http_get(self.url + "/api/v1/services", timeout=5)
        assert status == 200, body[:200]
        return dict(json.loads(body))

    def owned(self) -> set[str]:
        return {f"{s['name']}/{c['name']}" for s in self.services()["services"] for c in s["checks"]}

    def probed(self) -> set[str] | None:
        """The checks with a result, or None while some still have none."""
        listing = self.services()["services"]
        checks = [(s["name"], c) for s in listing for c in s["checks"]]
        if not all(c["last"] is not None for _, c in checks):
            return None
        return {f"{name}/{c['name']}" for name, c in checks}


def write_config(path: Path, port: int, shard_count: int) -> None:
    services: dict[str, list[dict[str, Any]]] = {}
    for key in KEYS:
        service, check = key.split("/")
        services.setdefault(service, []).append({"name": check, "type": "tcp", "target": f"127.0.0.1:{port}"})
    config = {
        "cluster": {"shard_count": shard_count},
        "defaults": {"interval": "4s", "timeout": "1s", "history": 4},
        "services": [{"name": name, "checks": checks} for name, checks in services.items()],
    }
    path.write_text(yaml.safe_dump(config))


@contextmanager
def shard_process(config: Path, index: int, workdir: Path) -> Iterator[Shard]:
    port = free_port()
    log = workdir / f"shard-{index}.log"
    cmd = [
        str(HEALTHD),
        "run",
        "-c",
        str(config),
        "--listen",
        f"127.0.0.1:{port}",
        "--shard-index",
        str(index),
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    shard = Shard(index, f"http://127.0.0.1:{port}", process, log)
    try:
        wait_for(f"shard {index} to be ready", lambda: http_get(shard.url + "/readyz")[0] == 200, 20, log)
        yield shard
    finally:
        stop(process)


@contextmanager
def prometheus_scraping(shards: list[Shard], workdir: Path) -> Iterator[Prometheus]:
    modulus = len(shards)
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": "healthd",
                "scrape_timeout": "1s",
                "static_configs": [
                    {"targets": [s.url.removeprefix("http://")], "labels": {"shard": str(s.index)}}
                    for s in shards
                ],
                # Prometheus' own prediction of each series' shard, beside the shard that exported it
                "metric_relabel_configs": [
                    {
                        "source_labels": ["service", "check"],
                        "separator": "/",
                        "action": "hashmod",
                        "modulus": modulus,
                        "target_label": "predicted_shard",
                    }
                ],
            }
        ],
    }
    with prometheus_with(need("prometheus"), workdir, config) as server:
        yield server


def scalar(prometheus: Prometheus, expr: str) -> float | None:
    result = prometheus.query(expr)
    return float(result[0]["value"][1]) if result else None


@pytest.fixture
def closed_port() -> Iterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # bound, not listening: every connect gets RST
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def test_three_shards_split_the_checks_and_prometheus_sees_each_once(
    tmp_path: Path, closed_port: int
) -> None:
    need("prometheus")
    config = tmp_path / "config.yaml"
    write_config(config, closed_port, shard_count=3)
    with ExitStack() as stack:
        shards = [stack.enter_context(shard_process(config, i, tmp_path)) for i in range(3)]
        probed = [wait_for(f"shard {s.index}'s first probes", s.probed, 30, s.log) for s in shards]
        assert set().union(*probed) == set(KEYS)
        assert sum(map(len, probed)) == len(KEYS)  # pairwise disjoint
        predicted = shard_of_command(KEYS, 3)
        for shard, share in zip(shards, probed, strict=True):
            assert share == {key for key in KEYS if predicted[key] == shard.index}
            assert shard.services()["shard"] == {
                "index": shard.index,
                "count": 3,
                "replicas": 1,
                "checks": len(share),
            }

        prometheus = stack.enter_context(prometheus_scraping(shards, tmp_path))
        wait_for(
            "1,000 series", lambda: scalar(prometheus, "count(probe_success)") == 1000, 30, prometheus.log
        )
        assert (
            scalar(prometheus, "count(count by (service, check) (probe_success))") == 1000
        )  # each exactly once
        series = prometheus.query("probe_success")
        assert len(series) == 1000
        assert all(s["metric"]["predicted_shard"] == s["metric"]["shard"] for s in series)
        shard_info = prometheus.query("healthd_shard_info")
        assert sorted((s["metric"]["index"], s["metric"]["count"]) for s in shard_info) == [
            ("0", "3"),
            ("1", "3"),
            ("2", "3"),
        ]

        # 3 -> 4 shards: reload the three, start a fourth
        before = {key: index for index, share in enumerate(probed) for key in share}
        write_config(config, closed_port, shard_count=4)
        for shard in shards:
            shard.process.send_signal(signal.SIGHUP)
        shards.append(stack.enter_context(shard_process(config, 3, tmp_path)))
        wait_for(
            "every shard to count 4", lambda: all(s.services()["shard"]["count"] == 4 for s in shards), 20
        )
        after = {key: shard.index for shard in shards for key in shard.owned()}
        assert sorted(after) == sorted(KEYS)
        moved = {key for key in KEYS if after[key] != before[key]}
        assert moved == {key for key in KEYS if cluster.shard_of(key, 3) != cluster.shard_of(key, 4)}
        assert 0.70 < len(moved) / len(KEYS) < 0.80  # hashmod keeps a key only when h%12 < 3


def shard_of_command(keys: list[str], count: int) -> dict[str, int]:
    done = subprocess.run(
        [str(HEALTHD), "shard-of", *keys, "--shard-count", str(count)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return {key: int(shard) for key, shard in (line.split() for line in done.stdout.splitlines())}
