"""Event loop choice: uvloop by default where installed, the standard loop on request; said at start."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from healthd import loops
from healthd.metrics import event_loop_name

from tests.test_cli import HEALTHD, free_port, get, get_status, write_config


def test_auto_takes_uvloop_where_it_imports() -> None:
    assert loops.resolve("auto") == ("uvloop" if loops.uvloop_available() else "asyncio")
    assert loops.resolve("asyncio") == "asyncio"


def test_an_unknown_loop_is_refused() -> None:
    with pytest.raises(ValueError, match="one of auto, asyncio, uvloop"):
        loops.resolve("trio")


@pytest.mark.parametrize("name", ["asyncio", "uvloop"])
def test_run_uses_the_named_loop(name: str) -> None:
    if name == "uvloop" and not loops.uvloop_available():
        pytest.skip("uvloop is not installed")

    async def which() -> str:
        return event_loop_name()

    assert loops.run(which(), name) == name


def test_the_suite_runs_on_the_loop_it_was_asked_for() -> None:
    """CI runs part of the suite a second time with HEALTHD_TEST_LOOP=uvloop (see tests/conftest.py)."""

    async def which() -> str:
        return event_loop_name()

    policy_loop = asyncio.new_event_loop()
    try:
        assert policy_loop.run_until_complete(which()) == os.environ.get("HEALTHD_TEST_LOOP", "asyncio")
    finally:
        policy_loop.close()


@pytest.mark.parametrize("choice", [None, "asyncio", "uvloop"], ids=["default", "asyncio", "uvloop"])
def test_the_daemon_logs_and_exports_its_loop(tmp_path: Path, choice: str | None) -> None:
    """Without --loop (nor HEALTHD_LOOP) the daemon runs on uvloop where it is installed."""
    if choice == "uvloop" and not loops.uvloop_available():
        pytest.skip("uvloop is not installed")
    port = free_port()
    config = write_config(tmp_path / "c.yaml", port, "127.0.0.1:1")
    argv = [*HEALTHD, "run", "-c", str(config), "--log-format", "json"]
    if choice is not None:
        argv += ["--loop", choice]
    env = {name: value for name, value in os.environ.items() if name != "HEALTHD_LOOP"}
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, env=env)
    try:
        for _ in range(300):  # bounded: 30 s (start-up is slow on a saturated machine)
            if get_status(port) == 200 or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert get_status(port) == 200, "the daemon did not become ready"
        metrics = get(f"http://127.0.0.1:{port}/metrics")[1].decode()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        stderr = proc.communicate(timeout=5)[1]
    start = next(json.loads(line) for line in stderr.splitlines() if '"start"' in line)
    expected = choice or ("uvloop" if loops.uvloop_available() else "asyncio")
    assert start["event_loop"] == expected and f"on the {expected} event loop" in start["message"]
    assert f'event_loop="{expected}"' in metrics


def test_loop_flag_takes_only_known_loops(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml", free_port(), "127.0.0.1:1")
    argv = [*HEALTHD, "run", "-c", str(config), "--loop", "trio"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "--loop" in done.stderr
