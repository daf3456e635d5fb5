"""What a reload changes: pure comparison of two configs."""

from __future__ import annotations

from dataclasses import dataclass

from healthd.config.checks import CheckBase
from healthd.config.model import Config

CheckKey = tuple[str, str]  # (service, check)


@dataclass(frozen=True)
class ConfigDiff:
    added: list[str]
    removed: list[str]
    changed: list[str]


def check_key(check_id: str) -> CheckKey:
    """`SERVICE/CHECK` -> (service, check); service names cannot contain a slash."""
    service, _, name = check_id.partition("/")
    return (service, name)


def checks_by_key(config: Config) -> dict[CheckKey, CheckBase]:
    return {(svc.name, check.name): check for svc in config.services for check in svc.checks}


def diff_configs(old: Config, new: Config) -> ConfigDiff:
    """Checks are compared by their full definition: any option changed means a restart."""
    before, after = checks_by_key(old), checks_by_key(new)

    def ids(keys: list[CheckKey]) -> list[str]:
        return [f"{service}/{check}" for service, check in sorted(keys)]

    return ConfigDiff(
        added=ids([k for k in after if k not in before]),
        removed=ids([k for k in before if k not in after]),
        changed=ids([k for k in after if k in before and after[k] != before[k]]),
    )
