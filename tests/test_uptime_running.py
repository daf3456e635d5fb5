"""The rings' running window counts always equal the sum of the window's buckets."""

from __future__ import annotations

import random

from healthd.uptime import DAY, HOUR, MINUTE, WINDOW_NAMES, Uptime

START = 1_700_000_000.0


def summed(uptime: Uptime, name: str, now: float) -> tuple[int, int]:
    """The window's counts the slow way: every bucket of it summed."""
    ring, count, _ = uptime._window_parts(name)
    last = int(now // ring.step)
    return ring.counts_in(last - count + 1, last)


def assert_agree(uptime: Uptime, now: float) -> None:
    for name in WINDOW_NAMES:
        assert uptime.counts(name, now) == summed(uptime, name, now), (name, now - START)


def test_running_counts_match_the_buckets_through_gaps_jumps_and_clock_steps() -> None:
    rng = random.Random(12)
    uptime, now = Uptime(), START
    steps = (1.0, 10.0, 59.0, MINUTE * 7, HOUR, HOUR * 30, DAY * 3, DAY * 40, -30.0, -HOUR * 2)
    for _ in range(3000):
        now += rng.choice(steps) * rng.random()
        ok = rng.random() < 0.8
        uptime.observe(now, ok, 0.001 if ok else None, down=rng.random() < 0.2)
        for later in (0.0, 30.0, MINUTE * 59, MINUTE * 61, HOUR * 23, HOUR * 25, DAY * 29, DAY * 31):
            assert_agree(uptime, now + later)
    assert any(uptime.counts(name, now)[0] for name in WINDOW_NAMES)


def test_loaded_rings_count_as_the_dumped_ones() -> None:
    uptime = Uptime()
    for n in range(2000):
        uptime.observe(START + n * 97.0, n % 5 != 0, 0.002, down=False)
    now = START + 2000 * 97.0
    loaded = Uptime.load(uptime.dump())
    assert [loaded.counts(w, now) for w in WINDOW_NAMES] == [uptime.counts(w, now) for w in WINDOW_NAMES]
    loaded.observe(now + HOUR, True, 0.001, down=False)
    assert_agree(loaded, now + HOUR * 2)


def test_a_full_bucket_widens_and_the_totals_agree() -> None:
    uptime = Uptime()
    for n in range(70_000):  # more than a minute bucket's uint16 holds
        uptime.observe(START + n * 1e-4, True, None, down=False)
    assert uptime.counts("1h", START + 10) == summed(uptime, "1h", START + 10) == (70_000, 70_000)
