"""The API's listener: how long a client may take, how many may connect, and our errors for aiohttp's.

A connection must deliver its first request head within `head_timeout` and, after each
response, its next one within the same time (aiohttp's keep-alive timer, set to the same
value), or it is closed: a client sending one byte a second cannot hold a descriptor for
long. Handlers read no bodies; a body left unread is drained for at most `body_timeout`.
At `max_connections` open connections, a new one takes the place of the connection that
has waited longest for its first request head (that one is closed); only when none is
waiting does the new one get a 503 and is closed at once. So API clients never take the
descriptors the probes need, and a crowd of slow clients cannot lock out a quick one.

aiohttp answers what its parser refuses (a bad method, a request line over 8,190 bytes, a
NUL in a header) by itself, as plain text logged at ERROR with a traceback; here those
answers are the API's JSON error and the log line is one line without a traceback.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import cast

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_server import Server

from healthd.api_dicts import encode, error_dict
from healthd.api_errors import error_response

log = logging.getLogger(__name__)

_HEAD_ENDS = (b"\n\r\n", b"\n\n")  # a blank line ends a head, whatever mix of CRLF and LF
_MAX_REASON = 200  # characters of a parser's complaint we repeat to the client and the log


@dataclass(frozen=True)
class ApiLimits:
    head_timeout: float = 10.0  # seconds to send a complete request head (also the keep-alive idle limit)
    body_timeout: float = 5.0  # seconds an unread request body is drained before the connection closes
    max_connections: int = 256  # open API connections at once; more get a 503


@dataclass
class _Count:
    """The open connections, and what was done to which since start."""

    live: set[_Handler] = field(default_factory=set)
    waiting: dict[_Handler, None] = field(default_factory=dict)  # no request head yet, oldest first
    rejected: int = 0  # turned away with a 503: every open connection had sent a request
    evicted: int = 0  # closed, still waiting for a head, to make room for a new connection
    timed_out: int = 0  # closed for a late request head

    @property
    def open(self) -> int:
        return len(self.live)


def _overload_reply() -> bytes:
    body = encode(error_dict("too_many_connections", "too many open API connections; retry later"))
    head = (
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


def _short(text: str) -> str:
    """A client-supplied complaint as one bounded, printable line."""
    text = text.encode("unicode_escape", "backslashreplace").decode("ascii")
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."


class _Handler(RequestHandler):
    """aiohttp's protocol with the connection cap, the first-head timer and JSON errors."""

    def __init__(self, manager: Server, count: _Count, limits: ApiLimits, reply: bytes) -> None:
        super().__init__(
            manager,
            loop=asyncio.get_running_loop(),
            keepalive_timeout=limits.head_timeout,
            lingering_time=limits.body_timeout,
            access_log=None,  # type: ignore[arg-type]  # aiohttp takes None for "no access log"
        )
        self._count, self._limits, self._reply = count, limits, reply
        self._turned_away = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._tail = b""  # the last bytes seen, to find a head's end split across reads

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        count = self._count
        if count.open >= self._limits.max_connections:
            oldest = next(iter(count.waiting), None)
            if oldest is None:
                self._turn_away(transport)
                return
            count.evicted += 1
            oldest._drop()
        count.live.add(self)
        count.waiting[self] = None
        super().connection_made(transport)
        loop = asyncio.get_running_loop()
        self._head_timer = loop.call_later(self._limits.head_timeout, self._head_overdue)

    def _turn_away(self, transport: asyncio.BaseTransport) -> None:
        self._turned_away = True
        self._count.rejected += 1
        writer = cast(asyncio.WriteTransport, transport)  # uvloop's transports are not asyncio's classes
        writer.write(self._reply)
        writer.close()

    def _drop(self) -> None:
        """Stop counting this connection (its descriptor goes now) and close it."""
        self._count.live.discard(self)
        self._stop_head_timer()
        self.force_close()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._turned_away:
            return
        self._count.live.discard(self)
        self._stop_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._turned_away:
            return
        if self._head_timer is not None:
            seen = self._tail + data
            if any(end in seen for end in _HEAD_ENDS):
                self._stop_head_timer()
            self._tail = seen[-3:]
        super().data_received(data)

    def _stop_head_timer(self) -> None:
        self._count.waiting.pop(self, None)
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_overdue(self) -> None:
        self._head_timer = None
        self._count.timed_out += 1
        log.debug("closing an API connection: no complete request head in %ss", self._limits.head_timeout)
        self._drop()

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """Our JSON error for what aiohttp answers itself; client errors logged as one line."""
        if request.writer.output_size > 0:  # part of a response went out: only closing is left
            raise ConnectionError("the response had started; closing the connection")
        if status < 500:
            reason = _short(message or str(exc) or "malformed request")
            log.debug("bad request from %s: %s", request.remote, reason)
            response = error_response(status, "bad_request", f"malformed HTTP request: {reason}")
        else:
            log.error("error serving %s %s", request.method, _short(request.path), exc_info=exc)
            response = error_response(status, "internal", "internal error; see the daemon's log")
        response.force_close()
        return response


class _ApiSite(web.BaseSite):
    """A TCP listener whose connections are `_Handler`s."""

    def __init__(self, runner: web.AppRunner, host: str, port: int, limits: ApiLimits) -> None:
        super().__init__(runner)
        self._host, self._port, self._limits = host, port, limits
        self.count = _Count()
        self._reply = _overload_reply()

    @property
    def name(self) -> str:
        return (
            f"http://[{self._host}]:{self._port}"
            if ":" in self._host
            else f"http://{self._host}:{self._port}"
        )

    def _connection(self) -> _Handler:
        server = self._runner.server
        assert server is not None  # set up before the site starts
        return _Handler(server, self.count, self._limits, self._reply)

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._connection, self._host, self._port, reuse_address=True)

    @property
    def port(self) -> int:
        """The bound port (the one the kernel chose for port 0)."""
        # not isinstance(asyncio.Server): uvloop's server is its own class with the same `sockets`
        sockets = getattr(self._server, "sockets", None)
        assert sockets, "the site has not started"
        return int(sockets[0].getsockname()[1])


@dataclass
class ApiServer:
    runner: web.AppRunner
    site: _ApiSite
    limits: ApiLimits = field(default_factory=ApiLimits)

    @property
    def port(self) -> int:
        return self.site.port

    @property
    def count(self) -> _Count:
        return self.site.count

    async def close(self) -> None:
        await self.runner.cleanup()


async def start_api(app: web.Application, host: str, port: int, limits: ApiLimits | None = None) -> ApiServer:
    """Start `app` (its cleanup contexts run) and listen; OSError if the address is taken."""
    limits = limits or ApiLimits()
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = _ApiSite(runner, host, port, limits)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    return ApiServer(runner, site, limits)
