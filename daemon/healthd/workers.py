"""Probing in worker processes: the main process's side (the worker is healthd.worker).

With `scheduler.workers` N > 1 the main process probes nothing: N processes
(`python -m healthd.worker`) each own the checks that `cluster.shard_of` gives
them (the instance sharding's hashmod, applied to this instance's checks), and
stream their results here, where the store runs the state machine and the API,
metrics, events, page and state file read it. A subprocess rather than a
multiprocessing child: plain pipes read by the event loop (no feeder threads).
`healthd run` forks the workers from a zygote (healthd.workers_zygote) made
before any config or loop existed, so they share the imported modules' pages;
without one a worker is a fresh interpreter (`python -m healthd.worker`).

Same interface as the Scheduler (`start`, `apply`, `stop`). A worker that dies
is logged, counted (`restarts`) and started again after a backoff with its
checks' state seeded from the store; while it is down its checks go stale. A
worker that sends nothing for HUNG_AFTER once it probes (it sends a batch every
second at least) is hung, not slow: it is killed and restarted the same way.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Protocol

from healthd import loops
from healthd.config import CheckKey, Config, ConfigDiff, format_check_id
from healthd.logs import JsonFormatter
from healthd.metrics import event_loop_name
from healthd.store import Status, Store, Transition
from healthd.workers_wire import HEADER, MAX_FRAME, Batch, Seed, control, from_row, worker_share
from healthd.workers_zygote import Zygote

log = logging.getLogger(__name__)

RESTART_BACKOFF, RESTART_BACKOFF_MAX = 1.0, 30.0  # seconds; a worker up for a minute starts over
STEADY_AFTER = 60.0
HUNG_AFTER = 10.0  # seconds without a batch from a probing worker (worker_loop.HEARTBEAT is 1 s)


class WorkerProcess(Protocol):
    """What a slot uses of a worker: asyncio's Process, or a ForkedWorker of the zygote."""

    @property
    def stdin(self) -> asyncio.StreamWriter | None: ...

    @property
    def stdout(self) -> asyncio.StreamReader | None: ...

    @property
    def returncode(self) -> int | None: ...

    def kill(self) -> None: ...

    async def wait(self) -> int: ...


class WorkerPool:
    def __init__(
        self,
        store: Store,
        count: int,
        on_transition: Callable[[Transition], None],
        zygote: Zygote | None = None,
    ) -> None:
        self._store = store
        self.zygote = zygote  # None: every worker is exec'd
        self._count = count
        self._on_transition = on_transition
        self._config: Config | None = None
        self._slots: dict[int, _Slot] = {}
        self._leaving: list[_Slot] = []  # stopped by a reload that lowered the count
        self.restarts = 0  # healthd_worker_restarts_total

    @property
    def count(self) -> int:
        return self._count

    def start(self, config: Config) -> None:
        self._config = config
        for index in range(self._count):
            self._start_slot(index)

    async def started(self, timeout: float = 30.0) -> None:
        """Wait (bounded) until every worker has started probing: readiness means probing."""
        waits = [asyncio.create_task(slot.started.wait()) for slot in self._slots.values()]
        _, pending = await asyncio.wait(waits, timeout=timeout)
        for wait in pending:
            wait.cancel()
        if pending:
            log.warning("%d workers had not started probing after %.0fs", len(pending), timeout)

    def apply(self, config: Config, diff: ConfigDiff, count: int | None = None) -> None:
        """Send every worker its new share; start or stop workers when `count` changes.
        (The diff is recomputed per worker: a check that moves is new where it lands.)"""
        del diff
        self._config = config
        count = self._count if count is None else count
        for index in [i for i in self._slots if i >= count]:
            leaving = self._slots.pop(index)
            leaving.stop()
            self._leaving.append(leaving)
        self._count = count
        for index in range(count):
            slot = self._slots.get(index)
            if slot is None:
                self._start_slot(index)
            else:
                slot.send(self.control_for(index))

    async def stop(self, grace: float = 1.0) -> None:
        """Close the workers' stdin; each stops its probes (within `grace`) and exits, or is killed."""
        slots = [*self._slots.values(), *self._leaving]
        self._slots.clear()
        self._leaving.clear()
        for slot in slots:
            slot.stop()
        await asyncio.gather(*(slot.wait(grace + 1.0) for slot in slots))

    def _start_slot(self, index: int) -> None:
        slot = _Slot(index, self)
        self._slots[index] = slot
        slot.task = asyncio.create_task(slot.supervise(), name=f"worker {index}")

    def control_for(self, index: int) -> bytes:
        assert self._config is not None
        share = worker_share(self._config, index, self._count)
        return control(share, self._seeds(share))

    def _seeds(self, share: Config) -> dict[str, Seed]:
        seeds = {}
        for svc in share.services:
            for check in svc.checks:
                state = self._store.check(CheckKey(svc.name, check.name))
                if state is not None and state.status is not Status.UNKNOWN:
                    seeds[format_check_id(state.info.key)] = (
                        state.status.value,
                        state.streak_ok,
                        state.streak_fail,
                    )
        return seeds

    def take(self, batch: Batch) -> None:
        """Apply a worker's batch to the store, as the in-process scheduler would have."""
        store = self._store
        for row in batch.results:
            key, result = from_row(row)
            transition = store.record(key, result)
            if transition is not None:
                self._on_transition(transition)
        for slot, count in enumerate(batch.lag_counts):
            store.lag.counts[slot] += count
        store.lag.sum += batch.lag_sum
        store.daemon.skipped_runs += batch.skipped
        for service, check in batch.task_restarts:
            store.record_task_restart(CheckKey(service, check))


class _Slot:
    """One worker's place: its process now, and the loop that restarts it."""

    def __init__(self, index: int, pool: WorkerPool) -> None:
        self.index = index
        self.pool = pool
        self.process: WorkerProcess | None = None
        self.task: asyncio.Task[None] | None = None
        self.stopping = False
        self.started = asyncio.Event()  # its first batch came (the worker sends one at once)
        self.applying = False  # a config was sent and no batch came since: it may take a while

    def send(self, frame: bytes) -> None:
        process = self.process
        if process is not None and process.stdin is not None and not process.stdin.is_closing():
            process.stdin.write(frame)
            self.applying = True

    def stop(self) -> None:
        self.stopping = True
        if self.process is not None and self.process.stdin is not None:
            self.process.stdin.close()  # the worker's signal to stop
        elif self.task is not None:
            self.task.cancel()  # waiting out a backoff

    async def wait(self, grace: float) -> None:
        if self.task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self.task), grace)
        except TimeoutError:
            log.warning("worker %d did not stop within %.1fs: killed", self.index, grace)
            if self.process is not None and self.process.returncode is None:
                self.process.kill()
            self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)

    def _silence_limit(self) -> float | None:
        """How long this worker may send nothing: HUNG_AFTER while it probes; for ever while it
        starts or applies a reload (a big config takes its loop a while; batches follow)."""
        return HUNG_AFTER if self.started.is_set() and not self.applying else None

    def _take(self, batch: Batch) -> None:
        self.applying = False
        self.started.set()
        self.pool.take(batch)

    async def supervise(self) -> None:
        backoff = RESTART_BACKOFF
        while not self.stopping:
            started = time.monotonic()
            status = await self._run_once()
            if self.stopping:
                return
            if time.monotonic() - started >= STEADY_AFTER:
                backoff = RESTART_BACKOFF
            self.pool.restarts += 1
            log.error("worker %d exited (%s); it starts again in %.0fs", self.index, status, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, RESTART_BACKOFF_MAX)

    async def _run_once(self) -> str:
        """Start the worker, feed the store from it until it ends; how it ended."""
        try:
            self.process = await spawn(self.index, self.pool.zygote)
        except OSError as exc:  # no fork possible now (no memory, no pids): try again later
            return f"could not start: {exc.strerror or exc}"
        process = self.process
        try:
            self.send(self.pool.control_for(self.index))
            if self.stopping:  # stop() came while the process was starting
                self.stop()
            assert process.stdout is not None
            trouble = await pump(process.stdout, self._take, self._silence_limit)
            if trouble is not None:  # it is still running: it must not go on probing unheard
                log.error("worker %d %s: killed", self.index, trouble)
                process.kill()
        finally:
            try:
                code = await process.wait()
            except asyncio.CancelledError:
                process.kill()
                raise
            self.process = None
        return f"exit status {code}" if code >= 0 else f"killed by signal {-code}"


async def pump(
    stream: asyncio.StreamReader, take: Callable[[Batch], None], silence: Callable[[], float | None]
) -> str | None:
    """Read batches until the worker closes its end (None), or until main stops reading:
    what went wrong then. A worker that sends nothing for `silence()` seconds is hung
    (None: wait for ever, as while it starts or applies a reload)."""
    while True:
        limit = silence()
        try:
            async with asyncio.timeout(limit):  # a cancelled readexactly consumes nothing
                head = await stream.readexactly(HEADER.size)
        except asyncio.IncompleteReadError:
            return None
        except TimeoutError:
            if silence() is None:  # a reload was sent meanwhile: wait for its first batch
                continue
            return f"sent nothing for {limit:.0f}s: hung"
        try:
            size = HEADER.unpack(head)[0]
            if size > MAX_FRAME:
                return f"sent a frame of {size} bytes"
            payload = await stream.readexactly(size)
        except asyncio.IncompleteReadError:
            return None
        take(Batch.decode(payload))


def worker_args(index: int) -> list[str]:
    """healthd.worker's arguments but --parent: this process's loop and logging."""
    root = logging.getLogger()
    json_logs = any(isinstance(handler.formatter, JsonFormatter) for handler in root.handlers)
    return [
        f"--index={index}",
        f"--loop={event_loop_name() if event_loop_name() in loops.CHOICES else loops.DEFAULT}",
        f"--log-level={logging.getLevelName(root.getEffectiveLevel()).lower()}",
        f"--log-format={'json' if json_logs else 'text'}",
    ]


async def spawn(index: int, zygote: Zygote | None = None) -> WorkerProcess:
    """Worker `index`: forked by the zygote while it lives, else a fresh interpreter."""
    if zygote is not None and zygote.alive:
        return await zygote.spawn(worker_args(index))
    return await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "healthd.worker", f"--parent={os.getpid()}", *worker_args(index)],
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        limit=2**20,
    )
