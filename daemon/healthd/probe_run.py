"""One probe run: the timeout, the CPU budget, and the one place exceptions become results.

`run_probe` drives a probe's coroutine (the contract every probe has). The
scheduler's fast path (`ProbeSpec.start`) enforces the deadline itself and
turns what its run ends with into a result with the same `ok_result` and
`failed_result`, so both paths report the same kinds and messages.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from healthd.config import CheckBase, CheckKey, format_duration
from healthd.cpubudget import cpu_bounded
from healthd.errors import ProbeFailure, clean_message, local_reason
from healthd.probes import Probe, ProbeContext, ProbeLog, ProbeResources, Starter
from healthd.results import ErrorKind, ProbeOutcome, ProbeResult

Clock = Callable[[], float]

CPU_SHARE = 0.25  # of its timeout, the CPU time a probe may use; real probes use a few ms


def cpu_budget(timeout: float) -> float:
    return max(0.05, timeout * CPU_SHARE)


async def run_probe(
    probe: Probe,
    check: CheckBase,
    resources: ProbeResources,
    *,
    key: CheckKey | None = None,
    log: ProbeLog | None = None,
    clock: Clock = time.perf_counter,
    wall: Clock = time.time,
) -> ProbeResult:
    """Run one probe until its deadline (`check.timeout` from now)."""
    ctx = ProbeContext.start(check, resources, key, log)
    started_wall, started = wall(), clock()
    try:
        async with asyncio.timeout_at(ctx.deadline):
            outcome = await cpu_bounded(probe(check, ctx), cpu_budget(check.timeout))
    except Exception as exc:  # cancellation passes through
        return failed_result(exc, started_wall, clock() - started, check, ctx)
    return ok_result(outcome, started_wall, clock() - started)


async def run_fast(
    start: Starter,
    check: CheckBase,
    resources: ProbeResources,
    *,
    key: CheckKey | None = None,
    log: ProbeLog | None = None,
) -> ProbeResult | None:
    """One run through a probe type's fast path, with the deadline the scheduler would give
    it (for tests and one-off runs): None when this run needs the coroutine (`run_probe`)."""
    loop = asyncio.get_running_loop()
    ctx = ProbeContext.start(check, resources, key, log)
    ended: asyncio.Future[ProbeOutcome | Exception | _Expired] = loop.create_future()

    def settle(value: ProbeOutcome | Exception | _Expired) -> None:
        if not ended.done():
            ended.set_result(value)

    started_wall, started = time.time(), time.perf_counter()
    try:
        run = start(check, ctx, settle)
    except Exception as exc:
        return failed_result(exc, started_wall, time.perf_counter() - started, check, ctx)
    if run is None:
        return None

    def expire() -> None:
        if not ended.done():
            settle(_Expired(run.cancel()))

    deadline = loop.call_at(ctx.deadline, expire)
    try:
        outcome = await ended
    except BaseException:  # cancelled: the run's socket closes with it
        deadline.cancel()
        run.cancel()
        raise
    deadline.cancel()
    duration = time.perf_counter() - started
    if isinstance(outcome, _Expired) and not isinstance(outcome.measured, Exception):
        return timeout_result(started_wall, duration, check, outcome.measured)
    if isinstance(outcome, _Expired):  # the probe's own verdict at its deadline
        outcome = outcome.measured
    if isinstance(outcome, Exception):
        return failed_result(outcome, started_wall, duration, check, ctx)
    return ok_result(outcome, started_wall, duration)


class _Expired:
    def __init__(self, measured: ProbeOutcome | Exception) -> None:
        self.measured = measured


def ok_result(outcome: ProbeOutcome, started_wall: float, duration: float) -> ProbeResult:
    return ProbeResult(
        time=started_wall,
        ok=True,
        duration=duration,
        latency=outcome.latency if outcome.latency is not None else duration,
        phases=outcome.phases,
        details=outcome.details,
        gauges=outcome.gauges,
    )


def failed_result(
    exc: Exception, started_wall: float, duration: float, check: CheckBase, ctx: ProbeContext
) -> ProbeResult:
    """The result of a run that ended with `exc` (a `TimeoutError` is the deadline)."""
    if isinstance(exc, ProbeFailure):
        if exc.kind is ErrorKind.ERROR and ctx.log.isEnabledFor(logging.DEBUG):
            ctx.log.debug("probe failed: %s", exc.message, exc_info=exc)  # with its chained causes
        measured = _with_local_reason(exc.outcome, exc) if exc.kind is ErrorKind.LOCAL else exc.outcome
        return _failure(started_wall, duration, exc.kind, exc.message, measured, check)
    if isinstance(exc, TimeoutError):
        return timeout_result(started_wall, duration, check, ctx.progress())
    if isinstance(exc, MemoryError):  # this host's problem, not the target's
        measured = _with_local_reason(ProbeOutcome(), exc)
        return _failure(started_wall, duration, ErrorKind.LOCAL, "out of memory", measured)
    # a bug or an unforeseen OS condition: never kill the loop
    ctx.log.error("probe raised unexpectedly", exc_info=exc)
    message = f"{type(exc).__name__}: {exc}"
    return _failure(started_wall, duration, ErrorKind.ERROR, message, check=check)


def timeout_result(
    started_wall: float, duration: float, check: CheckBase, measured: ProbeOutcome
) -> ProbeResult:
    message = f"no answer within {format_duration(check.timeout)}"
    return _failure(started_wall, duration, ErrorKind.TIMEOUT, message, measured, check)


def _with_local_reason(outcome: ProbeOutcome, exc: BaseException) -> ProbeOutcome:
    details = {**outcome.details, "local_reason": local_reason(exc)}
    return ProbeOutcome(outcome.phases, details, outcome.gauges, outcome.latency)


def _failure(
    started_wall: float,
    duration: float,
    kind: ErrorKind,
    message: str,
    measured: ProbeOutcome | None = None,
    check: CheckBase | None = None,
) -> ProbeResult:
    measured = measured if measured is not None else ProbeOutcome()
    return ProbeResult(
        time=started_wall,
        ok=False,
        duration=duration,
        latency=measured.latency,
        error_kind=kind,
        error_message=clean_message(message, check.secrets if check is not None else ()),
        phases=measured.phases,
        details=measured.details,
        gauges=measured.gauges,
    )
