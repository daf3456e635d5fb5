"""Shared fixtures: real listeners on loopback, closed ports, network namespaces, probe resources."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import pytest
from healthd.probes import ProbeResources

from tests.netlab import Namespace, namespace


@dataclass
class TcpServer:
    host: str
    port: int
    accepted: list[tuple[str, int]] = field(default_factory=list)

    @property
    def target(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


async def start_tcp_server(host: str = "127.0.0.1") -> tuple[TcpServer, asyncio.Server]:
    info = TcpServer(host, 0)

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        info.accepted.append(writer.get_extra_info("peername")[:2])
        writer.close()

    server = await asyncio.start_server(on_connect, host, 0)
    info.port = server.sockets[0].getsockname()[1]
    return info, server


@pytest.fixture
async def tcp_server() -> AsyncIterator[TcpServer]:
    """A listener on 127.0.0.1, port 0, that records every accepted connection."""
    info, server = await start_tcp_server()
    async with server:
        yield info


@pytest.fixture
async def tcp_server6() -> AsyncIterator[TcpServer]:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    info, server = await start_tcp_server("::1")
    async with server:
        yield info


@pytest.fixture
async def resources() -> AsyncIterator[ProbeResources]:
    """Fresh resources for the probes of one test (sockets, sessions, resolver), closed after it."""
    async with ProbeResources() as fresh:
        yield fresh


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port on 127.0.0.1 that answers SYN with RST: bound (so nobody else takes it), not listening."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


@pytest.fixture
def netns() -> Iterator[Namespace]:
    """A second host in its own network namespace, deleted after the test (root only)."""
    with namespace() as ns:
        yield ns


def _select_test_loop() -> None:
    """HEALTHD_TEST_LOOP=uvloop runs every async test on uvloop (CI's second run; see Makefile)."""
    choice = os.environ.get("HEALTHD_TEST_LOOP", "asyncio")
    if choice == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    elif choice != "asyncio":
        raise pytest.UsageError(f"HEALTHD_TEST_LOOP must be asyncio or uvloop, not {choice!r}")


_select_test_loop()
