"""How exact is the SYN probe's RTT? healthd and `hping3 -S` against the same wire, in one run.

    .venv/bin/python bench/syn_rtt.py [--count 50] [--delay 20ms]      (root; needs hping3)

Builds a namespace behind the TUN delay link of `tests/delaylink.py` (20 ms added), puts a
listener in it, and captures on the root-side TUN. Then, one at a time:
- `count` healthd SYN probes: the reported RTT (TCP_INFO) and the probe's own wall time
  (connect() to writable) are each compared with the capture's SYN -> SYN-ACK gap of the
  same connection;
- `hping3 -S` with `count` SYNs through the same link: its printed rtt against the gap of
  the same SYN (hping3 prints 0.1 ms steps, so its error is known to +-0.05 ms).
Errors are per packet (tool minus wire), reported as median and p90 in milliseconds.
Traffic goes only to the namespace this script creates.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `tests` and `daemon` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from healthd.config import SynCheck, parse_duration
from healthd.probes import ProbeResources
from healthd.probes.syn import probe_syn
from healthd.scheduler import run_probe

from tests.capture import ACK, SYN, Capture, Packet
from tests.delaylink import DelayLink, delay_link, measure_forwarder

HPING_RTT = re.compile(r"seq=(\d+) .*rtt=([\d.]+) ms")


def gaps_by_port(packets: list[Packet], port: int) -> dict[int, float]:
    """Wire SYN -> SYN-ACK time per client port (the first SYN of each port)."""
    sent: dict[int, float] = {}
    answered: dict[int, float] = {}
    for p in sorted(packets, key=lambda p: p.time):
        if p.dport == port and p.flags == SYN:
            sent.setdefault(p.sport or 0, p.time)
        elif p.sport == port and p.flags == SYN | ACK:
            answered.setdefault(p.dport or 0, p.time)
    return {k: answered[k] - sent[k] for k in sent.keys() & answered.keys()}


def summary(errors: Sequence[float]) -> str:
    if not errors:
        return "no samples"
    ms = sorted(e * 1000 for e in errors)
    p90 = statistics.quantiles(ms, n=10)[-1] if len(ms) > 1 else ms[0]
    return f"median {statistics.median(ms):+.3f} ms, p90 {p90:+.3f} ms, n={len(ms)}"


async def healthd_probes(link: DelayLink, port: int, count: int) -> tuple[list[float], list[float], float]:
    check = SynCheck.model_validate({"type": "syn", "name": "bench", "target": f"{link.ns_ip}:{port}"})
    async with ProbeResources() as resources:
        await run_probe(probe_syn, check, resources)  # the first probe runs the self-test
        with Capture(link.host_if, keep=lambda p: p.is_tcp and port in (p.sport, p.dport)) as cap:
            results = [await run_probe(probe_syn, check, resources) for _ in range(count)]
            cap.wait_for(lambda p: p.flags == SYN | ACK, count=count, timeout=2.0)
    gaps = gaps_by_port(cap.packets, port)
    ordered = [gaps[k] for k in sorted(gaps, key=lambda k: next(p.time for p in cap.packets if p.sport == k))]
    reported = [r.latency for r in results if r.ok and r.latency is not None]
    wall = [r.phases["connect"] for r in results if r.ok]
    if len(ordered) != len(reported):
        raise SystemExit(f"capture saw {len(ordered)} handshakes for {len(reported)} successful probes")
    kernel_err = [r - g for r, g in zip(reported, ordered, strict=True)]
    wall_err = [w - g for w, g in zip(wall, ordered, strict=True)]
    return kernel_err, wall_err, statistics.median(ordered)


def hping3(link: DelayLink, port: int, count: int) -> tuple[list[float], float]:
    with Capture(link.host_if, keep=lambda p: p.is_tcp and port in (p.sport, p.dport)) as cap:
        command = ["hping3", "-S", "-p", str(port), "-c", str(count), "-i", "u50000", "-I", link.host_if]
        run = subprocess.run(
            [*command, link.ns_ip],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        cap.wait_for(lambda p: p.flags == SYN | ACK, count=count, timeout=2.0)
    printed = {int(m.group(1)): float(m.group(2)) / 1000 for m in HPING_RTT.finditer(run.stdout)}
    if not printed:
        raise SystemExit(f"hping3 printed no rtt (exit {run.returncode}): {run.stdout}{run.stderr}")
    gaps = gaps_by_port(cap.packets, port)
    # hping3's `seq=N` is its N-th SYN, each sent from the next source port
    syns = sorted((p for p in cap.packets if p.dport == port and p.flags == SYN), key=lambda p: p.time)
    client_ports = [p.sport for p in syns]
    errors = [
        rtt - gaps[sport]
        for seq, rtt in printed.items()
        if seq < len(client_ports) and (sport := client_ports[seq]) is not None and sport in gaps
    ]
    return errors, statistics.median(gaps.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--delay", default="20ms")
    args = parser.parse_args(argv)
    if shutil.which("hping3") is None:
        print("needs hping3 (apt-get install -y hping3)", file=sys.stderr)
        return 2
    delay = parse_duration(args.delay)
    with delay_link(delay) as link:
        server = link.ns.socket(2, 1)  # AF_INET, SOCK_STREAM inside the namespace
        with server:
            server.bind((link.ns_ip, 0))
            server.listen(128)
            port = server.getsockname()[1]
            cost = measure_forwarder(link, count=50)
            kernel_err, wall_err, wire = asyncio.run(healthd_probes(link, port, args.count))
            hping_err, hping_wire = hping3(link, port, args.count)
    print(f"SYN RTT through a {delay * 1000:g} ms delay link, {args.count} probes each, errors = tool - wire")
    print(
        f"  delay link itself (beyond {delay * 1000:g} ms): in median {cost.inbound_median * 1000:.3f} ms "
        f"p90 {cost.inbound_p90 * 1000:.3f} ms; back median {cost.outbound_median * 1000:.3f} ms "
        f"p90 {cost.outbound_p90 * 1000:.3f} ms"
    )
    print(
        f"  wire SYN -> SYN-ACK (capture on {link.host_if}): median {wire * 1000:.3f} ms (healthd run), "
        f"{hping_wire * 1000:.3f} ms (hping3 run)"
    )
    print(f"  healthd syn, reported RTT (TCP_INFO):   {summary(kernel_err)}")
    print(f"  healthd syn, wall time connect phase:   {summary(wall_err)}")
    print(f"  hping3 -S, printed rtt (0.1 ms steps):  {summary(hping_err)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
