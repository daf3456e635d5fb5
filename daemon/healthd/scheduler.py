"""When probes run: every check's next start on one deadline heap, on a fixed-rate grid.

Each check's planned times are `phase + k * interval` (see `slots`); a run that
overruns its next slot skips that slot, never bunches it. The scheduler keeps
one `Deadlines` heap per event loop: starts that fall due together are taken in
one callback, and the fast-path probes' deadlines live in the same heap (see
`check_run`). A cap bounds the probes in flight (lowered to keep descriptors in
reserve); waiting for it counts as scheduler lag.

Each check is supervised: if its steps die of a bug (anything but being
cancelled), the traceback is logged, `healthd_check_task_restarts_total` counts
it, and the check starts again after a backoff.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

from healthd.check_run import RESTART_BACKOFF, RESTART_BACKOFF_MAX, CheckRun, InFlight, RunEnv, TransitionHook
from healthd.config import CheckBase, CheckKey, Config, ConfigDiff
from healthd.config.checks.base import secret_values
from healthd.deadlines import Deadlines
from healthd.eventlog import log_check_transition
from healthd.probe_run import CPU_SHARE, cpu_budget, run_probe
from healthd.probes import PROBES, REGISTRY, Probe, ProbeResources, Starter
from healthd.slots import (
    FD_RESERVE,
    current_interval,
    descriptor_room,
    first_slot,
    grid_slot,
    in_flight_cap,
    next_slot,
    stable_fraction,
)
from healthd.store import Store

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
log_transition = log_check_transition  # the default on_transition hook

__all__ = [  # what callers imported from here before the split, kept importable
    "CPU_SHARE",
    "FD_RESERVE",
    "RESTART_BACKOFF",
    "RESTART_BACKOFF_MAX",
    "Scheduler",
    "cpu_budget",
    "current_interval",
    "descriptor_room",
    "first_slot",
    "grid_slot",
    "in_flight_cap",
    "log_transition",
    "next_slot",
    "run_probe",
    "secret_values",
    "stable_fraction",
]


def fast_starter(probe_type: str, probe: Probe) -> Starter | None:
    """The type's fast path, if it has one and `probe` is that type's own probe (a test's
    scripted probe is run as the coroutine it is)."""
    spec = REGISTRY.specs.get(probe_type)
    if spec is None or spec.start is None or spec.probe is not probe:
        return None
    return spec.start


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
        self._probes = probes
        self._fd_room = fd_room
        self._checks: dict[CheckKey, CheckRun] = {}
        self._env = RunEnv(
            store, resources, clock, wall, Deadlines(clock, sleep), InFlight(1024), on_transition
        )

    @property
    def running(self) -> int:
        return len(self._checks)

    @property
    def in_flight_cap(self) -> int:
        return self._env.gate.cap

    def start(self, config: Config) -> None:
        self._env.gate = InFlight(self._cap_for(config))
        for svc in config.services:
            for check in svc.checks:
                self._spawn(CheckKey(svc.name, check.name), check)

    def apply(self, config: Config, diff: ConfigDiff) -> None:
        """Restart changed checks, stop removed ones, start new ones; the rest run on."""
        gate = self._env.gate
        gate.cap = self._cap_for(config)  # probes in flight finish; new starts obey the new cap
        for key in (*diff.removed, *diff.changed):
            run = self._checks.pop(key, None)
            if run is not None:
                run.stop()
        start = {*diff.added, *diff.changed}
        for svc in config.services:
            for check in svc.checks:
                key = CheckKey(svc.name, check.name)
                if key in start:
                    self._spawn(key, check)
        gate.drain()  # a raised cap has room for queued starts now

    def _cap_for(self, config: Config) -> int:
        configured = config.scheduler.max_in_flight
        limit, open_now = self._fd_room()
        # probes in flight now hold descriptors that are theirs, not the daemon's own
        cap = in_flight_cap(configured, limit, max(open_now - self._env.gate.probing, 0))
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
        """Stop every check and wait (bounded) for the sockets of coroutine probes to close
        (fast-path probes close theirs at once)."""
        runs = list(self._checks.values())
        self._checks.clear()
        self._env.gate.closed = True  # no queued start may begin while the others stop
        tasks = [task for run in runs if (task := run.stop()) is not None]
        self._env.deadlines.clear()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            if pending:
                log.warning("%d probes did not stop within %.1fs", len(pending), grace)

    def _spawn(self, key: CheckKey, check: CheckBase) -> None:
        probe = self._probes[check.type]  # healthd.probes.register made sure every type has one
        run = CheckRun(key, check, probe, fast_starter(check.type, probe), self._env)
        self._checks[key] = run
        run.begin()
