"""The worker zygote's own process (see healthd.workers_zygote for why it exists).

Forked from `healthd run` before any config, thread or loop exists, it serves
one request at a time: fork a worker onto the two pipe ends main sent
(`spawn`), SIGKILL a worker not yet reaped (`kill`), and report every reaped
worker's exit status (`exited`). It ignores SIGINT and SIGTERM (main decides
when to stop), dies with main (PR_SET_PDEATHSIG) and exits when main closes the
socket; its workers die with it.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import select
import signal
import socket
import sys
import traceback
from typing import Any

MAX_MESSAGE = 4096  # bytes: one JSON request or report per SOCK_SEQPACKET packet


def zygote_main(sock: socket.socket, parent: int) -> None:
    """The zygote: fork workers on request, report how they end; exit when main closes `sock`."""
    code = 0
    try:
        from healthd import worker, worker_loop  # noqa: F401  imported once, here, for every worker
        from healthd.worker import die_with_parent, name_process

        for sig in (signal.SIGINT, signal.SIGTERM):  # the main process decides when to stop
            signal.signal(sig, signal.SIG_IGN)
        die_with_parent(parent)
        name_process("healthd-zygote")
        _close_inherited(keep=sock.fileno())
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)  # never the terminal's or systemd's stdin
        os.close(null)
        gc.freeze()
        _serve(sock)
    except BaseException:  # whatever it was, the zygote must not return into main's code
        traceback.print_exc()
        code = 1
    finally:
        os._exit(code)


def _close_inherited(keep: int) -> None:
    """Close what main inherited (its workers must not hold the caller's pipes open)."""
    for name in os.listdir("/proc/self/fd") if os.path.isdir("/proc/self/fd") else ():
        fd = int(name)
        if fd > 2 and fd != keep:
            with contextlib.suppress(OSError):  # the listing's own descriptor, closed by now
                os.close(fd)


def _serve(sock: socket.socket) -> None:
    """One request at a time; a SIGCHLD wakes the select through the wakeup pipe."""
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    children: set[int] = set()
    while True:
        readable, _, _ = select.select([sock.fileno(), wake_r], [], [])
        if wake_r in readable:
            with contextlib.suppress(BlockingIOError):
                os.read(wake_r, 4096)
        _reap(sock, children)
        if sock.fileno() not in readable:
            continue
        packet, fds, _, _ = socket.recv_fds(sock, MAX_MESSAGE, 2)
        if not packet:
            return  # main closed its end: its workers were stopped (or die with us)
        message = json.loads(packet)
        if message["op"] == "kill":
            if message["pid"] in children:  # not yet reaped: the pid is still that worker's
                os.kill(message["pid"], signal.SIGKILL)
            continue
        reply = _fork_worker(message["argv"], fds, (sock, wake_r, wake_w))
        if "pid" in reply:
            children.add(reply["pid"])
        sock.send(json.dumps({**reply, "id": message["id"]}).encode())


def _reap(sock: socket.socket, children: set[int]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        children.discard(pid)
        code = os.waitstatus_to_exitcode(status)
        with contextlib.suppress(OSError):
            sock.send(json.dumps({"op": "exited", "pid": pid, "code": code}).encode())


def _fork_worker(argv: list[str], fds: list[int], own: tuple[socket.socket, int, int]) -> dict[str, Any]:
    """Fork one worker onto the pipe ends `fds` (its stdin, its stdout)."""
    try:
        if len(fds) != 2:
            return {"op": "failed", "error": "a spawn request without its two pipe ends"}
        zygote = os.getpid()  # before the fork: the child checks that it still has this parent
        pid = os.fork()
        if pid == 0:
            _worker_child([f"--parent={zygote}", *argv], fds, own)
        return {"op": "started", "pid": pid}
    except OSError as exc:  # no memory or no pids now: the pool tries again after a backoff
        return {"op": "failed", "error": f"fork: {exc.strerror or exc}"}
    finally:
        for fd in fds:
            os.close(fd)


def _worker_child(argv: list[str], fds: list[int], own: tuple[socket.socket, int, int]) -> None:
    code = 0
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        sock, wake_r, wake_w = own
        sock.close()
        os.close(wake_r)
        os.close(wake_w)
        os.dup2(fds[0], 0)
        os.dup2(fds[1], 1)
        for fd in fds:
            os.close(fd)
        from healthd.worker import main

        main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # reported, then the worker's exit status says it failed
        traceback.print_exc()
        code = 1
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        os._exit(code)
