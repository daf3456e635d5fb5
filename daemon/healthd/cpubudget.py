"""Bound the CPU a coroutine may use, as the scheduler's deadline bounds its time.

A probe runs in steps between its awaits. `cpu_bounded` drives the probe's
coroutine itself, step by step, adding up the time each step holds the loop
(the loop runs one step at a time, so that time is the probe's); once the sum
passes the budget, a `ProbeFailure` is thrown into the probe at its next await,
so its `finally` blocks close what it holds. A target that makes a probe spin
(issue 11 item 8) then costs at most the budget, not the event loop.

The scheduler's fast path (`ProbeSpec.start`: tcp, syn, one-request icmp) is not
metered: it runs no coroutine, and each of its callbacks does a fixed handful of
system calls and builds one outcome, with no loop over what the target sends, so a
target cannot make it spin; its time is bounded by the deadline in the scheduler's heap.

Steps are timed on `perf_counter` (a vDSO read, ~0.1 µs), not on the thread's
CPU clock: that is a system call, 2-16 µs each on this VM, and at two per step
it cost more than the probes it metered. Wall time over-counts a step the OS
preempted, so before the probe is failed the thread's CPU time since the
probe's first step must have grown by the budget too (two system calls per
probe, not per step): a busy machine alone never fails a probe.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Awaitable, Coroutine, Generator
from typing import Any, TypeVar

from healthd.errors import ProbeFailure
from healthd.results import ErrorKind

T = TypeVar("T")


class _Bounded(Generator[Any, Any, T]):
    """An awaitable that runs `coro`'s steps itself, metering their CPU."""

    def __init__(self, coro: Coroutine[Any, Any, T], budget: float) -> None:
        self._coro = coro
        self._budget = budget
        self.used = 0.0  # seconds the probe's steps held the loop, garbage collections left out
        self._over = False
        self._cpu_at_start: float | None = None  # the thread's CPU clock at the first step

    def __await__(self) -> Generator[Any, Any, T]:
        return self

    def __iter__(self) -> Generator[Any, Any, T]:
        return self

    def __next__(self) -> Any:
        return self.send(None)

    def send(self, value: Any) -> Any:
        return self._step(self._coro.send, value)

    def throw(self, *args: Any) -> Any:
        return self._step(self._coro.throw, *args)

    def close(self) -> None:
        self._coro.close()

    def _step(self, resume: Any, *args: Any) -> Any:
        if self._cpu_at_start is None:
            self._cpu_at_start = time.thread_time()
        elif self.used > self._budget and not self._over and self._thread_spent_budget():
            self._over = True  # once: the probe may still clean up (await a close) after it
            failure = ProbeFailure(ErrorKind.ERROR, f"the probe used more than {self._budget:g}s of CPU")
            resume, args = self._coro.throw, (failure,)
        counts = gc.get_count()
        started = time.perf_counter()
        try:
            return resume(*args)
        finally:
            # a garbage collection that ran during the step is the process's work, not the
            # probe's: a full pass of a large heap can take longer than a probe's whole budget
            if not _older_collection_between(counts, gc.get_count()):
                self.used += time.perf_counter() - started

    def _thread_spent_budget(self) -> bool:
        """Whether the loop's thread used at least the budget of CPU since the probe began:
        without that, the steps' wall time was inflated by preemption, not spent spinning."""
        assert self._cpu_at_start is not None
        return time.thread_time() - self._cpu_at_start >= self._budget


def _older_collection_between(before: tuple[int, int, int], after: tuple[int, int, int]) -> bool:
    """Whether a generation 1 or 2 collection ran between two `gc.get_count()` readings:
    one resets the count of its own generation and moves the next one's (generation 0
    passes are too short to matter, and only ever raise generation 1's count)."""
    return after[2] != before[2] or after[1] < before[1]


def cpu_bounded(work: Awaitable[T], budget: float) -> Awaitable[T]:
    """`await cpu_bounded(probe(check, ctx), 0.5)`: the probe, failing once it used `budget`
    seconds of CPU. (An awaitable that is not a coroutine is awaited as it is.)"""
    return _Bounded(work, budget) if isinstance(work, Coroutine) else work
