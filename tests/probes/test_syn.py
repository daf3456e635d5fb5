"""SYN-only probe on real sockets, proven on the wire with packet captures.

Wire proof: captures on loopback and on a namespace's veth show SYN, SYN-ACK, RST and no
pure ACK from the prober, and the listener's accept() never returns for a SYN probe
(while a `tcp` probe against the same listener is accepted). RTT: through a TUN link
adding 20 ms, the reported RTT is compared with the capture's SYN -> SYN-ACK gap.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from healthd.config import SynCheck, TcpCheck
from healthd.probes import PROBES, ProbeContext, ProbeResources
from healthd.probes import syn as syn_module
from healthd.probes.syn import CONNECT_RST, HALF_OPEN, SynMode, kernel_holds_ack, probe_syn
from healthd.probes.tcp import probe_tcp
from healthd.results import ErrorKind
from healthd.scheduler import run_probe

from tests.capture import ACK, RST, SYN, Capture, Packet
from tests.delaylink import delay_link
from tests.fds import new_fds, open_fds
from tests.netlab import Namespace, skip_unless_root
from tests.waiting import LOOP_CLOCK_SLACK, eventually


def syn_check(target: str, **options: object) -> SynCheck:
    return SynCheck.model_validate({"type": "syn", "name": "s", "target": target, **options})


def tcp_check(target: str) -> TcpCheck:
    return TcpCheck.model_validate({"type": "tcp", "name": "t", "target": target})


def join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@contextmanager
def listener(host: str, make: Callable[[int, int], socket.socket] = socket.socket) -> Iterator[socket.socket]:
    """A plain listening socket (non-blocking): the kernel answers SYNs, we count accept()s."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with make(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        sock.listen(64)
        sock.setblocking(False)
        yield sock


def accepted(sock: socket.socket, limit: int = 1000) -> int:
    """Connections waiting in the listener's accept queue (each is taken and closed)."""
    count = 0
    for _ in range(limit):
        try:
            conn, _ = sock.accept()
        except BlockingIOError:
            break
        conn.close()
        count += 1
    return count


async def accepted_within(sock: socket.socket, count: int, seconds: float = 5.0) -> int:
    """Connections accepted until there are `count` (or `seconds` passed): a bounded wait."""
    total = 0

    def enough() -> bool:
        nonlocal total
        total += accepted(sock)
        return total >= count

    await eventually(enough, seconds)
    return total


async def host_mode(resources: ProbeResources) -> str:
    """The SYN mode of these resources: the self-test (which opens sockets of its own) runs now."""
    return await resources.get(SynMode).mode()


def exchange(packets: list[Packet], port: int) -> list[tuple[str, str]]:
    """(who, tcpdump flags) of each TCP segment to or from the server's `port`, in order."""
    return [
        ("prober" if p.dport == port else "server", p.tcp_flags)
        for p in sorted(packets, key=lambda p: p.time)
        if p.is_tcp and port in (p.sport, p.dport)
    ]


def pure_acks_from_prober(packets: list[Packet], port: int) -> list[Packet]:
    return [p for p in packets if p.is_tcp and p.dport == port and p.flags == ACK]


# ---- loopback ------------------------------------------------------------------------


async def test_open_port_is_up_half_open_and_never_accepted(resources: ProbeResources) -> None:
    with listener("127.0.0.1") as server:
        port = server.getsockname()[1]
        result = await run_probe(probe_syn, syn_check(f"127.0.0.1:{port}"), resources)
        assert result.ok, result.error_message
        assert result.details["mode"] == HALF_OPEN
        assert result.details["address"] == f"127.0.0.1:{port}"
        assert result.details["rtt_source"] == "tcp_info"
        assert result.latency is not None and 0 < result.latency <= result.duration
        assert result.details["rtt_ms"] == pytest.approx(result.latency * 1000, abs=0.001)
        assert set(result.phases) == {"resolve", "connect"}
        await asyncio.sleep(0.25)  # past the ~200 ms delayed-ACK timer: a late ACK would be queued now
        assert accepted(server) == 0
        control = await run_probe(probe_tcp, tcp_check(f"127.0.0.1:{port}"), resources)
        assert control.ok
        assert await accepted_within(server, 1) == 1  # the listener does accept real connections


def test_probe_is_in_the_table() -> None:
    assert PROBES["syn"] is probe_syn


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
async def test_loopback_wire_is_syn_synack_rst(host: str, resources: ProbeResources) -> None:
    skip_unless_root()
    with listener(host) as server:
        port = server.getsockname()[1]

        def ours(p: Packet) -> bool:  # loopback shows each packet twice: keep the received copy
            return not p.outgoing and p.is_tcp and port in (p.sport, p.dport)

        with Capture("lo", keep=ours, max_seconds=10) as cap:
            result = await run_probe(probe_syn, syn_check(join(host, port)), resources)
            assert result.ok, result.error_message
            await asyncio.sleep(0.25)  # anything the kernel would still send has gone by now
        assert exchange(cap.packets, port) == [("prober", "S"), ("server", "S."), ("prober", "R.")]
        assert pure_acks_from_prober(cap.packets, port) == []
        assert accepted(server) == 0


async def test_closed_port_is_refused(closed_port: int, resources: ProbeResources) -> None:
    result = await run_probe(probe_syn, syn_check(f"127.0.0.1:{closed_port}"), resources)
    assert result.error_kind is ErrorKind.REFUSED
    assert "refused" in (result.error_message or "").lower()
    assert result.latency is None


async def test_unknown_name_is_dns_error(resources: ProbeResources) -> None:
    result = await run_probe(probe_syn, syn_check("no-such-host.invalid:80"), resources)
    assert result.error_kind is ErrorKind.DNS


async def test_name_is_resolved_and_family_is_honoured(resources: ProbeResources) -> None:
    with listener("127.0.0.1") as server:
        port = server.getsockname()[1]
        result = await run_probe(probe_syn, syn_check(f"localhost:{port}", ip_family="ipv4"), resources)
        assert result.ok, result.error_message
        assert result.details["address"] == f"127.0.0.1:{port}"
        assert result.phases["resolve"] > 0
    mismatch = await run_probe(probe_syn, syn_check("127.0.0.1:80", ip_family="ipv6"), resources)
    assert mismatch.error_kind is ErrorKind.ERROR
    assert "ipv6" in (mismatch.error_message or "")


async def test_source_ip_is_the_syn_source(resources: ProbeResources) -> None:
    skip_unless_root()
    with listener("127.0.0.1") as server:
        port = server.getsockname()[1]
        with Capture("lo", keep=lambda p: p.is_tcp and p.dport == port and not p.outgoing) as cap:
            result = await run_probe(
                probe_syn, syn_check(f"127.0.0.1:{port}", source_ip="127.0.0.2"), resources
            )
            assert result.ok, result.error_message
            assert cap.wait_for(lambda p: p.flags == SYN)
        assert [p.src for p in cap.packets if p.flags == SYN] == ["127.0.0.2"]
    elsewhere = await run_probe(probe_syn, syn_check("127.0.0.1:1", source_ip="192.0.2.1"), resources)
    assert "not an address of this host" in (elsewhere.error_message or "")


async def test_interface_binding(resources: ProbeResources) -> None:
    with listener("127.0.0.1") as server:
        target = f"127.0.0.1:{server.getsockname()[1]}"
        assert (await run_probe(probe_syn, syn_check(target, interface="lo"), resources)).ok
        missing = await run_probe(probe_syn, syn_check(target, interface="nosuchif0"), resources)
        assert missing.error_kind in (ErrorKind.ERROR, ErrorKind.PERMISSION)


async def test_no_descriptor_survives_any_path(closed_port: int, resources: ProbeResources) -> None:
    await host_mode(resources)  # the self-test (once per resources) opens sockets of its own
    with listener("127.0.0.1") as server:
        before = open_fds()
        for target in (
            join("127.0.0.1", server.getsockname()[1]),
            f"127.0.0.1:{closed_port}",
            "nx.invalid:1",
        ):
            for _ in range(20):
                await run_probe(probe_syn, syn_check(target), resources)
        assert new_fds(before) == set()


async def test_many_concurrent_probes_all_succeed_and_none_is_accepted(resources: ProbeResources) -> None:
    await host_mode(resources)
    with listener("127.0.0.1") as server:
        check = syn_check(f"127.0.0.1:{server.getsockname()[1]}")
        before = open_fds()
        results = await asyncio.gather(*(run_probe(probe_syn, check, resources) for _ in range(300)))
        assert [r.error_message for r in results if not r.ok] == []
        assert new_fds(before) == set()
        await asyncio.sleep(0.25)
        assert accepted(server) == 0


# ---- mode detection ------------------------------------------------------------------


def ignore_quickack(sock: socket.socket) -> bool:
    """A kernel that accepts TCP_QUICKACK=0 but completes the handshake anyway, made real."""
    return True


async def test_self_test_tells_held_ack_from_completed_handshake(monkeypatch: pytest.MonkeyPatch) -> None:
    assert await kernel_holds_ack() == (True, "a loopback self-test sent no ACK after the SYN-ACK")
    monkeypatch.setattr(syn_module, "disable_quickack", ignore_quickack)
    holds, reason = await kernel_holds_ack()
    assert not holds
    assert "completed" in reason


async def test_fallback_is_detected_reported_and_logged_once(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    resources: ProbeResources,
) -> None:
    skip_unless_root()
    monkeypatch.setattr(syn_module, "disable_quickack", ignore_quickack)
    with caplog.at_level(logging.INFO, logger="healthd.probes.syn"), listener("127.0.0.1") as server:
        port = server.getsockname()[1]
        ours = lambda p: not p.outgoing and p.is_tcp and port in (p.sport, p.dport)  # noqa: E731
        with Capture("lo", keep=ours, max_seconds=10) as cap:
            results = await asyncio.gather(
                *(run_probe(probe_syn, syn_check(f"127.0.0.1:{port}"), resources) for _ in range(3))
            )
            # the capture sees the prober's ACKs (bounded wait) before it stops
            await asyncio.to_thread(cap.wait_for, lambda p: p.dport == port and p.flags == ACK, 2.0, 3)
        assert await accepted_within(server, 3) == 3
    assert [r.details["mode"] for r in results] == [CONNECT_RST] * 3
    warnings = [r for r in caplog.records if "connect-then-RST" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    # the label tells the truth: this time the handshake did complete
    assert len(pure_acks_from_prober(cap.packets, port)) == 3


# ---- one-shot CLI --------------------------------------------------------------------


def healthd(*args: str) -> subprocess.CompletedProcess[str]:
    code = "import sys; from healthd.cli import main; main(sys.argv[1:])"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=30, check=False
    )


def test_cli_one_shot(closed_port: int) -> None:
    with listener("127.0.0.1") as server:
        port = server.getsockname()[1]
        up = healthd("probe", "syn", f"127.0.0.1:{port}", "--timeout", "500ms")
        assert up.returncode == 0, up.stderr
        assert up.stdout.startswith(f"syn 127.0.0.1:{port}: ok, latency ")
        assert "mode: half-open" in up.stdout
        assert accepted(server) == 0
    down = healthd("probe", "syn", f"127.0.0.1:{closed_port}")
    assert down.returncode == 1
    assert "FAIL refused" in down.stdout


# ---- a second host: veth, DROP, REJECT, cancellation ----------------------------------


@pytest.mark.netns
@pytest.mark.parametrize("family", [4, 6])
async def test_veth_wire_is_syn_synack_rst_while_tcp_is_accepted(
    netns: Namespace, family: int, resources: ProbeResources
) -> None:
    host = netns.ns_ip if family == 4 else netns.ns_ip6
    with listener(host, netns.socket) as server:
        port = server.getsockname()[1]
        with Capture(netns.host_if, keep=lambda p: p.is_tcp and port in (p.sport, p.dport)) as cap:
            result = await run_probe(probe_syn, syn_check(join(host, port)), resources)
            assert result.ok, result.error_message
            assert result.details["mode"] == HALF_OPEN
            await asyncio.sleep(0.25)
        wire = cap.packets
        print("\n".join(f"+{(p.time - wire[0].time) * 1000:.3f} ms {p.summary()}" for p in wire))
        assert exchange(wire, port) == [("prober", "S"), ("server", "S."), ("prober", "R.")], [
            p.summary() for p in wire
        ]
        assert pure_acks_from_prober(wire, port) == []
        assert wire[-1].flags == RST | ACK and wire[-1].outgoing
        assert accepted(server) == 0
        control = await run_probe(probe_tcp, tcp_check(join(host, port)), resources)
        assert control.ok
        assert await accepted_within(server, 1) == 1


@pytest.mark.netns
async def test_blackholed_target_times_out_on_time(netns: Namespace, resources: ProbeResources) -> None:
    await host_mode(resources)
    netns.iptables("-A", "INPUT", "-p", "tcp", "--dport", "8080", "-j", "DROP")
    check = syn_check(f"{netns.ns_ip}:8080", timeout="300ms", interval="1s")
    before = open_fds()
    started = time.monotonic()
    result = await run_probe(probe_syn, check, resources)
    elapsed = time.monotonic() - started
    assert result.error_kind is ErrorKind.TIMEOUT
    assert 0.3 - LOOP_CLOCK_SLACK <= elapsed < 0.3 + 0.1
    assert new_fds(before) == set()


@pytest.mark.netns
async def test_icmp_host_unreachable_is_unreachable(netns: Namespace, resources: ProbeResources) -> None:
    netns.iptables(*"-A INPUT -p tcp --dport 8081 -j REJECT --reject-with icmp-host-unreachable".split())  # noqa: SIM905
    result = await run_probe(probe_syn, syn_check(f"{netns.ns_ip}:8081", timeout="1s"), resources)
    assert result.error_kind is ErrorKind.UNREACHABLE


@pytest.mark.netns
async def test_cancelled_probe_closes_its_socket(netns: Namespace, resources: ProbeResources) -> None:
    await host_mode(resources)
    netns.iptables("-A", "INPUT", "-p", "tcp", "--dport", "8082", "-j", "DROP")
    before = open_fds()
    check = syn_check(f"{netns.ns_ip}:8082")
    task = asyncio.create_task(probe_syn(check, ProbeContext.start(check, resources)))
    await eventually(lambda: len(new_fds(before)) >= 1)  # then it waits for a SYN-ACK that never comes
    assert len(new_fds(before)) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert new_fds(before) == set()


# ---- RTT against the wire, through a 20 ms link --------------------------------------


def handshake_gaps(packets: list[Packet], port: int) -> list[float]:
    """SYN -> SYN-ACK time per connection (keyed by the prober's port), from capture timestamps."""
    sent = {p.sport: p.time for p in packets if p.dport == port and p.flags == SYN}
    answered = {p.dport: p.time for p in packets if p.sport == port and p.flags == SYN | ACK}
    return [answered[k] - sent[k] for k in sorted(sent.keys() & answered.keys(), key=sent.__getitem__)]


@pytest.mark.netns
@pytest.mark.parametrize("family", [4, 6])
async def test_reported_rtt_matches_the_capture_through_a_20ms_link(
    family: int, resources: ProbeResources
) -> None:
    skip_unless_root()
    with delay_link(0.020) as link:
        host = link.ns_ip if family == 4 else link.ns_ip6
        with listener(host, link.ns.socket) as server:
            port = server.getsockname()[1]
            check = syn_check(join(host, port))
            with Capture(link.host_if, keep=lambda p: p.is_tcp and port in (p.sport, p.dport)) as cap:
                results = [await run_probe(probe_syn, check, resources) for _ in range(10)]
                cap.wait_for(lambda p: p.flags == SYN | ACK, count=10)
            assert accepted(server) == 0
    assert [r.error_message for r in results if not r.ok] == []
    assert {r.details["rtt_source"] for r in results} == {"tcp_info"}
    gaps = handshake_gaps(cap.packets, port)
    assert len(gaps) == 10
    assert 0.020 <= statistics.median(gaps) < 0.025  # the link adds what it promises
    reported = [r.latency for r in results if r.latency is not None]
    assert abs(statistics.median(reported) - statistics.median(gaps)) < 0.001
