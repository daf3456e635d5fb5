"""Uptime aggregates on a fake clock: bucket boundaries, down time, percentiles, bounds."""

from __future__ import annotations

import sys

import pytest
from healthd.results import ErrorKind, ProbeResult
from healthd.store import CheckInfo, ServiceInfo, Store
from healthd.uptime import DAY, HOUR, MINUTE, Uptime, quantile, series_shape

T0 = 1_800_000_000.0 - 1_800_000_000.0 % DAY  # a UTC midnight


def footprint(uptime: Uptime) -> int:
    return sum(sys.getsizeof(a) for a in uptime.arrays())


def test_results_land_in_their_minute_on_either_side_of_a_boundary() -> None:
    uptime = Uptime()
    uptime.observe(T0 + 59.9, True, 0.001, down=False)
    uptime.observe(T0 + 60.0, False, None, down=False)
    uptime.observe(T0 + 60.1, True, 0.003, down=False)
    buckets = uptime.series(2 * MINUTE, MINUTE, now=T0 + 61)
    assert [b.start for b in buckets] == [T0, T0 + 60]
    assert [(b.window.probes, b.window.successes) for b in buckets] == [(1, 1), (2, 1)]
    assert buckets[1].window.ratio == 0.5
    assert buckets[1].window.latency_mean == pytest.approx(0.003)
    one_hour = uptime.window("1h", now=T0 + 61)
    assert (one_hour.probes, one_hour.successes) == (3, 2)
    assert one_hour.latency_mean == pytest.approx(0.002)


def test_empty_windows_have_no_ratio_and_old_buckets_expire() -> None:
    uptime = Uptime()
    assert uptime.window("24h", now=T0).ratio is None
    uptime.observe(T0, True, 0.001, down=False)
    assert uptime.window("1h", now=T0 + HOUR - 1).probes == 1
    assert uptime.window("1h", now=T0 + HOUR).probes == 0  # the minute fell out of the window
    assert uptime.window("24h", now=T0 + HOUR).probes == 1
    assert uptime.window("30d", now=T0 + 29 * DAY).probes == 1
    assert uptime.window("30d", now=T0 + 30 * DAY).probes == 0
    series = uptime.series(90 * DAY, DAY, now=T0 + 89 * DAY)
    assert len(series) == 90 and series[0].window.probes == 1 and series[0].start == T0


def test_31_days_every_10s_keeps_memory_constant_and_counts_exact() -> None:
    uptime = Uptime()
    size = footprint(uptime)
    assert size <= 8 * 1024
    step, t = 10, T0
    end = T0 + 31 * DAY
    failures = 0
    while t < end:
        ok = int(t) % 1000 != 0  # one failure every 1,000 s
        failures += not ok
        uptime.observe(t, ok, 0.002, down=False)
        t += step
    assert footprint(uptime) == size
    now = end - 1
    assert uptime.window("1h", now).probes == HOUR // step
    assert uptime.window("24h", now).probes == DAY // step
    assert uptime.window("7d", now).probes == 7 * DAY // step
    month = uptime.window("30d", now)
    assert month.probes == 30 * DAY // step
    assert month.ratio == pytest.approx(1 - 10 / 1000, abs=1e-4)
    assert month.latency_mean == pytest.approx(0.002, rel=1e-6)


def test_latency_percentiles_come_from_fixed_buckets() -> None:
    uptime = Uptime()
    for n in range(100):  # 90 fast answers, 10 slow ones
        uptime.observe(T0 + n, True, 0.0004 if n < 90 else 0.2, down=False)
    p50, p95, p99 = uptime.window("1h", now=T0 + 100).percentiles or (None, None, None)
    assert p50 is not None and 0.00025 < p50 <= 0.0005
    assert p95 is not None and 0.1 < p95 <= 0.25
    assert p99 is not None and 0.1 < p99 <= 0.25
    assert uptime.window("24h", now=T0 + 100).percentiles == (p50, p95, p99)
    assert uptime.window("7d", now=T0 + 100).percentiles is None
    assert quantile([0] * 16, 0.5) is None
    assert quantile([0] * 15 + [3], 0.5) == 5.0  # above every bound: the highest bound


def check(rise: int = 1, fall: int = 2) -> Store:
    store = Store()
    store.apply([ServiceInfo("s", {}, (CheckInfo("s", "c", "tcp", "127.0.0.1:1", rise, fall, 10),))])
    return store


def record(store: Store, t: float, ok: bool) -> None:
    if ok:
        store.record(("s", "c"), ProbeResult(time=t, ok=True, duration=0.001, latency=0.001))
    else:
        failure = ProbeResult(
            time=t, ok=False, duration=0.5, latency=None, error_kind=ErrorKind.TIMEOUT, error_message="x"
        )
        store.record(("s", "c"), failure)


def test_down_time_follows_the_debounced_state_across_buckets() -> None:
    store = check(rise=1, fall=2)
    state = store.check(("s", "c"))
    assert state is not None
    base = T0 + 50.0
    marks = "++--" + "-" * 6 + "+"  # down from the second failure (base+3) to the recovery (base+10)
    for n, mark in enumerate(marks):
        record(store, base + n, mark == "+")
    minutes = state.uptime.series(2 * MINUTE, MINUTE, now=base + 11)
    assert [b.window.down_seconds for b in minutes] == pytest.approx([7.0, 0.0])  # base+3 .. T0+60
    record(store, base + 20, False)
    record(store, base + 21, False)  # down again at T0+71, still down at "now"
    one_hour = state.uptime.window("1h", now=base + 30)
    assert one_hour.down_seconds == pytest.approx(7.0 + 9.0)
    assert state.uptime.window("24h", now=base + 30).down_seconds == pytest.approx(16.0)


def test_a_single_failure_below_fall_is_not_down_time() -> None:
    store = check(rise=1, fall=3)
    for n, mark in enumerate("+-+-+"):
        record(store, T0 + n, mark == "+")
    state = store.check(("s", "c"))
    assert state is not None
    window = state.uptime.window("1h", now=T0 + 10)
    assert window.down_seconds == 0.0 and (window.probes, window.successes) == (5, 3)


def test_dump_and_load_give_the_same_windows() -> None:
    uptime = Uptime()
    for n in range(0, 3 * DAY, 37):
        uptime.observe(T0 + n, n % 7 != 0, 0.001 * (n % 5 + 1), down=n % 11 == 0)
    loaded = Uptime.load(uptime.dump())
    now = T0 + 3 * DAY
    for name in ("1h", "24h", "7d", "30d"):
        assert loaded.window(name, now).probes == uptime.window(name, now).probes
        assert loaded.window(name, now).percentiles == uptime.window(name, now).percentiles
    with pytest.raises(ValueError):
        Uptime.load({"rings": [[0, b"", b""]] * 3, "histograms": [[0, b""]] * 2})


@pytest.mark.parametrize(
    ("window", "step", "expected"),
    [
        ("90h", "1h", (90 * HOUR, HOUR)),
        ("90d", "1d", (90 * DAY, DAY)),
        ("1h", "1m", (HOUR, MINUTE)),
        ("60m", "1m", (HOUR, MINUTE)),
        ("168h", "1h", (168 * HOUR, HOUR)),
        ("7d", "1h", (7 * DAY, HOUR)),
        ("24h", "1h", (DAY, HOUR)),
    ],
)
def test_supported_series(window: str, step: str, expected: tuple[int, int]) -> None:
    assert series_shape(window, step) == expected


@pytest.mark.parametrize(
    ("window", "step"),
    [("2h", "1m"), ("8d", "1h"), ("91d", "1d"), ("1h", "1d"), ("90h", "5m"), ("abc", "1h"), ("0h", "1h")],
)
def test_unsupported_series_name_what_is_allowed(window: str, step: str) -> None:
    with pytest.raises(ValueError, match="step=1m with window up to 1h"):
        series_shape(window, step)
