"""The event hub: ring, ids, resume, bounded fan-out (pure, no sockets)."""

from __future__ import annotations

import asyncio
import json

from healthd.events import EventHub, ServiceStatuses, Subscription, check_fields, down_check_fields
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


def test_resume_after_an_id() -> None:
    hub = EventHub(ring_size=4)
    for _ in range(6):
        hub.publish("start")
    assert [e.id for e in hub.after(4)] == [5, 6]
    assert hub.after(6) == []
    assert [e.id for e in hub.after(1)] == [3, 4, 5, 6]  # older than the ring: all it has
    assert [e.id for e in hub.after(99)] == [3, 4, 5, 6]  # an id of an earlier run: all of this run
    assert hub.after(None) == []


async def test_subscriber_gets_backlog_then_live_events_without_gap() -> None:
    hub = EventHub()
    for _ in range(3):
        hub.publish("start")
    sub = hub.subscribe(last_id=1)
    hub.publish("stop")
    batch = await sub.next_batch(timeout=1)
    assert [e.id for e in batch] == [2, 3, 4]
    assert await sub.next_batch(timeout=0.01) == []  # nothing new: the heartbeat's turn


async def test_a_subscriber_that_falls_behind_is_dropped_not_buffered() -> None:
    hub = EventHub(queue_size=5)
    slow, fast = hub.subscribe(), hub.subscribe()
    closed: list[Subscription] = []
    slow.on_close = lambda: closed.append(slow)
    for n in range(5):
        hub.publish("start")
        if n % 2 == 0:
            await fast.next_batch(timeout=1)
    assert hub.subscribers == 2 and not slow.closed
    hub.publish("start")  # the sixth undelivered event: over the bound
    assert slow.closed and slow.overflowed and closed == [slow]
    assert hub.subscribers == 1 and hub.dropped_subscribers == 1
    assert len(await slow.next_batch(timeout=1)) == 5  # what it had queued, then nothing more
    assert not fast.closed


async def test_close_ends_subscriptions_after_what_they_hold() -> None:
    hub = EventHub()
    sub = hub.subscribe()
    hub.publish("stop")
    hub.close()
    assert [e.type for e in await sub.next_batch(timeout=1)] == ["stop"]
    assert sub.closed and hub.subscribers == 0
    late = hub.subscribe()
    assert late.closed and hub.subscribers == 0
    assert await asyncio.wait_for(late.next_batch(timeout=5), 1) == []


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
