"""What the events say: the fields of `check` and `service` events, from the store's transitions.

Pure. A service's status is derived from its checks', so `ServiceStatuses`
remembers what was last published for each service to tell when it changed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from healthd.store import CheckState, Status, Transition


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
