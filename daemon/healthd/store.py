"""Per-check state: the rise/fall state machine, bounded history, counters, uptime.

Pure: no I/O, never awaits. Only the scheduler writes; the API and the
metrics collector read. Memory per check is fixed by `history` (plus the
constant-size failures ring and uptime aggregates).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from healthd.config.diff import CheckKey
from healthd.histogram import LAG_BUCKETS, PROBE_DURATION_BUCKETS, Histogram
from healthd.history import History
from healthd.results import ErrorKind, ProbeResult
from healthd.uptime import Uptime

#: Failures kept apart from the history, so a run of successes cannot push them out.
FAILURES_KEPT = 20


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
    labels: Mapping[str, str] = field(default_factory=dict)  # extra labels on its series (file_sd)
    # seconds without a result after which the check is stale (2 x its longest interval + timeout)
    stale_after: float = float("inf")

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


class CheckState:
    """One check's debounced state. Read it; only `Store.record` changes it."""

    __slots__ = (
        "_failures",
        "changes",
        "counts",
        "duration_histogram",
        "history",
        "info",
        "last",
        "last_failure",
        "last_seen",
        "last_success",
        "since",
        "status",
        "streak_fail",
        "streak_ok",
        "task_restarts",
        "transitions",
        "uptime",
    )

    def __init__(self, info: CheckInfo, with_histogram: bool, created: float | None = None) -> None:
        self.info = info
        self.last_seen = created  # the newest result of any kind, else when the check was installed
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
        self._failures: History | None = None  # most checks never fail: allocated at the first failure
        self.last_success: float | None = None
        self.last_failure: float | None = None
        self.uptime = Uptime()
        self.changes = 0  # results applied: readers that keep what they read compare it

    @property
    def failures(self) -> History:
        """The last FAILURES_KEPT failures (an empty history, not kept, until the first)."""
        return self._failures if self._failures is not None else History(FAILURES_KEPT)

    @failures.setter
    def failures(self, failures: History) -> None:
        self._failures = failures if len(failures) else None

    def apply(self, result: ProbeResult) -> Transition | None:
        self.changes += 1
        self.last_seen = result.time if self.last_seen is None else max(self.last_seen, result.time)
        if result.error_kind is ErrorKind.LOCAL:
            # this host's problem says nothing of the target: state, streaks, last, uptime and
            # the failures stay as they were; the history and the counters show it
            self.history.append(result)
            self.counts[result.result_label] = self.counts.get(result.result_label, 0) + 1
            return None
        self._keep(result)
        transition = self._debounce(result)
        if transition is not None and transition.old is not Status.UNKNOWN:  # not the first verdict
            self.transitions[transition.new.value] += 1
        self.uptime.observe(result.time, result.ok, result.latency, self.status is Status.DOWN)
        return transition

    def resume(self, status: Status, streak_ok: int, streak_fail: int) -> None:
        """Take over the debounce state kept elsewhere (a worker process seeded by the main one)."""
        self.status, self.streak_ok, self.streak_fail = status, streak_ok, streak_fail

    def _keep(self, result: ProbeResult) -> None:
        """What the check keeps of a result: newest, history, failures, counters."""
        self.last = result
        self.history.append(result)
        if result.ok:
            self.last_success = result.time
        else:
            self.last_failure = result.time
            if self._failures is None:
                self._failures = History(FAILURES_KEPT)
            self._failures.append(result)
        label = result.result_label
        self.counts[label] = self.counts.get(label, 0) + 1
        if self.duration_histogram is not None:
            self.duration_histogram.observe(result.duration)

    def _debounce(self, result: ProbeResult) -> Transition | None:
        """The streaks and the rise/fall state machine: the state change a result makes."""
        if result.ok:
            self.streak_ok, self.streak_fail = self.streak_ok + 1, 0
        else:
            self.streak_ok, self.streak_fail = 0, self.streak_fail + 1
        new = self._next_status(result.ok)
        if new is self.status:
            return None
        old, self.status, self.since = self.status, new, result.time
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


def is_stale(state: CheckState, now: float) -> bool:
    """Whether the check has had no result for longer than its `stale_after` (its prober is
    down or stuck); never before it was installed with a time."""
    return state.last_seen is not None and now - state.last_seen > state.info.stale_after


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
    shard: tuple[int, int, int] = (0, 1, 1)  # index, count, replicas (healthd.cluster)
    local_errors: dict[str, int] = field(default_factory=dict)  # reason (errno name) -> probes


class Store:
    def __init__(self, probe_histograms: bool = True, state_type: type[CheckState] = CheckState) -> None:
        self.probe_histograms = probe_histograms
        self._state_type = state_type
        self.services: tuple[ServiceInfo, ...] = ()
        self._services_by_name: dict[str, ServiceInfo] = {}
        self._states: dict[CheckKey, CheckState] = {}
        self.applied = 0  # `apply` calls: readers that keep states compare it (a state may be new)
        self.lag = Histogram(LAG_BUCKETS)
        self.daemon = DaemonState()

    def apply(
        self, services: Sequence[ServiceInfo], restart: Collection[CheckKey] = (), now: float | None = None
    ) -> None:
        """Install a new set of services. Checks not in `restart` keep their state, history
        (resized if `history` changed) and uptime; the others start afresh (installed at `now`:
        see `is_stale`)."""
        states: dict[CheckKey, CheckState] = {}
        for service in services:
            for info in service.checks:
                old = self._states.get(info.key)
                if old is not None and info.key not in restart:
                    if old.info.history != info.history:
                        old.history = old.history.resized(info.history)
                    old.info = info
                    states[info.key] = old
                else:
                    states[info.key] = self._state_type(info, self.probe_histograms, now)
        self.services = tuple(services)
        self._services_by_name = {service.name: service for service in services}
        self._states = states
        self.applied += 1

    def record(self, key: CheckKey, result: ProbeResult) -> Transition | None:
        """Add a result; returns the state change it caused, if any. Unknown keys are ignored
        (a probe of a check removed by a reload may finish after the reload)."""
        if result.error_kind is ErrorKind.LOCAL:
            reason = str(result.details.get("local_reason", "other"))
            self.daemon.local_errors[reason] = self.daemon.local_errors.get(reason, 0) + 1
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
