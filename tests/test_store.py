"""The store's state machine, aggregation and bounds: pure logic, no I/O."""

from __future__ import annotations

from healthd.results import ErrorKind, ProbeResult
from healthd.store import CheckInfo, ServiceInfo, Status, Store


def info(name: str = "c", service: str = "s", rise: int = 2, fall: int = 3, history: int = 5) -> CheckInfo:
    return CheckInfo(service, name, "tcp", "127.0.0.1:1", rise, fall, history)


def result(ok: bool, t: float = 0.0) -> ProbeResult:
    if ok:
        return ProbeResult(time=t, ok=True, duration=0.001, latency=0.001)
    return ProbeResult(
        time=t, ok=False, duration=0.002, latency=None, error_kind=ErrorKind.REFUSED, error_message="refused"
    )


def store_with(*checks: CheckInfo) -> Store:
    store = Store()
    store.apply([ServiceInfo("s", {}, tuple(checks))])
    return store


def feed(store: Store, oks: str, key: tuple[str, str] = ("s", "c")) -> list[Status]:
    """Feed results written as '+' (success) and '-' (failure); return the status after each."""
    statuses = []
    for t, mark in enumerate(oks):
        store.record(key, result(mark == "+", float(t)))
        state = store.check(key)
        assert state is not None
        statuses.append(state.status)
    return statuses


def test_first_verdict_needs_one_result() -> None:
    assert feed(store_with(info()), "+")[0] is Status.UP
    assert feed(store_with(info()), "-")[0] is Status.DOWN


def test_fall_and_rise_debounce_changes() -> None:
    U, D = Status.UP, Status.DOWN
    assert feed(store_with(info(rise=2, fall=3)), "+--+---++") == [U, U, U, U, U, U, D, D, U]


def test_transitions_since_and_counters() -> None:
    store = store_with(info(rise=1, fall=1))
    transitions = [
        store.record(("s", "c"), result(ok, float(t))) for t, ok in enumerate([True, False, False, True])
    ]
    assert transitions[0] is not None and transitions[0].old is Status.UNKNOWN  # first verdict
    assert transitions[1] is not None and (transitions[1].old, transitions[1].new) == (Status.UP, Status.DOWN)
    assert transitions[2] is None
    state = store.check(("s", "c"))
    assert state is not None
    assert state.since == 3.0
    assert state.transitions == {"up": 1, "down": 1}  # the first verdict is not a change
    assert state.counts == {"success": 2, "refused": 2}


def test_history_is_bounded_and_histogram_counts_all() -> None:
    store = store_with(info(history=5))
    feed(store, "+" * 1000)
    state = store.check(("s", "c"))
    assert state is not None
    assert len(state.history) == 5
    assert [r.time for r in state.history] == [995.0, 996.0, 997.0, 998.0, 999.0]
    assert state.duration_histogram is not None and state.duration_histogram.count == 1000


def test_histograms_can_be_switched_off() -> None:
    store = Store(probe_histograms=False)
    store.apply([ServiceInfo("s", {}, (info(),))])
    store.record(("s", "c"), result(True))
    state = store.check(("s", "c"))
    assert state is not None and state.duration_histogram is None


def test_service_status_aggregation() -> None:
    store = store_with(info("a", rise=1, fall=1), info("b", rise=1, fall=1))
    service = store.services[0]
    assert store.status_of(service) is Status.UNKNOWN
    store.record(("s", "a"), result(True))
    assert store.status_of(service) is Status.UNKNOWN  # none down, some unknown
    store.record(("s", "b"), result(False))
    assert store.status_of(service) is Status.DEGRADED
    store.record(("s", "b"), result(True))
    assert store.status_of(service) is Status.UP
    store.record(("s", "a"), result(False))
    store.record(("s", "b"), result(False))
    assert store.status_of(service) is Status.DOWN


def test_apply_keeps_unchanged_state_and_restarts_changed() -> None:
    store = store_with(info("a"), info("b"))
    feed(store, "++", ("s", "a"))
    feed(store, "--", ("s", "b"))
    store.apply([ServiceInfo("s", {}, (info("a"), info("b"), info("c")))], restart={("s", "b")})
    a, b, c = (store.check(("s", n)) for n in "abc")
    assert a is not None and len(a.history) == 2 and a.status is Status.UP
    assert b is not None and len(b.history) == 0 and b.status is Status.UNKNOWN
    assert c is not None and c.status is Status.UNKNOWN
    store.apply([ServiceInfo("s", {}, (info("c"),))])
    assert store.check(("s", "a")) is None
    assert store.record(("s", "a"), result(True)) is None  # a late result of a removed check is dropped


def test_history_gives_back_equal_results_whatever_their_shape() -> None:
    store = store_with(info(history=4))
    sent = [
        ProbeResult(
            time=1.0, ok=True, duration=0.01, latency=0.005, phases={"connect": 0.005}, details={"a": 1}
        ),
        ProbeResult(
            time=2.0, ok=True, duration=0.02, latency=0.006, phases={"connect": 0.006}, details={"a": 1}
        ),
        result(False, 3.0),
        ProbeResult(
            time=4.0,
            ok=True,
            duration=0.03,
            latency=None,
            phases={"resolve": 0.1, "connect": 0.2},
            details={"b": [1, 2]},
            gauges={"g": 1.5},
        ),  # more phases than the first result
        ProbeResult(
            time=5.0, ok=True, duration=0.04, latency=0.007, phases={"connect": 0.007}, details={"a": 2}
        ),
    ]
    for r in sent:
        store.record(("s", "c"), r)
    state = store.check(("s", "c"))
    assert state is not None
    assert list(state.history) == sent[1:]
    assert list(reversed(state.history)) == sent[:0:-1]
    assert state.history[0] == sent[1] and state.history[-1] == sent[-1]


def test_every_result_moves_changes_a_local_error_too() -> None:
    store = store_with(info())
    state = store.check(("s", "c"))
    assert state is not None and state.changes == 0
    store.record(("s", "c"), result(True, 1.0))
    local = ProbeResult(time=2.0, ok=False, duration=0.0, latency=None, error_kind=ErrorKind.LOCAL)
    store.record(("s", "c"), local)  # changes only last_seen, which `stale` is told from
    store.record(("s", "c"), result(True, 1.0))  # the very same result again: the uptime counts move
    assert state.changes == 3
    store.apply(store.services)  # a reload keeps the state and its count
    assert store.check(("s", "c")) is state and state.changes == 3
