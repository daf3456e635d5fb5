"""The event hub: a bounded ring of numbered events and a fan-out to subscribers.

Pure: no I/O. Each event is encoded once, when published; every subscriber
(SSE stream, notifier) then shares the same bytes. A subscriber holds at most
`queue_size` undelivered events: one that falls further behind is dropped
(its stream is closed) rather than allowed to grow memory; it resumes with
`Last-Event-ID` from the ring.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from healthd.store import CheckState, Status, Transition

EVENT_TYPES = ("check", "service", "reload", "start", "stop")
RING_SIZE = 10_000
QUEUE_SIZE = 1_000
Listener = Callable[["Event"], None]


def rfc3339(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Event:
    id: int
    type: str
    time: float
    fields: Mapping[str, Any] = field(default_factory=dict)

    @cached_property
    def data(self) -> dict[str, Any]:
        return {"id": self.id, "time": rfc3339(self.time), "type": self.type, **self.fields}

    @cached_property
    def json(self) -> bytes:
        return json.dumps(self.data, separators=(",", ":")).encode()

    @cached_property
    def sse(self) -> bytes:
        """The Server-Sent Events frame; JSON has no raw line feeds, so `data:` is one line."""
        return b"id: %d\nevent: %s\ndata: %s\n\n" % (self.id, self.type.encode(), self.json)


class Subscription:
    """Events waiting for one subscriber: its backlog, then at most `limit` new ones."""

    def __init__(self, backlog: Iterable[Event], limit: int) -> None:
        self._backlog = list(backlog)
        self._pending: deque[Event] = deque()
        self._limit = limit
        self._wake = asyncio.Event()
        self.closed = False
        self.overflowed = False
        self.on_close: Callable[[], None] | None = None
        if self._backlog:
            self._wake.set()

    def offer(self, event: Event) -> bool:
        """Queue an event; False (and closed) when the subscriber is too far behind."""
        if self.closed:
            return False
        if len(self._pending) >= self._limit:
            self.overflowed = True
            self.close()
            return False
        self._pending.append(event)
        self._wake.set()
        return True

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._wake.set()
        if self.on_close is not None:
            self.on_close()

    async def next_batch(self, timeout: float) -> list[Event]:
        """Everything pending, waiting up to `timeout` for something; [] on timeout or close."""
        if not self._backlog and not self._pending and not self.closed:
            try:
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            except TimeoutError:
                return []
        batch = [*self._backlog, *self._pending]
        self._backlog.clear()
        self._pending.clear()
        self._wake.clear()
        return batch


class EventHub:
    def __init__(
        self,
        ring_size: int = RING_SIZE,
        queue_size: int = QUEUE_SIZE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._ring: deque[Event] = deque(maxlen=ring_size)
        self._queue_size = queue_size
        self._clock = clock
        self._next_id = 1
        self._subscriptions: set[Subscription] = set()
        self._listeners: list[Listener] = []
        self.dropped_subscribers = 0
        self.closed = False  # set once `stop` is out: no more subscribers

    @property
    def subscribers(self) -> int:
        return len(self._subscriptions)

    @property
    def last_id(self) -> int:
        return self._next_id - 1

    def publish(self, type_: str, **fields: Any) -> Event:
        event = Event(self._next_id, type_, self._clock(), fields)
        self._next_id += 1
        self._ring.append(event)
        for listener in self._listeners:
            listener(event)
        for sub in list(self._subscriptions):
            if not sub.offer(event):
                self._subscriptions.discard(sub)
                self.dropped_subscribers += sub.overflowed
        return event

    def recent(self, limit: int) -> list[Event]:
        """The newest `limit` events, oldest first."""
        return list(self._ring)[-limit:] if limit > 0 else []

    def after(self, last_id: int | None) -> list[Event]:
        """What a subscriber that saw `last_id` missed: the ring after it.

        An id newer than any published (the daemon restarted since) replays the
        whole ring, which starts with this run's `start` event.
        """
        if last_id is None:
            return []
        if last_id > self.last_id:
            return list(self._ring)
        return [event for event in self._ring if event.id > last_id]

    def subscribe(self, last_id: int | None = None) -> Subscription:
        """A subscription that gets the missed events, then every new one, with no gap."""
        sub = Subscription(self.after(last_id), self._queue_size)
        if self.closed:
            sub.close()
        else:
            self._subscriptions.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscriptions.discard(sub)

    def listen(self, listener: Listener) -> None:
        """Call `listener` for each event as it is published (it must not block)."""
        self._listeners.append(listener)

    def unlisten(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def close(self) -> None:
        """End every subscription (after the `stop` event has been queued)."""
        self.closed = True
        for sub in list(self._subscriptions):
            sub.close()
        self._subscriptions.clear()


# ---- what the events say -----------------------------------------------------------------


def check_fields(transition: Transition) -> dict[str, Any]:
    info, result = transition.info, transition.result
    error = None
    if result.error_kind is not None:
        error = {"kind": result.error_kind.value, "message": result.error_message or ""}
    return {
        "service": info.service,
        "check": info.name,
        "check_type": info.type,
        "target": info.target,
        "status": transition.new.value,
        "previous": transition.old.value,
        "error": error,
        "latency_ms": None if result.latency is None else round(result.latency * 1000, 4),
    }


def down_check_fields(state: CheckState) -> dict[str, Any] | None:
    """`check_fields` for a check that is down now, as if it had just gone down."""
    if state.status is not Status.DOWN or state.last is None:
        return None
    return check_fields(Transition(state.info, Status.DOWN, Status.DOWN, state.last, state.streak_fail))


class ServiceStatuses:
    """Remembers each service's status, so a check's transition can tell whether its service changed."""

    def __init__(self) -> None:
        self._statuses: dict[str, Status] = {}

    def update(self, statuses: Mapping[str, Status]) -> list[dict[str, Any]]:
        """Fields of a `service` event for each service whose status differs from last time."""
        unknown = Status.UNKNOWN
        changes = [
            {"service": name, "status": status.value, "previous": self._statuses.get(name, unknown).value}
            for name, status in statuses.items()
            if status is not self._statuses.get(name, unknown)
        ]
        self._statuses.update(statuses)
        return changes

    def forget(self, keep: Iterable[str]) -> None:
        kept = set(keep)
        self._statuses = {name: status for name, status in self._statuses.items() if name in kept}
