"""Child processes of the benchmark: started in one place, always stopped.

Every process the bench starts is registered here; `stop_all` runs from a
`finally` (and from SIGTERM/SIGINT via run.py), so a failed or interrupted
run leaves nothing behind. Each child gets its own session, so stopping it
also reaches anything it started itself.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import FrameType


class Interrupted(Exception):
    """A signal, or the run's own alarm, ended the run: the `finally` that stops every child runs."""


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


def interrupt_on_signals(alarm_after: float) -> None:
    """SIGTERM, SIGINT and an alarm `alarm_after` seconds from now raise Interrupted: whatever
    hangs or stops the run, its `finally` stops the children (none outlives the bench)."""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM):
        signal.signal(sig, _interrupt)
    signal.alarm(max(1, int(alarm_after)))


class Processes:
    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        stdout_pipe: bool = False,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        if name in self.running:
            raise RuntimeError(f"{name} is already running")
        log = open(self.logdir / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
        try:
            proc = subprocess.Popen(
                list(argv),
                stdout=subprocess.PIPE if stdout_pipe else log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )
        finally:
            log.close()  # the child holds its own copy
        self.running[name] = proc
        return proc

    def stop(self, name: str, grace: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL after `grace` seconds; returns the exit status."""
        proc = self.running.pop(name, None)
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        # the process group may outlive its leader (a child it started): reap it too
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        if proc.stdout is not None:
            proc.stdout.close()
        return proc.returncode

    def stop_all(self) -> None:
        for name in list(self.running):
            self.stop(name, grace=3.0)

    def log_tail(self, name: str, lines: int = 5) -> str:
        path = self.logdir / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Poll `url` until it answers 200; fail early if `proc` exits meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process {proc.pid} exited with status {proc.returncode} while starting")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer 200 within {timeout:.0f}s")


def wait_line(proc: subprocess.Popen[bytes], expected: bytes, timeout: float) -> None:
    """Wait for a child to print `expected` on stdout (its readiness signal)."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    os.set_blocking(proc.stdout.fileno(), False)
    buffer = b""
    while time.monotonic() < deadline:
        chunk = proc.stdout.read()
        if chunk:
            buffer += chunk
            if expected in buffer:
                return
        elif proc.poll() is not None:
            raise RuntimeError(f"process {proc.pid} exited with status {proc.returncode} while starting")
        time.sleep(0.05)
    raise TimeoutError(f"process {proc.pid} did not print {expected!r} within {timeout:.0f}s")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
