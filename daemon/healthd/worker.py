"""A probing worker: `python -m healthd.worker`, started by the main process (healthd.workers).

It runs the ordinary Scheduler over its share of the checks on its own event
loop with its own ProbeResources, and streams what the scheduler records to
the main process, which owns the store, API, metrics and events. stdin carries
the config (secrets only ever travel there, never argv or the environment);
the results go out on what was stdout, which is then pointed at stderr so a
stray print cannot corrupt the stream. The worker opens no listening socket.

It dies with its parent (PR_SET_PDEATHSIG) and ends when stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import logging
import os
import signal
import sys

from healthd import loops
from healthd.app import service_infos
from healthd.config import CheckKey, Config, diff_configs, format_check_id
from healthd.histogram import LAG_BUCKETS, Histogram
from healthd.logs import setup_logging
from healthd.probes import PROBES, SPECS, ProbeResources
from healthd.results import ProbeResult
from healthd.scheduler import Scheduler
from healthd.store import CheckInfo, ServiceInfo, Status, Store, Transition
from healthd.workers_wire import HEADER, Batch, Seed, read_control, result_row

log = logging.getLogger(__name__)

FLUSH_EVERY = 0.005  # seconds: results leave in batches, never one by one
PR_SET_PDEATHSIG = 1


class StreamingStore(Store):
    """The worker's store: keeps only what the scheduler reads (the debounce state behind
    state-dependent intervals) and queues every record for the main process."""

    def __init__(self, send: asyncio.WriteTransport) -> None:
        super().__init__(probe_histograms=False)
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
    return CheckInfo(info.service, info.name, info.type, info.target, info.rise, info.fall, 1)


def seed(store: Store, seeds: dict[str, Seed]) -> None:
    for state in store.all_states():
        found = seeds.get(format_check_id(state.info.key))
        if found is not None and state.last is None:  # not yet probed here: take main's state
            status, streak_ok, streak_fail = found
            state.resume(Status(status), streak_ok, streak_fail)


async def read_frame(reader: asyncio.StreamReader) -> bytes | None:
    try:
        size = HEADER.unpack(await reader.readexactly(HEADER.size))[0]
        return await reader.readexactly(size)
    except asyncio.IncompleteReadError:  # the parent closed stdin: stop
        return None


async def work(results_fd: int) -> None:
    """Probe until stdin closes or SIGTERM; then stop the probes and send what is left."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    send, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(results_fd, "wb", buffering=0))
    first = await read_frame(reader)
    if first is None:
        return
    config, seeds = read_control(first)
    store = StreamingStore(send)
    store.apply(lean_infos(config))
    seed(store, seeds)
    async with ProbeResources() as resources:
        await resources.prepare(SPECS, (check for svc in config.services for check in svc.checks))
        scheduler = Scheduler(store, PROBES, resources=resources, on_transition=lambda t: None)
        scheduler.start(config)
        gc.freeze()  # as the main process does: keep the long-lived config out of full collections
        stopping = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stopping.set)
        while (payload := await _next(reader, stopping)) is not None:
            new, seeds = read_control(payload)
            diff = diff_configs(config, new)
            store.apply(lean_infos(new), restart=diff.reset)
            seed(store, seeds)
            scheduler.apply(new, diff)
            config = new
        await scheduler.stop()
    store.flush()
    send.close()


async def _next(reader: asyncio.StreamReader, stopping: asyncio.Event) -> bytes | None:
    """The next control frame, or None at the end of stdin or on SIGTERM."""
    reading = asyncio.ensure_future(read_frame(reader))
    stopped = asyncio.ensure_future(stopping.wait())
    await asyncio.wait([reading, stopped], return_when=asyncio.FIRST_COMPLETED)
    for waiting in (reading, stopped):
        waiting.cancel()
    return reading.result() if reading.done() and not reading.cancelled() else None


def die_with_parent(parent: int) -> None:
    """SIGKILL this process when the parent dies, so a killed daemon never leaves probers behind."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: stdin's end still stops the worker
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m healthd.worker")
    parser.add_argument("--parent", type=int, required=True)
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--loop", default=loops.DEFAULT, choices=loops.CHOICES)
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--log-format", default="text")
    args = parser.parse_args(argv)
    die_with_parent(args.parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: main decides
    results_fd = os.dup(1)
    os.dup2(2, 1)  # print() must never write into the results stream
    setup_logging(args.log_level, args.log_format)
    loops.run(work(results_fd), loops.resolve(args.loop))


if __name__ == "__main__":
    main()
