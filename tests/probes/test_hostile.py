"""The HTTP probe against a hostile target (tests/probes/hostile.py): one port per misbehaviour.

Each verdict is asserted with its kind; every probe ends within its timeout
+ 100 ms and within its CPU budget; each message is one line, bounded, with no
object repr and no secret; a timeout keeps the running phase's time; the
process's peak RSS grows by a bounded amount; nothing logs a traceback.
"""

from __future__ import annotations

import logging
import resource
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest
from healthd.config import HttpCheck
from healthd.errors import MESSAGE_CHARS
from healthd.probes import PROBES, ProbeResources
from healthd.results import ErrorKind, ProbeResult
from healthd.scheduler import cpu_budget, run_probe

from tests.probes.hostile import hostile_target

TIMEOUT = 1.0
SLACK = 0.1  # seconds past the timeout a verdict may take
SECRET = "s3cret-Header-Value"
RSS_GROWTH_MB = 64  # peak RSS may grow this much over the whole table (a gzip bomb inflates to 256 MB)


def processing(result: ProbeResult) -> bool:
    return result.phases["processing"] >= TIMEOUT * 0.5


def transfer(result: ProbeResult) -> bool:
    return result.phases["transfer"] >= TIMEOUT * 0.5


def tls_phase(result: ProbeResult) -> bool:
    return result.phases["tls"] >= TIMEOUT * 0.5


def truncated(result: ProbeResult) -> bool:
    return result.ok and result.details["body_truncated"] is True and result.details["body_bytes"] == 65536


def anything(result: ProbeResult) -> bool:
    return True


@dataclass(frozen=True)
class Expect:
    kind: ErrorKind | None  # None: success
    words: str = ""  # in the message
    also: Callable[[ProbeResult], bool] = anything


VERDICTS = {
    "silent": Expect(ErrorKind.TIMEOUT, "no answer", processing),
    "rst_mid_body": Expect(ErrorKind.ERROR, "body transfer failed"),
    "garbage_status": Expect(ErrorKind.ERROR, "invalid HTTP response"),
    "header_flood": Expect(ErrorKind.ERROR, "invalid HTTP response"),
    "long_header": Expect(ErrorKind.ERROR, "invalid HTTP response"),
    "short_body": Expect(ErrorKind.ERROR, "body transfer failed"),
    "bad_chunks": Expect(ErrorKind.ERROR, "chunk"),
    "gzip_bomb": Expect(None, also=truncated),
    "endless_chunked": Expect(None, also=truncated),
    "slow_chunked": Expect(ErrorKind.TIMEOUT, "no answer", transfer),
    "http09": Expect(ErrorKind.ERROR, "Bad status line"),
    "redirect_loop": Expect(ErrorKind.HTTP_STATUS, "redirects"),
    "continue_stream": Expect(ErrorKind.ERROR, "informational (1xx)"),
    "echo_headers": Expect(ErrorKind.BODY_MISMATCH, "<redacted>"),
    "tls_silence": Expect(ErrorKind.TIMEOUT, "no answer", tls_phase),
    "tls_garbage": Expect(ErrorKind.TLS, "TLS failed"),
}


@pytest.fixture
async def ports() -> AsyncIterator[dict[str, int]]:
    async with hostile_target() as started:
        yield started


def check_for(name: str, port: int) -> HttpCheck:
    scheme = "https" if name.startswith("tls") else "http"
    options: dict[str, object] = {
        "type": "http",
        "name": name,
        "url": f"{scheme}://127.0.0.1:{port}/",
        "timeout": f"{TIMEOUT}s",
        "max_body_bytes": 65536,
        "headers": {"X-Api-Key": SECRET},
        "follow_redirects": name == "redirect_loop",
    }
    if name == "echo_headers":
        options["body_regex"] = "^never$"
    return HttpCheck.model_validate(options)


def test_every_behaviour_has_a_verdict() -> None:
    from tests.probes.hostile import BEHAVIOURS

    assert set(VERDICTS) == set(BEHAVIOURS)


@pytest.mark.parametrize("name", sorted(VERDICTS))
async def test_a_hostile_target_gets_a_clean_verdict_in_time(
    name: str, ports: dict[str, int], caplog: pytest.LogCaptureFixture
) -> None:
    expect = VERDICTS[name]
    check = check_for(name, ports[name])
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with caplog.at_level(logging.DEBUG, logger="healthd"):
        async with ProbeResources() as resources:
            cpu, started = time.thread_time(), time.monotonic()
            result = await run_probe(PROBES["http"], check, resources)
            elapsed, used = time.monotonic() - started, time.thread_time() - cpu
    assert result.error_kind is expect.kind, result
    assert elapsed <= TIMEOUT + SLACK, f"{name}: {elapsed:.3f}s"
    assert used <= cpu_budget(TIMEOUT) + SLACK, f"{name}: {used:.3f}s of CPU"
    message = result.error_message or ""
    assert expect.words in message, message
    assert "\n" not in message and "\r" not in message and len(message) <= MESSAGE_CHARS, message
    assert " object at 0x" not in message and SECRET not in message, message
    assert expect.also(result), result
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    assert grown_mb <= RSS_GROWTH_MB, f"{name}: peak RSS grew {grown_mb:.0f} MB"
    tracebacks = [r for r in caplog.records if r.exc_info and r.levelno >= logging.WARNING]
    assert not tracebacks, [r.getMessage() for r in tracebacks]
