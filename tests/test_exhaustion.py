"""A lack of local resources is not a target's failure (issue 11 item 4), in-process.

The daemon under a real descriptor limit is in test_exhaustion_daemon.py.
"""

from __future__ import annotations

import logging
import os
import resource
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from healthd.app import service_infos
from healthd.config import CheckKey, TcpCheck, build_config
from healthd.metrics import Exposition
from healthd.probes import PROBES, ProbeResources
from healthd.results import ErrorKind, ProbeResult
from healthd.scheduler import FD_RESERVE, Scheduler, in_flight_cap, run_probe
from healthd.store import Status, Store
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import TcpServer

KEY = CheckKey("s", "c")


@contextmanager
def descriptors_exhausted() -> Iterator[None]:
    """Lower this process's soft RLIMIT_NOFILE a little above what is open and fill the rest."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    fillers: list[int] = []
    highest = max(int(fd) for fd in os.listdir("/proc/self/fd"))
    resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 16, hard))
    try:
        while len(fillers) <= highest + 16:  # bounded: the limit itself
            try:
                fillers.append(os.open(os.devnull, os.O_RDONLY))
            except OSError:
                break  # EMFILE: every descriptor is taken
        yield
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def tcp(target: str) -> TcpCheck:
    return TcpCheck.model_validate({"type": "tcp", "name": "c", "target": target, "timeout": "2s"})


def result(kind: ErrorKind | None, t: float, reason: str = "EMFILE") -> ProbeResult:
    details = {"local_reason": reason} if kind is ErrorKind.LOCAL else {}
    return ProbeResult(
        time=t,
        ok=kind is None,
        duration=0.001,
        latency=None,
        error_kind=kind,
        error_message=None if kind is None else "x",
        details=details,
    )


async def test_a_probe_without_descriptors_fails_as_local_with_its_reason(
    tcp_server: TcpServer, resources: ProbeResources
) -> None:
    check = tcp(tcp_server.target)
    with descriptors_exhausted():
        starved = await run_probe(PROBES["tcp"], check, resources, key=KEY)
    assert starved.error_kind is ErrorKind.LOCAL, starved
    assert starved.details["local_reason"] == "EMFILE"
    assert "Too many open files" in (starved.error_message or "")
    recovered = await run_probe(PROBES["tcp"], check, resources, key=KEY)
    assert recovered.ok, recovered


def test_local_results_do_not_move_a_check_and_are_counted_apart() -> None:
    config = build_config(
        "test",
        {
            "services": [
                {"name": "s", "checks": [{"name": "c", "type": "tcp", "target": "127.0.0.1:1", "fall": 1}]}
            ]
        },
    )
    store = Store()
    store.apply(service_infos(config))
    store.record(KEY, result(None, 1.0))
    for t in range(2, 6):
        assert store.record(KEY, result(ErrorKind.LOCAL, float(t))) is None
    state = store.check(KEY)
    assert state is not None
    assert state.status is Status.UP and state.last is not None and state.last.ok
    assert state.streak_ok == 1 and state.streak_fail == 0
    assert state.last_failure is None and len(state.failures) == 0  # nor the uptime's failures
    assert [r.error_kind for r in state.history][-1] is ErrorKind.LOCAL  # the API's history shows them
    assert store.record(KEY, result(ErrorKind.REFUSED, 7.0)) is not None  # a real failure still counts
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(Exposition(store).render().decode())
        for s in family.samples
    }
    assert samples[("healthd_probe_local_errors_total", (("reason", "EMFILE"),))] == 4
    local_probes = [
        v
        for (name, labels), v in samples.items()
        if name == "healthd_probes_total" and ("result", "local") in labels
    ]
    assert local_probes == [4]


def test_the_in_flight_cap_keeps_descriptors_in_reserve() -> None:
    assert in_flight_cap(1024, fd_limit=256, fds_open=20) == 256 - 20 - FD_RESERVE
    assert in_flight_cap(50, fd_limit=256, fds_open=20) == 50
    assert in_flight_cap(1024, fd_limit=64, fds_open=20) == 1


async def test_the_scheduler_caps_max_in_flight_by_the_limit_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = build_config(
        "test",
        {
            "scheduler": {"max_in_flight": 1024},
            "services": [{"name": "s", "checks": [{"name": "c", "type": "tcp", "target": "127.0.0.1:1"}]}],
        },
    )
    store = Store()
    store.apply(service_infos(config))
    async with ProbeResources() as resources:
        scheduler = Scheduler(store, resources=resources, fd_room=lambda: (256, 20))
        with caplog.at_level(logging.WARNING, logger="healthd.scheduler"):
            scheduler.start(config)
        await scheduler.stop()
    assert scheduler.in_flight_cap == 256 - 20 - FD_RESERVE
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "healthd.scheduler"]
    assert "max_in_flight 1024" in warning and "RLIMIT_NOFILE 256" in warning, warning
