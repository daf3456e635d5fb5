"""A client generated from the served OpenAPI document (openapi-python-client) calls every
operation of a live daemon and parses every answer, /readyz's 503 while starting included.

The generated package lives in the test's temp dir and runs in a child interpreter with it
on PYTHONPATH, so nothing is installed into the project's environment. The client raises
on any status the document does not list, and on any body its models cannot parse.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from healthd.api import STORE
from healthd.api_server import start_api
from healthd.app import create_app
from healthd.config import load_config

from tests.conftest import TcpServer
from tests.fuzz.live_api import live_api
from tests.test_api import config_text

BIN = Path(sys.executable).parent
PACKAGE = "healthd_client"

# Runs in the child: calls each operation module's sync_detailed with the parameters it takes.
CALL_EVERY_OPERATION = """
import importlib, inspect, json, pkgutil, sys
import healthd_client.api as api
from healthd_client import AuthenticatedClient

base_url, token, *only = sys.argv[1:]
client = AuthenticatedClient(base_url=base_url, token=token, raise_on_unexpected_status=True)
values = {"service": "web", "check": "tcp", "limit": 5, "name": "page.css"}
answers = {}
for module in pkgutil.walk_packages(api.__path__, api.__name__ + "."):
    name = module.name.rsplit(".", 1)[1]
    if module.ispkg or (only and name not in only):
        continue
    call = importlib.import_module(module.name).sync_detailed
    kwargs = {k: v for k, v in values.items() if k in inspect.signature(call).parameters}
    response = call(client=client, **kwargs)
    answers[name] = {"status": int(response.status_code), "parsed": type(response.parsed).__name__}
print(json.dumps(answers))
"""


def generate_client(doc: bytes, workdir: Path) -> Path:
    (workdir / "openapi.json").write_bytes(doc)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}  # it runs ruff from PATH
    # the generator reads only JSON, text/* and octet-stream; an SVG badge is text to a client
    (workdir / "generator.yaml").write_text("content_type_overrides:\n  image/svg+xml: text/plain\n")
    command = [str(BIN / "openapi-python-client"), "generate", "--path", "openapi.json"]
    command += ["--config", "generator.yaml"]
    done = subprocess.run(
        [*command, "--output-path", PACKAGE, "--meta", "none"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0 and (workdir / PACKAGE / "api").is_dir(), done.stdout + done.stderr
    assert "Warning" not in done.stdout, done.stdout  # every part of the document was understood
    return workdir


def call_operations(workdir: Path, base_url: str, token: str, *only: str) -> dict[str, dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-c", CALL_EVERY_OPERATION, base_url, token, *only],
        env={**os.environ, "PYTHONPATH": str(workdir)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    answers: dict[str, dict[str, Any]] = json.loads(done.stdout)
    return answers


def expected_models(doc: dict[str, Any]) -> dict[str, str]:
    """operationId -> the model name its 200 answer parses into (JSON operations only)."""
    expected = {}
    for ops in doc["paths"].values():
        for op in ops.values():
            media = op["responses"]["200"].get("content", {}).get("application/json", {})
            if "$ref" in media.get("schema", {}):
                expected[op["operationId"]] = media["schema"]["$ref"].rsplit("/", 1)[1]
    return expected


def test_generated_client_calls_every_operation(tmp_path: Path) -> None:
    if shutil.which("openapi-python-client", path=str(BIN)) is None:
        raise AssertionError("openapi-python-client is a test dependency; reinstall .[test]")
    with live_api(tmp_path, token=True, protect_reads=True) as daemon:
        with urllib.request.urlopen(daemon.url + "/api/v1/openapi.json", timeout=5) as response:
            raw = response.read()
        workdir = generate_client(raw, tmp_path)
        assert daemon.token is not None
        answers = call_operations(workdir, daemon.url, daemon.token)
    doc = json.loads(raw)
    operation_ids = {op["operationId"] for ops in doc["paths"].values() for op in ops.values()}
    assert set(answers) == operation_ids
    # the generated login sends no form, so no token: the form again with 401; logout redirects
    expected = dict.fromkeys(operation_ids, 200) | {"login": 401, "logout": 303}
    assert {name: a["status"] for name, a in answers.items()} == expected
    for operation_id, model in expected_models(doc).items():
        assert answers[operation_id]["parsed"] == model, operation_id


async def test_generated_client_reads_readyz_while_starting(
    tmp_path: Path, tcp_server: TcpServer, closed_port: int
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(config_text(tcp_server.target, f"127.0.0.1:{closed_port}"))
    app: web.Application = create_app(load_config(path), path)
    server = await start_api(app, "127.0.0.1", 0)
    try:
        app[STORE].daemon.ready = False  # as before the scheduler starts
        base_url = f"http://127.0.0.1:{server.port}"
        raw = await _get(base_url + "/api/v1/openapi.json")
        workdir = generate_client(raw, tmp_path)
        # in a thread: the server under test runs on this event loop
        child = await asyncio.to_thread(
            call_operations, workdir, base_url, "no-token", "readyz", "readyz_head"
        )
    finally:
        await server.close()
    assert child == {
        "readyz": {"status": 503, "parsed": "StartingResponse"},
        "readyz_head": {"status": 503, "parsed": "NoneType"},
    }


async def _get(url: str) -> bytes:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return await response.read()
