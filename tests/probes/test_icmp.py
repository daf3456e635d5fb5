"""ICMP echo probe on real sockets: loopback, namespaces with firewall rules, both socket modes."""

from __future__ import annotations

import asyncio
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from healthd import loops
from healthd.cli import dispatch
from healthd.config import IcmpCheck, build_config
from healthd.errors import ProbeFailure
from healthd.probes import GAUGE_HELP, PROBES, ProbeContext, ProbeResources
from healthd.probes._icmp_open import open_icmp_socket
from healthd.probes._icmp_packet import build_echo_request, checksum
from healthd.probes._icmp_socket import EchoSocket
from healthd.probes.icmp import LOSS_GAUGE, EchoSockets, probe_icmp
from healthd.results import ErrorKind, ProbeResult
from healthd.scheduler import run_probe
from pydantic import ValidationError

from tests.fds import new_fds, open_fds
from tests.netlab import Namespace, sh, skip_unless_root

ROOT = Path(__file__).resolve().parents[2]
ADMIT_ALL, ADMIT_NONE = "0 2147483647", "1 0"
REJECTED_V4 = "destination unreachable (ICMP type 3, code 1: host unreachable)"


def icmp_check(target: str, **options: object) -> IcmpCheck:
    return IcmpCheck.model_validate({"type": "icmp", "name": "i", "target": target, **options})


async def probe(target: str, *, resources: ProbeResources, **options: object) -> ProbeResult:
    return await run_probe(probe_icmp, icmp_check(target, **options), resources)


def echo_socket(resources: ProbeResources, family: socket.AddressFamily) -> EchoSocket:
    return resources.get(EchoSockets).for_family(family)


def probe_in(ns: Namespace, *checks: IcmpCheck) -> list[ProbeResult]:
    """Run checks on an event loop inside `ns`, so the shared sockets open there."""

    async def run() -> list[ProbeResult]:
        async with ProbeResources() as resources:
            return [await run_probe(probe_icmp, check, resources) for check in checks]

    return ns.call(lambda: asyncio.run(run()))


@pytest.fixture
def icmp() -> None:
    """Skip where this process may open neither kind of ICMP socket (CI runs as root)."""
    try:
        sock, _ = open_icmp_socket(socket.AF_INET, ())
    except ProbeFailure as exc:
        if exc.kind is not ErrorKind.PERMISSION:
            raise
        pytest.skip("needs CAP_NET_RAW, or net.ipv4.ping_group_range admitting this group (CI runs as root)")
    sock.close()


@pytest.fixture
async def warm(icmp: None, resources: ProbeResources) -> None:
    """Open the shared sockets first, so descriptor counts compare like with like."""
    for target in ("127.0.0.1", "::1"):
        result = await probe(target, resources=resources)
        assert result.ok, result.error_message


# ---- config ----------------------------------------------------------------------------


def test_registered_everywhere() -> None:
    assert PROBES["icmp"] is probe_icmp
    assert LOSS_GAUGE in GAUGE_HELP
    check = icmp_check("192.0.2.1")
    assert (check.count, check.packet_interval, check.payload_size) == (1, 0.1, 56)
    assert check.ttl is None and check.max_loss is None and not check.dont_fragment
    assert check.display_target == "192.0.2.1"


@pytest.mark.parametrize("target", ["10.0.0.1", "::1", "fe80::1%eth0", "db.example.org", "localhost"])
def test_valid_targets(target: str) -> None:
    assert icmp_check(target).host == target


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"target": "127.0.0.1:80"}, "without port"),
        ({"target": "[::1]"}, "without port or brackets"),
        ({"target": "no host"}, "neither a host name nor an IP address"),
        ({"target": "1:2:3:zz::1"}, "neither a host name nor an IP address"),
        ({"count": 0}, "greater than or equal to 1"),
        ({"ttl": 256}, "less than or equal to 255"),
        ({"ttl": 0}, "greater than or equal to 1"),
        ({"max_loss": 1}, "less than 1"),
        ({"payload_size": -1}, "greater than or equal to 0"),
        ({"port": 7}, "Extra inputs are not permitted"),
        ({"count": 21}, "leaving no time for replies within timeout 2s"),
        ({"count": 3, "packet_interval": "1s", "timeout": "2s"}, "take 2s"),
    ],
)
def test_bad_options_are_refused_with_a_reason(options: dict[str, object], reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        IcmpCheck.model_validate({"type": "icmp", "name": "i", "target": "127.0.0.1", **options})


def test_config_file_takes_icmp_options_and_defaults() -> None:
    config = build_config(
        "t.yaml",
        {
            "defaults": {"count": 3, "packet_interval": "20ms"},
            "services": [{"name": "s", "checks": [{"type": "icmp", "target": "::1", "max_loss": 0.5}]}],
        },
    )
    check = config.services[0].checks[0]
    assert isinstance(check, IcmpCheck)
    assert (check.count, check.packet_interval, check.max_loss) == (3, 0.02, 0.5)


# ---- loopback --------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["127.0.0.1", "::1"])
async def test_loopback_answers_with_statistics(target: str, icmp: None, resources: ProbeResources) -> None:
    result = await probe(target, resources=resources)
    assert result.ok, result.error_message
    details = result.details
    assert details["address"] == target
    assert details["mode"] in ("datagram", "raw")
    assert (details["sent"], details["received"], details["loss_ratio"]) == (1, 1, 0.0)
    assert details["rtt_min_ms"] == details["rtt_avg_ms"] == details["rtt_max_ms"]
    assert set(result.phases) == {"resolve", "rtt"}
    assert result.latency == result.phases["rtt"]
    assert 0 < result.latency < result.duration
    # blackbox_exporter's gauges too: the family probed and the TTL / hop limit the reply came with
    protocol = 6.0 if ":" in target else 4.0
    assert result.gauges == {
        LOSS_GAUGE: 0.0,
        "probe_ip_protocol": protocol,
        "probe_icmp_reply_hop_limit": 64.0,
    }


async def test_count_sends_spaced_requests(icmp: None, resources: ProbeResources) -> None:
    result = await probe("127.0.0.1", count=5, packet_interval="20ms", resources=resources)
    assert result.ok, result.error_message
    details = result.details
    assert (details["sent"], details["received"]) == (5, 5)
    assert details["rtt_min_ms"] <= details["rtt_avg_ms"] <= details["rtt_max_ms"]
    assert details["rtt_stddev_ms"] >= 0
    assert result.duration >= 4 * 0.020  # the fifth request leaves 80 ms after the first


async def test_name_is_resolved(icmp: None, resources: ProbeResources) -> None:
    result = await probe("localhost", ip_family="ipv4", resources=resources)
    assert result.ok, result.error_message
    assert result.details["address"] == "127.0.0.1"


async def test_noncanonical_ipv6_literal_still_matches_replies(icmp: None, resources: ProbeResources) -> None:
    result = await probe("0:0::0001", resources=resources)
    assert result.ok, result.error_message
    assert result.details["address"] == "::1"


async def test_many_checks_share_one_socket_per_family(warm: None, resources: ProbeResources) -> None:
    before = open_fds()
    targets = [f"127.0.{1 + i // 200}.{1 + i % 200}" for i in range(400)] + ["::1"] * 3
    checks = [icmp_check(t, count=3, packet_interval="10ms") for t in targets]
    results = await asyncio.gather(*(run_probe(probe_icmp, c, resources) for c in checks))
    for target, result in zip(targets, results, strict=True):
        assert result.ok, (target, result.error_message)
        assert result.details["address"] == target
        assert result.details["received"] == 3
    assert new_fds(before) == set()  # no socket per probe: the shared ones were already open
    assert (
        echo_socket(resources, socket.AF_INET).in_flight
        == echo_socket(resources, socket.AF_INET6).in_flight
        == 0
    )


async def test_source_ip_is_used_per_request(resources: ProbeResources) -> None:
    skip_unless_root()
    from tests.capture import Capture

    with Capture("lo", keep=lambda p: p.is_icmp and p.dst == "127.0.0.3") as capture:
        result = await probe("127.0.0.3", source_ip="127.0.0.2", resources=resources)
        assert result.ok, result.error_message
        assert await asyncio.to_thread(capture.wait_for, lambda p: p.icmp_type == 8)
    assert {p.src for p in capture.packets if p.icmp_type == 8} == {"127.0.0.2"}


async def test_source_ip_not_on_this_host_is_an_error(icmp: None, resources: ProbeResources) -> None:
    result = await probe("127.0.0.1", source_ip="192.0.2.1", resources=resources)
    assert result.error_kind is ErrorKind.ERROR
    assert result.error_message == "source_ip 192.0.2.1 is not an address of this host"


async def test_interface(icmp: None, resources: ProbeResources) -> None:
    assert (await probe("127.0.0.1", interface="lo", resources=resources)).ok
    missing = await probe("127.0.0.1", interface="nosuchif0", resources=resources)
    assert missing.error_kind is ErrorKind.ERROR
    assert missing.error_message == "no interface named 'nosuchif0'"


async def test_family_mismatch_is_reported(resources: ProbeResources) -> None:
    result = await probe("127.0.0.1", ip_family="ipv6", resources=resources)
    assert result.error_kind is ErrorKind.ERROR
    assert "ipv6" in (result.error_message or "")


async def test_no_descriptor_survives_any_path(warm: None, resources: ProbeResources) -> None:
    await probe("127.0.0.1", resources=resources)  # this test's loop gets its shared socket before the count
    before = open_fds()
    for options in ({}, {"source_ip": "192.0.2.1"}, {"interface": "nosuchif0"}, {"ip_family": "ipv6"}):
        for _ in range(10):
            await probe("127.0.0.1", **options, resources=resources)
    assert new_fds(before) == set()


def test_cli_prints_fping_like_statistics(capsys: pytest.CaptureFixture[str], icmp: None) -> None:
    assert dispatch(["probe", "icmp", "127.0.0.1", "--count", "5"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("icmp 127.0.0.1: ok, latency ")
    assert "127.0.0.1 : xmt/rcv/%loss = 5/5/0%, min/avg/max/stddev = " in out
    assert "sent:" not in out  # the summary line replaces the raw numbers


async def test_metrics_export_rtt_phase_and_loss_gauge(icmp: None, resources: ProbeResources) -> None:
    from healthd.metrics import Exposition
    from healthd.store import CheckInfo, ServiceInfo, Store
    from prometheus_client.parser import text_string_to_metric_families

    info = CheckInfo("svc", "ping", "icmp", "127.0.0.1", rise=1, fall=1, history=5)
    store = Store()
    store.apply([ServiceInfo("svc", {}, (info,))])
    result = await probe("127.0.0.1", count=2, packet_interval="10ms", resources=resources)
    store.record(info.key, result)
    text = Exposition(store, GAUGE_HELP).render().decode()
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    labels = {"service": "svc", "check": "ping", "type": "icmp", "target": "127.0.0.1"}
    rtt = samples[("probe_icmp_duration_seconds", frozenset({**labels, "phase": "rtt"}.items()))]
    assert rtt == result.latency and rtt > 0
    assert samples[(LOSS_GAUGE, frozenset(labels.items()))] == 0.0
    assert f"# HELP {LOSS_GAUGE} {GAUGE_HELP[LOSS_GAUGE]}" in text


# ---- a second host: filtered, rejected, lossy, routed -----------------------------------


@pytest.mark.netns
async def test_reply_hop_limit_is_the_ttl_the_reply_arrived_with(
    netns: Namespace, icmp: None, resources: ProbeResources
) -> None:
    """The other host sends its replies with TTL 33: that is what the gauge reports."""
    netns.sysctl("net.ipv4.ip_default_ttl", "33")
    result = await probe(netns.ns_ip, resources=resources)
    assert result.ok, result.error_message
    assert result.gauges["probe_icmp_reply_hop_limit"] == 33.0


@pytest.mark.netns
async def test_filtered_target_times_out_before_timeout_with_loss(
    netns: Namespace, warm: None, resources: ProbeResources
) -> None:
    netns.iptables("-A", "INPUT", "-p", "icmp", "-j", "DROP")
    before = open_fds()
    started = time.monotonic()
    result = await probe(
        netns.ns_ip, count=3, packet_interval="50ms", timeout="500ms", interval="1s", resources=resources
    )
    elapsed = time.monotonic() - started
    assert result.error_kind is ErrorKind.TIMEOUT
    assert result.error_message == f"no echo reply from {netns.ns_ip} to 3 requests within 500ms"
    assert (result.details["sent"], result.details["received"], result.details["loss_ratio"]) == (3, 0, 1.0)
    assert result.gauges == {
        LOSS_GAUGE: 1.0,
        "probe_ip_protocol": 4.0,
    }  # the probe reports the loss: not cut off
    assert result.latency is None and "rtt" not in result.phases
    assert elapsed < 0.5 + 0.1
    assert new_fds(before) == set()


@pytest.mark.netns
@pytest.mark.parametrize(
    ("ipv6", "reject", "expected"),
    [
        (False, "icmp-host-unreachable", "destination unreachable (ICMP type 3, code 1: host unreachable)"),
        (
            True,
            "icmp6-addr-unreachable",
            "destination unreachable (ICMPv6 type 1, code 3: address unreachable)",
        ),
    ],
    ids=["ipv4", "ipv6"],
)
async def test_rejected_request_ends_probe_at_once(
    netns: Namespace,
    ipv6: bool,
    reject: str,
    expected: str,
    resources: ProbeResources,
) -> None:
    if ipv6:
        netns.ip6tables("-A", "INPUT", "-p", "ipv6-icmp", "--icmpv6-type", "echo-request",
                        "-j", "REJECT", "--reject-with", reject)  # fmt: skip
    else:
        netns.iptables("-A", "INPUT", "-p", "icmp", "-j", "REJECT", "--reject-with", reject)
    target = netns.ns_ip6 if ipv6 else netns.ns_ip
    started = time.monotonic()
    result = await probe(target, count=5, packet_interval="100ms", timeout="2s", resources=resources)
    elapsed = time.monotonic() - started
    assert result.error_kind is ErrorKind.UNREACHABLE
    assert result.error_message == f"{expected} from {target}"
    assert result.details["sent"] == 1  # stopped before the second request
    assert elapsed < 0.1 + 0.05  # well before the timeout


@pytest.mark.netns
async def test_loss_is_counted_exactly(netns: Namespace, resources: ProbeResources) -> None:
    netns.iptables(
        "-A", "INPUT", "-p", "icmp", "--icmp-type", "echo-request",
        "-m", "statistic", "--mode", "random", "--probability", "0.3", "-j", "DROP",
    )  # fmt: skip
    checks = [icmp_check(netns.ns_ip, count=20, packet_interval="5ms", timeout="1s", max_loss=0.25)] * 5
    lost_total = 0
    for check in checks:
        dropped_before = _dropped(netns)
        result = await run_probe(probe_icmp, check, resources)
        lost = _dropped(netns) - dropped_before
        lost_total += lost
        assert result.details["sent"] == 20
        assert result.details["received"] == 20 - lost
        assert result.details["loss_ratio"] == lost / 20
        assert result.gauges[LOSS_GAUGE] == lost / 20
        assert result.ok == (lost <= 5), result.error_message  # max_loss 0.25
        if not result.ok:
            assert result.error_kind is ErrorKind.TIMEOUT
            assert f"{lost} of 20 echo requests lost" in (result.error_message or "")
    # 100 requests at p = 0.3: mean 30, sd 4.6; 10..50 is beyond 4 sd either way
    assert 10 <= lost_total <= 50


def _dropped(ns: Namespace) -> int:
    listing = ns.exec("iptables", "-w", "-L", "INPUT", "-v", "-x", "-n").stdout
    return sum(int(line.split()[0]) for line in listing.splitlines() if "DROP" in line)


@pytest.mark.netns
async def test_ttl_and_hop_limit_are_applied_per_request(netns: Namespace, resources: ProbeResources) -> None:
    """The namespace routes 10.202.k.0/24 and fd00:202:k::/64 onwards, into a veth with nobody behind it."""
    k = netns.index
    netns.sysctl("net.ipv4.ip_forward", "1")
    netns.sysctl("net.ipv6.conf.all.forwarding", "1")
    netns.exec("ip", "link", "add", "far0", "type", "veth", "peer", "name", "far1")
    netns.exec("ip", "addr", "add", f"10.202.{k}.1/24", "dev", "far0")
    netns.exec("ip", "-6", "addr", "add", f"fd00:202:{k:x}::1/64", "dev", "far0", "nodad")
    netns.exec("ip", "link", "set", "far0", "up")
    netns.exec("ip", "link", "set", "far1", "up")
    sh("ip", "route", "add", f"10.202.{k}.0/24", "via", netns.ns_ip)
    sh("ip", "-6", "route", "add", f"fd00:202:{k:x}::/64", "via", netns.ns_ip6)
    far4, far6 = f"10.202.{k}.2", f"fd00:202:{k:x}::2"
    results = await asyncio.gather(
        probe(far4, ttl=1, timeout="1s", resources=resources),
        probe(far6, ttl=1, timeout="1s", resources=resources),
        probe(
            far4, timeout="300ms", interval="1s", resources=resources
        ),  # same socket, default TTL: forwarded, lost
    )
    assert [r.error_kind for r in results] == [
        ErrorKind.UNREACHABLE,
        ErrorKind.UNREACHABLE,
        ErrorKind.TIMEOUT,
    ]
    assert results[0].error_message == (
        f"time exceeded (ICMP type 11, code 0: TTL exceeded in transit) from {netns.ns_ip}"
    )
    assert results[1].error_message == (
        f"time exceeded (ICMPv6 type 3, code 0: hop limit exceeded in transit) from {netns.ns_ip6}"
    )


@pytest.mark.netns
@pytest.mark.parametrize("ipv6", [False, True], ids=["ipv4", "ipv6"])
async def test_dont_fragment_per_request(netns: Namespace, ipv6: bool, resources: ProbeResources) -> None:
    target = netns.ns_ip6 if ipv6 else netns.ns_ip  # over a veth with MTU 1500
    big_df, big, small_df = await asyncio.gather(
        probe(target, payload_size=2000, dont_fragment=True, resources=resources),
        probe(target, payload_size=2000, resources=resources),
        probe(target, payload_size=1000, dont_fragment=True, resources=resources),
    )
    assert big_df.error_kind is ErrorKind.ERROR
    assert big_df.error_message == f"send echo request to {target}: Message too long"
    assert big.ok, big.error_message  # fragmented, reassembled, answered
    assert small_df.ok, small_df.error_message


@pytest.mark.netns
async def test_cancelled_probe_leaves_nothing_behind(
    netns: Namespace, warm: None, resources: ProbeResources
) -> None:
    netns.iptables("-A", "INPUT", "-p", "icmp", "-j", "DROP")
    shared = echo_socket(resources, socket.AF_INET)
    before = open_fds()
    check = icmp_check(netns.ns_ip, count=3, packet_interval="50ms")
    task = asyncio.create_task(probe_icmp(check, ProbeContext.start(check, resources)))
    await asyncio.sleep(0.12)  # by now three requests wait for replies that never come
    assert len(shared.waiting(netns.ns_ip)) == 3
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert shared.waiting(netns.ns_ip) == []
    await asyncio.sleep(0.1)  # no request is sent after the cancel
    assert shared.in_flight == 0
    assert new_fds(before) == set()


@pytest.mark.netns
async def test_foreign_corrupt_and_late_replies_are_ignored(
    netns: Namespace, warm: None, resources: ProbeResources
) -> None:
    """The namespace stays silent, then a raw socket there answers: wrongly first, then rightly."""
    netns.iptables("-A", "INPUT", "-p", "icmp", "--icmp-type", "echo-request", "-j", "DROP")
    shared = echo_socket(resources, socket.AF_INET)
    task = asyncio.create_task(probe(netns.ns_ip, payload_size=8, timeout="2s", resources=resources))
    for _ in range(100):  # bounded wait for the request to leave
        if shared.waiting(netns.ns_ip):
            break
        await asyncio.sleep(0.01)
    (seq,) = shared.waiting(netns.ns_ip)
    payload = b"healthd "  # what an 8-byte request carries
    good = _reply(shared.ident, seq, payload)
    wrong = [
        _reply(shared.ident, seq, b"healthd!"),  # other data
        _reply(shared.ident ^ 1, seq, payload),  # other identifier
        _reply(shared.ident, seq ^ 1, payload),  # other sequence
        good[:6],  # truncated
        good[:2] + bytes([good[2] ^ 0xFF]) + good[3:],  # bad checksum
    ]
    with netns.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as raw:
        for packet in wrong:
            raw.sendto(packet, (netns.host_ip, 0))
        await asyncio.sleep(0.1)
        assert not task.done()
        raw.sendto(good, (netns.host_ip, 0))
        result = await task
        raw.sendto(good, (netns.host_ip, 0))  # late duplicate
    assert result.ok, result.error_message
    assert (result.details["sent"], result.details["received"]) == (1, 1)
    await asyncio.sleep(0.05)
    assert (await probe("127.0.0.1", resources=resources)).ok  # the shared socket is none the worse


def _reply(ident: int, seq: int, payload: bytes) -> bytes:
    unsummed = bytes([0, 0, 0, 0]) + ident.to_bytes(2, "big") + seq.to_bytes(2, "big") + payload
    return unsummed[:2] + checksum(unsummed).to_bytes(2, "big") + unsummed[4:]


def test_reply_helper_builds_a_valid_reply() -> None:
    request = build_echo_request(5, 6, b"abcd", v6=False)
    assert _reply(5, 6, b"abcd")[4:] == request[4:] and checksum(_reply(5, 6, b"abcd")) == 0


# ---- both socket modes, chosen by the namespace's ping_group_range ----------------------


@pytest.mark.netns
@pytest.mark.parametrize(("span", "mode"), [(ADMIT_ALL, "datagram"), (ADMIT_NONE, "raw")])
def test_socket_mode_follows_ping_group_range(netns: Namespace, span: str, mode: str) -> None:
    netns.sysctl("net.ipv4.ping_group_range", span)
    netns.iptables("-A", "INPUT", "-p", "icmp", "-d", "127.0.0.2",
                   "-j", "REJECT", "--reject-with", "icmp-host-unreachable")  # fmt: skip
    netns.ip6tables("-A", "INPUT", "-p", "ipv6-icmp", "--icmpv6-type", "echo-request", "-d", netns.ns_ip6,
                    "-j", "REJECT", "--reject-with", "icmp6-adm-prohibited")  # fmt: skip
    results = probe_in(
        netns,
        icmp_check("127.0.0.1", count=2, packet_interval="10ms"),
        icmp_check("::1"),
        icmp_check(netns.ns_ip),
        icmp_check("127.0.0.2"),  # rejected: an ICMP error back to the same host
        icmp_check(netns.ns_ip6),
        # per-request options on the shared socket, in this mode too
        icmp_check("127.0.0.1", ttl=1, source_ip="127.0.0.1", interface="lo", dont_fragment=True),
        icmp_check("::1", ttl=1, source_ip="::1", interface="lo", dont_fragment=True),
        # too big to leave unfragmented over the veth (MTU 1500): refused before sending
        icmp_check(netns.host_ip, payload_size=2000, dont_fragment=True),
    )
    for result in (*results[:3], *results[5:7]):
        assert result.ok, result.error_message
        assert result.details["mode"] == mode
    assert results[7].error_message == f"send echo request to {netns.host_ip}: Message too long"
    assert results[3].error_kind is ErrorKind.UNREACHABLE
    assert "ICMP type 3, code 1" in (results[3].error_message or "")
    assert results[4].error_kind is ErrorKind.UNREACHABLE
    assert "ICMPv6 type 1, code 1" in (results[4].error_message or "")
    assert results[3].details["mode"] == results[4].details["mode"] == mode


@pytest.mark.netns
@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
@pytest.mark.parametrize(("span", "mode"), [(ADMIT_ALL, "datagram"), (ADMIT_NONE, "raw")])
def test_icmp_errors_neither_deafen_the_socket_nor_fail_other_checks(
    netns: Namespace, span: str, mode: str, loop: str
) -> None:
    """A rejected request's ICMP error reaches its own check only, on either event loop.

    A datagram socket reports it as POLLERR (libuv then dropped the socket: every later check
    timed out) and as a pending socket error (the next send failed with it: "No route to host").
    """
    if loop == "uvloop" and not loops.uvloop_available():
        pytest.skip("uvloop is not installed")
    netns.sysctl("net.ipv4.ping_group_range", span)
    netns.iptables("-A", "INPUT", "-p", "icmp", "-d", "127.0.0.2",
                   "-j", "REJECT", "--reject-with", "icmp-host-unreachable")  # fmt: skip
    one_by_one = ["127.0.0.1", "127.0.0.2", "127.0.0.1", "127.0.0.2", "127.0.0.2", "127.0.0.1"]
    together = ["127.0.0.2", "127.0.0.1", "127.0.0.3"] * 5  # each rejected send followed by others

    async def run() -> tuple[list[ProbeResult], list[ProbeResult]]:
        async with ProbeResources() as resources:
            checks = [icmp_check(target, timeout="1s") for target in (*one_by_one, *together)]
            first = [await run_probe(probe_icmp, check, resources) for check in checks[:6]]
            rest = await asyncio.gather(*(run_probe(probe_icmp, c, resources) for c in checks[6:]))
            return first, rest

    first, rest = netns.call(lambda: loops.run(run(), loop))
    for target, result in zip([*one_by_one, *together], [*first, *rest], strict=True):
        if target == "127.0.0.2":
            assert result.error_kind is ErrorKind.UNREACHABLE, result.error_message
            assert result.error_message == f"{REJECTED_V4} from 127.0.0.2"
        else:
            assert result.ok, f"{target}: {result.error_message}"
            assert result.details["mode"] == mode


def _healthd(ns: Namespace, *args: str, drop_net_raw: bool = False) -> subprocess.CompletedProcess[str]:
    """`healthd ARGS` in `ns`, optionally without CAP_NET_RAW (as root, dropping it from all sets)."""
    drop = ["setpriv", "--inh-caps=-net_raw", "--bounding-set=-net_raw"] if drop_net_raw else []
    code = "import sys; from healthd.cli import main; sys.argv[0] = 'healthd'; main()"
    command = ["ip", "netns", "exec", ns.name, *drop, sys.executable, "-c", code, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=30, cwd=ROOT)


@pytest.mark.netns
def test_without_either_privilege_the_check_fails_with_both_fixes(netns: Namespace) -> None:
    skip_unless_root("setpriv")
    netns.sysctl("net.ipv4.ping_group_range", ADMIT_NONE)
    done = _healthd(netns, "probe", "icmp", "127.0.0.1", drop_net_raw=True)
    assert done.returncode == 1, done.stderr
    assert done.stdout.startswith("icmp 127.0.0.1: FAIL permission: no ICMP socket: ")
    for fix in ("AmbientCapabilities=CAP_NET_RAW", 'ping_group_range="0 2147483647"', '"1 0"'):
        assert fix in done.stdout
    assert "ICMP IPv4 checks cannot run" in done.stderr  # logged once, as a warning
    # the same, allowed by the sysctl alone: unprivileged datagram mode
    netns.sysctl("net.ipv4.ping_group_range", ADMIT_ALL)
    done = _healthd(netns, "probe", "icmp", "127.0.0.1", "--count", "2", "-v", drop_net_raw=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "mode: datagram" in done.stdout
    assert "ICMP IPv4 checks use an unprivileged datagram socket" in done.stderr


# ---- accuracy: against a capture of the same requests, and against fping ---------------


def _fping_median(target: str, count: int) -> float:
    """fping's median RTT in seconds (`-C` prints each RTT in ms on stderr)."""
    done = subprocess.run(
        ["fping", "-C", str(count), "-q", "-p", "25", target], capture_output=True, text=True, timeout=30
    )
    values = [float(v) for v in done.stderr.split(" : ", 1)[-1].split() if v != "-"]
    assert values, done.stderr
    return statistics.median(values) / 1000


async def _rtts_against_capture(
    interface: str, target: str, runs: int, resources: ProbeResources
) -> tuple[list[float], list[float]]:
    """Probe `target` `runs` times; the reported RTTs, and the request->reply gaps captured on `interface`."""
    from tests.capture import Capture

    v6 = ":" in target
    ident = echo_socket(resources, socket.AF_INET6 if v6 else socket.AF_INET).ident
    request, reply = (128, 129) if v6 else (8, 0)

    def ours(p: object) -> bool:
        return getattr(p, "icmp_id", None) == ident and target in (
            getattr(p, "src", ""),
            getattr(p, "dst", ""),
        )

    reported: list[float] = []
    with Capture(interface, keep=ours) as capture:
        for _ in range(runs):
            result = await probe(target, timeout="500ms", interval="1s", resources=resources)
            assert result.ok, result.error_message
            assert result.latency is not None
            reported.append(result.latency)
            await asyncio.sleep(0.005)
        await asyncio.to_thread(capture.wait_for, lambda p: p.icmp_type == reply, 1.0, runs)
    sent = {p.seq: p.time for p in capture.packets if p.icmp_type == request and p.dst == target}
    answered = {p.seq: p.time for p in capture.packets if p.icmp_type == reply and p.src == target}
    gaps = [answered[seq] - sent[seq] for seq in sent.keys() & answered.keys()]
    assert len(gaps) >= runs // 2, "the capture missed our packets"
    return reported, gaps


@pytest.fixture
def fping() -> None:
    skip_unless_root("fping")


@pytest.mark.parametrize("target", ["127.0.0.1", "::1"])
async def test_loopback_rtt_agrees_with_capture_and_fping(
    target: str, fping: None, warm: None, resources: ProbeResources
) -> None:
    reported, gaps = await _rtts_against_capture("lo", target, runs=20, resources=resources)
    ours, wire = statistics.median(reported), statistics.median(gaps)
    theirs = await asyncio.to_thread(_fping_median, target, 20)
    assert abs(ours - wire) < 0.001, (ours, wire)
    assert abs(ours - theirs) < 0.001, (ours, theirs)


@pytest.fixture
def delayed() -> Iterator[object]:
    skip_unless_root("fping")
    from tests.delaylink import delay_link

    with delay_link(0.020) as link:
        yield link


@pytest.mark.netns
@pytest.mark.parametrize("ipv6", [False, True], ids=["ipv4", "ipv6"])
async def test_rtt_through_20ms_link_agrees_with_capture_and_fping(
    delayed: object, ipv6: bool, warm: None, resources: ProbeResources
) -> None:
    from tests.delaylink import DelayLink

    assert isinstance(delayed, DelayLink)
    target = delayed.ns_ip6 if ipv6 else delayed.ns_ip
    reported, gaps = await _rtts_against_capture(delayed.host_if, target, runs=15, resources=resources)
    ours, wire = statistics.median(reported), statistics.median(gaps)
    theirs = await asyncio.to_thread(_fping_median, target, 15)
    assert 0.020 <= wire < 0.030  # the link did delay them
    assert abs(ours - wire) < 0.001, (ours, wire)
    assert abs(ours - theirs) < 0.001, (ours, theirs)
