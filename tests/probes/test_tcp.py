"""TCP connect probe against real sockets: loopback listeners and a namespace with DROP rules."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
from healthd.config import TcpCheck
from healthd.probes import ProbeContext, ProbeResources
from healthd.probes.tcp import probe_tcp
from healthd.results import ErrorKind
from healthd.scheduler import run_probe

from tests.conftest import TcpServer
from tests.fds import new_fds, new_fds_settled, open_fds
from tests.netlab import Namespace
from tests.waiting import LOOP_CLOCK_SLACK, eventually


def tcp_check(target: str, **options: object) -> TcpCheck:
    return TcpCheck.model_validate({"type": "tcp", "name": "t", "target": target, **options})


async def test_listener_gives_success_with_phases(tcp_server: TcpServer, resources: ProbeResources) -> None:
    result = await run_probe(probe_tcp, tcp_check(tcp_server.target), resources)
    assert result.ok, result.error_message
    assert set(result.phases) == {"resolve", "connect"}
    assert result.latency is not None and 0 < result.latency <= result.duration
    assert result.details["address"] == tcp_server.target
    await eventually(lambda: len(tcp_server.accepted) >= 1)
    assert len(tcp_server.accepted) == 1


async def test_latency_is_the_kernels_rtt_not_the_loops_delay(
    tcp_server: TcpServer, resources: ProbeResources
) -> None:
    """A loop busy while the handshake completes stretches the connect phase, not the latency."""
    probe = asyncio.create_task(run_probe(probe_tcp, tcp_check(tcp_server.target), resources))
    await asyncio.sleep(0)  # the probe runs up to its wait for the connect
    time.sleep(0.1)  # the loop is busy: the kernel completes the handshake meanwhile
    result = await probe
    assert result.ok, result.error_message
    assert result.phases["connect"] >= 0.1
    assert result.details["rtt_source"] == "tcp_info"
    assert result.latency is not None and 0 < result.latency < 0.05
    assert result.details["rtt_ms"] == round(result.latency * 1000, 3)


async def test_ipv6_listener(tcp_server6: TcpServer, resources: ProbeResources) -> None:
    result = await run_probe(probe_tcp, tcp_check(tcp_server6.target), resources)
    assert result.ok, result.error_message
    assert result.details["address"] == f"[::1]:{tcp_server6.port}"


async def test_name_is_resolved_as_its_own_phase(tcp_server: TcpServer, resources: ProbeResources) -> None:
    result = await run_probe(
        probe_tcp, tcp_check(f"localhost:{tcp_server.port}", ip_family="ipv4"), resources
    )
    assert result.ok, result.error_message
    assert result.details["address"] == f"127.0.0.1:{tcp_server.port}"
    assert result.phases["resolve"] > 0


async def test_closed_port_is_refused(closed_port: int, resources: ProbeResources) -> None:
    result = await run_probe(probe_tcp, tcp_check(f"127.0.0.1:{closed_port}"), resources)
    assert not result.ok
    assert result.error_kind is ErrorKind.REFUSED
    assert "refused" in (result.error_message or "").lower()
    assert result.latency is None


async def test_unknown_name_is_dns_error(resources: ProbeResources) -> None:
    result = await run_probe(probe_tcp, tcp_check("no-such-host.invalid:80"), resources)
    assert result.error_kind is ErrorKind.DNS
    assert "no-such-host.invalid" in (result.error_message or "")


async def test_family_mismatch_is_reported(resources: ProbeResources) -> None:
    result = await run_probe(probe_tcp, tcp_check("127.0.0.1:80", ip_family="ipv6"), resources)
    assert result.error_kind is ErrorKind.ERROR
    assert "ipv6" in (result.error_message or "")


async def test_source_ip_is_bound(tcp_server: TcpServer, resources: ProbeResources) -> None:
    result = await run_probe(probe_tcp, tcp_check(tcp_server.target, source_ip="127.0.0.2"), resources)
    assert result.ok, result.error_message
    await eventually(lambda: len(tcp_server.accepted) >= 1)
    assert tcp_server.accepted[-1][0] == "127.0.0.2"


async def test_source_ip_not_on_this_host_is_an_error(
    tcp_server: TcpServer, resources: ProbeResources
) -> None:
    result = await run_probe(probe_tcp, tcp_check(tcp_server.target, source_ip="192.0.2.1"), resources)
    assert result.error_kind is ErrorKind.ERROR
    assert "not an address of this host" in (result.error_message or "")


async def test_interface_binding(tcp_server: TcpServer, resources: ProbeResources) -> None:
    result = await run_probe(probe_tcp, tcp_check(tcp_server.target, interface="lo"), resources)
    assert result.ok, result.error_message
    missing = await run_probe(probe_tcp, tcp_check(tcp_server.target, interface="nosuchif0"), resources)
    assert not missing.ok
    assert missing.error_kind in (ErrorKind.ERROR, ErrorKind.PERMISSION)


async def test_reset_close_leaves_no_time_wait(tcp_server: TcpServer, resources: ProbeResources) -> None:
    result = await run_probe(probe_tcp, tcp_check(tcp_server.target, close="reset"), resources)
    assert result.ok
    # our side sent RST: no TIME_WAIT socket of ours towards the server's port
    with open("/proc/net/tcp") as table:
        port_hex = f":{tcp_server.port:04X}"
        time_wait = [line for line in table if port_hex in line.split()[2] and line.split()[3] == "06"]
    assert time_wait == []


async def test_no_descriptor_survives_any_path(
    tcp_server: TcpServer, closed_port: int, resources: ProbeResources
) -> None:
    before = open_fds()
    for target in (tcp_server.target, f"127.0.0.1:{closed_port}", "no-such-host.invalid:1"):
        for _ in range(20):
            await run_probe(probe_tcp, tcp_check(target), resources)
    assert await new_fds_settled(before) == set()


@pytest.mark.netns
async def test_blackholed_target_times_out_on_time(netns: Namespace, resources: ProbeResources) -> None:
    netns.iptables("-A", "INPUT", "-p", "tcp", "--dport", "8080", "-j", "DROP")
    check = tcp_check(f"{netns.ns_ip}:8080", timeout="300ms", interval="1s")
    before = open_fds()
    started = time.monotonic()
    result = await run_probe(probe_tcp, check, resources)
    elapsed = time.monotonic() - started
    assert result.error_kind is ErrorKind.TIMEOUT
    assert "300ms" in (result.error_message or "")
    assert 0.3 - LOOP_CLOCK_SLACK <= elapsed < 0.3 + 0.1  # never past its timeout (plus scheduling slack)
    assert await new_fds_settled(before) == set()


@pytest.mark.netns
async def test_rejected_with_host_unreachable(netns: Namespace, resources: ProbeResources) -> None:
    netns.iptables(
        "-A",
        "INPUT",
        "-p",
        "tcp",
        "--dport",
        "8081",
        "-j",
        "REJECT",
        "--reject-with",
        "icmp-host-unreachable",
    )
    result = await run_probe(probe_tcp, tcp_check(f"{netns.ns_ip}:8081", timeout="1s"), resources)
    assert result.error_kind is ErrorKind.UNREACHABLE


@pytest.mark.netns
async def test_listener_in_namespace_over_ipv4_and_ipv6(netns: Namespace, resources: ProbeResources) -> None:
    for family, address in ((socket.AF_INET, netns.ns_ip), (socket.AF_INET6, netns.ns_ip6)):
        listener = netns.socket(family, socket.SOCK_STREAM)
        with listener:
            listener.bind((address, 0))
            listener.listen()
            port = listener.getsockname()[1]
            target = f"[{address}]:{port}" if family == socket.AF_INET6 else f"{address}:{port}"
            result = await run_probe(probe_tcp, tcp_check(target), resources)
            assert result.ok, result.error_message


@pytest.mark.netns
async def test_cancelled_probe_closes_its_socket(netns: Namespace, resources: ProbeResources) -> None:
    netns.iptables("-A", "INPUT", "-p", "tcp", "--dport", "8082", "-j", "DROP")
    check = tcp_check(f"{netns.ns_ip}:8082")
    before = open_fds()
    task = asyncio.create_task(probe_tcp(check, ProbeContext.start(check, resources)))
    await eventually(lambda: len(new_fds(before)) >= 1)  # then it waits for a SYN-ACK that never comes
    assert len(new_fds(before)) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await new_fds_settled(before) == set()
