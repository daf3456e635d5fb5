"""Bindings that cannot work say why and what to do: at probe time (kind `error`/`permission`) and in check-config.

Run in the two-uplink lab's host (tests/wanlab.py): an interface that does not exist,
is down or has no address of the family; a source_ip this host does not have;
SO_BINDTODEVICE refused. Never a traceback, never a silent timeout.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from healthd.results import ErrorKind

from tests.test_multiwan import make_check, probe_in_host
from tests.wanlab import HTTP_PORT, WanLab, wan_lab

KINDS = ("tcp", "syn", "icmp", "http")


@pytest.fixture(scope="module")
def lab() -> Iterator[WanLab]:
    with wan_lab() as built:
        yield built


def assert_error_everywhere(lab: WanLab, version: int, expected: str, **binding: str) -> None:
    for kind in KINDS:
        result = probe_in_host(lab, make_check(kind, lab, version, **binding))
        assert (result.error_kind, result.error_message) == (ErrorKind.ERROR, expected), kind


@pytest.mark.parametrize("version", [4, 6])
def test_an_interface_that_does_not_exist(lab: WanLab, version: int) -> None:
    assert_error_everywhere(lab, version, "no interface named 'wan3'", interface="wan3")


@pytest.mark.parametrize("version", [4, 6])
def test_an_interface_that_is_down(lab: WanLab, version: int) -> None:
    lab.set_host_link(lab.wan2, up=False)
    try:
        assert_error_everywhere(
            lab, version, "interface wan2 is down (`ip link set wan2 up`)", interface="wan2"
        )
    finally:
        lab.set_host_link(lab.wan2, up=True)
    assert probe_in_host(lab, make_check("tcp", lab, version, interface="wan2")).ok


def test_an_interface_without_an_address_of_the_family(lab: WanLab) -> None:
    address = f"{lab.wan2.ip(6, 2)}/64"
    lab.host.exec("ip", "-6", "addr", "del", address, "dev", "wan2")
    try:
        expected = "interface wan2 has no IPv6 address: the probe would leave with another interface's"
        assert_error_everywhere(lab, 6, expected, interface="wan2")
        assert probe_in_host(lab, make_check("tcp", lab, 4, interface="wan2")).ok  # IPv4 is still there
    finally:
        lab.host.exec("ip", "-6", "addr", "add", address, "dev", "wan2", "nodad")
        lab.set_host_link(lab.wan2, up=True)


@pytest.mark.parametrize("version", [4, 6])
def test_a_source_ip_this_host_does_not_have(lab: WanLab, version: int) -> None:
    theirs = lab.wan2.ip(version, 1)  # the ISP's end of the link: bind() fails, nothing is sent
    assert_error_everywhere(
        lab, version, f"source_ip {theirs} is not an address of this host", source_ip=theirs
    )


def test_bind_to_device_refused_is_a_permission_result(lab: WanLab) -> None:
    """Linux >= 5.7 lets anyone bind a fresh socket to an interface, but only CAP_NET_RAW re-bind
    one: that is the EPERM older kernels give for the first bind, through the same code path."""
    script = (
        "import socket\n"
        "from healthd.errors import ProbeFailure\n"
        "from healthd.probes._sockets import bind_source\n"
        "s = socket.socket()\n"
        "bind_source(s, None, 'wan2')\n"
        "try:\n"
        "    bind_source(s, None, 'wan1')\n"
        "except ProbeFailure as exc:\n"
        "    print(exc.kind.value, exc.message)\n"
    )
    nobody = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all")
    done = lab.host.exec(*nobody, sys.executable, "-c", script)
    assert done.stdout.strip() == "permission binding to interface wan1 needs CAP_NET_RAW on this kernel"


def test_check_config_warns_about_bindings_this_host_cannot_honour(lab: WanLab, tmp_path: Path) -> None:
    web = lab.target("web", 4)
    config = tmp_path / "router.yaml"
    config.write_text(
        "services:\n"
        "  - name: isp\n"
        "    checks:\n"
        f"      - {{name: gone, type: tcp, target: '{web}:{HTTP_PORT}', interface: wan3}}\n"
        f"      - {{name: foreign, type: icmp, target: '{web}', source_ip: '{lab.wan1.ip(4, 1)}'}}\n"
        f"      - {{name: fine, type: tcp, target: '{web}:{HTTP_PORT}', interface: wan2}}\n"
    )
    done = lab.host.exec(sys.executable, "-m", "healthd", "check-config", "-c", str(config), check=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        f"{config}:4: services[0].checks[0].interface: warning: no interface named 'wan3' on this host (`ip link` lists them)",
        f"{config}:5: services[0].checks[1].source_ip: warning: source_ip {lab.wan1.ip(4, 1)} is not an address of this host (`ip addr` lists them)",
    ]
    assert done.stdout.startswith("OK: 1 service, 3 checks")


def test_the_one_shot_probe_names_the_problem_without_a_traceback(lab: WanLab) -> None:
    done = lab.host.exec(
        sys.executable, "-m", "healthd", "probe", "tcp", f"{lab.target('web', 4)}:{HTTP_PORT}", "--interface", "wan3",
        check=False,
    )  # fmt: skip
    assert "no interface named 'wan3'" in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert done.returncode != 0
