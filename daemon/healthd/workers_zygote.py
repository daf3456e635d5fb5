"""Worker processes forked from a zygote, so the interpreter and libraries are in memory once.

An exec'd worker imports the whole package again (~33 MB of private memory each:
aiohttp, pydantic, the probes). `healthd run` instead forks a zygote first thing,
once every module is imported and before any config, thread or event loop
exists; the zygote forks each worker on request. Their pages stay shared
copy-on-write with the main process until written (`gc.freeze()` first, so the
collector's bookkeeping does not write them), and the worker then runs exactly
what `python -m healthd.worker` runs (healthd.worker.main).

Main and zygote talk over a SOCK_SEQPACKET socket pair, one JSON message per
packet: `spawn` (with the worker's two pipe ends passed as descriptors) answered
by `started` or `failed`; `kill`; and `exited` with the status once the zygote
has reaped a worker. The zygote kills only a worker it has not yet reaped, so a
reused pid is never signalled. It dies with the main process (PR_SET_PDEATHSIG)
and ends when the socket closes; its workers die with it. Where the zygote is
gone the pool falls back to exec (healthd.workers.spawn).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import signal
import socket
import threading
import time
from typing import Any

from healthd.zygote import MAX_MESSAGE, zygote_main

log = logging.getLogger(__name__)


class Zygote:
    """The main process's end: start workers through the zygote, learn how they end."""

    def __init__(self, pid: int, sock: socket.socket) -> None:
        self.pid = pid
        self._sock = sock
        self._next_id = 0
        self._starting: dict[int, asyncio.Future[int]] = {}
        self._exits: dict[int, asyncio.Future[int]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self.alive = True

    @classmethod
    def fork(cls) -> Zygote | None:
        """Fork the zygote (None where that is not safe: threads exist, or no fork here)."""
        if not hasattr(os, "fork") or threading.active_count() > 1:
            return None
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        gc.collect()
        gc.freeze()  # the collector must not write into the pages main and the zygote share
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            ours.close()
            zygote_main(theirs, parent)  # never returns
        theirs.close()
        return cls(pid, ours)

    async def spawn(self, argv: list[str]) -> ForkedWorker:
        """A worker running `healthd.worker.main(argv)` (the zygote adds --parent), with pipes."""
        loop = self._attach()
        if not self.alive:
            raise OSError("the worker zygote has exited")
        stdin_r, stdin_w = os.pipe()
        stdout_r, stdout_w = os.pipe()
        request, self._next_id = self._next_id, self._next_id + 1
        started = self._starting[request] = loop.create_future()
        try:
            message = json.dumps({"op": "spawn", "id": request, "argv": argv}).encode()
            socket.send_fds(self._sock, [message], [stdin_r, stdout_w])
        except OSError:
            self._starting.pop(request, None)
            for fd in (stdin_w, stdout_r):
                os.close(fd)
            raise
        finally:
            os.close(stdin_r)
            os.close(stdout_w)
        try:
            pid = await started
        except BaseException:
            os.close(stdin_w)
            os.close(stdout_r)
            raise
        return await ForkedWorker.connect(self, pid, stdin_w, stdout_r)

    def kill(self, pid: int) -> None:
        with contextlib.suppress(OSError):  # a zygote that is gone took its workers with it
            self._sock.send(json.dumps({"op": "kill", "pid": pid}).encode())

    def exit_of(self, pid: int) -> asyncio.Future[int]:
        future = self._exits.get(pid)
        if future is None:
            future = self._exits[pid] = self._attach().create_future()
            if not self.alive:
                future.set_result(-signal.SIGKILL)
        return future

    def close(self, grace: float = 2.0) -> None:
        """Close the socket (the zygote's signal to end) and reap it; killed after `grace`."""
        if self._sock.fileno() == -1:
            return  # closed already
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
        self._gone()
        deadline = time.monotonic() + grace
        while not self._reap():
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
                return
            time.sleep(0.01)

    def _reap(self) -> bool:
        """Whether the zygote has exited (and is reaped now, if it was not yet)."""
        try:
            return os.waitpid(self.pid, os.WNOHANG) != (0, 0)
        except ChildProcessError:  # reaped already
            return True

    def _reap_soon(self, tries: int = 50) -> None:
        """Reap the zygote once its socket has closed: it is a zombie a moment later."""
        if not self._reap() and tries > 0 and self._loop is not None:
            self._loop.call_later(0.1, self._reap_soon, tries - 1)

    def _attach(self) -> asyncio.AbstractEventLoop:
        """Read the zygote's messages on the running loop (it did not exist at the fork)."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._sock.setblocking(False)
            self._loop.add_reader(self._sock.fileno(), self._readable)
        return self._loop

    def _readable(self) -> None:
        while True:
            try:
                packet = self._sock.recv(MAX_MESSAGE)
            except BlockingIOError:
                return
            except OSError:
                packet = b""
            if not packet:
                log.error("the worker zygote has exited: workers are exec'd from now on")
                assert self._loop is not None
                self._loop.remove_reader(self._sock.fileno())
                self._gone()
                self._reap_soon()
                return
            self._take(json.loads(packet))

    def _take(self, message: dict[str, Any]) -> None:
        op = message["op"]
        if op == "exited":
            future = self.exit_of(message["pid"])
            if not future.done():
                future.set_result(message["code"])
            return
        started = self._starting.pop(message["id"], None)
        if started is None or started.done():
            return
        if op == "started":
            started.set_result(message["pid"])
        else:
            started.set_exception(OSError(message["error"]))

    def _gone(self) -> None:
        """The zygote ended: its workers died with it (PR_SET_PDEATHSIG)."""
        self.alive = False
        for started in self._starting.values():
            if not started.done():
                started.set_exception(OSError("the worker zygote has exited"))
        self._starting.clear()
        for future in self._exits.values():
            if not future.done():
                future.set_result(-signal.SIGKILL)


class ForkedWorker:
    """A worker forked by the zygote, with what the pool uses of asyncio's Process."""

    def __init__(
        self, zygote: Zygote, pid: int, stdin: asyncio.StreamWriter, stdout: asyncio.StreamReader
    ) -> None:
        self.pid = pid
        self.stdin = stdin
        self.stdout = stdout
        self._zygote = zygote
        self._exit = zygote.exit_of(pid)

    @classmethod
    async def connect(cls, zygote: Zygote, pid: int, stdin_fd: int, stdout_fd: int) -> ForkedWorker:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=2**20, loop=loop)
        read_end = os.fdopen(stdout_fd, "rb", 0)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), read_end)
        transport, protocol = await loop.connect_write_pipe(
            lambda: asyncio.StreamReaderProtocol(asyncio.StreamReader()), os.fdopen(stdin_fd, "wb", 0)
        )
        return cls(zygote, pid, asyncio.StreamWriter(transport, protocol, None, loop), reader)

    @property
    def returncode(self) -> int | None:
        return self._exit.result() if self._exit.done() else None

    def kill(self) -> None:
        if not self._exit.done():
            self._zygote.kill(self.pid)

    async def wait(self) -> int:
        code = await asyncio.shield(self._exit)
        self.stdin.close()
        return code
