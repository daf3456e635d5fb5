"""This process's open descriptors, for the "no socket survives a probe" tests."""

from __future__ import annotations

import asyncio
import gc
import os
import re
from pathlib import Path

# Sockets of the test process's background threads: the resolver (UDP to the name server,
# netlink for AI_ADDRCONFIG), captures (packet), the event loop's self-pipe (unix).
_BACKGROUND_TABLES = ("udp", "udp6", "netlink", "packet", "unix")
# the inode's column in each /proc/net table (0-based)
_INODE_COLUMN = {"udp": 9, "udp6": 9, "netlink": 9, "packet": 8, "unix": 6}
_SOCKET = re.compile(r"socket:\[(\d+)\]")


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
    """Descriptors opened since `before` and still open, other than background sockets.

    Descriptors that closed meanwhile do not count, and neither do new UDP, unix or
    packet sockets: an earlier test's resolver thread (still retrying a lookup of a
    name that does not exist) or capture thread may open and close its own at any
    time. What a probe could leak is a TCP or ICMP socket, or another kind of file.
    """
    background = _background_socket_inodes()
    leaked = set()
    for entry in open_fds() - before:
        match = _SOCKET.search(entry)
        if match is None or match.group(1) not in background:
            leaked.add(entry)
    return leaked


def _background_socket_inodes() -> set[str]:
    inodes = set()
    for table in _BACKGROUND_TABLES:
        path = Path("/proc/self/net") / table
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            column = _INODE_COLUMN.get(table, 9)
            if len(fields) > column:
                inodes.add(fields[column])
    return inodes


async def new_fds_settled(before: set[str], within: float = 2.0) -> set[str]:
    """`new_fds`, once closed transports (ours and in-process servers') have let go.

    asyncio closes a transport's socket a few loop turns after close(); a busy
    machine stretches that. Waits until nothing new is open, at most `within` s.
    """
    deadline = asyncio.get_running_loop().time() + within
    while True:
        leaked = new_fds(before)
        if not leaked or asyncio.get_running_loop().time() > deadline:
            return leaked
        await asyncio.sleep(0.02)
