"""Counting this process's open descriptors, for the "no socket survives" tests."""

from __future__ import annotations

import gc
import os


def open_fds() -> int:
    # Collect first: an earlier test's loop, session or shared socket may still be waiting
    # for its finalizer, and would close (and shift the count) in the middle of this test.
    gc.collect()
    return len(os.listdir("/proc/self/fd"))
