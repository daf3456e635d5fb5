"""The event hub: ring, ids, resume, bounded fan-out (pure, no sockets)."""

from __future__ import annotations

import json

import pytest
from healthd.event_fields import ServiceStatuses, check_fields, down_check_fields
from healthd.events import HIGH_WATER, Event, EventHub
from healthd.results import ErrorKind, ProbeResult
from healthd.store import CheckInfo, CheckState, Status, Transition

INFO = CheckInfo("web", "tcp", "tcp", "127.0.0.1:80", rise=1, fall=1, history=5)


def test_ids_increase_and_the_ring_keeps_the_newest() -> None:
    hub = EventHub(ring_size=3, clock=lambda: 1_700_000_000.25)
    for n in range(5):
        hub.publish("reload", added=[f"s/{n}"], removed=[], changed=[])
    assert [e.id for e in hub.recent(10)] == [3, 4, 5]
    assert [e.id for e in hub.recent(2)] == [4, 5]
    assert hub.recent(0) == []
    data = hub.recent(1)[0].data
    assert data == {
        "id": 5,
        "time": "2023-11-14T22:13:20.250Z",
        "type": "reload",
        "added": ["s/4"],
        "removed": [],
        "changed": [],
    }


def test_sse_frame_is_id_event_and_one_data_line() -> None:
    hub = EventHub()
    event = hub.publish("check", service="a", message="two\nlines")
    lines = event.sse.decode().split("\n")
    assert lines[:2] == ["id: 1", "event: check"]
    assert lines[2].startswith("data: ") and lines[3:] == ["", ""]
    assert json.loads(lines[2][6:])["message"] == "two\nlines"


class ListSink:
    """A subscriber that keeps what it is given; `unread` plays a socket buffer it has not drained."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.unread = 0
        self.gone = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.frames.append(data)

    def buffered(self) -> int:
        return self.unread

    def closing(self) -> bool:
        return self.gone or self.aborted

    def abort(self) -> None:
        self.aborted = True

    def ids(self) -> list[int]:
        text = b"".join(self.frames).decode()
        return [int(line[4:]) for line in text.split("\n") if line.startswith("id: ")]


def test_resume_after_an_id() -> None:
    hub = EventHub(ring_size=4)
    for _ in range(6):
        hub.publish("start")

    def resumed(last_id: int | None) -> list[int]:
        sink = ListSink()
        hub.subscribe(sink, last_id)
        hub.flush()
        return sink.ids()

    assert resumed(4) == [5, 6]
    assert resumed(6) == []
    assert resumed(1) == [3, 4, 5, 6]  # older than the ring: all it has
    assert resumed(99) == [3, 4, 5, 6]  # an id of an earlier run: all of this run
    assert resumed(None) == []  # no id: from the next event on


def test_subscriber_gets_backlog_then_live_events_without_gap() -> None:
    hub = EventHub()
    for _ in range(3):
        hub.publish("start")
    sink = ListSink()
    hub.subscribe(sink, last_id=1)
    hub.publish("stop")
    hub.flush()
    hub.publish("start")
    hub.flush()
    hub.flush()  # nothing new: nothing written
    assert sink.ids() == [2, 3, 4, 5] and len(sink.frames) == 2


def test_one_encoding_per_flush_is_shared_by_subscribers_at_the_same_place() -> None:
    hub = EventHub()
    sinks = [ListSink() for _ in range(3)]
    for sink in sinks:
        hub.subscribe(sink)
    hub.publish("start")
    hub.publish("stop")
    hub.flush()
    assert all(sink.frames[0] is sinks[0].frames[0] for sink in sinks)
    assert sinks[0].ids() == [1, 2]


def test_a_subscriber_that_falls_behind_waits_then_is_dropped() -> None:
    hub = EventHub(queue_size=5)
    slow, fast = ListSink(), ListSink()
    slow_sub = hub.subscribe(slow)
    hub.subscribe(fast)
    hub.publish("start")
    hub.flush()
    slow.unread = HIGH_WATER + 1  # it stopped reading
    for _ in range(5):
        hub.publish("start")
        hub.flush()
    assert slow.ids() == [1] and not slow.aborted and hub.subscribers == 2  # held back, not queued
    hub.publish("start")  # now 6 behind
    hub.flush()
    assert slow.aborted and slow_sub.overflowed and slow_sub.done.is_set()
    assert hub.subscribers == 1 and hub.dropped_subscribers == 1
    assert fast.ids() == [1, 2, 3, 4, 5, 6, 7]


def test_a_subscriber_that_catches_up_gets_the_rest() -> None:
    hub = EventHub(queue_size=5)
    sink = ListSink()
    hub.subscribe(sink)
    sink.unread = HIGH_WATER + 1
    for _ in range(3):
        hub.publish("start")
        hub.flush()
    sink.unread = 0
    hub.flush()
    assert sink.ids() == [1, 2, 3]


def test_a_subscriber_that_left_is_forgotten() -> None:
    hub = EventHub()
    sink = ListSink()
    sub = hub.subscribe(sink)
    sink.gone = True
    hub.send_heartbeat()
    assert hub.subscribers == 0 and sub.done.is_set() and not sink.aborted


def test_heartbeat_is_a_comment() -> None:
    hub = EventHub()
    sink = ListSink()
    hub.subscribe(sink)
    hub.send_heartbeat()
    assert sink.frames == [b": heartbeat\n\n"]


def test_close_delivers_the_last_events_then_ends_subscriptions() -> None:
    hub = EventHub()
    sink = ListSink()
    sub = hub.subscribe(sink)
    hub.publish("stop")
    hub.close()
    assert sink.ids() == [1] and sub.done.is_set() and hub.subscribers == 0
    late = hub.subscribe(ListSink())
    assert late.done.is_set() and hub.subscribers == 0


def test_listeners_see_each_event_once() -> None:
    hub = EventHub()
    seen: list[int] = []
    hub.listen(lambda event: seen.append(event.id))
    hub.publish("start")
    hub.publish("stop")
    assert seen == [1, 2]


def _result(ok: bool) -> ProbeResult:
    if ok:
        return ProbeResult(time=10.0, ok=True, duration=0.002, latency=0.0015)
    return ProbeResult(
        time=10.0,
        ok=False,
        duration=0.001,
        latency=None,
        error_kind=ErrorKind.REFUSED,
        error_message="connection refused",
    )


def test_check_fields_follow_the_contract() -> None:
    down = check_fields(Transition(INFO, Status.UP, Status.DOWN, _result(False), 1))
    assert down == {
        "service": "web",
        "check": "tcp",
        "check_type": "tcp",
        "target": "127.0.0.1:80",
        "status": "down",
        "previous": "up",
        "error": {"kind": "refused", "message": "connection refused"},
        "latency_ms": None,
    }
    up = check_fields(Transition(INFO, Status.DOWN, Status.UP, _result(True), 1))
    assert up["error"] is None and up["latency_ms"] == 1.5


def test_down_check_fields_only_for_checks_down_now() -> None:
    state = CheckState(INFO, with_histogram=False)
    assert down_check_fields(state) is None
    state.apply(_result(True))
    assert down_check_fields(state) is None
    state.apply(_result(False))
    fields = down_check_fields(state)
    assert fields is not None and fields["status"] == "down" and fields["error"]["kind"] == "refused"


def test_service_statuses_report_only_changes() -> None:
    statuses = ServiceStatuses()
    assert statuses.update({"a": Status.UNKNOWN}) == []
    assert statuses.update({"a": Status.UP}) == [{"service": "a", "status": "up", "previous": "unknown"}]
    assert statuses.update({"a": Status.UP}) == []
    assert statuses.update({"a": Status.DEGRADED, "b": Status.DOWN}) == [
        {"service": "a", "status": "degraded", "previous": "up"},
        {"service": "b", "status": "down", "previous": "unknown"},
    ]
    statuses.forget(["b"])
    assert statuses.update({"a": Status.DEGRADED}) == [
        {"service": "a", "status": "degraded", "previous": "unknown"}
    ]


def test_a_failing_listener_does_not_stop_publishing(caplog: pytest.LogCaptureFixture) -> None:
    hub = EventHub()
    seen: list[int] = []

    def broken(event: Event) -> None:
        raise RuntimeError("bug")

    hub.listen(broken)
    hub.listen(lambda event: seen.append(event.id))
    hub.publish("start")
    assert seen == [1] and "event listener" in caplog.text


def test_nothing_is_published_after_stop() -> None:
    hub = EventHub()
    hub.publish("stop")
    hub.close()
    hub.publish("check", service="late")
    assert [e.type for e in hub.recent(10)] == ["stop"] and hub.last_id == 1
