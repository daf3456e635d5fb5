"""What the daemon logs when something changes: check and service states, reloads.

Each line reads as a sentence ("check web/tcp (tcp 10.0.0.5:80) is up after
2 consecutive successes, was down") and carries the same facts as structured
fields (`extra=`, see `healthd.logs.FIELDS`) for JSON pipelines. Going down or
degraded is a WARNING, so `journalctl -p warning` shows outages; the rest is INFO, but
for a first verdict of up: that is DEBUG, and one line (`FirstVerdicts`) sums up the
checks' first verdicts once all are in, so 50,000 checks starting do not log 50,000 lines.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from healthd.config.diff import CheckKey
from healthd.store import ServiceInfo, Status, Store, Transition

log = logging.getLogger("healthd.state")

_SHOWN = 10  # check ids named in a reload line before "and N more"


def _level(status: Status, before: Status) -> int:
    if status in (Status.DOWN, Status.DEGRADED):
        return logging.WARNING
    return logging.DEBUG if before is Status.UNKNOWN else logging.INFO  # FirstVerdicts sums these up


def _streak(count: int, ok: bool) -> str:
    if count == 1:
        return "1 success" if ok else "1 failure"
    return f"{count} consecutive {'successes' if ok else 'failures'}"


def log_check_transition(transition: Transition) -> None:
    """One line per change of a check's state, with the error that caused it."""
    info, result = transition.info, transition.result
    after = "" if transition.old is Status.UNKNOWN else f" after {_streak(transition.streak, result.ok)}"
    why = "" if result.ok else f": {result.error_kind} ({result.error_message})"
    log.log(
        _level(transition.new, transition.old),
        "check %s/%s (%s %s) is %s%s, was %s%s",
        info.service,
        info.name,
        info.type,
        info.target,
        transition.new,
        after,
        transition.old,
        why,
        extra={
            "event": "check_transition",
            "service": info.service,
            "check": info.name,
            "type": info.type,
            "target": info.target,
            "state": transition.new.value,
            "previous": transition.old.value,
            "error_kind": None if result.error_kind is None else result.error_kind.value,
            "streak": transition.streak,
        },
    )


def log_service_transition(store: Store, name: str, now: Status, before: Status) -> None:
    """One line when a service's (derived) state changes, with how many of its checks are down."""
    service = store.service(name)
    if service is not None:
        down = sum(state.status is Status.DOWN for state in store.states_of(service))
        _log_service(service, now, before, down)


def _log_service(service: ServiceInfo, now: Status, before: Status, down: int) -> None:
    total = len(service.checks)
    log.log(
        _level(now, before),
        "service %s is %s, was %s (%d of %s down)",
        service.name,
        now,
        before,
        down,
        plural(total, "check"),
        extra={
            "event": "service_transition",
            "service": service.name,
            "state": now.value,
            "previous": before.value,
        },
    )


class FirstVerdicts:
    """Counts the first verdicts of the checks that had none at start, and logs one line
    when the last is in. Checks a reload removes are no longer waited for; those it adds
    are not counted (the reload's own line names them)."""

    def __init__(self, waiting: Iterable[CheckKey]) -> None:
        self._waiting = set(waiting)
        self._counts: dict[Status, int] = {}
        self._total = len(self._waiting)

    def seen(self, transition: Transition) -> None:
        key = transition.info.key
        if transition.old is Status.UNKNOWN and key in self._waiting:
            self._waiting.discard(key)
            self._counts[transition.new] = self._counts.get(transition.new, 0) + 1
            self._log_when_done()

    def keep_only(self, keys: Iterable[CheckKey]) -> None:
        """After a reload: wait only for these of the checks still waited for."""
        if self._waiting:  # once every verdict is in, a reload has nothing to narrow
            self._waiting &= set(keys)
            self._log_when_done()

    def _log_when_done(self) -> None:
        if self._waiting or not self._total:
            return
        counts = ", ".join(f"{self._counts[status]} {status}" for status in Status if status in self._counts)
        log.info(
            "first verdicts of %s are in: %s",
            plural(self._total, "check"),
            counts or "none (all removed)",
            extra={
                "event": "first_verdicts",
                "checks": self._total,
                "up": self._counts.get(Status.UP, 0),
                "down": self._counts.get(Status.DOWN, 0),
            },
        )
        self._total = 0  # once


def plural(count: int, word: str) -> str:
    """`1 check`, `2 checks`."""
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _names(ids: Sequence[str]) -> str:
    if not ids:
        return ""
    shown = ", ".join(ids[:_SHOWN])
    more = f" and {len(ids) - _SHOWN} more" if len(ids) > _SHOWN else ""
    return f" ({shown}{more})"


def log_reload(added: Sequence[str], removed: Sequence[str], changed: Sequence[str], checks: int) -> None:
    """`config reloaded: 1 added (web/http), 0 removed, 1 changed (db/tcp); 5 checks`."""
    log.info(
        "config reloaded: %d added%s, %d removed%s, %d changed%s; %s",
        len(added),
        _names(added),
        len(removed),
        _names(removed),
        len(changed),
        _names(changed),
        plural(checks, "check"),
        extra={"event": "reload", "added": list(added), "removed": list(removed), "changed": list(changed)},
    )
