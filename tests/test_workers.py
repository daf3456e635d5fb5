"""The daemon probing in worker processes: real `healthd run` processes, real sockets on loopback.

The checks aim at a listener this test drains on 127.0.0.1 (half of them) and
at a closed port there (the other half, answered by RST). Which worker owns a
check is seen from outside: SIGSTOP one worker and exactly its checks go stale.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from healthd import cluster
from healthd.workers import HUNG_AFTER

from tests.deploy.live import http_get, wait_for
from tests.test_cli import HEALTHD

KEYS = [f"svc{i % 5}/check-{i}" for i in range(30)]


@pytest.fixture
def targets() -> Iterator[tuple[str, str]]:
    """(a listener's address, a closed port's address) on 127.0.0.1."""
    listener, closed = socket.socket(), socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(256)
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connects get RST
    listener.settimeout(0.2)
    done = threading.Event()

    def drain() -> None:
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.close()

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}", f"127.0.0.1:{closed.getsockname()[1]}"
    finally:
        done.set()
        thread.join(timeout=2)
        listener.close()
        closed.close()


def write_config(path: Path, workers: int | str, targets: tuple[str, str]) -> Path:
    services: dict[str, list[dict[str, Any]]] = {}
    for n, key in enumerate(KEYS):
        service, check = key.split("/")
        services.setdefault(service, []).append({"name": check, "type": "tcp", "target": targets[n % 2]})
    config = {
        "scheduler": {"workers": workers},
        "defaults": {"interval": "1s", "timeout": "500ms", "history": 10},
        "services": [{"name": name, "checks": checks} for name, checks in services.items()],
    }
    path.write_text(yaml.safe_dump(config))
    return path


@dataclass
class Running:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def children(self) -> dict[int, int]:
        """Worker index -> pid of this daemon's live workers (its children, or the zygote's),
        by their process name `healthd-wINDEX`; any other descendant is -1."""
        found = {}
        for pid in descendants(self.process.pid):
            name = process_name(pid)
            if name != "healthd-zygote":
                found[int(name.removeprefix("healthd-w")) if name.startswith("healthd-w") else -1] = pid
        return found

    def zygote(self) -> int | None:
        return next((p for p in child_pids(self.process.pid) if process_name(p) == "healthd-zygote"), None)

    def checks(self) -> dict[str, dict[str, Any]]:
        status, body = http_get(self.url + "/api/v1/services", timeout=5)
        assert status == 200, body[:200]
        listing = json.loads(body)["services"]
        return {f"{s['name']}/{c['name']}": c for s in listing for c in s["checks"]}

    def metric(self, name: str) -> float:
        status, body = http_get(self.url + "/metrics", timeout=5)
        assert status == 200
        lines = [line for line in body.decode().splitlines() if line.startswith(name)]
        return sum(float(line.rsplit(" ", 1)[1]) for line in lines if re.match(rf"{name}[{{ ]", line))

    def all_probed(self) -> bool:
        checks = self.checks()
        return len(checks) == len(KEYS) and all(c["last"] is not None for c in checks.values())

    def stale(self) -> set[str]:
        return {key for key, check in self.checks().items() if check["stale"]}


def child_pids(parent: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent:  # field 4: the parent's pid
                pids.append(int(entry.name))
    return pids


def descendants(pid: int) -> list[int]:
    children = child_pids(pid)
    return [*children, *(grandchild for child in children for grandchild in descendants(child))]


def process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""  # exited meanwhile


def smaps_rollup(pid: int) -> dict[str, int]:
    """The process's memory totals, in bytes."""
    rows = (line.split() for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:])
    return {row[0].rstrip(":"): int(row[1]) * 1024 for row in rows}


def listening_sockets(pid: int) -> set[str]:
    """The socket inodes of `pid` that are in LISTEN state (TCP, v4 or v6)."""
    listening = set()
    for table in ("tcp", "tcp6"):
        for row in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = row.split()
            if fields[3] == "0A":  # TCP_LISTEN
                listening.add(fields[9])
    held = {os.readlink(fd).removeprefix("socket:[").rstrip("]") for fd in Path(f"/proc/{pid}/fd").iterdir()}
    return listening & held


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@contextmanager
def daemon(config: Path, workdir: Path) -> Iterator[Running]:
    log = workdir / "healthd.log"
    argv = [*HEALTHD, "run", "-c", str(config), "--listen", "127.0.0.1:0", "--log-format", "json"]
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = wait_for("the daemon to listen", lambda: _listening(log), 30, log)
        running = Running(process, url, log)
        wait_for("readiness", lambda: http_get(url + "/readyz")[0] == 200, 30, log)
        yield running
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def _listening(log: Path) -> str | None:
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{") and (listen := json.loads(line).get("listen")):
            return f"http://{listen}"
    return None


def owned_by(index: int, count: int) -> set[str]:
    return {key for key in KEYS if cluster.shard_of(key, count) == index}


def stale_while_stopped(running: Running, index: int, until: Callable[[set[str]], bool]) -> set[str]:
    """SIGSTOP worker `index` until the stale checks satisfy `until`; the stale set then."""
    pid = running.children()[index]
    os.kill(pid, signal.SIGSTOP)
    try:
        return set(
            wait_for(f"worker {index}'s checks to go stale", lambda: until(s := running.stale()) and s, 20)
        )
    finally:
        with contextlib.suppress(ProcessLookupError):  # stopped past HUNG_AFTER: main killed it
            os.kill(pid, signal.SIGCONT)


def test_two_workers_share_the_checks_and_main_sums_their_counters(tmp_path: Path, targets: Any) -> None:
    with daemon(write_config(tmp_path / "c.yaml", 2, targets), tmp_path) as running:
        assert sorted(running.children()) == [0, 1]
        wait_for("every check's first result", running.all_probed, 30, running.log)
        assert running.metric("healthd_workers") == 2
        probes = running.metric("healthd_probes_total")
        started = running.metric("healthd_scheduler_lag_seconds_count")
        assert probes >= len(KEYS)
        assert 0 <= started - probes <= len(KEYS)  # lag counts at the start, results at the end
        checks = running.checks()
        assert {checks[k]["last"]["ok"] for k in KEYS[0::2]} == {True}  # the listener
        assert {checks[k]["last"]["error"]["kind"] for k in KEYS[1::2]} == {"refused"}
        assert not running.stale() and running.metric("healthd_checks_stale") == 0
        assert listening_sockets(running.process.pid)  # the API: the helper sees a listener
        assert not any(listening_sockets(pid) for pid in running.children().values())

        # the stale flag names exactly worker 1's checks, and clears once it runs again
        mine = owned_by(1, 2)
        assert stale_while_stopped(running, 1, lambda s: s == mine) == mine
        wait_for("the stale flags to clear", lambda: not running.stale(), 20, running.log)

        workers = [*running.children().values(), running.zygote()]
        running.process.send_signal(signal.SIGTERM)
        assert running.process.wait(timeout=10) == 0
    wait_for("the workers and the zygote to be gone", lambda: not any(alive(pid) for pid in workers), 15)


def test_workers_are_forked_from_a_zygote_and_share_its_pages(tmp_path: Path, targets: Any) -> None:
    with daemon(write_config(tmp_path / "c.yaml", 2, targets), tmp_path) as running:
        zygote = running.zygote()
        assert zygote is not None
        assert sorted(child_pids(zygote)) == sorted(running.children().values())
        for pid in running.children().values():
            # an exec'd interpreter shares no written page with anyone: here the imported modules'
            shared = smaps_rollup(pid)["Shared_Dirty"]
            assert shared > 5 * 2**20, f"worker {pid} shares {shared} bytes of written pages"


def test_a_dead_zygote_takes_its_workers_and_they_come_back_execd(tmp_path: Path, targets: Any) -> None:
    with daemon(write_config(tmp_path / "c.yaml", 2, targets), tmp_path) as running:
        wait_for("every check's first result", running.all_probed, 30, running.log)
        zygote, before = running.zygote(), running.children()
        assert zygote is not None
        os.kill(zygote, signal.SIGKILL)
        wait_for(
            "two exec'd workers",
            lambda: (
                set(running.children()) == {0, 1}
                and not set(running.children().values()) & {*before.values()}
            ),
            20,
            running.log,
        )
        assert running.zygote() is None  # reaped
        for pid in running.children().values():
            assert b"healthd.worker" in Path(f"/proc/{pid}/cmdline").read_bytes()
        assert running.metric("healthd_worker_restarts_total") == 2
        since = {key: check["last"]["time"] for key, check in running.checks().items()}

        def resumed() -> bool:
            return all(check["last"]["time"] > since[key] for key, check in running.checks().items())

        wait_for("every check to resume", resumed, 20, running.log)
        assert "the worker zygote has exited" in running.log.read_text()
        workers = list(running.children().values())
        running.process.send_signal(signal.SIGTERM)
        assert running.process.wait(timeout=10) == 0
    wait_for("the workers to be gone", lambda: not any(alive(pid) for pid in workers), 15)


@pytest.mark.parametrize(
    ("sent", "logged"),
    [
        (signal.SIGKILL, "worker 0 exited (killed by signal 9)"),
        # stopped, not dead: main hears nothing for HUNG_AFTER, kills it and starts another
        (signal.SIGSTOP, f"worker 0 sent nothing for {HUNG_AFTER:.0f}s: hung: killed"),
    ],
    ids=["killed", "hung"],
)
def test_a_dead_or_hung_worker_is_restarted_counted_and_its_checks_resume(
    tmp_path: Path, targets: Any, sent: signal.Signals, logged: str
) -> None:
    with daemon(write_config(tmp_path / "c.yaml", 2, targets), tmp_path) as running:
        wait_for("every check's first result", running.all_probed, 30, running.log)
        before = running.children()
        counts = {key: check["last"]["time"] for key, check in running.checks().items()}
        os.kill(before[0], sent)
        wait_for(
            "a new worker 0",
            lambda: running.children().get(0) not in (None, before[0]),
            HUNG_AFTER + 20,
            running.log,
        )
        assert running.children()[1] == before[1]
        assert running.metric("healthd_worker_restarts_total") == 1
        mine = owned_by(0, 2)

        def resumed() -> bool:
            checks = running.checks()
            return all(checks[key]["last"]["time"] > counts[key] for key in mine)

        wait_for("worker 0's checks to resume", resumed, 20, running.log)
        checks = running.checks()
        assert {checks[k]["status"] for k in KEYS[0::2]} == {"up"}  # state kept in main's store
        assert logged in running.log.read_text()
        assert "worker 0 exited (killed by signal 9)" in running.log.read_text()


def test_a_worker_applying_a_reload_is_not_taken_for_hung(tmp_path: Path, targets: Any) -> None:
    """Silence after a reload was sent is the worker applying it (a big config takes a while),
    not a hang: stopped past HUNG_AFTER with the reload pending, it is left alone."""
    config = write_config(tmp_path / "c.yaml", 2, targets)
    with daemon(config, tmp_path) as running:
        wait_for("every check's first result", running.all_probed, 30, running.log)
        pid = running.children()[0]
        os.kill(pid, signal.SIGSTOP)
        try:
            config.write_text(config.read_text().replace("history: 10", "history: 11"))
            running.process.send_signal(signal.SIGHUP)
            wait_for("the reload", lambda: "config reloaded" in running.log.read_text(), 20, running.log)
            time.sleep(HUNG_AFTER + 2)  # past the limit: what is asserted is that nothing happened
        finally:
            os.kill(pid, signal.SIGCONT)
        wait_for("worker 0's checks to be fresh again", lambda: not running.stale(), 20, running.log)
        assert running.children()[0] == pid
        assert running.metric("healthd_worker_restarts_total") == 0
        assert "hung" not in running.log.read_text()


def test_a_reload_that_changes_workers_moves_the_checks(tmp_path: Path, targets: Any) -> None:
    config = write_config(tmp_path / "c.yaml", 2, targets)
    with daemon(config, tmp_path) as running:
        wait_for("every check's first result", running.all_probed, 30, running.log)
        total = running.metric("healthd_probes_total")
        since = {key: check["since"] for key, check in running.checks().items()}
        write_config(config, 3, targets)
        running.process.send_signal(signal.SIGHUP)
        wait_for("three workers", lambda: sorted(running.children()) == [0, 1, 2], 20, running.log)
        mine = owned_by(2, 3)
        assert stale_while_stopped(running, 2, lambda s: s == mine) == mine
        assert running.metric("healthd_probes_total") > total
        moved = {key for key in KEYS if cluster.shard_of(key, 2) != cluster.shard_of(key, 3)}
        assert moved and moved != set(KEYS)
        # state kept in the main store across the move: no check started over
        assert {key: check["since"] for key, check in running.checks().items()} == since

        third = running.children()[2]
        write_config(config, 2, targets)
        running.process.send_signal(signal.SIGHUP)
        wait_for("worker 2 to leave", lambda: not alive(third), 20, running.log)
        assert sorted(running.children()) == [0, 1]
        mine = owned_by(1, 2)
        assert stale_while_stopped(running, 1, lambda s: s == mine) == mine
        assert running.metric("healthd_worker_restarts_total") == 0


def test_one_worker_probes_in_the_main_process(tmp_path: Path, targets: Any) -> None:
    with daemon(write_config(tmp_path / "c.yaml", 1, targets), tmp_path) as running:
        wait_for("every check's first result", running.all_probed, 30, running.log)
        assert running.children() == {}
        assert running.zygote() is None  # closed at start-up: nothing to fork
        assert running.metric("healthd_workers") == 0


def test_workers_die_with_a_killed_daemon(tmp_path: Path, targets: Any) -> None:
    with daemon(write_config(tmp_path / "c.yaml", 2, targets), tmp_path) as running:
        workers = list(running.children().values())
        assert len(workers) == 2
        running.process.kill()
        running.process.wait(timeout=10)
    wait_for("the orphaned workers to die", lambda: not any(alive(pid) for pid in workers), 15)
