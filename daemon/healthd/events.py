"""The event hub: a bounded ring of numbered events and a fan-out to subscribers.

No I/O of its own: subscribers are sinks (an SSE connection's transport, a
test's list) and notifiers are listeners. Each event is encoded once, when
published. Delivery to the sinks is batched: one flush writes everything
new to every sink, at most every `flush_interval` seconds, straight into
each sink's buffer -- one call per subscriber per flush, no task per
subscriber -- so 1,000 subscribers cost a few milliseconds per flush, not
per event.

A subscriber is a cursor into the ring. One whose sink has not taken what it
was given (buffer over `HIGH_WATER`) gets nothing more until it has; once it
is `queue_size` events behind, it is dropped (its connection closed) rather
than left to grow memory. It resumes with `Last-Event-ID` from the ring.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, Protocol

log = logging.getLogger(__name__)

EVENT_TYPES = ("check", "service", "reload", "start", "stop")
RING_SIZE = 10_000
QUEUE_SIZE = 1_000
HIGH_WATER = 256 * 1024  # bytes a sink may hold unsent before it gets nothing more
# Each flush costs a write per subscriber (20-40 us to a loopback socket on a small VM): flushes are
# spaced so that they take at most FLUSH_BUDGET of the loop's time, by what the last one cost.
FLUSH_INTERVAL = 0.25  # the shortest spacing: events are batched for at most this long
FLUSH_INTERVAL_MAX = 2.0
FLUSH_BUDGET = 0.05
FLUSH_SLICE = 64  # subscribers written per turn of the event loop
HEARTBEAT = 15.0
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


class Sink(Protocol):
    """Where a subscriber's bytes go; `write` must not block."""

    def write(self, data: bytes) -> None: ...

    def buffered(self) -> int: ...

    def closing(self) -> bool: ...

    def abort(self) -> None: ...


class Subscription:
    def __init__(self, sink: Sink, cursor: int) -> None:
        self.sink = sink
        self.cursor = cursor  # id of the last event written to the sink
        self.done = asyncio.Event()  # set when the hub lets go of it
        self.overflowed = False


class EventHub:
    def __init__(
        self,
        ring_size: int = RING_SIZE,
        queue_size: int = QUEUE_SIZE,
        clock: Callable[[], float] = time.time,
        *,
        flush_interval: float = FLUSH_INTERVAL,
        heartbeat: float = HEARTBEAT,
    ) -> None:
        self._ring: deque[Event] = deque(maxlen=ring_size)
        self._queue_size = queue_size
        self._clock = clock
        self._next_id = 1
        self._subscriptions: set[Subscription] = set()
        self._listeners: list[Listener] = []
        self.flush_interval = flush_interval
        self.heartbeat = heartbeat
        self._flush_handle: asyncio.TimerHandle | None = None
        self._heartbeat_handle: asyncio.TimerHandle | None = None
        self._last_flush = -float("inf")
        self._flush_cost = 0.0  # seconds the flush in progress has taken so far
        self.spacing = flush_interval  # between flushes, adapted to what they cost
        self.dropped_subscribers = 0
        self.closed = False  # set once `stop` is out: no more subscribers

    @property
    def subscribers(self) -> int:
        return len(self._subscriptions)

    @property
    def last_id(self) -> int:
        return self._next_id - 1

    def publish(self, type_: str, **fields: Any) -> Event:
        """Number, keep and hand out an event; after `close` (the `stop` event) nothing more is."""
        event = Event(self._next_id, type_, self._clock(), fields)
        if self.closed:
            return event
        self._next_id += 1
        self._ring.append(event)
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:  # a receiver's bug must not reach the scheduler that published
                log.exception("event listener %r failed on event %d", listener, event.id)
        self._schedule_flush()
        return event

    def recent(self, limit: int) -> list[Event]:
        """The newest `limit` events, oldest first."""
        return list(self._ring)[-limit:] if limit > 0 else []

    def _resume_cursor(self, last_id: int | None) -> int:
        """Where a subscriber that saw `last_id` picks up: right after it, if the ring has that.

        An id older than the ring replays the whole ring; one newer than any
        published (the daemon restarted since) replays the whole ring too,
        which starts with this run's `start` event. None: from the next event.
        """
        oldest = self._ring[0].id if self._ring else self._next_id
        if last_id is None:
            return self.last_id
        if last_id > self.last_id or last_id < oldest - 1:
            return oldest - 1
        return last_id

    def after(self, cursor: int, upto: int | None = None) -> list[Event]:
        """The events with cursor < id <= upto (default: the newest) that the ring still has."""
        upto = self.last_id if upto is None else upto
        if not self._ring or cursor >= upto:
            return []
        first = self._ring[0].id
        return [self._ring[i] for i in range(max(cursor + 1 - first, 0), upto + 1 - first)]

    def subscribe(self, sink: Sink, last_id: int | None = None) -> Subscription:
        """A subscription that gets the missed events, then every new one, with no gap."""
        sub = Subscription(sink, self._resume_cursor(last_id))
        if self.closed:
            sub.done.set()
            return sub
        self._subscriptions.add(sub)
        self._schedule_flush(now=True)
        self._schedule_heartbeat()
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscriptions.discard(sub)
        sub.done.set()

    def listen(self, listener: Listener) -> None:
        """Call `listener` for each event as it is published (it must not block)."""
        self._listeners.append(listener)

    def unlisten(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def flush(self) -> None:
        """Write what each subscriber has not had yet; drop those too far behind or gone."""
        payloads: dict[int, bytes] = {}
        for sub in list(self._subscriptions):
            self._flush_one(sub, self.last_id, payloads)

    def _flush_one(self, sub: Subscription, upto: int, payloads: dict[int, bytes]) -> None:
        if sub.sink.closing():
            self.unsubscribe(sub)
            return
        if sub.cursor >= upto:
            return
        if sub.sink.buffered() > HIGH_WATER:
            if self.last_id - sub.cursor > self._queue_size:
                self._drop(sub)
            return
        payload = payloads.get(sub.cursor)  # most subscribers share a cursor: encode once per cursor
        if payload is None:
            payload = payloads[sub.cursor] = b"".join(e.sse for e in self.after(sub.cursor, upto))
        sub.sink.write(payload)
        sub.cursor = upto

    def _drop(self, sub: Subscription) -> None:
        sub.overflowed = True
        self.dropped_subscribers += 1
        self.unsubscribe(sub)
        sub.sink.abort()

    def send_heartbeat(self) -> None:
        for sub in list(self._subscriptions):
            if sub.sink.closing():
                self.unsubscribe(sub)
            elif sub.sink.buffered() <= HIGH_WATER:
                sub.sink.write(b": heartbeat\n\n")

    def close(self) -> None:
        """Deliver what is pending (the `stop` event), then end every subscription."""
        self.flush()
        self.closed = True
        for handle in (self._flush_handle, self._heartbeat_handle):
            if handle is not None:
                handle.cancel()
        for sub in list(self._subscriptions):
            self.unsubscribe(sub)

    # ---- timers, when running inside an event loop (tests may call flush() themselves) ----

    def _schedule_flush(self, now: bool = False) -> None:
        if self._flush_handle is not None or not self._subscriptions or self.closed:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        delay = 0.0 if now else max(0.0, self._last_flush + self.spacing - loop.time())
        self._flush_handle = loop.call_later(delay, self._timed_flush)

    def _timed_flush(self) -> None:
        self._flush_handle = None
        loop = asyncio.get_running_loop()
        self._last_flush = loop.time()
        self._flush_cost = 0.0
        self._flush_slice(loop, list(self._subscriptions), 0, self.last_id, {})

    def _flush_slice(
        self,
        loop: asyncio.AbstractEventLoop,
        subs: list[Subscription],
        start: int,
        upto: int,
        payloads: dict[int, bytes],
    ) -> None:
        # In slices, so that probes due meanwhile start between them instead of after them all.
        began = time.perf_counter()
        for sub in subs[start : start + FLUSH_SLICE]:
            if sub in self._subscriptions:
                self._flush_one(sub, upto, payloads)
        self._flush_cost += time.perf_counter() - began
        if start + FLUSH_SLICE < len(subs):
            loop.call_soon(self._flush_slice, loop, subs, start + FLUSH_SLICE, upto, payloads)
        else:
            wanted = self._flush_cost / FLUSH_BUDGET
            self.spacing = min(max(self.flush_interval, wanted), FLUSH_INTERVAL_MAX)

    def _schedule_heartbeat(self) -> None:
        if self._heartbeat_handle is not None or self.closed:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._heartbeat_handle = loop.call_later(self.heartbeat, self._timed_heartbeat)

    def _timed_heartbeat(self) -> None:
        self._heartbeat_handle = None
        self.send_heartbeat()
        if self._subscriptions:
            self._schedule_heartbeat()
