"""What the store keeps of each check, from the config: identity, thresholds, redacted settings."""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, Mapping
from typing import Any

from healthd.config import CheckBase, Config
from healthd.store import CheckInfo, ServiceInfo


class Settings(Mapping[str, Any]):
    """A check's settings as the API shows them (JSON-ready, secrets masked), dumped from its
    frozen model when read: a dict per check held ~600 bytes x 10,000 checks for the rare
    check-detail request (~0.15 ms to read whole), and the daemon keeps the models anyway
    (a reload diffs them)."""

    __slots__ = ("_check",)

    def __init__(self, check: CheckBase) -> None:
        self._check = check

    def _dumped(self) -> dict[str, Any]:
        return self._check.model_dump(mode="json")  # SecretStr fields come out masked

    def __getitem__(self, key: str) -> Any:
        return self._dumped()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._dumped())

    def __len__(self) -> int:
        return len(self._dumped())

    def items(self) -> ItemsView[str, Any]:
        """All of them from one dump (Mapping's own would dump once per key)."""
        return self._dumped().items()


def service_infos(config: Config) -> list[ServiceInfo]:
    """What the store keeps of each check: identity, thresholds, redacted settings."""
    return [
        ServiceInfo(
            name=svc.name,
            labels=dict(svc.labels),
            checks=tuple(
                CheckInfo(
                    service=svc.name,
                    name=check.name,
                    type=check.type,
                    target=check.display_target,
                    rise=check.rise,
                    fall=check.fall,
                    history=check.history,
                    settings=Settings(check),
                    labels=dict(check.labels),
                    stale_after=2 * max(_intervals(check)) + check.timeout,
                )
                for check in svc.checks
            ),
        )
        for svc in config.services
    ]


def _intervals(check: CheckBase) -> list[float]:
    return [value for value in (check.interval, check.transition_interval, check.down_interval) if value]
