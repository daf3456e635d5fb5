"""A probing worker process: `python -m healthd.worker`, started by the main one (healthd.workers).

stdin carries the config (secrets only ever travel there, never in argv or the
environment); the results go out on what was stdout, which is then pointed at
stderr so a stray print cannot corrupt the stream. The worker opens no
listening socket. It dies with its parent (PR_SET_PDEATHSIG, set before the
heavy imports so a parent killed during start-up leaves nothing behind) and
ends when stdin closes: SIGINT and SIGTERM are the main process's to act on.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal

PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15


def die_with_parent(parent: int) -> None:
    """SIGKILL this process when the parent dies, so a killed daemon never leaves probers behind."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def name_process(name: str) -> None:
    """Name the process (ps -o comm, top, /proc/PID/comm: 15 bytes at most): a forked worker's
    command line is still main's."""
    _prctl(PR_SET_NAME, ctypes.c_char_p(name.encode()[:15]))


def _prctl(option: int, arg: object) -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(option, arg, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: stdin's end still stops the worker
        pass


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m healthd.worker")
    parser.add_argument("--parent", type=int, required=True)
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--loop", default="asyncio")
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--log-format", default="text")
    args = parser.parse_args(argv)
    die_with_parent(args.parent)
    name_process(f"healthd-w{args.index}")
    # Ctrl-C and systemd's stop reach the whole group: the main process decides, and closes stdin
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # imported only now: seconds of imports on a loaded machine must come after prctl
    from healthd import loops
    from healthd.logs import setup_logging
    from healthd.worker_loop import work

    results_fd = os.dup(1)
    os.dup2(2, 1)  # print() must never write into the results stream
    setup_logging(args.log_level, args.log_format)
    loops.run(work(results_fd), loops.resolve(args.loop))


if __name__ == "__main__":
    main()
