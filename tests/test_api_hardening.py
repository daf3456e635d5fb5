"""The API listener under hostile clients, over real sockets: slow heads, slow bodies,
too many connections, requests aiohttp's parser refuses, tokens that are not UTF-8."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from healthd.api_server import ApiLimits, ApiServer, start_api
from healthd.app import create_app
from healthd.config import load_config

from tests.conftest import TcpServer
from tests.test_api import config_text, token_server

StartServer = Callable[..., Awaitable[ApiServer]]
HEAD_TIMEOUT = 1.0
BODY_TIMEOUT = 1.0


@pytest.fixture
async def start(tmp_path: Path, tcp_server: TcpServer, closed_port: int) -> AsyncIterator[StartServer]:
    servers: list[ApiServer] = []

    async def start_server(server_yaml: str = "", **limits: float) -> ApiServer:
        path = tmp_path / "config.yaml"
        path.write_text(config_text(tcp_server.target, f"127.0.0.1:{closed_port}", server=server_yaml))
        settings = {"head_timeout": HEAD_TIMEOUT, "body_timeout": BODY_TIMEOUT, **limits}
        server = await start_api(
            create_app(load_config(path), path),
            "127.0.0.1",
            0,
            ApiLimits(
                settings["head_timeout"], settings["body_timeout"], int(settings.get("max_connections", 64))
            ),
        )
        servers.append(server)
        return server

    yield start_server
    for server in servers:
        await server.close()


async def exchange(port: int, data: bytes, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read until the server closes: (status, headers, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        answer = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


async def wait_until(predicate: Callable[[], bool], seconds: float) -> None:
    for _ in range(int(seconds / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def test_slow_heads_are_closed_after_the_timeout_while_the_api_answers(start: StartServer) -> None:
    # 150 slow clients against a cap of 50: the oldest make room for the newer, then time out
    server = await start(max_connections=50)
    clients = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(150)]
    closed_after: list[float] = []
    loop = asyncio.get_running_loop()
    began = loop.time()

    async def dribble(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # slowloris: a request head, one byte at a time, never finished (bounded: 10 bytes)
        try:
            for byte in b"GET /healthz HTTP/1.1\r\nX-Slow: "[:10]:
                writer.write(bytes([byte]))
                await writer.drain()
                if await _closed_within(reader, 0.4):
                    break
            else:
                await _closed_within(reader, HEAD_TIMEOUT + 3)
        except ConnectionError:
            pass
        closed_after.append(loop.time() - began)
        writer.close()

    dribblers = asyncio.gather(*(dribble(r, w) for r, w in clients))
    status, _, body = await exchange(
        server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert (status, body) == (200, b'{"status":"ok"}')
    await asyncio.wait_for(dribblers, HEAD_TIMEOUT + 8)
    assert len(closed_after) == 150
    assert max(closed_after) < HEAD_TIMEOUT + 4  # closed by the server, not by the test giving up
    # the cap was full of slow heads, yet /healthz got in: one of them made room (101 unless some
    # timed out first on a loaded machine), and nobody was turned away
    assert 1 <= server.count.evicted <= 101 and server.count.rejected == 0
    await wait_until(lambda: server.count.open == 0, 2)


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    """True when the server closes the connection in time (whatever it still sends first)."""
    try:
        await asyncio.wait_for(reader.read(), seconds)
    except TimeoutError:
        return False
    return True


async def test_idle_keep_alive_connection_is_closed_after_the_timeout(start: StartServer) -> None:
    server = await start()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await asyncio.wait_for(reader.readuntil(b'{"status":"ok"}'), 5)).startswith(b"HTTP/1.1 200")
    assert await _closed_within(reader, HEAD_TIMEOUT + 3)
    writer.close()


async def test_unread_body_is_drained_for_the_body_timeout_then_closed(start: StartServer) -> None:
    server = await start()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"POST /api/v1/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"x" * 10)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 200")
    assert await _closed_within(reader, BODY_TIMEOUT + HEAD_TIMEOUT + 3)
    writer.close()


async def test_at_the_cap_a_new_connection_replaces_the_oldest_one_without_a_request(
    start: StartServer,
) -> None:
    server = await start(max_connections=20, head_timeout=30)
    held = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(20)]
    await wait_until(lambda: server.count.open == 20, 2)
    status, _, _ = await exchange(
        server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert status == 200 and server.count.evicted == 1
    oldest_reader, _ = held[0]
    assert await _closed_within(oldest_reader, 2)
    for _, writer in held:
        writer.close()
    await wait_until(lambda: server.count.open == 0, 5)


async def test_connections_past_the_cap_all_busy_get_a_json_503(start: StartServer) -> None:
    server = await start(max_connections=20, head_timeout=30)
    held = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(20)]
    for reader, writer in held:  # each sends a request and keeps its connection: none is evictable
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.wait_for(reader.readuntil(b'{"status":"ok"}'), 5)
    status, headers, body = await exchange(server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 503 and headers["content-type"].startswith("application/json")
    assert headers["retry-after"] == "1" and headers["connection"] == "close"
    assert b'"code":"too_many_connections"' in body and server.count.rejected == 1
    for _, writer in held:
        writer.close()
    await wait_until(lambda: server.count.open == 0, 5)
    status, _, _ = await exchange(
        server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert status == 200


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(b"GE(T / HTTP/1.1\r\n\r\n", id="bad-method"),
        pytest.param(b"GET /" + b"a" * 8200 + b" HTTP/1.1\r\n\r\n", id="path-over-8190"),
        pytest.param(b"GET /healthz HTTP/1.1\r\nX-A: a\x00b\r\n\r\n", id="nul-in-header"),
        pytest.param(b"GET /healthz HTTP/1.1\r\nContent-Length: x\r\n\r\n", id="bad-content-length"),
        pytest.param(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", id="tls-hello"),
    ],
)
async def test_requests_the_parser_refuses_get_our_json_400(
    start: StartServer, request_bytes: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    server = await start()
    caplog.set_level(logging.DEBUG)
    status, headers, body = await exchange(server.port, request_bytes)
    assert status == 400 and headers["content-type"].startswith("application/json")
    assert body.startswith(b'{"error":{"code":"bad_request","message":"malformed HTTP request: ')
    # the server's checks may reach their first verdict meanwhile: healthd.state logs those
    about_requests = [r for r in caplog.records if r.name != "healthd.state"]
    assert not [r for r in about_requests if r.exc_info or r.levelno >= logging.WARNING]
    assert any(r.getMessage().startswith("bad request from 127.0.0.1") for r in about_requests)


@pytest.mark.parametrize("reads", [False, True])
async def test_a_token_that_is_not_utf8_is_a_401(start: StartServer, tmp_path: Path, reads: bool) -> None:
    server = await start(token_server(tmp_path, "s3cret", reads))
    request = b"GET /api/v1/services" if reads else b"POST /api/v1/reload"
    for value in (b"Bearer \xff", b"Bearer s3cret\xff", b"\xff\xfe s3cret", b"Bearer \xc3"):
        status, headers, body = await exchange(
            server.port,
            request + b" HTTP/1.1\r\nHost: x\r\nAuthorization: " + value + b"\r\nConnection: close\r\n\r\n",
        )
        assert status == 401, body
        assert b'"code":"unauthorized"' in body and headers["www-authenticate"] == "Bearer"
    status, _, _ = await exchange(
        server.port,
        request + b" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\nConnection: close\r\n\r\n",
    )
    assert status == 200


async def test_a_head_sent_byte_by_byte_counts_as_sent(start: StartServer) -> None:
    ending = b"\r\n\r\n"
    server = await start(max_connections=1, head_timeout=30)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    for byte in b"GET /healthz HTTP/1.1" + ending[: len(ending) // 2] + b"Host: x" + ending:
        writer.write(bytes([byte]))  # the blank line ending the head split across reads
        await writer.drain()
        await asyncio.sleep(0.002)
    assert (await asyncio.wait_for(reader.readuntil(b'{"status":"ok"}'), 5)).startswith(b"HTTP/1.1 200")
    status, _, _ = await exchange(server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 503 and server.count.evicted == 0  # the first connection sent its request
    writer.close()
