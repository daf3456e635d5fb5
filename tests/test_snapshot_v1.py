"""A snapshot written by the release before format 2 (tests/data/snapshot-v1.bin) still restores,
into the same state this release builds from the same results."""

from __future__ import annotations

import struct
from pathlib import Path

from healthd import snapshot
from healthd.uptime import SERIES_STEPS, WINDOW_NAMES

from tests.snapshot_v1 import COUNT, T0, fill, make_store

FIXTURE = Path(__file__).parent / "data" / "snapshot-v1.bin"
NOW = T0 + 30 * COUNT


def test_the_fixture_is_format_1() -> None:
    assert struct.unpack_from("<H", FIXTURE.read_bytes(), 8) == (1,)
    assert snapshot.FORMAT_VERSION == 2


def test_a_format_1_snapshot_restores_what_this_release_keeps_of_the_same_results() -> None:
    restored, fresh = make_store(), make_store()
    assert snapshot.restore(restored, snapshot.decode(FIXTURE.read_bytes())) == 2
    fill(fresh)
    for state in fresh.all_states():
        state.uptime.forget_open_stretch()  # as a restore does
        other = restored.check(state.info.key)
        assert other is not None
        assert len(other.history) == state.info.history
        assert list(other.history) == list(state.history)
        assert list(other.failures) == list(state.failures)
        assert other.last == state.history[-1]
        assert (other.status, other.since, other.streak_ok, other.streak_fail) == (
            state.status,
            state.since,
            state.streak_ok,
            state.streak_fail,
        )
        assert (other.counts, other.last_success, other.last_failure) == (
            state.counts,
            state.last_success,
            state.last_failure,
        )
        for name in WINDOW_NAMES:
            assert other.uptime.window(name, NOW) == state.uptime.window(name, NOW)
        assert other.uptime.all_counts(NOW) == state.uptime.all_counts(NOW)
        for step, most in SERIES_STEPS.values():
            assert other.uptime.series(step * most, step, NOW) == state.uptime.series(step * most, step, NOW)


def test_the_fixture_covers_down_time_failures_and_hours() -> None:
    store = make_store()
    snapshot.restore(store, snapshot.decode(FIXTURE.read_bytes()))
    tcp = store.check(("v1", "tcp"))
    assert tcp is not None
    day = tcp.uptime.window("24h", NOW)
    assert day.down_seconds > 0 and day.probes == COUNT and day.successes < COUNT
    assert len(tcp.failures) > 0
    assert sum(1 for bucket in tcp.uptime.series(86400, 3600, NOW) if bucket.window.probes) >= 4
