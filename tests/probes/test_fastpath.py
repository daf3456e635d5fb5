"""The scheduler's fast path (`ProbeSpec.start`) for tcp and syn against the coroutine probes.

Both paths meet the same real targets (loopback listeners, a closed port, a namespace with
DROP and REJECT rules) and must give the same verdicts, kinds and messages; the fast path
must close its socket on every path, also when the deadline or a stop cuts it off.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from healthd.app import service_infos
from healthd.config import IcmpCheck, SynCheck, TcpCheck, build_config
from healthd.probe_run import run_fast
from healthd.probes import PROBES, STARTERS, ProbeResources
from healthd.probes.icmp import LOSS_GAUGE
from healthd.probes.syn import SynMode
from healthd.results import ErrorKind, ProbeResult
from healthd.scheduler import Scheduler, run_probe
from healthd.store import Store

from tests.fds import new_fds, new_fds_settled, open_fds
from tests.netlab import Namespace
from tests.probes.test_icmp import echo_socket, icmp  # noqa: F401 (a fixture, used by name)
from tests.waiting import LOOP_CLOCK_SLACK, eventually

TYPES = ("tcp", "syn")


def check_of(kind: str, target: str, **options: object) -> Any:
    model = TcpCheck if kind == "tcp" else SynCheck
    return model.model_validate({"type": kind, "name": "f", "target": target, **options})


@contextmanager
def listener(host: str = "127.0.0.1") -> Iterator[socket.socket]:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as server:
        server.bind((host, 0))
        server.listen(64)
        yield server


def target_of(server: socket.socket) -> str:
    host, port = server.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def both(kind: str, check: Any, resources: ProbeResources) -> tuple[ProbeResult, ProbeResult]:
    if kind == "syn":
        await resources.get(SynMode).mode()  # the fast path starts once the self-test has run
    fast = await run_fast(STARTERS[kind], check, resources)
    assert fast is not None, "the fast path declined an IP literal"
    slow = await run_probe(PROBES[kind], check, resources)
    return fast, slow


def verdict(result: ProbeResult) -> tuple[bool, ErrorKind | None, str | None, set[str]]:
    return result.ok, result.error_kind, result.error_message, set(result.details)


@pytest.mark.parametrize("kind", TYPES)
@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
async def test_a_listener_gives_the_same_outcome(kind: str, host: str, resources: ProbeResources) -> None:
    with listener(host) as server:
        fast, slow = await both(kind, check_of(kind, target_of(server)), resources)
    assert fast.ok, fast.error_message
    assert verdict(fast) == verdict(slow)
    assert fast.details["rtt_source"] == "tcp_info"  # the kernel's RTT, not the loop's
    assert fast.latency is not None and 0 < fast.latency <= fast.duration
    assert set(fast.phases) == {"resolve", "connect"}
    assert fast.gauges == slow.gauges
    if kind == "syn":
        assert fast.details["mode"] == slow.details["mode"]


@pytest.mark.parametrize("kind", TYPES)
async def test_failures_map_to_the_same_kinds_and_messages(
    kind: str, closed_port: int, resources: ProbeResources
) -> None:
    cases = [
        check_of(kind, f"127.0.0.1:{closed_port}"),  # refused
        check_of(kind, f"127.0.0.1:{closed_port}", ip_family="ipv6"),  # family mismatch
        check_of(kind, f"127.0.0.1:{closed_port}", source_ip="192.0.2.1"),  # not this host's
        check_of(kind, f"127.0.0.1:{closed_port}", interface="no-such-if0"),
    ]
    for check in cases:
        fast, slow = await both(kind, check, resources)
        assert not fast.ok
        assert verdict(fast) == verdict(slow), check.target
    refused, _ = await both(kind, cases[0], resources)
    assert refused.error_kind is ErrorKind.REFUSED


@pytest.mark.parametrize("kind", TYPES)
async def test_a_name_goes_to_the_coroutine(kind: str, resources: ProbeResources) -> None:
    await resources.get(SynMode).mode()
    assert await run_fast(STARTERS[kind], check_of(kind, "localhost:1"), resources) is None


async def test_syn_waits_for_its_self_test_before_the_fast_path() -> None:
    async with ProbeResources() as fresh:
        with listener() as server:
            assert await run_fast(STARTERS["syn"], check_of("syn", target_of(server)), fresh) is None


@pytest.mark.parametrize("kind", TYPES)
async def test_no_descriptor_survives_any_path(
    kind: str, closed_port: int, resources: ProbeResources
) -> None:
    await resources.get(SynMode).mode()
    with listener() as server:
        before = open_fds()
        for target in (target_of(server), f"127.0.0.1:{closed_port}"):
            for _ in range(20):
                await run_fast(STARTERS[kind], check_of(kind, target), resources)
        assert await new_fds_settled(before) == set()


@pytest.mark.netns
@pytest.mark.parametrize("kind", TYPES)
async def test_blackholed_target_times_out_and_closes(
    kind: str, netns: Namespace, resources: ProbeResources
) -> None:
    netns.iptables("-A", "INPUT", "-p", "tcp", "--dport", "8080", "-j", "DROP")
    check = check_of(kind, f"{netns.ns_ip}:8080", timeout="300ms", interval="1s")
    await resources.get(SynMode).mode()
    before = open_fds()
    started = time.monotonic()
    fast = await run_fast(STARTERS[kind], check, resources)
    elapsed = time.monotonic() - started
    assert fast is not None and fast.error_kind is ErrorKind.TIMEOUT
    assert fast.error_message == "no answer within 300ms"
    assert 0.3 - LOOP_CLOCK_SLACK <= elapsed < 0.3 + 0.1
    assert await new_fds_settled(before) == set()


@pytest.mark.netns
@pytest.mark.parametrize("kind", TYPES)
async def test_icmp_rejection_is_unreachable(kind: str, netns: Namespace, resources: ProbeResources) -> None:
    rule = ("-p", "tcp", "--dport", "8081", "-j", "REJECT", "--reject-with", "icmp-host-unreachable")
    netns.iptables("-A", "INPUT", *rule)
    fast, slow = await both(kind, check_of(kind, f"{netns.ns_ip}:8081", timeout="1s"), resources)
    assert fast.error_kind is ErrorKind.UNREACHABLE
    assert verdict(fast) == verdict(slow)


@pytest.mark.netns
async def test_cancelled_fast_run_closes_its_socket(netns: Namespace, resources: ProbeResources) -> None:
    netns.iptables("-A", "INPUT", "-p", "tcp", "--dport", "8082", "-j", "DROP")
    before = open_fds()
    task = asyncio.create_task(run_fast(STARTERS["tcp"], check_of("tcp", f"{netns.ns_ip}:8082"), resources))
    assert await eventually(lambda: len(new_fds(before)) >= 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await new_fds_settled(before) == set()


# ---- through the scheduler ----------------------------------------------------------


def config_of(checks: list[dict[str, Any]]) -> Any:
    return build_config("t", {"services": [{"name": "s", "checks": checks}]})


def runs(store: Store, name: str) -> int:
    state = store.check(("s", name))
    assert state is not None
    return sum(state.counts.values())


async def most_tasks_over_three_good_runs(checks: list[dict[str, Any]], resources: ProbeResources) -> int:
    """Schedule `checks` until each ran 3 times (all ok); the most tasks alive beyond those before."""
    config = config_of(checks)
    store = Store()
    store.apply(service_infos(config))
    scheduler = Scheduler(store, resources=resources)
    tasks_before = len(asyncio.all_tasks())
    scheduler.start(config)
    most = 0
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and min(runs(store, c["name"]) for c in checks) < 3:
        most = max(most, len(asyncio.all_tasks()) - tasks_before)
        await asyncio.sleep(0.005)
    await scheduler.stop()
    for c in checks:
        state = store.check(("s", c["name"]))
        assert runs(store, c["name"]) >= 3 and state is not None and state.last is not None and state.last.ok
    return most


async def test_the_scheduler_runs_tcp_and_syn_checks_without_a_task_per_run(
    resources: ProbeResources,
) -> None:
    await resources.get(SynMode).mode()
    with listener() as server:
        checks = [
            {
                "name": f"{kind}{i}",
                "type": kind,
                "target": target_of(server),
                "interval": "100ms",
                "timeout": "100ms",
            }
            for kind in TYPES
            for i in range(5)
        ]
        most = await most_tasks_over_three_good_runs(checks, resources)
    assert most == 0  # every run was a callback: no task was ever made for one


@pytest.mark.netns
async def test_stop_mid_probe_closes_the_fast_runs_sockets(
    netns: Namespace, resources: ProbeResources
) -> None:
    netns.iptables("-A", "INPUT", "-p", "tcp", "--dport", "8083", "-j", "DROP")
    config = config_of(
        [
            {"name": f"t{i}", "type": "tcp", "target": f"{netns.ns_ip}:8083", "interval": "2s"}
            for i in range(4)
        ]
    )
    store = Store()
    store.apply(service_infos(config))
    scheduler = Scheduler(store, resources=resources)
    before = open_fds()
    scheduler.start(config)
    try:
        # phases spread the first starts over one interval; then each holds a socket throughout
        assert await eventually(lambda: len(new_fds(before)) >= 2, seconds=8)
    finally:
        await scheduler.stop()
    assert await new_fds_settled(before) == set()
    assert scheduler.running == 0


# ---- icmp: one echo request, no timer ----------------------------------------------


def icmp_of(target: str, **options: object) -> IcmpCheck:
    return IcmpCheck.model_validate({"type": "icmp", "name": "i", "target": target, **options})


async def both_icmp(check: IcmpCheck, resources: ProbeResources) -> tuple[ProbeResult, ProbeResult]:
    fast = await run_fast(STARTERS["icmp"], check, resources)
    assert fast is not None, "the fast path declined a one-request round to a literal"
    return fast, await run_probe(PROBES["icmp"], check, resources)


@pytest.mark.parametrize("target", ["127.0.0.1", "::1"])
@pytest.mark.usefixtures("icmp")
async def test_icmp_echo_gives_the_same_outcome(target: str, resources: ProbeResources) -> None:
    fast, slow = await both_icmp(icmp_of(target), resources)
    assert fast.ok, fast.error_message
    assert verdict(fast) == verdict(slow)
    assert (fast.details["sent"], fast.details["received"]) == (1, 1)
    assert fast.gauges.keys() == slow.gauges.keys()
    assert fast.latency is not None and 0 < fast.latency <= fast.duration
    assert echo_socket(resources, socket.AF_INET).in_flight == 0  # the round forgot its request


@pytest.mark.usefixtures("icmp")
async def test_icmp_fast_path_only_for_one_request_to_a_literal(resources: ProbeResources) -> None:
    for check in (icmp_of("127.0.0.1", count=3, packet_interval="10ms"), icmp_of("localhost")):
        assert await run_fast(STARTERS["icmp"], check, resources) is None


@pytest.mark.usefixtures("icmp")
async def test_icmp_source_ip_not_local_is_the_same_error(resources: ProbeResources) -> None:
    fast, slow = await both_icmp(icmp_of("127.0.0.1", source_ip="192.0.2.1"), resources)
    assert not fast.ok and verdict(fast) == verdict(slow)


@pytest.mark.netns
@pytest.mark.usefixtures("icmp")
async def test_icmp_filtered_times_out_with_the_loss(netns: Namespace, resources: ProbeResources) -> None:
    netns.iptables("-A", "INPUT", "-p", "icmp", "-j", "DROP")
    check = icmp_of(netns.ns_ip, timeout="300ms", interval="1s")
    started = time.monotonic()
    fast = await run_fast(STARTERS["icmp"], check, resources)
    elapsed = time.monotonic() - started
    assert fast is not None and fast.error_kind is ErrorKind.TIMEOUT
    assert fast.error_message == f"no echo reply from {netns.ns_ip} to request within 300ms"
    assert (fast.details["sent"], fast.details["received"], fast.details["loss_ratio"]) == (1, 0, 1.0)
    assert fast.gauges[LOSS_GAUGE] == 1.0
    assert 0.3 - LOOP_CLOCK_SLACK <= elapsed < 0.3 + 0.1
    assert echo_socket(resources, socket.AF_INET).waiting(netns.ns_ip) == []


@pytest.mark.netns
@pytest.mark.usefixtures("icmp")
async def test_icmp_rejection_ends_at_once(netns: Namespace, resources: ProbeResources) -> None:
    netns.iptables("-A", "INPUT", "-p", "icmp", "-j", "REJECT", "--reject-with", "icmp-host-unreachable")
    fast, slow = await both_icmp(icmp_of(netns.ns_ip, timeout="2s"), resources)
    assert fast.error_kind is ErrorKind.UNREACHABLE
    assert verdict(fast) == verdict(slow)
    assert fast.duration < 0.5  # the error, not the timeout, ended it


@pytest.mark.usefixtures("icmp")
async def test_the_scheduler_runs_icmp_echoes_without_a_task_per_run(resources: ProbeResources) -> None:
    checks = [{"name": f"i{i}", "type": "icmp", "target": "127.0.0.1", "interval": "100ms"} for i in range(5)]
    checks = [{**c, "timeout": "100ms"} for c in checks]
    echo_socket(resources, socket.AF_INET)  # opened before counting tasks
    assert await most_tasks_over_three_good_runs(checks, resources) == 0
