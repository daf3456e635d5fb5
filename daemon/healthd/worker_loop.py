"""A probing worker's event loop: the Scheduler over its share, results streamed to main.

Run by `healthd.worker` (the process entry point) in a child of the main
process (healthd.workers). It runs the ordinary Scheduler on its own event
loop with its own ProbeResources; what the scheduler records goes to the main
process in batches, which owns the store, API, metrics and events.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from healthd.config import CheckKey, Config, diff_configs, format_check_id
from healthd.histogram import LAG_BUCKETS, Histogram
from healthd.infos import service_infos
from healthd.probes import PROBES, SPECS, ProbeResources
from healthd.results import ErrorKind, ProbeResult
from healthd.scheduler import Scheduler
from healthd.store import CheckInfo, CheckState, ServiceInfo, Status, Store, Transition
from healthd.workers_wire import HEADER, Batch, Seed, read_control, result_row

FLUSH_EVERY = 0.025  # seconds: results leave in batches (each write wakes main: ~25% of its CPU at 5 ms)
EMPTY: Mapping[str, Any] = MappingProxyType({})  # read-only: no state, only a shared empty value
HEARTBEAT = 1.0  # seconds: a batch leaves at least this often, empty if need be (workers.HUNG_AFTER)


class DebounceState(CheckState):
    """A worker's check: its status and streaks, which its next interval depends on. The result
    itself, history, uptime (~9 KB a check) and counters live in the main process; `changes`
    counts the results that reached the debounce here (0: not yet probed, `seed` may resume).
    `history` is left unset: the lean infos all keep 1, so `Store.apply` never resizes it."""

    __slots__ = ()

    def __init__(self, info: CheckInfo, with_histogram: bool, created: float | None = None) -> None:
        del with_histogram
        self.info = info
        self.last_seen = created
        self.status = Status.UNKNOWN
        self.since: float | None = None
        self.streak_ok = self.streak_fail = self.changes = 0
        self.last = None  # never kept: ~0.5 KB a check that only main reads

    def apply(self, result: ProbeResult) -> Transition | None:
        self.last_seen = result.time if self.last_seen is None else max(self.last_seen, result.time)
        if result.error_kind is ErrorKind.LOCAL:  # says nothing of the target, as in CheckState
            return None
        self.changes += 1
        return self._debounce(result)


class StreamingStore(Store):
    """The worker's store: keeps only what the scheduler reads (the debounce state behind
    state-dependent intervals) and queues every record for the main process."""

    def __init__(self, send: asyncio.WriteTransport) -> None:
        super().__init__(probe_histograms=False, state_type=DebounceState)
        self._send = send
        self._batch = Batch()
        self._lag = Histogram(LAG_BUCKETS)
        self._flush: asyncio.TimerHandle | None = None

    def record(self, key: CheckKey, result: ProbeResult) -> Transition | None:
        self._batch.results.append(result_row(key, result))
        self._soon()
        return super().record(key, result)

    def record_lag(self, seconds: float) -> None:
        self._lag.observe(max(seconds, 0.0))

    def record_task_restart(self, key: CheckKey) -> None:
        self._batch.task_restarts.append((key.service, key.check))
        self._soon()

    def _soon(self) -> None:
        if self._flush is None:
            self._flush = asyncio.get_running_loop().call_later(FLUSH_EVERY, self.flush)

    async def heartbeat(self) -> None:
        """Send a batch every HEARTBEAT at least: main takes a long silence for a hung worker."""
        while True:
            await asyncio.sleep(HEARTBEAT)
            if self._flush is None:  # else a batch is about to leave anyway
                self.flush()

    def flush(self) -> None:
        self._flush = None
        batch, self._batch = self._batch, Batch()
        batch.lag_counts, batch.lag_sum = self._lag.counts, self._lag.sum
        self._lag = Histogram(LAG_BUCKETS)
        batch.skipped, self.daemon.skipped_runs = self.daemon.skipped_runs, 0
        if not self._send.is_closing():
            self._send.write(batch.encode())


def lean_infos(config: Config) -> list[ServiceInfo]:
    """The worker keeps one result per check: its history lives in the main process."""
    return [
        ServiceInfo(svc.name, svc.labels, tuple(_lean(info) for info in svc.checks))
        for svc in service_infos(config)
    ]


def _lean(info: CheckInfo) -> CheckInfo:
    # one empty mapping for every check's settings and labels (unread here): 128 B a check less
    return CheckInfo(info.service, info.name, info.type, info.target, info.rise, info.fall, 1, EMPTY, EMPTY)


def seed(store: Store, seeds: dict[str, Seed]) -> None:
    for state in store.all_states():
        found = seeds.get(format_check_id(state.info.key))
        if found is not None and state.changes == 0:  # not yet probed here: take main's state
            status, streak_ok, streak_fail = found
            state.resume(Status(status), streak_ok, streak_fail)


class _Sent(asyncio.Protocol):
    """The results pipe's protocol: says when the pipe has closed (everything written)."""

    def __init__(self) -> None:
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


async def read_frame(reader: asyncio.StreamReader) -> bytes | None:
    try:
        size = HEADER.unpack(await reader.readexactly(HEADER.size))[0]
        return await reader.readexactly(size)
    except asyncio.IncompleteReadError:  # the parent closed stdin: stop
        return None


async def work(results_fd: int) -> None:
    """Probe until stdin closes; then stop the probes and send what is left."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    send, sent = await loop.connect_write_pipe(_Sent, os.fdopen(results_fd, "wb", buffering=0))
    first = await read_frame(reader)
    if first is None:
        return
    config, seeds = read_control(first)
    del first  # the frame (~120 B a check) must not stay alive for as long as this coroutine
    store = StreamingStore(send)
    store.apply(lean_infos(config))
    seed(store, seeds)
    del seeds
    async with ProbeResources() as resources:
        await resources.prepare(SPECS, (check for svc in config.services for check in svc.checks))
        scheduler = Scheduler(store, PROBES, resources=resources, on_transition=lambda t: None)
        scheduler.start(config)
        store.flush()  # the first batch, empty: tells main this worker probes
        beating = asyncio.create_task(store.heartbeat())
        gc.freeze()  # as the main process does: keep the long-lived config out of full collections
        while (payload := await read_frame(reader)) is not None:
            new, seeds = read_control(payload)
            diff = diff_configs(config, new)
            store.apply(lean_infos(new), restart=diff.reset)
            seed(store, seeds)
            scheduler.apply(new, diff)
            config = new
            del payload, seeds, new, diff  # not kept while the next frame is awaited
        beating.cancel()
        await scheduler.stop()
    store.flush()
    send.close()  # after what is buffered is written
    await sent.closed
