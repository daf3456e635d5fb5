"""First paint of the status page at 10,000 checks, in headless Chromium, and the page's weight.

    .venv/bin/python -m bench.page_paint [--checks 10000] [--runs 5] [--json FILE]

Runs the bench's targets process (TCP listeners on 127.70.0.x) and healthd as a
real process with N TCP checks every `--interval` (60 s), in services of 100; one service and
every 97th check point at a closed port, so the page has down and degraded
services to put first. Once every check has its first verdict, Chromium
(fresh profile, loopback only) loads `/` `--runs` times in fresh tabs; the
reference, measured in the same run and browser, is the same daemon's page
filtered to one check. Reported: first contentful paint (navigation start to
FCP, so it includes the daemon rendering the page), DOMContentLoaded, load,
DOM size, and the bytes of HTML, CSS and JS, plain and gzipped.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.healthd_process import HEALTHD, PYTHON, ROOT, write_config
from bench.procs import Processes, free_port, wait_line
from bench.targets import TCP_PORT_BASE, tcp_targets
from tests.browser import Browser, chromium_path  # the tests' Chromium driver

CLOSED_PORT = TCP_PORT_BASE - 1  # nothing listens there: refused, down
TIMING = """(() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const fcp = performance.getEntriesByName('first-contentful-paint')[0];
  return {fcp: fcp ? fcp.startTime : null, ttfb: nav.responseStart, html: nav.responseEnd,
          dcl: nav.domContentLoadedEventEnd, load: nav.loadEventEnd,
          nodes: document.getElementsByTagName('*').length, rows: document.querySelectorAll('.check').length};
})()"""


def checks(count: int) -> list[dict[str, Any]]:
    out = []
    for i, (host, port) in enumerate(tcp_targets(count)):
        down = 700 <= i < 800 or i % 97 == 0  # service bench-0007 wholly down, some others degraded
        out.append({"type": "tcp", "target": f"{host}:{CLOSED_PORT if down else port}"})
    return out


def fetch(url: str, gzip_ok: bool = False) -> bytes:
    headers = {"Accept-Encoding": "gzip" if gzip_ok else "identity"}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as answer:
        body: bytes = answer.read()
    return body


def weight(base: str) -> dict[str, Any]:
    html = fetch(base + "/")
    out: dict[str, Any] = {"html": len(html), "html_gzip": len(gzip.compress(html))}
    for name in ("page.css", "page.js"):
        body = fetch(f"{base}/static/{name}")
        out[name], out[name + "_gzip"] = len(body), len(fetch(f"{base}/static/{name}", gzip_ok=True))
    out["total"] = out["html"] + out["page.css"] + out["page.js"]
    return out


def response_times(base: str, path: str, count: int = 10) -> list[float]:
    """Milliseconds for whole GETs, 0.3 s apart: how busy the daemon's loop is, page or not."""
    times = []
    for _ in range(count):
        started = time.perf_counter()
        fetch(base + path, gzip_ok=True)
        times.append((time.perf_counter() - started) * 1000)
        time.sleep(0.3)
    return times


def start_daemon(procs: Processes, config: Path) -> str:
    """healthd as a real process. Not bench.healthd_process.Healthd: its 2 s polls of /readyz
    give up while a 10,000-check daemon's loop stalls for tens of seconds after start (main,
    11:10 UTC); here each poll may wait 30 s."""
    port = free_port()
    args = ["run", "-c", str(config), "--listen", f"127.0.0.1:{port}", "--log-level", "warning"]
    procs.start("healthd", [str(HEALTHD), *args], cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(base + "/readyz", timeout=30) as answer:
                if answer.status == 200:
                    return base
        except OSError:
            time.sleep(1)
    raise TimeoutError("healthd was not ready within 240 s")


def wait_verdicts(base: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if b"No check matches" in fetch(base + "/?status=unknown"):
                return
        except OSError:  # a stalled loop: try again
            pass
        time.sleep(1)
    raise TimeoutError(f"checks still unknown after {timeout:.0f} s")


async def paints(base: str, runs: int) -> dict[str, list[dict[str, Any]]]:
    results: dict[str, list[dict[str, Any]]] = {"page": [], "reference": []}
    async with Browser() as browser:
        page = await browser.page(width=1440, height=900)
        await page.goto(base + "/")  # warm-up: renderer started, CSS and JS cached, as for a returning user
        for _ in range(runs):
            for label, path in (("page", "/"), ("reference", "/?q=c00001")):
                await page.goto("about:blank")
                await page.goto(base + path)
                await page.wait_for("performance.getEntriesByName('first-contentful-paint').length > 0", 10)
                await page.wait_for("performance.getEntriesByType('navigation')[0].loadEventEnd > 0", 10)
                sample = await page.eval(TIMING)
                sample["paint"] = sample["fcp"] - sample["ttfb"]  # the browser's own part
                results[label].append(sample)
    return results


def summary(samples: list[dict[str, Any]], key: str) -> str:
    values = [s[key] for s in samples]
    return f"{statistics.median(values):.0f} ms [{min(values):.0f}-{max(values):.0f}]"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--interval", type=float, default=60.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if chromium_path() is None:
        sys.exit("needs chromium (apt-get install chromium)")
    workdir = Path(tempfile.mkdtemp(prefix="healthd-paint-"))
    procs = Processes(workdir)
    try:
        targets = procs.start(
            "targets",
            [str(PYTHON), "-m", "bench.targets", "--tcp", str(args.checks)],
            stdout_pipe=True,
            cwd=ROOT,
        )
        wait_line(targets, b"ready", timeout=60)
        config = workdir / "healthd.json"
        # 60 s: ~170 probes/s, so the loop's lag (reported apart, /healthz) does not swamp the page's cost
        write_config(config, checks(args.checks), interval=args.interval, timeout=2.0, history=30)
        base = start_daemon(procs, config)
        wait_verdicts(base, timeout=args.interval + 120)
        page_weight = weight(base)
        page_weight["get_page_ms"] = response_times(base, "/")
        page_weight["get_healthz_ms"] = response_times(base, "/healthz")
        timings = asyncio.run(paints(base, args.runs))
    finally:
        procs.stop_all()
    report(args.checks, page_weight, timings, args.json)


def report(
    count: int, page_weight: dict[str, Any], timings: dict[str, list[dict[str, Any]]], out: Path | None
) -> None:
    page, reference = timings["page"], timings["reference"]
    print(f"status page at {count:,} checks, headless Chromium, {len(page)} loads (median [min-max])")
    print(
        f"  first contentful paint: {summary(page, 'fcp')}   reference (1 check): {summary(reference, 'fcp')}"
    )
    print(f"  FCP after first byte:   {summary(page, 'paint')}   reference: {summary(reference, 'paint')}")
    print(f"  first byte of HTML:     {summary(page, 'ttfb')}   reference: {summary(reference, 'ttfb')}")
    print(f"  last byte of HTML:      {summary(page, 'html')}   reference: {summary(reference, 'html')}")
    print(f"  DOMContentLoaded:       {summary(page, 'dcl')}   reference: {summary(reference, 'dcl')}")
    print(f"  load:                   {summary(page, 'load')}   reference: {summary(reference, 'load')}")
    print(f"  DOM: {page[0]['nodes']} elements, {page[0]['rows']} check rows on the first page")
    w = page_weight
    print(
        f"  weight: HTML {w['html']:,} B ({w['html_gzip']:,} gzipped), CSS {w['page.css']:,} B "
        f"({w['page.css_gzip']:,}), JS {w['page.js']:,} B ({w['page.js_gzip']:,}); "
        f"total {w['total']:,} B uncompressed"
    )
    for path, key in (("/", "get_page_ms"), ("/healthz", "get_healthz_ms")):
        times = w[key]
        spread = f"[{min(times):.0f}-{max(times):.0f}]"
        print(f"  GET {path} from Python: median {statistics.median(times):.0f} ms {spread}")
    if out is not None:
        out.write_text(json.dumps({"checks": count, "weight": page_weight, **timings}, indent=1))


if __name__ == "__main__":
    main()
