"""Per-check state: the rise/fall state machine, bounded history, counters.

Pure: no I/O, never awaits. Only the scheduler writes; the API and the
metrics collector read. Memory per check is fixed by `history`.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from healthd.config.diff import CheckKey
from healthd.histogram import LAG_BUCKETS, PROBE_DURATION_BUCKETS, Histogram
from healthd.results import ErrorKind, ProbeResult


class Status(StrEnum):
    UNKNOWN = "unknown"
    UP = "up"
    DOWN = "down"
    DEGRADED = "degraded"  # services only


@dataclass(frozen=True, slots=True)
class CheckInfo:
    """What the store needs to know of a check's definition."""

    service: str
    name: str
    type: str
    target: str
    rise: int
    fall: int
    history: int
    settings: Mapping[str, Any] = field(default_factory=dict)  # JSON-ready, secrets redacted

    @property
    def key(self) -> CheckKey:
        return CheckKey(self.service, self.name)


@dataclass(frozen=True, slots=True)
class ServiceInfo:
    name: str
    labels: Mapping[str, str]
    checks: tuple[CheckInfo, ...]


@dataclass(frozen=True, slots=True)
class Transition:
    info: CheckInfo
    old: Status
    new: Status
    result: ProbeResult
    streak: int  # consecutive results that made the change


@dataclass(frozen=True, slots=True)
class _Shape:
    """What a result shares with its neighbours: verdict, error, phase names, details, gauges."""

    ok: bool
    error_kind: ErrorKind | None
    error_message: str | None
    phase_names: tuple[str, ...]
    details: Mapping[str, Any]
    gauges: Mapping[str, float]

    def fits(self, result: ProbeResult) -> bool:
        return (
            self.ok == result.ok
            and self.error_kind == result.error_kind
            and self.error_message == result.error_message
            and len(self.phase_names) == len(result.phases)
            and all(a == b for a, b in zip(self.phase_names, result.phases, strict=False))
            and self.details == result.details
            and self.gauges == result.gauges
        )


class History:
    """The last `maxlen` results of one check, oldest first, kept compactly.

    As objects a TCP result costs ~780 bytes (six floats, three dicts, the
    address string): 10,000 checks x 120 results would hold ~900 MB. Here the
    numbers of each result (time, duration, latency, phase values) sit in one
    flat array of doubles, and what repeats from one result to the next is a
    shared `_Shape`: ~50 bytes a result for a steady check. A result with
    more phases than the check's first one is kept whole. Reading rebuilds
    equal `ProbeResult` values.
    """

    __slots__ = ("_numbers", "_shapes", "_start", "_width", "maxlen")

    def __init__(self, maxlen: int) -> None:
        self.maxlen = maxlen
        self._numbers = array("d")
        self._shapes: list[_Shape | ProbeResult] = []
        self._start = 0  # slot of the oldest result once the ring is full
        self._width = -1  # doubles per slot: 3 + phases of the first result

    def __len__(self) -> int:
        return len(self._shapes)

    def append(self, result: ProbeResult) -> None:
        if self._width < 0:
            self._width = 3 + len(result.phases)
        slot = len(self._shapes) if len(self._shapes) < self.maxlen else self._start
        shape = self._shape_for(result)
        numbers = self._numbers_of(result) if isinstance(shape, _Shape) else (0.0,) * self._width
        if slot == len(self._shapes):
            self._shapes.append(shape)
            self._numbers.extend(numbers)
        else:
            self._shapes[slot] = shape
            offset = slot * self._width
            self._numbers[offset : offset + self._width] = array("d", numbers)
            self._start = (slot + 1) % self.maxlen

    def _shape_for(self, result: ProbeResult) -> _Shape | ProbeResult:
        if len(result.phases) > self._width - 3:
            return result
        newest = self._shapes[self._start - 1] if self._shapes else None
        if isinstance(newest, _Shape) and newest.fits(result):
            return newest
        return _Shape(
            result.ok,
            result.error_kind,
            result.error_message,
            tuple(result.phases),
            result.details,
            result.gauges,
        )

    def _numbers_of(self, result: ProbeResult) -> tuple[float, ...]:
        latency = math.nan if result.latency is None else result.latency
        padding = (0.0,) * (self._width - 3 - len(result.phases))
        return (result.time, result.duration, latency, *result.phases.values(), *padding)

    def _result(self, slot: int) -> ProbeResult:
        shape = self._shapes[slot]
        if isinstance(shape, ProbeResult):
            return shape
        offset = slot * self._width
        time, duration, latency = self._numbers[offset : offset + 3]
        values = self._numbers[offset + 3 : offset + 3 + len(shape.phase_names)]
        return ProbeResult(
            time=time,
            ok=shape.ok,
            duration=duration,
            latency=None if math.isnan(latency) else latency,
            error_kind=shape.error_kind,
            error_message=shape.error_message,
            phases=dict(zip(shape.phase_names, values, strict=True)),
            details=shape.details,
            gauges=shape.gauges,
        )

    def _slots(self) -> range:
        return range(self._start, self._start + len(self._shapes))

    def __iter__(self) -> Iterator[ProbeResult]:
        count = len(self._shapes)
        return (self._result(i % count) for i in self._slots())

    def __reversed__(self) -> Iterator[ProbeResult]:
        count = len(self._shapes)
        return (self._result(i % count) for i in reversed(self._slots()))

    def __getitem__(self, index: int) -> ProbeResult:
        count = len(self._shapes)
        if not -count <= index < count:
            raise IndexError("history index out of range")
        return self._result((self._start + index % count) % count)


class CheckState:
    """One check's debounced state. Read it; only `Store.record` changes it."""

    __slots__ = (
        "counts",
        "duration_histogram",
        "history",
        "info",
        "last",
        "since",
        "status",
        "streak_fail",
        "streak_ok",
        "task_restarts",
        "transitions",
    )

    def __init__(self, info: CheckInfo, with_histogram: bool) -> None:
        self.info = info
        self.status = Status.UNKNOWN
        self.since: float | None = None
        self.streak_ok = 0
        self.streak_fail = 0
        self.counts: dict[str, int] = {}
        self.transitions = {Status.UP.value: 0, Status.DOWN.value: 0}
        self.history = History(info.history)
        self.last: ProbeResult | None = None
        self.duration_histogram = Histogram(PROBE_DURATION_BUCKETS) if with_histogram else None
        self.task_restarts = 0  # times the check's task died of a bug and was started again

    def apply(self, result: ProbeResult) -> Transition | None:
        self.last = result
        self.history.append(result)
        label = result.result_label
        self.counts[label] = self.counts.get(label, 0) + 1
        if self.duration_histogram is not None:
            self.duration_histogram.observe(result.duration)
        if result.ok:
            self.streak_ok, self.streak_fail = self.streak_ok + 1, 0
        else:
            self.streak_ok, self.streak_fail = 0, self.streak_fail + 1
        new = self._next_status(result.ok)
        if new is self.status:
            return None
        old, self.status, self.since = self.status, new, result.time
        if old is not Status.UNKNOWN:  # the first verdict is not a change of state
            self.transitions[new.value] += 1
        streak = self.streak_ok if result.ok else self.streak_fail
        return Transition(self.info, old, new, result, streak)

    def _next_status(self, ok: bool) -> Status:
        # rise/fall debounce changes; the first verdict needs one result
        if self.status is Status.UNKNOWN:
            return Status.UP if ok else Status.DOWN
        if self.status is Status.DOWN and self.streak_ok >= self.info.rise:
            return Status.UP
        if self.status is Status.UP and self.streak_fail >= self.info.fall:
            return Status.DOWN
        return self.status


def service_status(states: Iterable[CheckState]) -> Status:
    statuses = {state.status for state in states}
    if statuses == {Status.UP}:
        return Status.UP
    if statuses == {Status.DOWN}:
        return Status.DOWN
    if Status.DOWN not in statuses and Status.UNKNOWN in statuses:
        return Status.UNKNOWN
    return Status.DEGRADED


@dataclass
class DaemonState:
    """Facts about the daemon itself that the API and metrics report."""

    ready: bool = False
    last_reload_ok: bool = True
    last_reload_success_time: float = 0.0
    skipped_runs: int = 0  # planned runs skipped because the previous run overran


class Store:
    def __init__(self, probe_histograms: bool = True) -> None:
        self.probe_histograms = probe_histograms
        self.services: tuple[ServiceInfo, ...] = ()
        self._services_by_name: dict[str, ServiceInfo] = {}
        self._states: dict[CheckKey, CheckState] = {}
        self.lag = Histogram(LAG_BUCKETS)
        self.daemon = DaemonState()

    def apply(self, services: Sequence[ServiceInfo], restart: Collection[CheckKey] = ()) -> None:
        """Install a new set of services; unchanged checks keep their state and history."""
        states: dict[CheckKey, CheckState] = {}
        for service in services:
            for info in service.checks:
                old = self._states.get(info.key)
                if old is not None and info.key not in restart and old.info.history == info.history:
                    old.info = info
                    states[info.key] = old
                else:
                    states[info.key] = CheckState(info, self.probe_histograms)
        self.services = tuple(services)
        self._services_by_name = {service.name: service for service in services}
        self._states = states

    def record(self, key: CheckKey, result: ProbeResult) -> Transition | None:
        """Add a result; returns the state change it caused, if any. Unknown keys are ignored
        (a probe of a check removed by a reload may finish after the reload)."""
        state = self._states.get(key)
        return state.apply(result) if state is not None else None

    def record_task_restart(self, key: CheckKey) -> None:
        state = self._states.get(key)
        if state is not None:
            state.task_restarts += 1

    def record_lag(self, seconds: float) -> None:
        self.lag.observe(max(seconds, 0.0))

    def check(self, key: CheckKey) -> CheckState | None:
        return self._states.get(key)

    def service(self, name: str) -> ServiceInfo | None:
        return self._services_by_name.get(name)

    def states_of(self, service: ServiceInfo) -> list[CheckState]:
        return [self._states[info.key] for info in service.checks]

    def all_states(self) -> Iterable[CheckState]:
        return self._states.values()

    def status_of(self, service: ServiceInfo) -> Status:
        return service_status(self.states_of(service))
