"""A hostile HTTP(S) target: one listener on 127.0.0.1 per misbehaviour.

Each behaviour reads the request head (bounded) and then misbehaves. Every
loop that sends is bounded in count and in time (STREAM_SECONDS), and stops
when the client goes away.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import struct
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

Behaviour = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

STREAM_SECONDS = 5.0  # no behaviour sends for longer than this
HEAD_LIMIT = 64 * 1024


async def read_head(reader: asyncio.StreamReader) -> bytes:
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        return b""


async def _stream(
    writer: asyncio.StreamWriter, piece: bytes, every: float = 0.0, count: int = 1_000_000
) -> None:
    deadline = time.monotonic() + STREAM_SECONDS
    for _ in range(count):
        if time.monotonic() > deadline or writer.is_closing():
            return
        writer.write(piece)
        await writer.drain()
        await asyncio.sleep(every)


async def until_gone(reader: asyncio.StreamReader) -> None:
    """Wait (bounded) until the client hangs up, reading and dropping what it sends."""
    deadline = time.monotonic() + STREAM_SECONDS
    while time.monotonic() < deadline:
        try:
            if not await asyncio.wait_for(reader.read(4096), deadline - time.monotonic()):
                return
        except (TimeoutError, ConnectionError):
            return


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_head(reader)
    await until_gone(reader)


async def rst_mid_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_head(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000)
    await writer.drain()
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def garbage_status(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_head(reader)
    writer.write(b"HTTP/1.1 2\x00\x1b[31mOK\r\n" + bytes(range(1, 32)) * 20 + b"\r\n\r\n")


async def header_flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_head(reader)
    writer.write(b"HTTP/1.1 200 OK\r\n")
    await _stream(writer, b"X-Flood: " + b"a" * 100 + b"\r\n", count=200_000)


async def long_header(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_head(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 100_000 + b"\r\n\r\n")


async def short_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_head(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b")


async def bad_chunks(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_head(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nnot hex\r\n\r\n")


@functools.cache
def bomb() -> bytes:
    """~250 KB of gzip that inflates to 256 MB of zeros (built once, 1 MB at a time)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1024 * 1024)
    return b"".join([*(packer.compress(block) for _ in range(256)), packer.flush()])


async def gzip_bomb(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_head(reader)
    payload = bomb()
    head = f"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {len(payload)}\r\n\r\n"
    writer.write(head.encode() + payload)
    await writer.drain()


async def endless_chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_head(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    await _stream(writer, b"4000\r\n" + b"y" * 0x4000 + b"\r\n")


async def slow_chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_head(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    await _stream(writer, b"1\r\nz\r\n", every=0.2)


async def http09(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_head(reader)
    writer.write(b"<html>hello from 1991</html>\n")


async def redirect_loop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while await read_head(reader):  # keep-alive: answer each request with a redirect to itself
        writer.write(b"HTTP/1.1 302 Found\r\nLocation: /again\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()


async def continue_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_head(reader)
    await _stream(writer, b"HTTP/1.1 100 Continue\r\n\r\n" * 100)


async def echo_headers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    head = await read_head(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(head), head))


async def tls_silence(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await until_gone(reader)  # takes the ClientHello, never answers it


async def tls_garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(1024)
    writer.write(b"\x16\x03\x01\x00\x05garbage, not a ServerHello" * 10)


BEHAVIOURS: dict[str, Behaviour] = {
    fn.__name__: fn
    for fn in (
        silent,
        rst_mid_body,
        garbage_status,
        header_flood,
        long_header,
        short_body,
        bad_chunks,
        gzip_bomb,
        endless_chunked,
        slow_chunked,
        http09,
        redirect_loop,
        continue_stream,
        echo_headers,
        tls_silence,
        tls_garbage,
    )
}


@asynccontextmanager
async def hostile_target() -> AsyncIterator[dict[str, int]]:
    """Start every behaviour on its own port; yields name -> port."""
    servers: list[asyncio.Server] = []
    ports: dict[str, int] = {}
    handlers: set[asyncio.Task[None]] = set()
    writers: set[asyncio.StreamWriter] = set()

    def serve(
        behaviour: Behaviour,
    ) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            handlers.add(task)
            writers.add(writer)
            try:
                await behaviour(reader, writer)
            except (ConnectionError, OSError):
                pass  # the probe hung up: expected
            finally:
                writer.transport.abort()
                handlers.discard(task)
                writers.discard(writer)

        return handle

    await asyncio.to_thread(bomb)  # before any probe's clock runs
    try:
        for name, behaviour in BEHAVIOURS.items():
            server = await asyncio.start_server(serve(behaviour), "127.0.0.1", 0, limit=HEAD_LIMIT)
            servers.append(server)
            ports[name] = server.sockets[0].getsockname()[1]
        yield ports
    finally:
        for server in servers:
            server.close()
        for writer in list(writers):
            writer.transport.abort()  # each behaviour then ends by itself
        if handlers:
            await asyncio.wait(list(handlers), timeout=2)
        for server in servers:
            await server.wait_closed()
