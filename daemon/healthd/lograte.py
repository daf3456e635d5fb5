"""Rate-limit repeated log lines, so a storm (e.g. asyncio's `socket.accept() out of system
resource` traceback once per accept while descriptors run out) cannot flood the log.

A line is "repeated" when its logger, level and formatted message are the same. Each
such line passes `burst` times per `window` seconds; the rest are dropped (tracebacks
with them) and counted, and the next one to pass says how many were dropped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

BURST = 5
WINDOW = 60.0  # seconds
MAX_KEYS = 4096  # distinct lines remembered; past it the oldest windows are forgotten


@dataclass(slots=True)
class _Window:
    started: float
    passed: int = 0
    dropped: int = 0


class RepeatFilter(logging.Filter):
    """A handler filter: at most `burst` copies of one line per `window` seconds."""

    def __init__(
        self, burst: int = BURST, window: float = WINDOW, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self._burst = burst
        self._window = window
        self._clock = clock
        self._seen: dict[tuple[str, int, str], _Window] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, record.getMessage())
        now = self._clock()
        seen = self._seen.get(key)
        if seen is None or now - seen.started >= self._window:
            dropped = seen.dropped if seen is not None else 0
            self._remember(key, _Window(now, passed=1))
            if dropped:
                _note_dropped(record, dropped, self._window)
            return True
        if seen.passed < self._burst:
            seen.passed += 1
            return True
        seen.dropped += 1
        return False

    def _remember(self, key: tuple[str, int, str], window: _Window) -> None:
        self._seen.pop(key, None)
        if len(self._seen) >= MAX_KEYS:
            del self._seen[next(iter(self._seen))]  # dicts keep insertion order: the oldest
        self._seen[key] = window


def _note_dropped(record: logging.LogRecord, dropped: int, window: float) -> None:
    # fold the args in first: the note must not be taken for a %-placeholder
    record.msg = f"{record.getMessage()} ({dropped} more like this were dropped in {window:g}s)"
    record.args = None
