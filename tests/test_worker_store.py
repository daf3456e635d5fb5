"""A worker's store decides state changes exactly as the main store does, and keeps no more."""

from __future__ import annotations

import random

import pytest
from healthd.results import ErrorKind, ProbeResult
from healthd.store import CheckInfo, CheckState, ServiceInfo, Store
from healthd.worker_loop import DebounceState

INFO = CheckInfo("s", "c", "tcp", "127.0.0.1:1", 2, 3, 120)


def stores() -> tuple[Store, Store]:
    full, lean = Store(), Store(probe_histograms=False, state_type=DebounceState)
    for store in (full, lean):
        store.apply([ServiceInfo("s", {}, (INFO,))], now=1000.0)
    return full, lean


def result(at: float, outcome: str) -> ProbeResult:
    if outcome == "ok":
        return ProbeResult(time=at, ok=True, duration=0.001, latency=0.001)
    kind = ErrorKind.LOCAL if outcome == "local" else ErrorKind.REFUSED
    return ProbeResult(time=at, ok=False, duration=0.001, latency=None, error_kind=kind, error_message="x")


@pytest.mark.parametrize("seed", range(5))
def test_every_result_makes_the_same_transition_and_streaks_in_both(seed: int) -> None:
    full, lean = stores()
    outcomes = random.Random(seed).choices(["ok", "fail", "local"], weights=[5, 4, 1], k=300)
    for n, outcome in enumerate(outcomes):
        one, other = (store.record(INFO.key, result(1000.0 + n, outcome)) for store in (full, lean))
        assert (one and (one.old, one.new, one.streak)) == (other and (other.old, other.new, other.streak))
        a, b = full.check(INFO.key), lean.check(INFO.key)
        assert a is not None and b is not None
        assert (a.status, a.since, a.streak_ok, a.streak_fail, a.last_seen) == (
            b.status,
            b.since,
            b.streak_ok,
            b.streak_fail,
            b.last_seen,
        )
        assert b.last is None  # the result itself is main's alone
    assert b.changes == sum(outcome != "local" for outcome in outcomes)


def test_the_worker_keeps_no_uptime_history_or_counters() -> None:
    _, lean = stores()
    for n in range(10):
        lean.record(INFO.key, result(1000.0 + n, "ok"))
    state = lean.check(INFO.key)
    assert isinstance(state, DebounceState) and isinstance(state, CheckState)
    assert state.last is None
    for kept_by_main in ("history", "uptime", "failures", "counts", "duration_histogram"):
        assert not hasattr(state, kept_by_main)
