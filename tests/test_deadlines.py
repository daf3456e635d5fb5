"""The scheduler's deadline heap: order, batching, cancellation and re-arming, on a virtual clock
(the scheduler tests' `FakeTime`) and on the event loop's own timer."""

from __future__ import annotations

import asyncio
import time

from healthd.deadlines import Deadlines

from tests.test_scheduler import FakeTime
from tests.waiting import eventually


async def test_due_entries_run_in_order_and_a_callback_may_add_more() -> None:
    fake = FakeTime()
    heap = Deadlines(fake.clock, fake.sleep)
    ran: list[tuple[str, float]] = []

    def note(name: str) -> None:
        ran.append((name, fake.now))
        if name == "a":  # a start plans its deadline far ahead: the next start must not wait for it
            heap.at(fake.now + 10.0, note, "a-deadline")

    heap.at(1001.0, note, "a")
    heap.at(1002.0, note, "b")
    heap.at(1002.0, note, "c")
    await fake.advance(2.5)
    assert ran == [("a", 1001.0), ("b", 1002.0), ("c", 1002.0)]
    await fake.advance(10.0)
    assert ran[-1] == ("a-deadline", 1011.0)
    heap.clear()


async def test_cancelled_entries_never_run_and_clear_drops_all() -> None:
    fake = FakeTime()
    heap = Deadlines(fake.clock, fake.sleep)
    ran: list[str] = []
    heap.at(1001.0, ran.append, "kept")
    heap.at(1000.5, ran.append, "cancelled").cancel()
    await fake.advance(2.0)
    assert ran == ["kept"]
    heap.at(1003.0, ran.append, "dropped")
    heap.clear()
    await fake.advance(5.0)
    assert ran == ["kept"] and len(heap) == 0


async def test_an_earlier_entry_re_arms_the_loop_timer() -> None:
    heap = Deadlines(time.monotonic, asyncio.sleep)
    ran: list[str] = []
    heap.at(time.monotonic() + 60.0, ran.append, "late")
    heap.at(time.monotonic(), ran.append, "now")  # must not wait behind the armed 60 s
    assert await eventually(lambda: ran == ["now"], seconds=5.0)
    heap.clear()


async def test_a_backlog_is_taken_in_batches_with_the_loop_turning_between() -> None:
    heap = Deadlines(time.monotonic, asyncio.sleep)
    ran: list[int] = []
    seen_by_other_callback: list[int] = []
    loop = asyncio.get_running_loop()

    def first(i: int) -> None:  # another callback, queued while the backlog is being taken
        ran.append(i)
        loop.call_soon(lambda: seen_by_other_callback.append(len(ran)))

    now = time.monotonic()
    heap.at(now, first, 0)
    for i in range(1, 1000):
        heap.at(now, ran.append, i)
    assert await eventually(lambda: len(ran) == 1000)
    assert ran == list(range(1000))  # in order
    assert seen_by_other_callback and seen_by_other_callback[0] < 1000  # it ran amid the backlog
    heap.clear()
