"""What the store keeps of each check, from the config: identity, thresholds, redacted settings."""

from __future__ import annotations

from healthd.config import CheckBase, Config
from healthd.store import CheckInfo, ServiceInfo


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
                    settings=check.model_dump(mode="json"),  # SecretStr fields come out masked
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
