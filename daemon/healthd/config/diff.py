"""Check identity, and what a reload changes: pure comparison of two configs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from healthd.config.checks import CheckBase
from healthd.config.model import Config


class CheckKey(NamedTuple):
    """A check's identity from config to store to API: (service, check).

    Its text form, `SERVICE/CHECK`, is made by `format_check_id` and read by
    `check_key`, nowhere else. (Service names cannot contain a slash.)
    """

    service: str
    check: str


def format_check_id(key: CheckKey) -> str:
    """(service, check) -> `SERVICE/CHECK`, as API paths, logs and reload reports show it."""
    service, check = key  # a plain (service, check) tuple works too
    return f"{service}/{check}"


def check_key(check_id: str) -> CheckKey:
    """`SERVICE/CHECK` -> (service, check); the check name may contain slashes, the service not."""
    service, _, name = check_id.partition("/")
    return CheckKey(service, name)


#: Options that only say when and how strictly a check runs: changing them keeps its state.
TIMING_OPTIONS = frozenset(
    {"interval", "timeout", "rise", "fall", "history", "transition_interval", "down_interval"}
)


@dataclass(frozen=True)
class ConfigDiff:
    """Checks added, removed and changed (any option differs), each list sorted."""

    added: tuple[CheckKey, ...]
    removed: tuple[CheckKey, ...]
    changed: tuple[CheckKey, ...]  # every changed definition (the scheduler restarts their tasks)
    #: the changed checks whose identity changed (type, target, what is probed): their state
    #: starts afresh; the other changed checks keep state, history and uptime
    reset: tuple[CheckKey, ...] = ()


def checks_by_key(config: Config) -> dict[CheckKey, CheckBase]:
    return {CheckKey(svc.name, check.name): check for svc in config.services for check in svc.checks}


def same_identity(old: CheckBase, new: CheckBase) -> bool:
    """Whether two definitions probe the same thing the same way (timing aside)."""
    if type(old) is not type(new):
        return False
    return old.model_dump(exclude=set(TIMING_OPTIONS)) == new.model_dump(exclude=set(TIMING_OPTIONS))


def diff_configs(old: Config, new: Config) -> ConfigDiff:
    """Checks are compared by their full definition; any change restarts the check's task,
    and a change of more than timing (`TIMING_OPTIONS`) also resets its state."""
    before, after = checks_by_key(old), checks_by_key(new)
    changed = sorted(k for k in after if k in before and after[k] != before[k])
    return ConfigDiff(
        added=tuple(sorted(k for k in after if k not in before)),
        removed=tuple(sorted(k for k in before if k not in after)),
        changed=tuple(changed),
        reset=tuple(k for k in changed if not same_identity(before[k], after[k])),
    )
