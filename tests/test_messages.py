"""Failure messages are one bounded line without secrets or object reprs; probes have a CPU budget."""

from __future__ import annotations

import asyncio
import time

import pytest
from healthd.config import TcpCheck
from healthd.cpubudget import cpu_bounded
from healthd.errors import MESSAGE_CHARS, ProbeFailure, clean_message
from healthd.probes import ProbeContext, ProbeResources
from healthd.results import ErrorKind, ProbeOutcome
from healthd.scheduler import cpu_budget, run_probe, secret_values


def test_a_message_is_one_escaped_bounded_line() -> None:
    raw = "Bad status line:\n  Invalid status code:\r\n\x00\x1b[31m" + "x" * 1000
    cleaned = clean_message(raw)
    assert cleaned.startswith("Bad status line:\\n  Invalid status code:\\r\\n\\x00\\x1b[31m")
    assert len(cleaned) == MESSAGE_CHARS and cleaned.endswith("…")


def test_object_reprs_become_their_type_name() -> None:
    text = "Cannot connect to host h:443 ssl:<ssl.SSLContext object at 0x7f3a2b1c9d50> [x]"
    assert clean_message(text) == "Cannot connect to host h:443 ssl:SSLContext [x]"


def test_secrets_are_redacted_longest_first() -> None:
    assert clean_message("token abc and abcdef", ["abc", "abcdef"]) == "token <redacted> and <redacted>"


def test_secret_values_finds_every_secret_of_a_check() -> None:
    from healthd.config import HttpCheck

    check = HttpCheck.model_validate(
        {
            "type": "http",
            "name": "h",
            "url": "http://127.0.0.1:1/",
            "headers": {"X-Key": "k1"},
            "basic_auth": {"username": "u", "password": "p1"},
        }
    )
    assert sorted(secret_values(check)) == ["k1", "p1"]


async def spinner(check: TcpCheck, ctx: ProbeContext) -> ProbeOutcome:
    """A probe a target keeps busy: CPU between awaits, until the deadline."""
    while True:
        spun = time.thread_time() + 0.01
        while time.thread_time() < spun:
            pass
        await asyncio.sleep(0)


async def test_a_probe_that_spins_fails_once_it_used_its_cpu_budget() -> None:
    # the budget is CPU, so on a busy machine it is reached later in wall time: no deadline here
    check = TcpCheck.model_validate({"type": "tcp", "name": "t", "target": "127.0.0.1:1"})
    async with ProbeResources() as resources:
        ctx = ProbeContext.start(check, resources)
        cpu = time.thread_time()
        with pytest.raises(ProbeFailure, match="of CPU") as failure:
            async with asyncio.timeout(60):
                await cpu_bounded(spinner(check, ctx), 0.1)
        used = time.thread_time() - cpu
    assert failure.value.kind is ErrorKind.ERROR
    assert 0.1 <= used < 0.1 + 0.1  # stopped within a step or so past the budget
    assert cpu_budget(2.0) == 0.5


async def stalled(check: TcpCheck, ctx: ProbeContext) -> ProbeOutcome:
    """Steps that take wall time without CPU, as steps do when the OS preempts the loop."""
    for _ in range(8):
        time.sleep(0.02)  # the stand-in for a preempted step
        await asyncio.sleep(0)
    return ProbeOutcome(latency=0.001)


async def test_a_probe_preempted_by_a_busy_machine_is_not_failed_by_its_cpu_budget() -> None:
    # budget 0.1 s; the steps hold the loop 0.16 s in all but use almost no CPU
    check = TcpCheck.model_validate({"type": "tcp", "name": "t", "target": "127.0.0.1:1", "timeout": "400ms"})
    assert cpu_budget(check.timeout) == 0.1
    async with ProbeResources() as resources:
        result = await run_probe(stalled, check, resources)
    assert result.ok, result


def test_only_older_generations_count_as_a_collection_between_two_readings() -> None:
    from healthd.cpubudget import _older_collection_between

    assert not _older_collection_between((10, 3, 1), (200, 4, 1))  # generation 0 passes only
    assert _older_collection_between((10, 9, 1), (5, 0, 2))  # generation 1 ran
    assert _older_collection_between((10, 9, 4), (5, 0, 0))  # generation 2 ran


def test_connect_errors_of_a_remote_rejection_blame_the_path_not_this_host() -> None:
    import errno

    from healthd.errors import from_connect_error

    admin = from_connect_error(OSError(errno.EACCES, "Permission denied"), "connect to [fd00::2]:80")
    assert admin.kind is ErrorKind.UNREACHABLE and "administratively prohibited" in admin.message
    protocol = from_connect_error(
        OSError(errno.ENOPROTOOPT, "Protocol not available"), "connect to 10.0.0.2:80"
    )
    assert protocol.kind is ErrorKind.UNREACHABLE and "protocol unreachable" in protocol.message
    assert from_connect_error(OSError(errno.EPERM, "x"), "c").kind is ErrorKind.PERMISSION  # a local firewall
