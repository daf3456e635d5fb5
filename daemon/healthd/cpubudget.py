"""Bound the CPU a coroutine may use, as the scheduler's deadline bounds its time.

A probe runs in steps between its awaits. `cpu_bounded` drives the probe's
coroutine itself, step by step, adding each step's thread CPU time (the loop
runs one step at a time, so a step's CPU is the probe's); once the sum passes
the budget, a `ProbeFailure` is thrown into the probe at its next await, so
its `finally` blocks close what it holds. A target that makes a probe spin
(issue 11 item 8) then costs at most the budget, not the event loop.

The scheduler's fast path (`ProbeSpec.start`: tcp, syn, one-request icmp) is not
metered: it runs no coroutine, and each of its callbacks does a fixed handful of
system calls and builds one outcome, with no loop over what the target sends, so a
target cannot make it spin; its time is bounded by the deadline in the scheduler's heap.
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
        self.used = 0.0
        self._over = False

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
        if self.used > self._budget and not self._over:
            self._over = True  # once: the probe may still clean up (await a close) after it
            failure = ProbeFailure(ErrorKind.ERROR, f"the probe used more than {self._budget:g}s of CPU")
            resume, args = self._coro.throw, (failure,)
        started, collections = time.thread_time(), _older_collections()
        try:
            return resume(*args)
        finally:
            # a garbage collection that ran during the step is the process's work, not the
            # probe's: a full pass of a large heap can take longer than a probe's whole budget
            if _older_collections() == collections:
                self.used += time.thread_time() - started


def _older_collections() -> int:
    """Collections of generations 1 and 2 so far (generation 0 passes are too short to matter)."""
    stats = gc.get_stats()
    return int(stats[1]["collections"]) + int(stats[2]["collections"])


def cpu_bounded(work: Awaitable[T], budget: float) -> Awaitable[T]:
    """`await cpu_bounded(probe(check, ctx), 0.5)`: the probe, failing once it used `budget`
    seconds of CPU. (An awaitable that is not a coroutine is awaited as it is.)"""
    return _Bounded(work, budget) if isinstance(work, Coroutine) else work
