"""The bench's C epoll connect loop does what its modes promise, on real loopback sockets.

The loop is the floor the tcp and syn probes' cost is a ratio of, so its modes must
match the probes' close behaviour: `full` and `rst` complete the handshake (the
listener accepts each), `syn` never does (no accept, SYN-only).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from bench import cloop

CONNECTS = 40


def _accepts_while(proc: subprocess.Popen[bytes], listener: socket.socket, limit: float) -> int:
    accepted = 0
    deadline = time.monotonic() + limit
    while proc.poll() is None and time.monotonic() < deadline:
        accepted += _accept_waiting(listener)
        time.sleep(0.005)
    return accepted + _accept_waiting(listener)


def _accept_waiting(listener: socket.socket) -> int:
    """Accept and close every connection waiting now; how many there were."""
    accepted = 0
    try:
        while True:
            conn, _ = listener.accept()
            conn.close()
            accepted += 1
    except BlockingIOError:
        return accepted


@pytest.fixture(scope="module")
def binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("needs a C compiler (apt-get install -y gcc)")
    built, note = cloop.build(tmp_path_factory.mktemp("cloop"))
    assert built is not None, note
    return built


@pytest.mark.parametrize(("mode", "completes"), [("full", True), ("rst", True), ("syn", False)])
def test_modes_complete_the_handshake_or_not(binary: Path, mode: str, completes: bool) -> None:
    with socket.socket() as listener:
        listener.bind(("127.70.0.1", 0))  # target 0 of the loop's layout is 127.70.0.1
        listener.listen(1024)
        listener.setblocking(False)
        port = listener.getsockname()[1]
        # 200 connects/s for 0.2 s: 40 connects, each to the one listener
        argv = [str(binary), mode, "200", "0.2", "10", "1", str(port)]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE)
        accepted = _accepts_while(proc, listener, limit=10.0)
        out, _ = proc.communicate(timeout=10)
    totals = json.loads(out.splitlines()[-1])
    assert totals["at"] == "end"
    assert totals["ok"] == totals["started"]
    assert CONNECTS // 2 <= totals["started"] <= CONNECTS + 2  # paced: at most the rate times the length
    assert totals["failed"] == totals["timed_out"] == 0
    assert accepted == (totals["ok"] if completes else 0)


def test_a_closed_port_counts_as_failed(binary: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.70.0.1", 0))
        port = holder.getsockname()[1]  # bound, not listening: the kernel answers RST
        done = subprocess.run(
            [str(binary), "full", "100", "0.1", "10", "1", str(port)],
            capture_output=True,
            timeout=10,
            check=True,
        )
    totals = json.loads(done.stdout.splitlines()[-1])
    assert totals["ok"] == 0
    assert totals["failed"] == totals["started"] > 0


def test_bad_arguments_are_refused(binary: Path) -> None:
    done = subprocess.run([str(binary), "full", "100", "9999", "10", "1"], capture_output=True, timeout=10)
    assert done.returncode == 2
    assert b"out of range" in done.stderr
