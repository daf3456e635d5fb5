"""Metric parity with blackbox_exporter: the Debian `prometheus-blackbox-exporter` and healthd probe
the same loopback listeners, and every family both export has the same type and label names (healthd's
own service/check/type/target aside) and, where the value is deterministic, the same value.

A blackbox dashboard or alert written against `probe_*` therefore works on healthd's series.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.deploy.live import SERVICE, Daemon, Targets, free_port, http_get, running_daemon, stop, wait_for

BLACKBOX = "prometheus-blackbox-exporter"
IDENTITY = {"service", "check", "type", "target"}  # healthd's per-check labels; Prometheus adds job, instance


@dataclass(frozen=True)
class Pair:
    """One blackbox module/target and the healthd check that probes the same thing."""

    check: str
    module: str
    expected: frozenset[str]  # families both must export for this probe
    same_value: frozenset[str]  # families whose value must agree
    success: float = 1.0  # probe_success both must report


COMMON = {"probe_success", "probe_duration_seconds", "probe_dns_lookup_time_seconds", "probe_ip_protocol"}
HTTP = COMMON | {
    "probe_http_status_code",
    "probe_http_content_length",
    "probe_http_version",
    "probe_http_duration_seconds",
    "probe_http_redirects",
    "probe_http_ssl",
    "probe_http_uncompressed_body_length",
    "probe_failed_due_to_regex",
}
HTTP_SAME = {
    "probe_success",
    "probe_ip_protocol",
    "probe_http_status_code",
    "probe_http_content_length",
    "probe_http_version",
    "probe_http_redirects",
    "probe_http_ssl",
    "probe_http_uncompressed_body_length",
    "probe_failed_due_to_regex",
}
TLS = {
    "probe_ssl_earliest_cert_expiry",
    "probe_tls_version_info",
    "probe_ssl_last_chain_expiry_timestamp_seconds",
}
PAIRS = [
    Pair("http", "http", frozenset(HTTP), frozenset(HTTP_SAME)),
    Pair("https", "https", frozenset(HTTP | TLS), frozenset(HTTP_SAME | TLS)),
    # the body regex does not match: both fail, and say it was the regex
    Pair("http-miss", "http_miss", frozenset(HTTP), frozenset(HTTP_SAME), success=0.0),
    Pair("tcp", "tcp", frozenset(COMMON), frozenset({"probe_success", "probe_ip_protocol"})),
    Pair(
        "icmp",
        "icmp",
        frozenset(COMMON | {"probe_icmp_duration_seconds", "probe_icmp_reply_hop_limit"}),
        frozenset({"probe_success", "probe_ip_protocol", "probe_icmp_reply_hop_limit"}),
    ),
]


def healthd_config(targets: Targets) -> dict[str, Any]:
    web, secure = f"http://127.0.0.1:{targets.http_port}/", f"https://127.0.0.1:{targets.https_port}/"
    return {
        "defaults": {"rise": 1, "fall": 1, "interval": "1s", "timeout": "900ms"},
        "services": [
            {
                "name": SERVICE,
                "checks": [
                    {"name": "http", "type": "http", "url": web, "body_regex": "ok"},
                    {"name": "http-miss", "type": "http", "url": web, "body_regex": "absent"},
                    {
                        "name": "https",
                        "type": "http",
                        "url": secure,
                        "body_regex": "ok",
                        "ca_file": str(targets.ca_file),
                    },
                    {"name": "tcp", "type": "tcp", "target": f"127.0.0.1:{targets.tcp_port}"},
                    {"name": "icmp", "type": "icmp", "target": "127.0.0.1"},
                ],
            }
        ],
    }


def blackbox_config(targets: Targets) -> dict[str, Any]:
    body = {"fail_if_body_not_matches_regexp": ["ok"]}
    return {
        "modules": {
            "http": {"prober": "http", "timeout": "2s", "http": body},
            "https": {
                "prober": "http",
                "timeout": "2s",
                "http": {**body, "tls_config": {"ca_file": str(targets.ca_file)}},
            },
            "http_miss": {
                "prober": "http",
                "timeout": "2s",
                "http": {"fail_if_body_not_matches_regexp": ["absent"]},
            },
            "tcp": {"prober": "tcp", "timeout": "2s"},
            "icmp": {"prober": "icmp", "timeout": "2s", "icmp": {"preferred_ip_protocol": "ip4"}},
        }
    }


def blackbox_target(pair: Pair, targets: Targets) -> str:
    return {
        "http": f"http://127.0.0.1:{targets.http_port}/",
        "http_miss": f"http://127.0.0.1:{targets.http_port}/",
        "https": f"https://127.0.0.1:{targets.https_port}/",
        "tcp": f"127.0.0.1:{targets.tcp_port}",
        "icmp": "127.0.0.1",
    }[pair.module]


@dataclass
class Blackbox:
    url: str
    log: Path

    def probe(self, module: str, target: str) -> str:
        query = urllib.parse.urlencode({"module": module, "target": target})
        status, body = http_get(f"{self.url}/probe?{query}", timeout=5)
        assert status == 200, f"blackbox /probe {module} {target}: {status} {body[:300]!r}"
        return body.decode()


@pytest.fixture(scope="module")
def healthd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with running_daemon(tmp_path_factory.mktemp("parity"), healthd_config) as live:
        yield live


@pytest.fixture(scope="module")
def blackbox(healthd: Daemon, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Blackbox]:
    binary = shutil.which(BLACKBOX)
    if binary is None:
        pytest.skip(f"needs {BLACKBOX} (Debian package; `make test` installs it as root)")
    assert healthd.targets is not None
    workdir = tmp_path_factory.mktemp("blackbox")
    config = workdir / "blackbox.yml"
    config.write_text(yaml.safe_dump(blackbox_config(healthd.targets)))
    port, log = free_port(), workdir / "blackbox.log"
    cmd = [binary, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}"]
    with log.open("wb") as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    box = Blackbox(f"http://127.0.0.1:{port}", log)
    try:
        wait_for("blackbox_exporter to answer", lambda: http_get(box.url + "/-/healthy")[0] == 200, 15, log)
        yield box
    finally:
        stop(process)


Families = dict[str, tuple[str, frozenset[str], list[tuple[dict[str, str], float]]]]


def families(text: str, check: str | None = None) -> Families:
    """name -> (type, label names, samples); for healthd only `check`'s samples, identity labels dropped."""
    found: Families = {}
    for family in text_string_to_metric_families(text):
        samples = [
            ({k: v for k, v in s.labels.items() if k not in IDENTITY}, s.value)
            for s in family.samples
            if check is None or (s.labels.get("service") == SERVICE and s.labels.get("check") == check)
        ]
        if samples:
            names = frozenset(name for labels, _ in samples for name in labels)
            found[family.name] = (family.type, names, samples)
    return found


def healthd_families(healthd: Daemon, check: str) -> Families:
    """The check's families once it has a result with every phase (a first probe may still be running)."""

    def ready() -> Families | None:
        found = families(healthd.metrics(), check)
        return found if "probe_success" in found else None

    result: Families = wait_for(f"healthd's {check} series", ready, 15, healthd.log)
    return result


@pytest.mark.parametrize("pair", PAIRS, ids=lambda p: p.check)
def test_shared_families_have_the_same_type_labels_and_meaning(
    pair: Pair, healthd: Daemon, blackbox: Blackbox
) -> None:
    assert healthd.targets is not None
    theirs = families(blackbox.probe(pair.module, blackbox_target(pair, healthd.targets)))
    if pair.module == "icmp" and theirs["probe_success"][2][0][1] != 1.0:
        pytest.skip("blackbox_exporter cannot ping here (needs root or CAP_NET_RAW); CI runs as root")
    assert theirs["probe_success"][2][0][1] == pair.success, f"blackbox:\n{theirs}"
    ours = healthd_families(healthd, pair.check)
    if pair.module == "icmp" and ours["probe_success"][2][0][1] != 1.0 and os.geteuid() != 0:
        pytest.skip("healthd cannot ping here (no CAP_NET_RAW, group outside ping_group_range)")

    shared = sorted(set(theirs) & set(ours))
    print(f"\n{pair.check}: shared {shared}\n  blackbox only {sorted(set(theirs) - set(ours))}")
    assert pair.expected <= set(shared), f"missing on one side: {pair.expected - set(shared)}"
    for name in shared:
        (their_type, their_labels, their_samples), (our_type, our_labels, our_samples) = (
            theirs[name],
            ours[name],
        )
        assert our_type == their_type, f"{name}: healthd {our_type}, blackbox {their_type}"
        assert our_labels == their_labels, f"{name}: healthd labels {our_labels}, blackbox {their_labels}"
        if name in pair.same_value:
            assert sorted(our_samples, key=repr) == sorted(their_samples, key=repr), name
