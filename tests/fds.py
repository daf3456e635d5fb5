"""This process's open descriptors, for the "no socket survives a probe" tests."""

from __future__ import annotations

import gc
import os


def open_fds() -> set[str]:
    """Each open descriptor as `fd -> what it is` (e.g. `7 -> socket:[1234]`)."""
    gc.collect()  # let finalizers of earlier tests' loops and sessions run first
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            found.add(f"{fd} -> {os.readlink(f'/proc/self/fd/{fd}')}")
        except OSError:  # the listing's own descriptor, gone by now
            continue
    return found


def new_fds(before: set[str]) -> set[str]:
    """Descriptors opened since `before` and still open.

    Descriptors that closed meanwhile do not count: a capture or delay-link thread
    of an earlier test may close its own at any time, which a plain count would
    mistake for this test's doing.
    """
    return open_fds() - before
