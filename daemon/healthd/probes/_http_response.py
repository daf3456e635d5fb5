"""The HTTP probe's response class: aiohttp's, with the informational responses bounded.

aiohttp reads `1xx` responses (other than 101) in a loop until a final one
comes; a target that streams `100 Continue` keeps it reading forever, and when
the data is already buffered each read returns at once, so the loop never
yields: one check pinned the event loop (issue 11 item 8). Here the
connection's `read` is wrapped for the time of `start`, and the
`MAX_INFORMATIONAL + 1`-th 1xx ends the exchange as an invalid response.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp.connector import Connection

MAX_INFORMATIONAL = 10  # 1xx responses before the final one: RFC 9110 sets no limit; real servers send 1-2


class BoundedResponse(aiohttp.ClientResponse):
    async def start(self, connection: Connection) -> aiohttp.ClientResponse:
        protocol = connection.protocol
        if protocol is None:
            return await super().start(connection)
        protocol.read = _counting(protocol.read, self)  # type: ignore[method-assign,assignment]
        try:
            return await super().start(connection)
        finally:
            del protocol.read  # the class's own again, for a kept connection's next request


def _counting(
    read: Callable[[], Awaitable[Any]], response: aiohttp.ClientResponse
) -> Callable[[], Awaitable[Any]]:
    seen = 0

    async def read_bounded() -> Any:
        nonlocal seen
        message, payload = await read()
        if 100 <= message.code <= 199 and message.code != 101:
            seen += 1
            if seen > MAX_INFORMATIONAL:
                raise aiohttp.ClientResponseError(
                    response.request_info,
                    response.history,
                    status=message.code,
                    message=f"more than {MAX_INFORMATIONAL} informational (1xx) responses",
                )
        return message, payload

    return read_bounded
