"""Which event loop the daemon runs on: asyncio's own, or uvloop.

uvloop (libuv) measured 0.77x the machine CPU per probe and 0.63x the
scheduler lag p99 of the standard loop at 10,000 checks; it is a dependency of
the package on Linux. `auto` takes it when it imports, and falls back to the
standard loop otherwise (another platform, a build without it).

`auto` is the default. What differs between the two loops and matters here:
libuv stops watching a descriptor at its first POLLERR, which an ICMP datagram
socket raises for every ICMP error, so the ICMP socket is watched through an
epoll instance (`_icmp_open.ReadinessWatch`); everything else the daemon uses
(sockets through transports and `sock_*`, signal handlers, subprocesses,
`loop.time()`, `asyncio.timeout`) behaves alike, and the test suite's second
run on uvloop (HEALTHD_TEST_LOOP, see the Makefile) keeps it so.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

CHOICES = ("auto", "asyncio", "uvloop")
DEFAULT = "auto"

T = TypeVar("T")
LoopFactory = Callable[[], asyncio.AbstractEventLoop]


class LoopUnavailable(Exception):
    """`--loop uvloop` where uvloop is not installed."""


def uvloop_available() -> bool:
    return importlib.util.find_spec("uvloop") is not None


def resolve(choice: str) -> str:
    """The loop `choice` means here: `auto` becomes "uvloop" or "asyncio"."""
    if choice not in CHOICES:
        raise ValueError(f"event loop must be one of {', '.join(CHOICES)}, not {choice!r}")
    if choice == "auto":
        return "uvloop" if uvloop_available() else "asyncio"
    if choice == "uvloop" and not uvloop_available():
        raise LoopUnavailable("uvloop is not installed (pip install uvloop), use --loop asyncio")
    return choice


def factory(name: str) -> LoopFactory:
    """A new-loop function for a resolved name ("asyncio" or "uvloop")."""
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    # the standard loop itself, whatever event loop policy is installed
    return asyncio.DefaultEventLoopPolicy().new_event_loop


def add_argument(parser: argparse.ArgumentParser) -> None:
    """`--loop CHOICE` (default: $HEALTHD_LOOP, else auto), for each command that runs a loop."""
    parser.add_argument(
        "--loop",
        default=os.environ.get("HEALTHD_LOOP") or DEFAULT,
        choices=CHOICES,
        help="event loop: asyncio's own, uvloop, or auto (uvloop where installed) "
        "(default: $HEALTHD_LOOP, else auto)",
    )


def run(main: Coroutine[Any, Any, T], name: str) -> T:
    """`asyncio.run(main)` on the named loop."""
    with asyncio.Runner(loop_factory=factory(name)) as runner:
        return runner.run(main)
