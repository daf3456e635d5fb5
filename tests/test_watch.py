"""`watch: true`: editor-style replaces, ConfigMap symlink swaps and discovery files reload the daemon."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from healthd.app import create_app
from healthd.config import load
from healthd.watch import Debounce, fingerprint


def config_text(*names: str, watch: bool = True) -> str:
    checks = "".join(
        f"      - {{type: tcp, name: {n}, target: '127.0.0.1:9', interval: 1h}}\n" for n in names
    )
    return f"watch: {str(watch).lower()}\nservices:\n  - name: web\n    checks:\n{checks}"


def replace(path: Path, text: str) -> None:
    """What editors do: write a temporary file beside it, then rename it over the old one."""
    tmp = path.parent / f".{path.name}.swp"
    tmp.write_text(text)
    os.replace(tmp, path)


async def checks_of(client: TestClient) -> list[str]:
    body = await (await client.get("/api/v1/services/web")).json()
    return [check["name"] for check in body.get("checks", [])]


async def until(predicate: Callable[[], Any], seconds: float = 6.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("timed out")


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Path], Any]]:
    clients: list[TestClient] = []

    async def start(path: Path) -> TestClient:
        loaded = load(path)
        client = TestClient(TestServer(create_app(loaded.config, path, watched=loaded.watched)))
        await client.start_server()
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()


def test_debounce_waits_for_quiet() -> None:
    a, b, c = ((("f", (1, 1, 1, n)),) for n in range(3))
    debounce = Debounce(a, quiet=1.0)
    assert not debounce.settled(a, 0.0)
    assert not debounce.settled(b, 1.0)  # changed
    assert not debounce.settled(c, 1.5)  # changed again: the clock restarts
    assert not debounce.settled(c, 2.4)
    assert debounce.settled(c, 2.5)
    assert not debounce.settled(c, 9.0)  # once per change


def test_fingerprint_sees_a_rename_over_the_file(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("a")
    before = fingerprint([tmp_path])
    replace(path, "a")  # same content, same size: a new inode all the same
    assert fingerprint([tmp_path]) != before


async def test_an_editor_style_replace_reloads(tmp_path: Path, serve: Callable[[Path], Any]) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(config_text("a"))
    client = await serve(path)
    replace(path, config_text("a", "b"))
    await until(lambda: _has(client, ["a", "b"]))


async def test_a_configmap_symlink_swap_reloads(tmp_path: Path, serve: Callable[[Path], Any]) -> None:
    """The kubelet's layout: NAME -> ..data/NAME, ..data -> ..TIMESTAMP/; an update swaps ..data."""
    mount = tmp_path / "config"
    mount.mkdir()
    (mount / "..2026_12_01_00_00_00.1").mkdir()
    (mount / "..2026_12_01_00_00_00.1/healthd.yaml").write_text(config_text("a"))
    (mount / "..data").symlink_to("..2026_12_01_00_00_00.1")
    (mount / "healthd.yaml").symlink_to("..data/healthd.yaml")
    client = await serve(mount)
    assert await checks_of(client) == ["a"]
    (mount / "..2026_12_01_00_01_00.2").mkdir()
    (mount / "..2026_12_01_00_01_00.2/healthd.yaml").write_text(config_text("a", "c"))
    (mount / "..data_tmp").symlink_to("..2026_12_01_00_01_00.2")
    os.replace(mount / "..data_tmp", mount / "..data")
    await until(lambda: _has(client, ["a", "c"]))


async def test_a_bad_change_keeps_the_old_config(tmp_path: Path, serve: Callable[[Path], Any]) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(config_text("a"))
    client = await serve(path)
    replace(path, config_text("a").replace("127.0.0.1:9", "nowhere"))

    async def failed() -> bool:
        return "healthd_config_last_reload_successful 0.0" in await (await client.get("/metrics")).text()

    await until(failed)
    assert await checks_of(client) == ["a"]
    replace(path, config_text("a", "d"))  # fixed: the next change applies
    await until(lambda: _has(client, ["a", "d"]))


async def test_a_discovery_file_change_reloads(tmp_path: Path, serve: Callable[[Path], Any]) -> None:
    path = tmp_path / "config.yaml"
    targets = tmp_path / "targets.yaml"
    targets.write_text("- targets: ['127.0.0.2:9']\n")
    path.write_text(
        "watch: true\nservices:\n  - name: web\n    targets_from: {file: targets.yaml}\n"
        "    checks:\n      - {type: tcp, interval: 1h}\n"
    )
    client = await serve(path)
    replace(targets, "- targets: ['127.0.0.2:9', '127.0.0.3:9']\n")
    await until(lambda: _has(client, ["127.0.0.2_9", "127.0.0.3_9"]))


async def test_without_watch_nothing_reloads(tmp_path: Path, serve: Callable[[Path], Any]) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(config_text("a", watch=False))
    client = await serve(path)
    replace(path, config_text("a", "b", watch=False))
    with pytest.raises(AssertionError, match="timed out"):
        await until(lambda: _has(client, ["a", "b"]), seconds=2.0)  # the debounce is 1 s


async def _has(client: TestClient, names: list[str]) -> bool:
    return await checks_of(client) == names
