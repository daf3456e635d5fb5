"""History keeps durations, latencies and phases as 0.1 µs ticks: what the API shows is unchanged."""

from __future__ import annotations

import math
import struct
import sys

from healthd import history_form
from healthd.history import History, kept, to_ticks
from healthd.results import ProbeResult
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.test_history import as_kept

seconds = st.floats(0.0, 428.9999, allow_subnormal=False)


def shown(value: float) -> float:
    """How the API renders a duration (api_dicts: milliseconds to 4 decimals)."""
    return round(value * 1000, 4)


@settings(max_examples=500, deadline=None)
@given(seconds)
def test_a_kept_duration_shows_as_the_original_and_keeping_is_idempotent(value: float) -> None:
    assert shown(kept(value)) == shown(value)
    assert kept(kept(value)) == kept(value)
    assert abs(kept(value) - value) <= 0.5e-7 + 1e-12 * value


results = st.builds(
    ProbeResult,
    time=st.floats(1e9, 2e9),
    ok=st.booleans(),
    duration=seconds,
    latency=st.none() | seconds,
    phases=st.dictionaries(st.sampled_from(["resolve", "connect", "tls", "first_byte"]), seconds, max_size=3),
    details=st.dictionaries(
        st.sampled_from(["address", "rtt_ms", "n"]), st.floats(0, 1e3) | st.text(max_size=3)
    ),
    gauges=st.dictionaries(st.sampled_from(["rtt_seconds", "loss"]), st.floats(-1e3, 1e3), max_size=2),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(results, max_size=30), st.integers(1, 12))
def test_a_history_gives_back_each_result_as_kept_and_survives_its_snapshot_form(
    appended: list[ProbeResult], maxlen: int
) -> None:
    history = History(maxlen)
    for result in appended:
        history.append(result)
    expected = [as_kept(result) for result in appended[-maxlen:]]
    assert list(history) == expected
    restored = History.from_copy(history_form.load(history_form.dump(history.copy())))
    assert list(restored) == expected and len(restored) == len(expected)
    if appended:  # a restored ring goes on as the original does
        for ring in (history, restored):
            ring.append(appended[0])
        assert list(restored) == list(history)
        assert list(reversed(restored)) == list(reversed(history))
    assert list(History.of(maxlen, appended).resized(3)) == expected[-3:]


def test_what_no_tick_holds_is_kept_whole_and_exact() -> None:
    history = History(4)
    plain = ProbeResult(time=1.0, ok=True, duration=0.25, latency=0.125)
    for odd in (500.0, math.inf, -0.001):
        result = ProbeResult(time=2.0, ok=True, duration=odd, latency=0.1234567891)
        history.append(plain)
        history.append(result)
        assert history[-1] is result and history[-2] == plain
    assert to_ticks(math.nan) is None and to_ticks(429.0) is None and to_ticks(428.99) == 4_289_900_000


def test_the_snapshot_form_byte_for_byte() -> None:
    history = History(3)
    history.append(
        ProbeResult(time=1.5, ok=True, duration=0.0021, latency=None, phases={"connect": 0.00123456})
    )
    data = history_form.dump(history.copy())
    assert data["times"] == struct.pack("<d", 1.5)
    assert data["ticks"] == struct.pack("<3I", 21_000, 0xFFFFFFFF, 12_346)  # latency None: all ones
    assert (data["tick_width"], data["float_width"], data["floats"]) == (3, 0, b"")
    assert data["index"] == struct.pack("<I", 0)


def test_a_full_history_holds_25_bytes_a_tcp_result() -> None:
    history = History(120)
    for n in range(200):
        history.append(
            ProbeResult(
                time=1e9 + n,
                ok=True,
                duration=2e-4,
                latency=1e-4 + n * 1e-9,
                phases={"resolve": 1e-6, "connect": 1e-4},
                details={"address": "127.0.0.1:80"},
            )
        )
    arrays = sum(sys.getsizeof(a) - sys.getsizeof(a[:0]) for a in history.arrays())
    # time; duration, latency, two phases; the shape's index: nothing over-allocated
    assert arrays == 120 * (8 + 4 * 4 + 1)
    shapes = history.copy().shapes
    assert len({id(shape) for shape in shapes}) == 1


def test_a_check_whose_first_result_failed_keeps_its_later_results_compact() -> None:
    history = History(120)
    history.append(ProbeResult(time=0.0, ok=False, duration=1.0, latency=None, error_message="timeout"))
    for n in range(1, 130):
        history.append(
            ProbeResult(
                time=float(n),
                ok=True,
                duration=2e-4,
                latency=1e-4,
                phases={"resolve": 0.0, "connect": 1e-4},
                details={"address": "127.0.0.1:80", "rtt_ms": 0.1, "rtt_source": "tcp_info"},
                gauges={"rtt_seconds": 1e-4},
            )
        )
    shapes = history.copy().shapes
    assert not any(isinstance(shape, ProbeResult) for shape in shapes)  # none kept whole
    assert len({id(shape) for shape in shapes}) == 1
    assert history[-1].details["rtt_ms"] == 0.1 and history[-1].phases == {"resolve": 0.0, "connect": 1e-4}
