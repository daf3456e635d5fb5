"""Long work on the event loop, done in slices: the loop is handed back between them.

`/metrics`, the services listing and the snapshot copy each walk every check. A
slice is a few milliseconds while the loop has little else to do, so a probe due
meanwhile starts at most that late. On a loop that is itself saturated, handing
it back costs a whole turn of everything else; with fixed 2 ms slices a 2,000-check
scrape of a saturated single-process daemon took 28-46 s. So a slice grows to the
time the last hand-back took (up to `most`): the work gets about half of a busy
loop, and never more.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class LoopSlices:
    def __init__(
        self, least: float = 0.002, most: float = 0.025, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self._least = least
        self._most = most
        self._clock = clock
        self._end = clock() + least

    async def pause_if_due(self) -> bool:
        """Hand the loop back if this slice is over; True when it was."""
        now = self._clock()
        if now <= self._end:
            return False
        await asyncio.sleep(0)
        back = self._clock()
        self._end = back + min(self._most, max(self._least, back - now))
        return True
