"""The C epoll connect loop as a reference: built by the bench, run over the same targets.

`bench/connect_loop.c` is compiled with the machine's C compiler (`cc`; Debian
`gcc`) into the run's scratch directory. It runs in three modes with the close
behaviour of the probes it is a floor for: `full` (FIN, the tcp probe's default),
`rst` (SO_LINGER 0, `close: reset`) and `syn` (SYN-only, the syn probe).

Paced (1,000 connects/s) it gives machine CPU per connect at steady state: the
loop runs `warm` seconds at the rate before the first window opens, then each
window reads its counts (SIGUSR1 makes the loop print them) and `/proc/stat` at
both edges. Unpaced (100 in flight) it gives the floor rate.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.procs import Processes
from bench.procstat import CpuWindow
from bench.targets import SUBNET, TCP_PORT_BASE

SOURCE = Path(__file__).resolve().parent / "connect_loop.c"
MODES = ("full", "rst", "syn")
INFLIGHT = 100


@dataclass(frozen=True)
class LoopWindow:
    mode: str
    paced: bool
    warm: float  # seconds at the rate before this window's run began measuring
    seconds: float
    connects: float  # completed in the window (ok + failed + timed out)
    failures: float
    machine_us: float  # machine CPU per connect
    own_us: float  # the loop's own user + system per connect
    machine_share: float

    @property
    def rate(self) -> float:
        return self.connects / self.seconds if self.seconds > 0 else 0.0


def build(workdir: Path) -> tuple[Path | None, str]:
    """The compiled loop, or None and why not (no compiler, a compile error)."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None, "no C compiler (apt-get install -y gcc): C epoll reference not measured"
    binary = workdir / "connect_loop"
    done = subprocess.run(
        [compiler, "-O2", "-Wall", "-o", str(binary), str(SOURCE)],
        capture_output=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        return None, f"{compiler} failed: {done.stderr.decode(errors='replace')[-300:]}"
    return binary, f"built with {compiler}"


def _layout() -> list[str]:
    """Where bench/targets.py listens: the loop's PORT_BASE and SUBNET arguments."""
    return [str(TCP_PORT_BASE), str(SUBNET)]


def _counts(line: bytes) -> dict[str, Any]:
    facts: dict[str, Any] = json.loads(line)
    return facts


def _read_line(proc: subprocess.Popen[bytes], timeout: float) -> bytes:
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buffer = b""
    deadline = time.monotonic() + timeout
    while b"\n" not in buffer:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise TimeoutError("the connect loop printed no counts")
        chunk = os.read(fd, 4096)
        if not chunk:
            raise RuntimeError(f"the connect loop exited with status {proc.poll()}")
        buffer += chunk
    return buffer.split(b"\n", 1)[0]


def _measure(
    proc: subprocess.Popen[bytes], mode: str, paced: bool, warm: float, seconds: float, targets_pid: int
) -> LoopWindow:
    """One window of `seconds`: the loop's counters and the CPU of it and the targets."""
    first = _snapshot(proc)
    cpu = CpuWindow({"loop": proc.pid, "targets": targets_pid})
    cpu.begin()
    time.sleep(seconds)
    cpu.finish()
    return _window(mode, paced, warm, first, _snapshot(proc), cpu)


def _snapshot(proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    proc.send_signal(signal.SIGUSR1)
    return _counts(_read_line(proc, timeout=5.0))


def paced(
    procs: Processes,
    binary: Path,
    mode: str,
    *,
    targets: int,
    targets_pid: int,
    rate: int,
    warm: float,
    seconds: float,
    repeats: int,
) -> list[LoopWindow]:
    """`repeats` windows of `seconds` after `warm` seconds at `rate` connects/s."""
    total = warm + repeats * (seconds + 0.5) + 2.0
    name = f"connect-loop-{mode}"
    argv = [str(binary), mode, str(rate), f"{total:.1f}", str(INFLIGHT), str(targets), *_layout()]
    proc = procs.start(name, argv, stdout_pipe=True)
    try:
        time.sleep(warm)
        return [_measure(proc, mode, True, warm, seconds, targets_pid) for _ in range(repeats)]
    finally:
        procs.stop(name)


def unpaced(
    procs: Processes, binary: Path, mode: str, *, targets: int, targets_pid: int, seconds: float
) -> LoopWindow:
    """As fast as 100 connects in flight go: the floor rate of this machine for `mode`."""
    name = f"connect-loop-{mode}-unpaced"
    argv = [str(binary), mode, "0", f"{seconds + 1.5:.1f}", str(INFLIGHT), str(targets), *_layout()]
    proc = procs.start(name, argv, stdout_pipe=True)
    try:
        time.sleep(1.0)  # past start-up and the first burst
        return _measure(proc, mode, False, 1.0, seconds, targets_pid)
    finally:
        procs.stop(name)


def _window(
    mode: str, is_paced: bool, warm: float, first: dict[str, Any], last: dict[str, Any], cpu: CpuWindow
) -> LoopWindow:
    def done(c: dict[str, Any]) -> float:
        return float(c["ok"] + c["failed"] + c["timed_out"])

    connects = done(last) - done(first)
    seconds = float(last["seconds"] - first["seconds"])
    # the counts' window and the CPU window differ by a signal round trip: scale to the CPU one
    in_cpu_window = max(connects * cpu.seconds / seconds if seconds > 0 else connects, 1.0)
    failures = float(last["failed"] + last["timed_out"] - first["failed"] - first["timed_out"])
    return LoopWindow(
        mode=mode,
        paced=is_paced,
        warm=warm,
        seconds=seconds,
        connects=connects,
        failures=failures,
        machine_us=cpu.machine_cpu * 1e6 / in_cpu_window,
        own_us=(last["cpu"] - first["cpu"]) * 1e6 / max(connects, 1.0),
        machine_share=cpu.machine_share,
    )
