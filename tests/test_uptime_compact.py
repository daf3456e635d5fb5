"""The uptime rings' compact layout (uint16 hourly counts, down seconds kept only once a check is
down) answers exactly what the wide layout did, and reads snapshots of either."""

from __future__ import annotations

import struct
import sys
from array import array

from healthd.uptime import DAY, HOUR, MINUTE, SERIES_STEPS, WINDOW_NAMES, Uptime
from healthd.uptime_rings import Ring
from hypothesis import given, settings
from hypothesis import strategies as st

T0 = 1_800_000_000.0 - 1_800_000_000.0 % DAY  # a UTC midnight


def wide() -> Uptime:
    """An Uptime laid out as before: uint32 hourly and daily counts, down seconds allocated up front."""
    uptime = Uptime()
    uptime._hour = Ring(HOUR, 168, "I", "f", spans=(24, 168))
    uptime._day = Ring(DAY, 90, "I", "d", spans=(30,))
    for ring in uptime._rings():
        ring.down = array(ring.float_code, [0.0]) * ring.size
    return uptime


def answers(uptime: Uptime, now: float) -> list[object]:
    found: list[object] = [uptime.window(name, now) for name in WINDOW_NAMES]
    found.append(uptime.all_counts(now))
    found += [uptime.series(step * most, step, now) for step, most in SERIES_STEPS.values()]
    return found


def footprint(uptime: Uptime) -> int:
    return sum(sys.getsizeof(a) for a in uptime.arrays())


# (seconds since the previous probe, ok, latency, down after it); gaps up to 3 days cross every ring
observations = st.lists(
    st.tuples(
        st.one_of(st.floats(0.0, 120.0), st.floats(0.0, 3 * DAY)),
        st.booleans(),
        st.floats(1e-6, 5.0),
        st.booleans(),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(observations, st.floats(0.0, 2 * DAY))
def test_the_compact_layout_answers_what_the_wide_one_did(
    steps: list[tuple[float, bool, float, bool]], later: float
) -> None:
    compact, reference = Uptime(), wide()
    t = T0
    for gap, ok, latency, down in steps:
        t += gap
        for uptime in (compact, reference):
            uptime.observe(t, ok, latency if ok else None, down)
    for now in (t, t + later):
        assert answers(compact, now) == answers(reference, now)
    loaded = Uptime.load(reference.dump())  # uint32 hourly counts, as snapshot format 1 held them
    assert loaded.dump() == compact.dump()  # the same snapshot bytes as the compact layout's
    reference.forget_open_stretch()  # a snapshot holds no open down stretch
    assert answers(loaded, t + later) == answers(reference, t + later)


def test_down_seconds_take_memory_only_once_a_check_is_down() -> None:
    uptime = Uptime()
    never_down = footprint(uptime)
    assert never_down <= 4.8 * 1024  # was 7.0 KB of arrays, then 5.1 KB (uint32 daily counts)
    for n in range(100):
        uptime.observe(T0 + 10 * n, True, 0.001, down=False)
    assert footprint(uptime) == never_down
    uptime.observe(T0 + 1000, False, None, down=True)
    assert footprint(uptime) == never_down  # no down second yet: the stretch is still open
    uptime.observe(T0 + 1010, False, None, down=True)
    assert footprint(uptime) == never_down + sum(sys.getsizeof(r.down) for r in uptime._rings())
    assert uptime.window("1h", T0 + 1010).down_seconds == 10.0


def test_a_never_down_ring_dumps_zero_down_seconds_before_its_latency_sums() -> None:
    uptime = Uptime()
    uptime.observe(T0 + 5, True, 0.25, down=False)  # 0.25 is exact in float32 and float64
    minute, hour, day = uptime.dump()["rings"]
    m, h, d = int(T0 // MINUTE) % 60, int(T0 // HOUR) % 168, int(T0 // DAY) % 90
    assert minute[2] == bytes(4 * 60) + bytes(4 * m) + struct.pack("<f", 0.25) + bytes(4 * (59 - m))
    one = bytes(2 * h) + struct.pack("<H", 1) + bytes(2 * (167 - h))
    assert hour[1] == one + one  # probes | successes, uint16
    assert day[2] == bytes(8 * 90) + bytes(8 * d) + struct.pack("<d", 0.25) + bytes(8 * (89 - d))


def test_format_1_hourly_counts_as_uint32_load_exactly() -> None:
    uptime = Uptime()
    uptime.observe(T0 + 5, True, 0.25, down=False)
    data = uptime.dump()
    h = int(T0 // HOUR) % 168
    counts = [0] * 336
    counts[h - 1], counts[168 + h - 1] = 7, 6
    data["rings"][1][1] = struct.pack("<336I", *counts)
    assert Uptime.load(data)._hour.counts.typecode == "H"  # all fit: kept narrow
    counts[h], counts[168 + h] = 70_000, 69_000  # more than a uint16 holds: the ring stays wide
    data["rings"][1][1] = struct.pack("<336I", *counts)
    loaded = Uptime.load(data)
    assert loaded._hour.counts.typecode == "I"
    assert list(loaded._hour.counts[h - 1 : h + 1]) == [7, 70_000]
    assert loaded.window("7d", T0 + 5).probes == 70_007
    assert Uptime.load(loaded.dump()).window("7d", T0 + 5).successes == 69_006  # and round-trips


def test_a_full_hour_bucket_widens_the_ring_instead_of_saturating() -> None:
    uptime = Uptime()
    for n in range(0x10000 + 5):
        uptime._hour.add_probe(T0 + n * 0.05, n % 2 == 0, None)  # 20 probes a second for an hour
    assert uptime._hour.counts.typecode == "I"
    assert uptime._hour.counts[int(T0 // HOUR) % 168] == 0x10000 + 5
    window = uptime.window("24h", T0 + HOUR - 1)
    assert (window.probes, window.successes) == (0x10000 + 5, 0x8000 + 3)


def test_a_full_day_bucket_widens_the_ring_instead_of_saturating() -> None:
    uptime = Uptime()
    for n in range(0x10000 + 5):
        uptime._day.add_probe(T0 + n, n % 2 == 0, 0.001)  # a probe a second for 18 hours
    assert uptime._day.counts.typecode == "I"
    window = uptime.window("30d", T0 + DAY - 1)
    assert (window.probes, window.successes) == (0x10000 + 5, 0x8000 + 3)
    loaded = Uptime.load(uptime.dump())  # a widened ring's snapshot keeps the width
    assert loaded._day.counts.typecode == "I"
    assert loaded.window("30d", T0 + DAY - 1) == window
