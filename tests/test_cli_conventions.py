"""Command-line conventions: curl-like HTTP flags, quiet one-shots, a closed pipe, the help text,
`healthcheck`, and the completions and man page generated from the parser. Real processes, real sockets."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp import web

from tests.test_cli import HEALTHD, free_port, healthd, write_config

REPO = Path(__file__).resolve().parents[1]


async def healthd_async(*args: str) -> tuple[int, str, str]:
    """The CLI in a subprocess while this loop keeps serving the test's listeners."""
    proc = await asyncio.create_subprocess_exec(
        *HEALTHD, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


class Recorder:
    """An aiohttp app on 127.0.0.1 that records each request's method, headers and body."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append(
            {"method": request.method, "headers": dict(request.headers), "body": await request.text()}
        )
        return web.json_response({"status": "UP"})


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[Recorder, int, int]]:
    """(recorder, http port, https port); the https certificate is for 127.0.0.1 from a CA nobody trusts."""
    rec = Recorder()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", rec.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("127.0.0.1").configure_cert(context)
    plain, secure = (
        web.TCPSite(runner, "127.0.0.1", 0),
        web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context),
    )
    await plain.start()
    await secure.start()
    ports = [s._server.sockets[0].getsockname()[1] for s in (plain, secure)]  # type: ignore[union-attr]
    try:
        yield rec, ports[0], ports[1]
    finally:
        await runner.cleanup()


async def test_probe_http_takes_curl_flags(recorder: tuple[Recorder, int, int]) -> None:
    rec, port, _ = recorder
    url = f"http://127.0.0.1:{port}/orders"
    code, out, err = await healthd_async(
        "probe", "http", url, "-X", "PUT", "-H", "X-Test: one", "-H", "Content-Type: application/json",
        "--data", '{"id": 7}', "--json",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["ok"] is True
    (request,) = rec.seen
    assert request["method"] == "PUT" and request["body"] == '{"id": 7}'
    assert request["headers"]["X-Test"] == "one" and request["headers"]["Content-Type"] == "application/json"
    code, _, err = await healthd_async("probe", "http", url, "--data", "x=1")
    assert code == 0 and rec.seen[-1]["method"] == "POST"  # --data without -X posts, as curl does


async def test_insecure_skips_certificate_verification(recorder: tuple[Recorder, int, int]) -> None:
    _, _, secure = recorder
    url = f"https://127.0.0.1:{secure}/"
    code, out, _ = await healthd_async("probe", "http", url)
    assert code == 1 and "FAIL tls" in out
    code, out, err = await healthd_async("probe", "http", url, "-k")
    assert code == 0, out + err
    code, _, err = await healthd_async("probe", "http", url, "-H", "no colon")
    assert code == 2 and "-H 'no colon'" in err


def test_http_flags_on_other_types_are_usage_errors() -> None:
    result = healthd("probe", "tcp", "127.0.0.1:1", "-k")
    assert result.returncode == 2 and "verify: does not apply" in result.stderr


def test_one_shot_is_quiet_unless_verbose(closed_port: int) -> None:
    quiet = healthd("probe", "syn", f"127.0.0.1:{closed_port}")
    assert quiet.returncode == 1 and "FAIL refused" in quiet.stdout
    assert quiet.stderr == ""  # the SYN self-test's INFO line only with -v
    loud = healthd("probe", "syn", f"127.0.0.1:{closed_port}", "-v")
    assert "INFO healthd.probes.syn: syn probes run" in loud.stderr


def test_a_closed_pipe_keeps_the_exit_status(closed_port: int) -> None:
    """`healthd probe ... | head -1` when head has already gone: the probe's status, no traceback."""
    for args, status in (
        (["probe", "tcp", f"127.0.0.1:{closed_port}"], 1),
        (["print-unit"], 0),
    ):
        read, write = os.pipe()
        os.close(read)  # the reader is gone before anything is written: every write gets EPIPE
        try:
            done = subprocess.run(
                [*HEALTHD, *args], stdout=write, stderr=subprocess.PIPE, text=True, timeout=30
            )
        finally:
            os.close(write)
        assert done.returncode == status, done.stderr
        assert done.stderr == "", done.stderr


def test_help_names_the_environment() -> None:
    for args in (["--help"], ["run", "--help"], ["check-config", "--help"]):
        result = healthd(*args)
        assert result.returncode == 0
        assert "$HEALTHD_CONFIG" in result.stdout and "HEALTHD_LISTEN" in result.stdout, args


def test_healthcheck_finds_the_daemon_like_run_does(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path / "c.yaml", port, "127.0.0.1:1")
    proc = subprocess.Popen([*HEALTHD, "run", "-c", str(config)], stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            ok = healthd("healthcheck", "-c", str(config))
            if ok.returncode == 0:
                break
        assert ok.returncode == 0 and f"127.0.0.1:{port}/healthz" in ok.stdout, ok
        # a wildcard address is reached on loopback; $HEALTHD_LISTEN overrides server.listen
        assert (
            healthd("healthcheck", "-c", str(config), env={"HEALTHD_LISTEN": f"0.0.0.0:{port}"}).returncode
            == 0
        )
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    down = healthd("healthcheck", "-c", str(config))
    assert down.returncode == 1 and "healthz" in down.stderr and "Traceback" not in down.stderr
    missing = healthd("healthcheck", "-c", str(tmp_path / "none.yaml"))
    assert missing.returncode == 1 and "Traceback" not in missing.stderr


def test_listen_from_the_environment(tmp_path: Path) -> None:
    port, other = free_port(), free_port()
    config = write_config(tmp_path / "c.yaml", other, "127.0.0.1:1")
    env = {**os.environ, "HEALTHD_LISTEN": f"127.0.0.1:{port}"}
    proc = subprocess.Popen([*HEALTHD, "run", "-c", str(config)], stderr=subprocess.PIPE, text=True, env=env)
    try:
        for _ in range(100):
            if (
                subprocess.run(
                    [*HEALTHD, "healthcheck", "-c", str(config)], env=env, capture_output=True
                ).returncode
                == 0
            ):
                break
        proc.terminate()
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert f"listening on http://127.0.0.1:{port}" in proc.communicate(timeout=5)[1]


def test_completions_and_man_page_come_from_the_parser(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(
        ["sh", str(REPO / "deploy/shell/generate.sh"), str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    bash = tmp_path / "bash-completion/completions/healthd"
    script = f"""source {bash}
COMP_WORDS=(healthd pr); COMP_CWORD=1; _shtab_healthd; echo "${{COMPREPLY[@]}}"
COMP_WORDS=(healthd probe ''); COMP_CWORD=2; _shtab_healthd; echo "${{COMPREPLY[@]}}"
COMP_WORDS=(healthd probe http x --ins); COMP_CWORD=4; _shtab_healthd; echo "${{COMPREPLY[@]}}"
"""
    completed = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30)
    assert completed.stdout.splitlines() == [
        "probe print-unit print-config",
        "http icmp syn tcp",
        "--insecure",
    ]
    zsh = (tmp_path / "zsh/vendor-completions/_healthd").read_text()
    assert zsh.startswith("#compdef healthd") and "healthcheck" in zsh
    if shutil.which("zsh"):
        assert (
            subprocess.run(["zsh", "-n", str(tmp_path / "zsh/vendor-completions/_healthd")]).returncode == 0
        )
    man = tmp_path / "man/man1/healthd.1"
    groff = shutil.which("groff")
    if groff is None:
        pytest.skip("needs groff to render the man page")
    page = subprocess.run(
        [groff, "-man", "-Tascii", "-P", "-cbou", str(man)], capture_output=True, text=True, timeout=30
    )
    text = re.sub(r"\s+", " ", page.stdout)
    assert "healthd probe" in text and "--insecure" in text and "$HEALTHD_CONFIG" in text, text[:2000]
