"""A small Server-Sent Events reader over a real aiohttp client response."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import aiohttp


@dataclass(frozen=True)
class Frame:
    id: int | None
    event: str | None
    data: dict[str, Any] | None
    comment: str | None = None


async def read_frame(response: aiohttp.ClientResponse, within: float = 5.0) -> Frame:
    """The next frame (an event, or a comment line such as ': heartbeat'), bounded in time."""
    fields: dict[str, str] = {}
    comment = None
    async with asyncio.timeout(within):
        while True:
            raw = await response.content.readline()
            if not raw:
                raise EOFError("the stream ended")
            line = raw.decode().rstrip("\n")
            if line == "":
                if fields or comment is not None:
                    break
                continue
            if line.startswith(":"):
                comment = line[1:].strip()
                continue
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
    data = json.loads(fields["data"]) if "data" in fields else None
    event_id = int(fields["id"]) if "id" in fields else None
    return Frame(event_id, fields.get("event"), data, comment)


async def read_event(response: aiohttp.ClientResponse, within: float = 5.0) -> Frame:
    """The next frame that is an event, skipping comments."""
    async with asyncio.timeout(within):
        while True:
            frame = await read_frame(response, within)
            if frame.event is not None:
                return frame


async def read_until(
    response: aiohttp.ClientResponse, wanted: str, within: float = 5.0, **match: Any
) -> tuple[Frame, list[Frame]]:
    """Read events until one of type `wanted` whose data has the `match` items; it and all before it."""
    seen: list[Frame] = []
    async with asyncio.timeout(within):
        while True:
            frame = await read_event(response, within)
            seen.append(frame)
            data = frame.data or {}
            if frame.event == wanted and all(data.get(k) == v for k, v in match.items()):
                return frame, seen
