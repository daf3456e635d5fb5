"""When probes run: one long-lived task per check on a fixed-rate, drift-free schedule.

Each check's planned times are `phase + k * interval` on the monotonic clock,
where the phase is a stable hash of the check id: restarts and reloads never
line checks up into one burst. A run that overruns its next slot makes the
scheduler skip that slot, never bunch it. A global semaphore caps probes in
flight; waiting for it counts as scheduler lag.

Each check's task is supervised: if it dies of a bug (anything but being
cancelled), the traceback is logged, `healthd_check_task_restarts_total`
counts it, and the task starts again after a backoff.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import os
import resource
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping

from pydantic import BaseModel, SecretStr

from healthd.config import CheckBase, CheckKey, Config, ConfigDiff, format_check_id, format_duration
from healthd.cpubudget import cpu_bounded
from healthd.errors import ProbeFailure, clean_message, local_reason
from healthd.eventlog import log_check_transition
from healthd.probes import PROBES, Probe, ProbeContext, ProbeLog, ProbeResources
from healthd.results import ErrorKind, ProbeOutcome, ProbeResult
from healthd.store import CheckState, Status, Store, Transition

log = logging.getLogger(__name__)

RESTART_BACKOFF = 1.0  # seconds before a dead check task starts again; doubles while it keeps dying
RESTART_BACKOFF_MAX = 60.0  # and a task that ran this long starts over from RESTART_BACKOFF

FD_RESERVE = 64  # descriptors kept free of probes: API connections, config and token files, logs

CPU_SHARE = 0.25  # of its timeout, the CPU time a probe may use; real probes use a few ms


def cpu_budget(timeout: float) -> float:
    return max(0.05, timeout * CPU_SHARE)


Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
TransitionHook = Callable[[Transition], None]
log_transition = log_check_transition  # the default on_transition hook


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
    """Run one probe until its deadline (`check.timeout` from now); the one place exceptions
    become results."""
    ctx = ProbeContext.start(check, resources, key, log)
    started_wall, started = wall(), clock()
    try:
        async with asyncio.timeout_at(ctx.deadline):
            outcome = await cpu_bounded(probe(check, ctx), cpu_budget(check.timeout))
    except ProbeFailure as exc:
        if exc.kind is ErrorKind.ERROR and ctx.log.isEnabledFor(logging.DEBUG):
            ctx.log.debug("probe failed: %s", exc.message, exc_info=exc)  # with its chained causes
        measured = _with_local_reason(exc.outcome, exc) if exc.kind is ErrorKind.LOCAL else exc.outcome
        return _failure(started_wall, clock() - started, exc.kind, exc.message, measured, check)
    except TimeoutError:
        message = f"no answer within {format_duration(check.timeout)}"
        return _failure(started_wall, clock() - started, ErrorKind.TIMEOUT, message, ctx.progress(), check)
    except MemoryError as exc:  # this host's problem, not the target's
        measured = _with_local_reason(ProbeOutcome(), exc)
        return _failure(started_wall, clock() - started, ErrorKind.LOCAL, "out of memory", measured)
    except Exception as exc:  # a bug or an unforeseen OS condition: never kill the loop
        ctx.log.exception("probe raised unexpectedly")
        message = f"{type(exc).__name__}: {exc}"
        return _failure(started_wall, clock() - started, ErrorKind.ERROR, message, check=check)
    duration = clock() - started
    return ProbeResult(
        time=started_wall,
        ok=True,
        duration=duration,
        latency=outcome.latency if outcome.latency is not None else duration,
        phases=outcome.phases,
        details=outcome.details,
        gauges=outcome.gauges,
    )


def _with_local_reason(outcome: ProbeOutcome, exc: BaseException) -> ProbeOutcome:
    details = {**outcome.details, "local_reason": local_reason(exc)}
    return ProbeOutcome(outcome.phases, details, outcome.gauges, outcome.latency)


def secret_values(value: object, depth: int = 0) -> Iterator[str]:
    """Every secret (`SecretStr`) in a check's config, to redact from its messages."""
    if depth > 8:  # configs are shallow; the bound only guards the recursion
        return
    if isinstance(value, SecretStr):
        yield value.get_secret_value()
    elif isinstance(value, BaseModel):
        for item in vars(value).values():
            yield from secret_values(item, depth + 1)
    elif isinstance(value, dict):
        for item in value.values():
            yield from secret_values(item, depth + 1)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from secret_values(item, depth + 1)


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
        error_message=clean_message(message, secret_values(check)),
        phases=measured.phases,
        details=measured.details,
        gauges=measured.gauges,
    )


def stable_fraction(key: CheckKey) -> float:
    """A number in [0, 1) fixed for a check id across runs and machines."""
    digest = hashlib.blake2b(format_check_id(key).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def first_slot(key: CheckKey, interval: float, mono_now: float, wall_now: float) -> float:
    """The first planned start: the next wall-clock time congruent to the check's phase."""
    return grid_slot(key, interval, mono_now, mono_now, wall_now)


def grid_slot(key: CheckKey, interval: float, earliest: float, mono_now: float, wall_now: float) -> float:
    """The first point of the check's grid for `interval` (its phase + k * interval, in wall-clock
    time) at or after `earliest` (monotonic) and not before now."""
    phase = stable_fraction(key) * interval
    earliest = max(earliest, mono_now)
    return earliest + (phase - (wall_now + earliest - mono_now)) % interval


def current_interval(check: CheckBase, state: CheckState | None) -> float:
    """`transition_interval` while between states (failing but not yet down, or recovering),
    `down_interval` while down, `interval` otherwise (or when the faster one is not set)."""
    if state is None:
        return check.interval
    between = (state.status is Status.UP and state.streak_fail > 0) or (
        state.status is Status.DOWN and state.streak_ok > 0
    )
    if between and check.transition_interval is not None:
        return check.transition_interval
    if state.status is Status.DOWN and check.down_interval is not None:
        return check.down_interval
    return check.interval


def next_slot(planned: float, interval: float, now: float) -> tuple[float, int]:
    """The next planned start after `planned`, and how many slots were skipped to reach it."""
    following = planned + interval
    if following > now:
        return following, 0
    skipped = math.floor((now - following) / interval) + 1
    return following + skipped * interval, skipped


def in_flight_cap(configured: int, fd_limit: int, fds_open: int, reserve: int = FD_RESERVE) -> int:
    """How many probes may run at once: the configured cap, lowered so that `reserve`
    descriptors stay free (each probe in flight holds about one). At least 1."""
    return max(1, min(configured, fd_limit - fds_open - reserve))


def descriptor_room() -> tuple[int, int]:
    """(RLIMIT_NOFILE's soft limit, descriptors open now) of this process."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        open_now = len(os.listdir("/proc/self/fd"))
    except OSError:  # no /proc: assume what a fresh daemon holds
        open_now = 32
    return (soft if soft != resource.RLIM_INFINITY else 1 << 20), open_now


class Scheduler:
    def __init__(
        self,
        store: Store,
        probes: Mapping[str, Probe] = PROBES,
        *,
        resources: ProbeResources,
        clock: Clock = time.monotonic,
        wall: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
        on_transition: TransitionHook = log_transition,
        fd_room: Callable[[], tuple[int, int]] = descriptor_room,
    ) -> None:
        self._store = store
        self._probes = probes
        self._resources = resources
        self._clock = clock
        self._wall = wall
        self._sleep = sleep
        self._on_transition = on_transition
        self._fd_room = fd_room
        self._probing = 0  # probes in flight now
        self._tasks: dict[CheckKey, asyncio.Task[None]] = {}
        self._in_flight = asyncio.Semaphore(1024)
        self._in_flight_cap = 1024

    @property
    def running(self) -> int:
        return len(self._tasks)

    @property
    def in_flight_cap(self) -> int:
        return self._in_flight_cap

    def start(self, config: Config) -> None:
        self._in_flight_cap = self._cap_for(config)
        self._in_flight = asyncio.Semaphore(self._in_flight_cap)
        for svc in config.services:
            for check in svc.checks:
                self._spawn(CheckKey(svc.name, check.name), check)

    def apply(self, config: Config, diff: ConfigDiff) -> None:
        """Restart changed checks, stop removed ones, start new ones; the rest run on."""
        cap = self._cap_for(config)
        if cap != self._in_flight_cap:
            # probes holding the old semaphore release it; new starts wait on the new cap
            self._in_flight = asyncio.Semaphore(cap)
            self._in_flight_cap = cap
        for key in (*diff.removed, *diff.changed):
            task = self._tasks.pop(key, None)
            if task is not None:
                task.cancel()
        start = {*diff.added, *diff.changed}
        for svc in config.services:
            for check in svc.checks:
                key = CheckKey(svc.name, check.name)
                if key in start:
                    self._spawn(key, check)

    def _cap_for(self, config: Config) -> int:
        configured = config.scheduler.max_in_flight
        limit, open_now = self._fd_room()
        # probes in flight now hold descriptors that are theirs, not the daemon's own
        cap = in_flight_cap(configured, limit, max(open_now - self._probing, 0))
        if cap < configured:
            log.warning(
                "scheduler.max_in_flight %d is more than the descriptor limit allows "
                "(RLIMIT_NOFILE %d, %d open, %d kept free): at most %d probes run at once",
                configured,
                limit,
                open_now,
                FD_RESERVE,
                cap,
            )
        return cap

    async def stop(self, grace: float = 1.0) -> None:
        """Cancel every check's task and wait (bounded) for their sockets to close."""
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            if pending:
                log.warning("%d probes did not stop within %.1fs", len(pending), grace)

    def _spawn(self, key: CheckKey, check: CheckBase) -> None:
        probe = self._probes[check.type]  # healthd.probes.register made sure every type has one
        name = f"check {format_check_id(key)}"
        self._tasks[key] = asyncio.create_task(self._supervise(key, check, probe), name=name)

    async def _supervise(self, key: CheckKey, check: CheckBase, probe: Probe) -> None:
        """Run the check's loop; if it dies, log why, count it, and start it again after a backoff."""
        backoff = RESTART_BACKOFF
        while True:
            started = self._clock()
            try:
                await self._run_check(key, check, probe)
            except Exception:  # a bug outside run_probe's protection; cancellation passes through
                if self._clock() - started >= RESTART_BACKOFF_MAX:
                    backoff = RESTART_BACKOFF
                log.exception(
                    "the task of check %s died; it starts again in %s",
                    format_check_id(key),
                    format_duration(backoff),
                )
                self._store.record_task_restart(key)
            await self._sleep(backoff)
            backoff = min(backoff * 2, RESTART_BACKOFF_MAX)

    async def _run_check(self, key: CheckKey, check: CheckBase, probe: Probe) -> None:
        probe_log = ProbeLog.of(key, check)
        interval = current_interval(check, self._store.check(key))  # a restored check may be down
        planned = first_slot(key, interval, self._clock(), self._wall())
        while True:
            delay = planned - self._clock()
            if delay > 0:
                await self._sleep(delay)
            async with self._in_flight:
                self._store.record_lag(self._clock() - planned)
                self._probing += 1
                try:
                    result = await run_probe(probe, check, self._resources, key=key, log=probe_log)
                finally:
                    self._probing -= 1
            transition = self._store.record(key, result)
            if transition is not None:
                self._on_transition(transition)
            wanted = current_interval(check, self._store.check(key))
            if wanted == interval:
                planned, skipped = next_slot(planned, interval, self._clock())
                self._store.daemon.skipped_runs += skipped
            else:  # onto the other interval's grid, no sooner than the shorter interval allows
                earliest = planned + min(interval, wanted)
                planned, interval = grid_slot(key, wanted, earliest, self._clock(), self._wall()), wanted
