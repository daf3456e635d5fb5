"""How exact is the ICMP probe's RTT? healthd and fping against the same wire, in one run.

    .venv/bin/python bench/icmp_rtt.py [--count 50] [--delay 20ms]      (root; needs fping)

Four paths: 127.0.0.1 and ::1 (captured on `lo`), and a namespace's IPv4 and IPv6
addresses behind the TUN delay link of `tests/delaylink.py` (captured on the
root-side TUN). On each, one at a time:
- `count` healthd probes (count 1 each, as the daemon runs them): the reported RTT
  against the capture's request -> reply gap of the same request;
- `fping -C count` through the same path: each printed RTT against the gap of its
  request (fping prints 3 significant digits: at 20 ms, 0.1 ms steps, so its error
  is known to +-0.05 ms there).
Errors are per request (tool minus wire), reported as median and p90 in milliseconds.
Traffic goes only to loopback and to the namespace this script creates.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `tests` and `daemon` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from healthd.config import IcmpCheck, parse_duration
from healthd.probes import ProbeResources
from healthd.probes.icmp import EchoSockets, probe_icmp
from healthd.scheduler import run_probe

from tests.capture import Capture, Packet
from tests.delaylink import delay_link


def wire_gaps(packets: Sequence[Packet], target: str, ident: int, v6: bool) -> list[float]:
    """Request -> reply times of echo `ident` to `target`, in sending order (first copy of each)."""
    request, reply = (128, 129) if v6 else (8, 0)
    sent: dict[int, float] = {}
    answered: dict[int, float] = {}
    for p in sorted(packets, key=lambda p: p.time):
        if p.icmp_id != ident or p.seq is None:
            continue
        if p.icmp_type == request and p.dst == target:
            sent.setdefault(p.seq, p.time)
        elif p.icmp_type == reply and p.src == target:
            answered.setdefault(p.seq, p.time)
    order = sorted(sent, key=sent.__getitem__)
    return [answered[seq] - sent[seq] for seq in order if seq in answered]


def summary(name: str, tool: Sequence[float], wire: Sequence[float]) -> str:
    n = min(len(tool), len(wire))
    if n == 0:
        return f"| {name} | no samples | | | |"
    errors = sorted((t - w) * 1000 for t, w in zip(tool[:n], wire[:n], strict=True))
    p90 = statistics.quantiles(errors, n=10)[-1] if n > 1 else errors[0]
    return (
        f"| {name} | {statistics.median(tool) * 1000:.3f} | {statistics.median(wire) * 1000:.3f} "
        f"| {statistics.median(errors):+.3f} | {p90:+.3f} | {n} |"
    )


async def healthd_rtts(target: str, count: int, resources: ProbeResources) -> list[float]:
    check = IcmpCheck.model_validate({"type": "icmp", "name": "b", "target": target, "timeout": "1s"})
    rtts = []
    for _ in range(count):
        result = await run_probe(probe_icmp, check, resources)
        if result.ok and result.latency is not None:
            rtts.append(result.latency)
        await asyncio.sleep(0.01)
    return rtts


def fping_rtts(target: str, count: int) -> tuple[list[float], int]:
    """fping's RTTs in seconds (lost ones dropped) and its process id (its echo identifier)."""
    proc = subprocess.Popen(
        ["fping", "-C", str(count), "-q", "-p", "25", target],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    _, stderr = proc.communicate(timeout=60)
    values = stderr.split(" : ", 1)[-1].split()
    return [float(v) / 1000 for v in values if v != "-"], proc.pid & 0xFFFF


async def measure(name: str, interface: str, target: str, count: int, resources: ProbeResources) -> list[str]:
    v6 = ":" in target
    ident = resources.get(EchoSockets).for_family(socket.AF_INET6 if v6 else socket.AF_INET).ident
    with Capture(interface, keep=lambda p: p.is_icmp, max_seconds=120) as capture:
        ours = await healthd_rtts(target, count, resources)
        await asyncio.sleep(0.1)
        theirs, fping_ident = await asyncio.to_thread(fping_rtts, target, count)
        await asyncio.sleep(0.1)
    packets = capture.packets
    # fping 5 uses its pid as identifier; fall back to "the other identifier" if it did not
    others = {p.icmp_id for p in packets if p.icmp_id not in (None, ident)}
    if fping_ident not in others and len(others) == 1:
        fping_ident = others.pop()
    return [
        summary(f"healthd, {name}", ours, wire_gaps(packets, target, ident, v6)),
        summary(f"fping, {name}", theirs, wire_gaps(packets, target, fping_ident, v6)),
    ]


async def run(count: int, delay: float) -> list[str]:
    rows = []
    async with ProbeResources() as resources:
        for name, target in (("127.0.0.1", "127.0.0.1"), ("::1", "::1")):
            rows += await measure(f"loopback {name}", "lo", target, count, resources)
        with delay_link(delay) as link:
            for name, target in (("IPv4", link.ns_ip), ("IPv6", link.ns_ip6)):
                label = f"{delay * 1000:g} ms link {name}"
                rows += await measure(label, link.host_if, target, count, resources)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=50, help="requests per tool and path (default 50)")
    parser.add_argument("--delay", default="20ms", help="added round-trip delay of the link (default 20ms)")
    args = parser.parse_args(argv)
    if not 2 <= args.count <= 1000:
        parser.error("--count must be 2..1000")
    if shutil.which("fping") is None:
        sys.exit("needs fping (Debian package fping)")
    rows = asyncio.run(run(args.count, parse_duration(args.delay)))
    print("| tool, path | median RTT (ms) | median wire gap (ms) | error median (ms) | error p90 (ms) | n |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
