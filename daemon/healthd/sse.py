"""Server-Sent Events over aiohttp: one open response per subscriber, written by the event hub.

The handler only opens the stream and waits; the hub writes each batch of
events straight into the connection (see `healthd.events`), so a thousand
subscribers cost no task wake-up per event.
"""

from __future__ import annotations

import asyncio
from typing import cast

from aiohttp import web

from healthd.events import EventHub


async def stream_events(request: web.Request, hub: EventHub, last_id: int | None) -> web.StreamResponse:
    """Server-Sent Events until the client leaves, falls too far behind, or the daemon stops."""
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    await response.write(b": connected\n\n")  # sends the headers now, before any event
    transport = request.transport
    if transport is None:  # the client left already
        return response
    chunked = response.headers.get("Transfer-Encoding", "").lower() == "chunked"
    sub = hub.subscribe(_TransportSink(transport, chunked), last_id)
    try:
        await sub.done.wait()
    finally:
        hub.unsubscribe(sub)
    return response


class _TransportSink:
    """The hub writes to the connection directly (one call per flush, no task per subscriber),
    in whole HTTP/1.1 chunks when the response is chunked, so aiohttp's framing stays intact."""

    def __init__(self, transport: asyncio.BaseTransport, chunked: bool) -> None:
        # a cast, not isinstance: uvloop's transports have the methods but not asyncio's classes
        self._transport = cast(asyncio.WriteTransport, transport)
        self._chunked = chunked

    def write(self, data: bytes) -> None:
        self._transport.write(b"%x\r\n%s\r\n" % (len(data), data) if self._chunked else data)

    def buffered(self) -> int:
        return self._transport.get_write_buffer_size()

    def closing(self) -> bool:
        return self._transport.is_closing()

    def abort(self) -> None:
        self._transport.abort()
