"""Where each check's runs fall: a fixed-rate, drift-free grid per check, and the in-flight cap.

Each check's planned times are `phase + k * interval` on the monotonic clock,
where the phase is a stable hash of the check id: restarts and reloads never
line checks up into one burst. A run that overruns its next slot skips that
slot, never bunches it. Pure functions, apart from reading this process's
descriptor count.
"""

from __future__ import annotations

import hashlib
import math
import os
import resource

from healthd.config import CheckBase, CheckKey, format_check_id
from healthd.store import CheckState, Status

FD_RESERVE = 64  # descriptors kept free of probes: API connections, config and token files, logs


def stable_fraction(key: CheckKey) -> float:
    """A number in [0, 1) fixed for a check id across runs and machines."""
    digest = hashlib.blake2b(format_check_id(key).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def first_slot(key: CheckKey, interval: float, mono_now: float, wall_now: float) -> float:
    """The first planned start: the next wall-clock time congruent to the check's phase."""
    return grid_slot(key, interval, mono_now, mono_now, wall_now)


def grid_slot(key: CheckKey, interval: float, earliest: float, mono_now: float, wall_now: float) -> float:
    """The first point of the check's grid for `interval` (its phase + k * interval, in wall-clock
    time) at or after `earliest` (monotonic) and not before now."""
    phase = stable_fraction(key) * interval
    earliest = max(earliest, mono_now)
    return earliest + (phase - (wall_now + earliest - mono_now)) % interval


def current_interval(check: CheckBase, state: CheckState | None) -> float:
    """`transition_interval` while between states (failing but not yet down, or recovering),
    `down_interval` while down, `interval` otherwise (or when the faster one is not set)."""
    if state is None:
        return check.interval
    between = (state.status is Status.UP and state.streak_fail > 0) or (
        state.status is Status.DOWN and state.streak_ok > 0
    )
    if between and check.transition_interval is not None:
        return check.transition_interval
    if state.status is Status.DOWN and check.down_interval is not None:
        return check.down_interval
    return check.interval


def next_slot(planned: float, interval: float, now: float) -> tuple[float, int]:
    """The next planned start after `planned`, and how many slots were skipped to reach it."""
    following = planned + interval
    if following > now:
        return following, 0
    skipped = math.floor((now - following) / interval) + 1
    return following + skipped * interval, skipped


def in_flight_cap(configured: int, fd_limit: int, fds_open: int, reserve: int = FD_RESERVE) -> int:
    """How many probes may run at once: the configured cap, lowered so that `reserve`
    descriptors stay free (each probe in flight holds about one). At least 1."""
    return max(1, min(configured, fd_limit - fds_open - reserve))


def descriptor_room() -> tuple[int, int]:
    """(RLIMIT_NOFILE's soft limit, descriptors open now) of this process."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        open_now = len(os.listdir("/proc/self/fd"))
    except OSError:  # no /proc: assume what a fresh daemon holds
        open_now = 32
    return (soft if soft != resource.RLIM_INFINITY else 1 << 20), open_now
