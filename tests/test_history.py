"""A check's history gives back exactly the results it kept, and shares what repeats."""

from __future__ import annotations

import struct
from dataclasses import replace
from typing import Any

import msgpack
import pytest
from healthd import history_form
from healthd.history import History, kept
from healthd.results import ErrorKind, ProbeResult


def tcp_result(at: float, rtt_ms: float, ok: bool = True) -> ProbeResult:
    return ProbeResult(
        time=at,
        ok=ok,
        duration=0.002,
        latency=rtt_ms / 1000 if ok else None,
        error_kind=None if ok else ErrorKind.REFUSED,
        error_message=None if ok else "connect to 127.0.0.1:1: Connection refused",
        phases={"connect": 0.001},
        details={"address": "127.0.0.1:80", "rtt_ms": rtt_ms, "rtt_source": "tcp_info", "attempts": 1},
        gauges={"rtt_seconds": rtt_ms / 1000},
    )


def as_kept(result: ProbeResult) -> ProbeResult:
    """`result` as a History gives it back: durations, latency and phases to the 0.1 µs tick."""
    return replace(
        result,
        duration=kept(result.duration),
        latency=None if result.latency is None else kept(result.latency),
        phases={name: kept(value) for name, value in result.phases.items()},
    )


def kept_all(results: list[ProbeResult]) -> list[ProbeResult]:
    return [as_kept(result) for result in results]


def test_results_with_a_different_rtt_each_run_come_back_equal_and_share_one_shape() -> None:
    history = History(50)
    results = [tcp_result(1000.0 + i, 0.1 + i / 7) for i in range(120)]  # wraps the ring
    for result in results:
        history.append(result)
    assert list(history) == kept_all(results[-50:])
    assert list(reversed(history)) == kept_all(results[-50:][::-1])
    assert history[0] == as_kept(results[-50]) and history[-1] == as_kept(results[-1])
    assert list(history[-1].details) == ["address", "rtt_ms", "rtt_source", "attempts"]  # order kept
    shapes = {id(shape) for shape in history.copy().shapes}
    assert len(shapes) == 1  # the RTT is in the numbers, not in a shape of its own per result


def test_a_flapping_check_reuses_the_entries_of_shapes_no_slot_holds_any_more() -> None:
    history = History(10)
    results = [tcp_result(1000.0 + i, 0.5, ok=i % 3 != 0) for i in range(500)]  # a new shape each change
    for n, result in enumerate(results, 1):
        history.append(result)
        assert list(history) == kept_all(results[max(0, n - 10) : n])
    assert len(history._shapes) <= 10  # one entry per run of equal shapes in the ring, at most
    assert sum(history._uses) == 10


def test_a_verdict_change_starts_a_new_shape_and_both_read_back() -> None:
    history = History(10)
    results = [tcp_result(1.0, 0.5), tcp_result(2.0, 0.0, ok=False), tcp_result(3.0, 0.7)]
    for result in results:
        history.append(result)
    assert list(history) == kept_all(results)


@pytest.mark.parametrize(
    "details",
    [
        {"address": "127.0.0.1:80", "rtt_ms": 0.3, "rtt_source": "tcp_info", "attempts": 2},  # a value
        {"address": "127.0.0.1:80", "rtt_ms": 0.3, "rtt_source": "tcp_info", "tries": 1},  # a key
        {"address": "127.0.0.1:80", "rtt_ms": 0.3, "attempts": 1, "rtt_source": "tcp_info"},  # the order
        {"address": "127.0.0.1:80", "rtt_ms": "0.3", "rtt_source": "tcp_info", "attempts": 1},  # not a float
        {"address": "127.0.0.1:80", "rtt_ms": 0.3, "rtt_source": "tcp_info", "attempts": 1.0},  # now a float
        {"address": "127.0.0.1:80", "rtt_ms": 0.3, "rtt_source": "tcp_info"},  # one fewer
    ],
)
def test_a_result_whose_details_differ_from_the_newest_shape_gets_its_own(details: dict[str, Any]) -> None:
    history = History(10)
    first = tcp_result(1.0, 0.2)
    second = replace(tcp_result(2.0, 0.3), details=details)
    history.append(first)
    history.append(second)
    assert list(history) == kept_all([first, second])
    assert list(history[1].details) == list(details)  # keys and their order come back too
    first_shape, second_shape = history.copy().shapes
    assert second_shape is not first_shape


def test_a_result_with_more_numbers_than_the_first_widens_the_slots() -> None:
    history = History(10)
    plain = ProbeResult(time=1.0, ok=True, duration=0.1, latency=0.1, details={"status": 200})
    richer = tcp_result(2.0, 0.4)  # one phase, one float detail, one gauge more
    history.append(plain)
    history.append(richer)
    assert list(history) == kept_all([plain, richer])
    assert not isinstance(history.copy().shapes[1], ProbeResult)  # not kept whole
    assert (history.tick_width, history.float_width) == (3, 2)


def test_a_dumped_history_loads_back_through_msgpack() -> None:
    history = History(20)
    results = [tcp_result(10.0 + i, i * 0.3, ok=i % 5 != 0) for i in range(30)]
    for result in results:
        history.append(result)
    data = msgpack.unpackb(msgpack.packb(history_form.dump(history.copy())), raw=False)
    assert list(History.from_copy(history_form.load(data))) == kept_all(results[-20:])


def test_a_snapshot_written_before_floats_moved_into_the_numbers_still_loads() -> None:
    # tag 0: the shape kept every detail and gauge itself; width = 3 + phases
    old = {
        "maxlen": 5,
        "width": 4,
        "start": 0,
        "numbers": struct.pack("<8d", 1.0, 0.01, 0.005, 0.004, 2.0, 0.01, 0.006, 0.005),
        "shapes": [[0, True, None, None, ["connect"], {"rtt_ms": 5.0}, {"rtt_seconds": 0.005}]],
        "index": struct.pack("<2I", 0, 0),
    }
    loaded = list(History.from_copy(history_form.load(old)))
    assert [r.time for r in loaded] == [1.0, 2.0]
    assert loaded[1].details == {"rtt_ms": 5.0} and loaded[1].phases == {"connect": 0.005}
    appended = History.from_copy(history_form.load(old))
    appended.append(tcp_result(3.0, 0.2))  # a new result after the old ones
    assert list(appended)[-1] == as_kept(tcp_result(3.0, 0.2))
