"""CPU and memory counters from /proc: the whole machine and single processes.

Machine CPU is the sum over all cores of every busy state in /proc/stat,
softirq and irq included: on loopback the kernel does both ends of each
connection, often in softirq, so a tool's own CPU misses much of its cost.
Steal (time the hypervisor gave to others) is not ours and is left out.
Process CPU is utime + stime of /proc/PID/stat (all threads), in clock ticks.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass

TICK = 1.0 / os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class MachineSample:
    at: float  # monotonic seconds
    busy: float  # CPU seconds, all cores
    total: float  # busy + idle + iowait + steal, all cores


def machine() -> MachineSample:
    with open("/proc/stat", encoding="ascii") as stat:
        fields = stat.readline().split()
    assert fields[0] == "cpu", "first line of /proc/stat is the all-cores total"
    user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
    # guest time is already counted inside user/nice, so it is not added again
    busy = user + nice + system + irq + softirq
    return MachineSample(time.monotonic(), busy * TICK, (busy + idle + iowait + steal) * TICK)


def machine_busy_share(before: MachineSample, after: MachineSample) -> float:
    """Fraction of all cores busy between two samples."""
    total = after.total - before.total
    return (after.busy - before.busy) / total if total > 0 else 0.0


def _stat_fields(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        # the command name may hold spaces and parentheses: split after the last ')'
        return stat.read().rsplit(")", 1)[1].split()


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (worker processes count as the daemon's own CPU and memory)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            parent = int(_stat_fields(int(entry))[1])
        except (OSError, IndexError, ValueError):
            continue  # exited meanwhile
        children.setdefault(parent, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, ()))
    return tree


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) the process and its children so far have used."""
    total = 0.0
    for member in process_tree(pid):
        try:
            fields = _stat_fields(member)
        except OSError:
            continue  # a child that exited meanwhile
        total += (int(fields[11]) + int(fields[12])) * TICK
    return total


def process_rss(pid: int) -> int:
    """Resident set size in bytes, of the process and its children."""
    total = 0
    for member in process_tree(pid):
        try:
            with open(f"/proc/{member}/statm", encoding="ascii") as statm:
                total += int(statm.read().split()[1]) * PAGE
        except OSError:
            continue
    return total


def process_pss(pid: int) -> int:
    """Proportional set size in bytes, summed over the process and its children.

    A page shared by N processes counts 1/N in each (Pss in smaps_rollup), so the sum
    counts every page once, as the cgroup's memory.current (systemd's MemoryCurrent)
    does; process_rss counts a page shared by the main process and its workers once
    per process.
    """
    total = 0
    for member in process_tree(pid):
        try:
            with open(f"/proc/{member}/smaps_rollup", encoding="ascii") as rollup:
                total += next(int(line.split()[1]) for line in rollup if line.startswith("Pss:")) * 1024
        except (OSError, StopIteration):
            continue  # exited meanwhile
    return total


@dataclass
class CpuWindow:
    """CPU used over one measurement window, by the machine and by named processes."""

    pids: dict[str, int]
    start: MachineSample | None = None
    end: MachineSample | None = None
    _first: dict[str, float] | None = None
    _last: dict[str, float] | None = None

    def begin(self) -> None:
        self._first = {name: process_cpu(pid) for name, pid in self.pids.items()}
        self.start = machine()

    def finish(self) -> None:
        self.end = machine()
        self._last = {name: process_cpu(pid) for name, pid in self.pids.items()}

    @property
    def seconds(self) -> float:
        assert self.start and self.end
        return self.end.at - self.start.at

    @property
    def machine_cpu(self) -> float:
        assert self.start and self.end
        return self.end.busy - self.start.busy

    @property
    def machine_share(self) -> float:
        assert self.start and self.end
        return machine_busy_share(self.start, self.end)

    def cpu(self, name: str) -> float:
        assert self._first is not None and self._last is not None
        return self._last[name] - self._first[name]


def load_average() -> tuple[float, float, float]:
    one, five, fifteen = os.getloadavg()
    return one, five, fifteen


def print_figures(figures: dict[str, object]) -> None:
    """A script's figures as JSON on stdout, with the machine's 1-minute load average beside them."""
    figures["load_average_1m"] = load_average()[0]
    print(json.dumps(figures, indent=1))
