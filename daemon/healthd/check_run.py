"""One check's life on the scheduler's deadline heap, and the cap on probes in flight.

A check is not a task: it is a `CheckRun` whose next start is an entry in the
scheduler's `Deadlines`. When the entry falls due the run waits for room under
the in-flight cap (`InFlight`, a count and a FIFO queue; the wait is lag),
then probes:

- with the probe type's fast path (`ProbeSpec.start`): a non-blocking start, loop
  callbacks, and its deadline as one more heap entry (no task, no coroutine, no
  `asyncio.timeout`);
- otherwise in a task running `run_probe` (timeout and CPU budget as ever).

The result goes to the store and the next slot onto the heap. A bug in these
steps (outside `run_probe`'s protection) is supervised as a dead check task was:
logged with its traceback, counted in `healthd_check_task_restarts_total`, and
the check starts again after a backoff (1 s doubling to 60 s; back to 1 s after
60 s without dying).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from healthd.config import CheckBase, CheckKey, format_check_id, format_duration
from healthd.deadlines import Clock, Deadline, Deadlines
from healthd.probe_run import failed_result, ok_result, run_probe, timeout_result
from healthd.probes import Probe, ProbeContext, ProbeLog, ProbeResources, Started, Starter
from healthd.results import ProbeOutcome, ProbeResult
from healthd.slots import current_interval, first_slot, grid_slot, next_slot
from healthd.store import Store, Transition

log = logging.getLogger("healthd.scheduler")  # the scheduler's log, as before the split

RESTART_BACKOFF = 1.0  # seconds before a dead check starts again; doubles while it keeps dying
RESTART_BACKOFF_MAX = 60.0  # and a check that ran this long starts over from RESTART_BACKOFF

TransitionHook = Callable[[Transition], None]


class InFlight:
    """How many probes run now, the cap, and the due runs waiting for room (first come, first served)."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.probing = 0
        self.closed = False
        self._waiting: deque[CheckRun] = deque()
        self._draining = False

    def enter(self, run: CheckRun) -> bool:
        """Count `run` in and return True, or queue it (it is launched when room frees)."""
        if self.probing < self.cap:
            self.probing += 1
            return True
        self._waiting.append(run)
        return False

    def leave(self) -> None:
        self.probing -= 1
        self.drain()

    def drain(self) -> None:
        """Launch queued runs while there is room. Iterative: a run that ends at once (and so
        leaves again) only frees room for this loop, it does not recurse into it."""
        if self._draining:
            return
        self._draining = True
        try:
            while self._waiting and self.probing < self.cap and not self.closed:
                run = self._waiting.popleft()
                if not run.stopped:
                    self.probing += 1
                    run.launch()
        finally:
            self._draining = False


@dataclass(slots=True)
class RunEnv:
    """What every check's run shares: owned by the scheduler."""

    store: Store
    resources: ProbeResources
    clock: Clock
    wall: Clock
    deadlines: Deadlines
    gate: InFlight
    on_transition: TransitionHook
    tasks: set[asyncio.Task[None]] = field(default_factory=set)  # coroutine probes in flight


class CheckRun:
    """One check: its grid, its current run (fast or a task), its supervision. Slotted: a worker
    keeps one per check (~270 B of instance dict each otherwise)."""

    __slots__ = (
        "_backoff", "_ctx", "_entry", "_env", "_fast", "_holding", "_interval", "_log", "_planned",
        "_probe", "_probing", "_since", "_started", "_started_wall", "_starter", "_task", "check",
        "key", "stopped",
    )  # fmt: skip

    def __init__(self, key: CheckKey, check: CheckBase, probe: Probe, starter: Starter | None, env: RunEnv):
        self.key, self.check, self._probe, self._starter, self._env = key, check, probe, starter, env
        self.stopped = False
        self._log = ProbeLog.of(key, check)
        self._entry: Deadline | None = None  # the next start, a fast run's deadline, or a restart
        self._fast: Started | None = None
        self._task: asyncio.Task[None] | None = None
        self._holding = False  # counted in the in-flight cap
        self._probing = False  # a fast run between its start and its result
        self._ctx: ProbeContext | None = None
        self._started_wall = self._started = 0.0
        self._backoff = RESTART_BACKOFF
        self._since = 0.0  # when it last (re)started
        self._interval = check.interval
        self._planned = 0.0

    def begin(self) -> None:
        """Plan the first start (a restored check may be down: its interval says so)."""
        try:
            env = self._env
            self._since = env.clock()
            self._interval = current_interval(self.check, env.store.check(self.key))
            self._planned = first_slot(self.key, self._interval, env.clock(), env.wall())
            self._entry = env.deadlines.at(self._planned, self._due)
        except Exception:
            self._died()

    def stop(self) -> asyncio.Task[None] | None:
        """Stop for good: nothing of this run is recorded after this. Returns a probe task
        still cancelling, if there is one (its sockets close when it ends)."""
        self.stopped = True
        self._release()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
        return task

    def _due(self) -> None:
        self._entry = None
        try:
            if self._env.gate.enter(self):
                self.launch()
        except Exception:
            self._died()

    def launch(self) -> None:
        """Start the probe now (the gate has counted it in)."""
        env = self._env
        self._holding = True
        try:
            env.store.record_lag(env.clock() - self._planned)
            if self._starter is None or not self._start_fast(self._starter):
                self._task = asyncio.create_task(self._run_async(), name=f"check {format_check_id(self.key)}")
                env.tasks.add(self._task)
                self._task.add_done_callback(env.tasks.discard)
        except Exception:
            self._died()

    def _start_fast(self, starter: Starter) -> bool:
        """Begin a fast run; False if this run needs the coroutine after all."""
        check, env = self.check, self._env
        self._ctx = ProbeContext(asyncio.get_running_loop().time() + check.timeout, self._log, env.resources)
        self._started_wall, self._started = env.wall(), time.perf_counter()
        self._probing = True
        try:
            started = starter(check, self._ctx, self._fast_done)
        except Exception as exc:  # what the coroutine would have raised at once
            self._fast_done(exc)
            return True
        if started is None:
            self._probing = False
            return False
        if self._probing:  # still running (done() may already have come, from inside start)
            self._fast = started
            self._entry = env.deadlines.at(env.clock() + check.timeout, self._fast_timeout)
        return True

    def _fast_done(self, outcome: ProbeOutcome | Exception) -> None:
        try:
            self._probing, self._fast = False, None
            if self._entry is not None:
                self._entry.cancel()  # the deadline
                self._entry = None
            duration = time.perf_counter() - self._started
            if isinstance(outcome, Exception):
                assert self._ctx is not None
                self._finish(failed_result(outcome, self._started_wall, duration, self.check, self._ctx))
            else:
                self._finish(ok_result(outcome, self._started_wall, duration))
        except Exception:
            self._died()

    def _fast_timeout(self) -> None:
        self._entry = None
        try:
            fast, self._fast, self._probing = self._fast, None, False
            measured = fast.cancel() if fast is not None else ProbeOutcome()
            duration = time.perf_counter() - self._started
            if isinstance(measured, Exception):  # the probe's own verdict at its deadline
                assert self._ctx is not None
                self._finish(failed_result(measured, self._started_wall, duration, self.check, self._ctx))
            else:
                self._finish(timeout_result(self._started_wall, duration, self.check, measured))
        except Exception:
            self._died()

    async def _run_async(self) -> None:
        try:
            result = await run_probe(
                self._probe, self.check, self._env.resources, key=self.key, log=self._log
            )
            self._task = None
            self._finish(result)
        except Exception:
            self._task = None
            self._died()

    def _finish(self, result: ProbeResult) -> None:
        """Record a result and plan the next start."""
        env = self._env
        self._release()
        if self.stopped:  # a probe that swallowed its cancellation: its check is gone
            return
        transition = env.store.record(self.key, result)
        if transition is not None:
            env.on_transition(transition)
        wanted = current_interval(self.check, env.store.check(self.key))
        if wanted == self._interval:
            self._planned, skipped = next_slot(self._planned, self._interval, env.clock())
            env.store.daemon.skipped_runs += skipped
        else:  # onto the other interval's grid, no sooner than the shorter interval allows
            earliest = self._planned + min(self._interval, wanted)
            self._planned = grid_slot(self.key, wanted, earliest, env.clock(), env.wall())
            self._interval = wanted
        self._entry = env.deadlines.at(self._planned, self._due)

    def _release(self) -> None:
        """Give up what the current run holds: its heap entry, its fast probe, its place in the cap
        (and its context: kept between runs it would cost every check one)."""
        self._ctx = None
        if self._entry is not None:
            self._entry.cancel()
            self._entry = None
        fast, self._fast, self._probing = self._fast, None, False
        if fast is not None:
            fast.cancel()
        if self._holding:
            self._holding = False
            self._env.gate.leave()

    def _died(self) -> None:
        """A bug in the steps above (called from their `except`): log, count, start again later."""
        self._release()
        if self.stopped:
            return
        env = self._env
        if env.clock() - self._since >= RESTART_BACKOFF_MAX:
            self._backoff = RESTART_BACKOFF
        log.error(
            "the task of check %s died; it starts again in %s",
            format_check_id(self.key),
            format_duration(self._backoff),
            exc_info=True,
        )
        try:
            env.store.record_task_restart(self.key)
        finally:
            self._entry = env.deadlines.at(env.clock() + self._backoff, self.begin)
            self._backoff = min(self._backoff * 2, RESTART_BACKOFF_MAX)
