"""Readers of a running daemon while it probes: `/metrics` and `/api/v1/services` every second.

Each path gets one thread that issues a GET once per period (the next one starts a
period after the last one started, or at once if it took longer), bounded in count
and time. `/metrics` is read as Prometheus reads it, with `Accept-Encoding: gzip`.
"""

from __future__ import annotations

import threading
import time
import urllib.request
from dataclasses import dataclass, field
from types import TracebackType

MAX_READS = 1200  # per path: 20 minutes at 1/s, far beyond any window


@dataclass
class PollStats:
    path: str
    seconds: list[float] = field(default_factory=list)  # response times of good answers
    sizes: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def reads(self) -> int:
        return len(self.seconds) + len(self.errors)


class Poller:
    """`with Poller(base, ["/metrics", ...]) as poll:` reads each path every `period` seconds."""

    def __init__(self, base: str, paths: list[str], *, period: float = 1.0, timeout: float = 10.0) -> None:
        self.base, self.period, self.timeout = base, period, timeout
        self.stats = {path: PollStats(path) for path in paths}
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(p,), daemon=True) for p in paths]

    def __enter__(self) -> Poller:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.timeout + 1.0)

    def _run(self, path: str) -> None:
        stats = self.stats[path]
        headers = {"Accept-Encoding": "gzip"} if path == "/metrics" else {}
        for _ in range(MAX_READS):
            began = time.perf_counter()
            try:
                request = urllib.request.Request(self.base + path, headers=headers)
                with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                    body = answer.read()
                stats.seconds.append(time.perf_counter() - began)
                stats.sizes.append(len(body))
            except OSError as exc:  # URLError, HTTPError, timeouts: all are OSError
                stats.errors.append(f"{type(exc).__name__}: {exc}"[:200])
            if self._stop.wait(max(0.0, self.period - (time.perf_counter() - began))):
                return
