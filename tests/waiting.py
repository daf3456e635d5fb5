"""Bounded waits for tests: poll a condition instead of sleeping a fixed time before asserting."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def eventually(condition: Callable[[], bool], seconds: float = 5.0, every: float = 0.01) -> bool:
    """Whether `condition()` became true within `seconds` (polled every `every` seconds)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(every)
    return True


# How early a deadline may end, measured on time.monotonic: uvloop's loop clock has millisecond
# resolution and its timers fire up to 0.5 ms early, so "at the timeout" can read 299.99 ms.
LOOP_CLOCK_SLACK = 0.002
