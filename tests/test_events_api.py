"""GET /api/v1/events over a real running app: SSE, resume, heartbeat, JSON, auth, stop."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from healthd.app import DAEMON, create_app
from healthd.config import load_config

from tests.conftest import TcpServer
from tests.sse import Frame, read_event, read_frame, read_until
from tests.test_api import Client, MakeClient, config_text

SSE = {"Accept": "text/event-stream"}
FROM_START = {**SSE, "Last-Event-ID": "0"}  # without it, a stream starts with the next event


@pytest.fixture
def config_path(tmp_path: Path, tcp_server: TcpServer, closed_port: int) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(config_text(tcp_server.target, f"127.0.0.1:{closed_port}"))
    return path


@pytest.fixture
async def client(config_path: Path, aiohttp_client: MakeClient) -> Client:
    return await aiohttp_client(create_app(load_config(config_path), config_path, heartbeat=0.2))


async def test_stream_shows_start_then_check_and_service_transitions(client: Client) -> None:
    async with client.get("/api/v1/events", headers=FROM_START) as resp:
        assert resp.status == 200 and resp.content_type == "text/event-stream"
        start = await read_event(resp)
        assert start.event == "start" and start.id == 1 and start.data is not None
        assert start.data["id"] == 1 and start.data["type"] == "start" and start.data["time"].endswith("Z")
        down, seen = await read_until(resp, "check", check="closed")
        assert down.data == {
            "id": down.id,
            "time": down.data["time"] if down.data else None,
            "type": "check",
            "service": "web",
            "check": "closed",
            "check_type": "tcp",
            "target": down.data["target"] if down.data else None,
            "status": "down",
            "previous": "unknown",
            "error": {"kind": "refused", "message": down.data["error"]["message"] if down.data else None},
            "latency_ms": None,
        }
        frames = [start, *seen]
        async with asyncio.timeout(5):  # the two checks' first verdicts may come in either order
            while not _both_checks_and_service_degraded(frames):
                frames.append(await read_event(resp))
        ids = [frame.id for frame in frames]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        service = [f.data for f in frames if f.event == "service" and f.data]
        assert all(set(data) == {"id", "time", "type", "service", "status", "previous"} for data in service)
        assert service[0]["previous"] == "unknown" and service[-1]["service"] == "web"


def _both_checks_and_service_degraded(frames: list[Frame]) -> bool:
    checks = {f.data["check"]: f.data["status"] for f in frames if f.event == "check" and f.data}
    services = [f.data["status"] for f in frames if f.event == "service" and f.data]
    return checks == {"tcp": "up", "closed": "down"} and services[-1:] == ["degraded"]


async def test_last_event_id_resumes_where_the_client_left(client: Client) -> None:
    async with client.get("/api/v1/events", headers=FROM_START) as resp:
        _, seen = await read_until(resp, "service", status="degraded")
    last = seen[0].id
    assert last is not None and len(seen) >= 3
    resume = {**SSE, "Last-Event-ID": str(last)}
    async with client.get("/api/v1/events", headers=resume) as resp:
        replay = [await read_event(resp) for _ in seen[1:]]
    assert [f.id for f in replay] == [f.id for f in seen[1:]]
    assert [f.data for f in replay] == [f.data for f in seen[1:]]
    async with client.get(f"/api/v1/events?last_event_id={last}", headers=SSE) as resp:
        assert (await read_event(resp)).id == seen[1].id


async def test_idle_stream_gets_heartbeat_comments(client: Client) -> None:
    daemon = client.app[DAEMON]
    async with client.get("/api/v1/events", headers=SSE) as resp:
        assert (await read_frame(resp)).comment == "connected"
        newest = daemon.events.last_id
        resume = {**SSE, "Last-Event-ID": str(newest)}
    async with client.get("/api/v1/events", headers=resume) as resp:
        frames = [await read_frame(resp) for _ in range(4)]
    comments = [f.comment for f in frames if f.event is None]
    assert "heartbeat" in comments


async def test_json_without_the_sse_header(client: Client) -> None:
    daemon = client.app[DAEMON]
    for _ in range(200):
        if daemon.events.last_id >= 4:
            break
        await asyncio.sleep(0.05)
    body = await (await client.get("/api/v1/events?limit=2")).json()
    ids = [event["id"] for event in body["events"]]
    assert len(ids) == 2 and ids == sorted(ids) and ids[-1] <= daemon.events.last_id
    everything = await (await client.get("/api/v1/events")).json()
    assert everything["events"][0]["type"] == "start" and everything["events"][0]["id"] == 1


@pytest.mark.parametrize(
    ("query", "headers"),
    [
        ("?limit=0", {}),
        ("?limit=x", {}),
        ("", {**SSE, "Last-Event-ID": "abc"}),
        ("", {**SSE, "Last-Event-ID": "-3"}),
        ("?last_event_id=99999999999999999999999", SSE),
    ],
)
async def test_bad_parameters_are_json_400(client: Client, query: str, headers: dict[str, str]) -> None:
    resp = await client.get(f"/api/v1/events{query}", headers=headers)
    assert resp.status == 400 and resp.content_type == "application/json"
    assert (await resp.json())["error"]["code"] == "bad_request"


async def test_reload_event_lists_what_changed(client: Client, config_path: Path) -> None:
    daemon = client.app[DAEMON]
    resume = {**SSE, "Last-Event-ID": str(daemon.events.last_id)}
    async with client.get("/api/v1/events", headers=resume) as resp:
        text = config_path.read_text().replace("      - name: closed\n", "      - name: shut\n")
        config_path.write_text(text.replace("rise: 1", "rise: 2"))
        assert (await client.post("/api/v1/reload")).status == 200
        reload, _ = await read_until(resp, "reload")
    assert reload.data is not None
    assert reload.data["added"] == ["web/shut"]
    assert reload.data["removed"] == ["web/closed"]
    assert reload.data["changed"] == ["web/tcp"]


async def test_protect_reads_guards_the_stream(
    tmp_path: Path, tcp_server: TcpServer, closed_port: int, aiohttp_client: MakeClient
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("events-token\n")
    path = tmp_path / "config.yaml"
    server = f"  token_file: {token_file}\n  protect_reads: true"
    path.write_text(config_text(tcp_server.target, f"127.0.0.1:{closed_port}", server=server))
    client = await aiohttp_client(create_app(load_config(path), path))
    assert (await client.get("/api/v1/events", headers=SSE)).status == 401
    assert (await client.get("/api/v1/events")).status == 401
    good = {**FROM_START, "Authorization": "Bearer events-token"}
    async with client.get("/api/v1/events", headers=good) as resp:
        assert resp.status == 200 and (await read_event(resp)).event == "start"


async def test_stop_event_ends_open_streams(config_path: Path) -> None:
    server = TestServer(create_app(load_config(config_path), config_path), host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(server.make_url("/api/v1/events"), headers=FROM_START) as resp:
                assert (await read_event(resp)).event == "start"
                closing = asyncio.create_task(server.close())  # what SIGTERM does
                stop, _ = await read_until(resp, "stop")
                assert stop.data is not None and stop.data["type"] == "stop"
                assert await asyncio.wait_for(resp.content.read(), 2) == b""  # then the stream ends
            async with asyncio.timeout(3):
                await closing
    finally:
        await server.close()


async def test_a_subscriber_that_stops_reading_is_cut_off(client: Client) -> None:
    """A reader that never reads fills its socket; then its queue; then it is dropped."""
    daemon = client.app[DAEMON]
    assert client.server.port is not None
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", client.server.port))
    request = "GET /api/v1/events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"
    await loop.sock_sendall(sock, request.encode())
    try:
        for _ in range(200):
            if daemon.events.subscribers:
                break
            await asyncio.sleep(0.01)
        assert daemon.events.subscribers == 1
        padding = "x" * 5000
        for _ in range(40):  # at most 20,000 events of ~5 KB, on loopback, within ~12 s
            for _ in range(500):
                daemon.events.publish("start", padding=padding)
            await asyncio.sleep(0.3)  # a flush or two
            if daemon.events.dropped_subscribers:
                break
        assert daemon.events.dropped_subscribers == 1 and daemon.events.subscribers == 0
        received = 0
        async with asyncio.timeout(5):
            while chunk := await loop.sock_recv(sock, 65536):
                received += len(chunk)
        assert 0 < received < 100 * 2**20  # what was in flight, then the connection ended
    except ConnectionResetError:
        pass  # aborted: the kernel may discard what the client never read
    finally:
        sock.close()
    async with client.get("/api/v1/events?limit=1") as resp:  # the daemon itself is fine
        assert resp.status == 200


async def test_http_1_0_client_gets_the_stream_unchunked(client: Client) -> None:
    assert client.server.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", client.server.port)
    try:
        request = "GET /api/v1/events HTTP/1.0\r\nAccept: text/event-stream\r\nLast-Event-ID: 0\r\n\r\n"
        writer.write(request.encode())
        text = b""
        async with asyncio.timeout(5):
            while b"event: start\n" not in text:
                text += await reader.read(4096)
        head, _, body = text.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.") and b"chunked" not in head.lower()
        assert body.startswith(b": connected\n\nid: 1\nevent: start\ndata: {")
    finally:
        writer.close()
