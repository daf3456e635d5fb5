"""Reload when the config or a discovery file changes on disk (`watch: true`).

Polls by path, not by inode: editors write a temporary file and rename it
over the old one, and a Kubernetes ConfigMap volume swaps a `..data` symlink,
so the inode a notification would be tied to goes away. Each poll stats the
watched files (following symlinks) and, for a directory, lists it; a change
reloads once nothing has changed for `debounce` seconds, so a burst of
writes (or a half-written file) gives one reload of the final state.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

log = logging.getLogger(__name__)

Stamp = tuple[int, int, int, int] | None  # inode, device, size, mtime in ns; None when absent
Fingerprint = tuple[tuple[str, Stamp], ...]


def _stamp(path: Path) -> Stamp:
    try:
        st = os.stat(path)  # follows symlinks: a `..data` swap changes the file behind the name
    except OSError:
        return None
    return (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns)


def fingerprint(paths: Iterable[Path]) -> Fingerprint:
    """What the watched paths look like now; a directory counts with every entry in it."""
    seen: list[tuple[str, Stamp]] = []
    for path in paths:
        seen.append((str(path), _stamp(path)))
        if path.is_dir():
            try:
                entries = sorted(os.scandir(path), key=lambda entry: entry.name)
            except OSError:
                continue
            seen.extend((entry.path, _stamp(Path(entry.path))) for entry in entries)
    return tuple(seen)


class Debounce:
    """Pure: says when a change has settled. Feed it a fingerprint and the time on each poll."""

    def __init__(self, first: Fingerprint, quiet: float) -> None:
        self._last = first
        self._quiet = quiet
        self._changed_at: float | None = None

    def settled(self, current: Fingerprint, now: float) -> bool:
        if current != self._last:
            self._last, self._changed_at = current, now
            return False
        if self._changed_at is not None and now - self._changed_at >= self._quiet:
            self._changed_at = None
            return True
        return False

    def reset(self, current: Fingerprint) -> None:
        self._last, self._changed_at = current, None


async def watch(
    paths: Callable[[], Iterable[Path]],
    enabled: Callable[[], bool],
    reload: Callable[[], Awaitable[object]],
    *,
    poll: float = 0.25,
    debounce: float = 1.0,
) -> None:
    """Run until cancelled. `paths` and `enabled` are read on every poll, as a reload may change them."""
    debounced = Debounce(fingerprint(paths()), debounce)
    while True:
        await asyncio.sleep(poll)
        current = fingerprint(paths())
        if not enabled():
            debounced.reset(current)
            continue
        if debounced.settled(current, time.monotonic()):
            log.info("config changed on disk: reloading")
            await reload()
            debounced.reset(fingerprint(paths()))  # the reload may watch other discovery files
