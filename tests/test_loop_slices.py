"""Work done in slices hands the loop back: briefly while the loop is idle, longer while it is busy."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

from healthd.loop_slices import LoopSlices


def reading(times: list[float]) -> Iterator[float]:
    yield from times


async def test_a_slice_lasts_least_after_a_quick_turn_and_the_turn_after_a_long_one() -> None:
    clock = reading(
        [
            0.0,  # start: the first slice ends at 0.002
            0.001,  # within it
            0.003,  # over: hand back; the loop comes back at once (0.1 ms)...
            0.0031,  # ...so the next slice is `least` long: ends at 0.0051
            0.005,  # within it
            0.006,  # over: hand back; the loop comes back after 34 ms...
            0.040,  # ...so the next slice is `most`, 25 ms, not 34: ends at 0.065
            0.064,  # within it
            0.066,  # over: hand back; back after 10 ms...
            0.076,  # ...so the next slice is 10 ms: ends at 0.086
            0.085,  # within it
            0.087,  # over
            0.087,
        ]
    )
    slices = LoopSlices(0.002, 0.025, clock=lambda: next(clock))
    due = [await slices.pause_if_due() for _ in range(8)]
    assert due == [False, True, False, True, False, True, False, True]


async def test_least_zero_pauses_at_every_chance() -> None:
    slices = LoopSlices(0, 0)
    assert [await slices.pause_if_due() for _ in range(5)] == [True] * 5


async def test_on_a_busy_loop_the_work_keeps_a_fair_share_and_the_loop_still_turns() -> None:
    turns = 0
    stop = False

    async def busy_task() -> None:  # holds the loop 15 ms at each of its turns
        nonlocal turns
        while not stop:
            turns += 1
            end = time.perf_counter() + 0.015
            while time.perf_counter() < end:
                pass
            await asyncio.sleep(0)

    other = asyncio.create_task(busy_task())
    await asyncio.sleep(0)
    slices, finished = LoopSlices(0.002, 0.025), time.perf_counter() + 0.5
    pauses = 0
    while time.perf_counter() < finished:  # 0.5 s of sliced work, the other task's turns included
        pauses += await slices.pause_if_due()
    stop = True
    await other
    # 2 ms slices would give the other task ~29 turns of these 0.5 s (15 of every 17 ms);
    # slices as long as its turns give it ~17. A loaded machine only lengthens the turns.
    assert 3 <= turns <= 22
    assert pauses >= 3
