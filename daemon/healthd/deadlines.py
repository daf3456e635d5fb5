"""One deadline heap per scheduler: every check's next start and every fast probe's deadline.

Entries are `(when, sequence, Deadline)` tuples in a `heapq` on the scheduler's
clock, so ordering is C tuple comparison. One timer is armed at the earliest
entry; when it fires, one callback takes every entry that is due and runs them
in order (starts that fall due together start in the same loop turn, up to `BATCH`
of them: more wait for the next turn, so a backlog never holds the loop). Cancelling
marks the entry; the heap drops it when it reaches the top.

The timer is the loop's own `call_at` by default (one `TimerHandle` per
wake-up, not one per start and one per timeout), on a 2 ms grid so that entries
due close together share a wake-up. Scheduler tests pass their own
`sleep` on a virtual clock; then a small task sleeps until the earliest entry.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

# due entries run per wake-up; the rest run at the next loop turn, after the loop has polled
# its sockets: an overloaded loop still serves answers, API requests and timers in between
BATCH = 256
# the timer fires on this grid of the loop's clock: entries due within one step share a
# wake-up (at 1,000+ starts/s a wake-up each cost ~15% of a probe's CPU), at most 2 ms late
WAKE_GRID = 0.002

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class Deadline:
    """One entry: `callback(*args)` at `when`, unless cancelled first."""

    __slots__ = ("args", "callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[..., None], args: tuple[Any, ...]) -> None:
        self.when = when
        self.callback = callback
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Deadlines:
    """The heap and its one timer. Callbacks must not raise: the scheduler's supervise theirs."""

    def __init__(self, clock: Clock, sleep: Sleep) -> None:
        self._clock = clock
        self._sleep = sleep
        self._heap: list[tuple[float, int, Deadline]] = []
        self._order = itertools.count()
        self._armed: float | None = None  # when the timer fires, if armed
        self._handle: asyncio.TimerHandle | None = None
        self._sleeper: asyncio.Task[None] | None = None
        self._firing = False

    def __len__(self) -> int:
        return len(self._heap)

    def at(self, when: float, callback: Callable[..., None], *args: Any) -> Deadline:
        entry = Deadline(when, callback, args)
        heapq.heappush(self._heap, (when, next(self._order), entry))
        if not self._firing and (self._armed is None or when < self._armed):
            self._arm(when)
        return entry

    def clear(self) -> None:
        """Drop every entry and disarm (the scheduler stopped; a new start adds entries again)."""
        self._heap.clear()
        self._disarm()

    def _fire(self) -> None:
        self._armed = self._handle = self._sleeper = None
        heap, now = self._heap, self._clock()
        self._firing = True  # entries the callbacks add are armed for below, all at once
        try:
            taken = 0
            while heap and heap[0][0] <= now and taken < BATCH:
                entry = heapq.heappop(heap)[2]
                if not entry.cancelled:
                    entry.callback(*entry.args)
                    taken += 1
        finally:
            self._firing = False
        while heap and heap[0][2].cancelled:  # so the timer is armed for a live entry
            heapq.heappop(heap)
        if heap:
            self._arm(heap[0][0])

    def _arm(self, when: float) -> None:
        self._disarm()
        self._armed = when
        delay = max(when - self._clock(), 0.0)
        if self._sleep is asyncio.sleep:
            loop = asyncio.get_running_loop()
            self._handle = loop.call_at(math.ceil((loop.time() + delay) / WAKE_GRID) * WAKE_GRID, self._fire)
        else:
            self._sleeper = asyncio.get_running_loop().create_task(self._sleep_then_fire(delay))

    def _disarm(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        if self._sleeper is not None:
            self._sleeper.cancel()
        self._armed = self._handle = self._sleeper = None

    async def _sleep_then_fire(self, delay: float) -> None:
        await self._sleep(delay)
        self._fire()
