"""Repeated log lines are rate-limited; distinct lines are not."""

from __future__ import annotations

import logging

from healthd.lograte import RepeatFilter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def record(message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("asyncio", logging.ERROR, __file__, 1, message, args, None)


def test_a_storm_of_one_line_passes_burst_times_per_window_then_reports_the_dropped() -> None:
    clock = Clock()
    repeat = RepeatFilter(burst=3, window=60.0, clock=clock)
    passed = [repeat.filter(record("socket.accept() out of system resource")) for _ in range(1000)]
    assert sum(passed) == 3
    clock.now = 61.0
    later = record("socket.accept() out of system resource")
    assert repeat.filter(later)
    assert (
        later.getMessage()
        == "socket.accept() out of system resource (997 more like this were dropped in 60s)"
    )


def test_distinct_lines_all_pass() -> None:
    repeat = RepeatFilter(burst=1, window=60.0, clock=Clock())
    assert all(repeat.filter(record("check %s is down", f"s/c{i}")) for i in range(100))
    assert not repeat.filter(record("check %s is down", "s/c1"))
