"""bench.procstat's memory sums over a real process tree."""

from __future__ import annotations

import subprocess
import sys

from bench.procstat import process_pss, process_rss, process_tree
from tests.waiting import eventually


async def test_pss_counts_a_shared_page_once_where_rss_counts_it_per_process() -> None:
    # a parent and its forked child share the interpreter's pages: the RSS sum counts them twice
    code = "import os; pid = os.fork(); os.read(0, 1) if pid == 0 else os.waitpid(pid, 0)"
    with subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE) as parent:
        try:
            assert await eventually(lambda: len(process_tree(parent.pid)) == 2, seconds=10)
            rss, pss = process_rss(parent.pid), process_pss(parent.pid)
            assert 0 < pss < 0.8 * rss
        finally:
            assert parent.stdin is not None
            parent.stdin.close()
            parent.wait(10)
