"""Multi-WAN, one uplink cut: the daemon (run inside the lab's host) takes down exactly that uplink's checks.

Every probe type runs bound by `interface` and by `source_ip` to each uplink, and unbound
(the main table: wan1), IPv4 and IPv6. Cutting wan2 takes its checks down with the
kind the cut gives (a silent drop: timeout; an ISP that lost its upstream and says so:
unreachable), leaves wan1's and the unbound ones up, and they all come back after
`rise`. Set HEALTHD_WIRE_LOG=FILE to collect the verdict tables.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.wanlab import HTTP_PORT, Cut, WanLab, wan_lab

API = "127.0.0.1:9180"  # inside the lab's host namespace: nobody else listens there
KINDS = ("tcp", "syn", "icmp", "http")
Verdicts = dict[str, tuple[str, str | None]]  # "SERVICE/CHECK" -> (status, error kind of the last result)


def check_entries(lab: WanLab, via: str, version: int) -> list[str]:
    """The YAML of one service's checks: every type bound as `via` says, to `web`."""
    address = lab.target("web", version)
    literal = f"[{address}]" if version == 6 else address
    targets = {
        "tcp": f"target: '{literal}:{HTTP_PORT}'",
        "syn": f"target: '{literal}:{HTTP_PORT}'",
        "icmp": f"target: '{address}'",
        "http": f"url: 'http://{literal}:{HTTP_PORT}/'",
    }
    entries = []
    for kind in KINDS:
        if via == "unbound":
            bindings = {"main": ""}
        else:
            uplink = lab.wan1 if via == "wan1" else lab.wan2
            bindings = {"if": f"interface: {via}", "src": f"source_ip: '{uplink.ip(version, 2)}'"}
        for suffix, option in bindings.items():
            lines = [f"name: {kind}{version}-{suffix}", f"type: {kind}", targets[kind], option]
            entries.append("      - " + "\n        ".join(line for line in lines if line))
    return entries


def write_config(lab: WanLab, path: Path) -> Path:
    services = []
    for via in ("wan1", "wan2", "unbound"):
        checks = [entry for version in (4, 6) for entry in check_entries(lab, via, version)]
        services.append(f"  - name: {via}\n    checks:\n" + "\n".join(checks))
    path.write_text(
        f"server:\n  listen: {API}\n"
        "defaults:\n  interval: 500ms\n  timeout: 400ms\n  rise: 2\n  fall: 2\n"
        "services:\n" + "\n".join(services) + "\n"
    )
    return path


@pytest.fixture
def lab() -> Iterator[WanLab]:
    with wan_lab() as built:
        yield built


@pytest.fixture
def daemon(lab: WanLab, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    config = write_config(lab, tmp_path / "two-isp.yaml")
    log = (tmp_path / "healthd.log").open("wb")
    proc = lab.host.popen(sys.executable, "-m", "healthd", "run", "-c", str(config), stdout=log, stderr=log)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        assert "Traceback" not in (tmp_path / "healthd.log").read_text()


def verdicts(lab: WanLab) -> Verdicts:
    def fetch() -> bytes:
        with urllib.request.urlopen(f"http://{API}/api/v1/services", timeout=2) as response:
            return response.read()  # type: ignore[no-any-return]

    try:
        body = json.loads(lab.host.call(fetch))
    except OSError:
        return {}  # not listening yet
    found: Verdicts = {}
    for service in body["services"]:
        for check in service["checks"]:
            error = (check["last"] or {}).get("error")
            found[f"{service['name']}/{check['name']}"] = (check["status"], error["kind"] if error else None)
    return found


def wait_for(lab: WanLab, wanted: dict[str, str], seconds: float = 20.0) -> Verdicts:
    """Poll the API until every check has its wanted status ("via" service -> status); the last verdicts."""
    deadline = time.monotonic() + seconds
    while True:
        seen = verdicts(lab)
        if seen and all(status == wanted[key.split("/")[0]] for key, (status, _) in seen.items()):
            return seen
        if time.monotonic() > deadline:
            wrong = {k: v for k, v in seen.items() if v[0] != wanted[k.split("/")[0]]}
            pytest.fail(f"not {wanted} within {seconds:g}s: {wrong or 'no answer from the daemon'}")
        time.sleep(0.1)


def table(title: str, before: Verdicts, after: Verdicts) -> str:
    rows = [f"{title}", f"    {'check':<22} {'before':<8} after"]
    rows += [f"    {key:<22} {before[key][0]:<8} {after[key][0]} ({after[key][1]})" for key in sorted(after)]
    return "\n".join(rows) + "\n"


def log_table(text: str) -> None:
    path = os.environ.get("HEALTHD_WIRE_LOG")
    if path:
        with open(path, "a") as out:
            out.write(text)


ALL_UP = {"wan1": "up", "wan2": "up", "unbound": "up"}


@pytest.mark.parametrize(
    ("how", "kinds"),
    [
        ("drop", {"timeout"}),
        ("unreachable", {"unreachable"}),
        # the ISP's end loses its link: silence, or "no route to host" once our ARP/ND gives up
        ("down", {"timeout", "unreachable"}),
    ],
)
def test_cutting_wan2_takes_down_exactly_its_checks(
    lab: WanLab, daemon: subprocess.Popen[bytes], how: Cut, kinds: set[str]
) -> None:
    before = wait_for(lab, ALL_UP)
    assert len(before) == 2 * 4 * (2 + 2 + 1)  # both families, every type, every binding
    lab.cut(lab.wan2, how)
    after = wait_for(lab, {"wan1": "up", "wan2": "down", "unbound": "up"})
    log_table(table(f"cut wan2 ({how})", before, after))
    down_kinds = {kind for key, (_, kind) in after.items() if key.startswith("wan2/")}
    assert down_kinds and down_kinds <= kinds, after
    lab.restore(lab.wan2)
    wait_for(lab, ALL_UP)


def test_unbound_checks_follow_the_main_table(lab: WanLab, daemon: subprocess.Popen[bytes]) -> None:
    before = wait_for(lab, ALL_UP)
    lab.cut(lab.wan1, "drop")
    after = wait_for(lab, {"wan1": "down", "wan2": "up", "unbound": "down"})
    log_table(table("cut wan1 (drop): the main table's default is wan1", before, after))
    lab.restore(lab.wan1)
    wait_for(lab, ALL_UP)
