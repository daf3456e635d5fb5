"""Report sections for the floors and the truth step: the C epoll loop, fping at steady state,
the delay-link step and the reads of the 10,000-check run."""

from __future__ import annotations

from typing import Any

from bench.cells import med, pct, spread


def floors(results: dict[str, Any]) -> list[str]:
    paced = results.get("cloop_paced") or {}
    unpaced = results.get("cloop_unpaced") or {}
    if not paced and not unpaced:
        return []
    rows = [
        "## The C epoll connect loop (the floor), same targets, same run",
        "",
        f"`bench/connect_loop.c`, compiled by the bench ({paced.get('note') or unpaced.get('note')}). "
        "Modes: `full` (connect, close: FIN, as the tcp probe), "
        "`rst` (SO_LINGER 0, as `close: reset`), `syn` (TCP_QUICKACK 0 + SO_LINGER 0, close when writable: "
        "SYN-only, as the syn probe). Paced: 1,000 connects/s, windows after "
        f"{_warm(paced)} s at the rate; unpaced: 100 in flight.",
        "",
        "| mode | paced machine µs/connect | paced own µs | paced machine busy | unpaced connects/s | "
        "unpaced machine µs | failed (paced / unpaced) |",
        "|---|---|---|---|---|---|---|",
    ]
    for mode in ("full", "rst", "syn"):
        windows = paced.get("modes", {}).get(mode, [])
        floor = unpaced.get("modes", {}).get(mode)
        rows.append(
            f"| {mode} | {spread([w.machine_us for w in windows], '{:.1f}')} | "
            f"{spread([w.own_us for w in windows], '{:.1f}')} | "
            f"{pct(med([w.machine_share for w in windows]))} | "
            f"{f'{floor.rate:,.0f}' if floor else '-'} | {f'{floor.machine_us:.1f}' if floor else '-'} | "
            f"{sum(w.failures for w in windows):.0f} / {f'{floor.failures:.0f}' if floor else '-'} |"
        )
    steady = results.get("fping_steady")
    if steady is not None:
        rows += [
            "",
            f"fping paced (`-p 1000 -i 1`, 1,000 targets, 1,000 echoes/s) for {steady.warm:.0f} s, then a "
            f"{steady.seconds:.0f} s window: {steady.machine_us:.1f} machine µs/echo; "
            f"{steady.lost} of {steady.sent} echoes lost.",
        ]
    return rows


def _warm(paced: dict[str, Any]) -> str:
    windows = [w for ws in paced.get("modes", {}).values() for w in ws]
    return f"{windows[0].warm:.0f}" if windows else "-"


def truth(results: dict[str, Any]) -> list[str]:
    run = results.get("truth")
    if run is None:
        return []
    rows = ["## Truth under load: a 20 ms delay link while 6,000 checks/s run", ""]
    if run.skipped:
        return [*rows, f"Skipped: {run.skipped}."]
    rows += [
        f"{run.background:,} background tcp checks every 1 s on loopback "
        f"({run.background_rate:,.0f} probes/s measured, {run.background_failures:.0f} failed, "
        f"lag p99 {run.lag_p99 * 1000:.1f} ms), `/metrics` read every 1 s ({run.metrics_reads} reads, "
        f"{run.metrics_errors} failed). Four checks go through the delay link of `tests/delaylink.py` "
        "(TUN devices and a forwarder; this kernel has no netem) into a namespace the step creates. "
        "The wire reference is a packet capture (AF_PACKET, kernel timestamps) on the link's root-side TUN, "
        "of the same probes: SYN → SYN-ACK (tcp, syn), echo → reply (icmp), "
        "SYN → first response byte (http). The link adds "
        f"{run.link_inbound_ms:.2f} ms beyond 20 ms (median, its own capture).",
        "",
        "| check | reported latency ms (median [min-max]) | wire ms | error ms | goal | failed |",
        "|---|---|---|---|---|---|",
    ]
    for name, check in run.checks.items():
        goal = 10 if name == "http" else 2
        rows.append(
            f"| {name} | {spread(check.reported_ms, '{:.2f}')} (n={len(check.reported_ms)}) | "
            f"{spread(check.wire_ms, '{:.2f}')} (n={len(check.wire_ms)}) | {check.error_ms:+.2f} | "
            f"±{goal} | {len(check.failures)} {', '.join(sorted(set(check.failures)))} |"
        )
    return rows


def polled(results: dict[str, Any]) -> list[str]:
    big = (results.get("big") or {}).get("polled")
    if big is None or not big.polls:
        return []
    rows = [
        "Reads during the polled run's window (one thread per path, one read a second):",
        "",
        "| path | reads | response ms (median [min-max]) | size | failed |",
        "|---|---|---|---|---|",
    ]
    for path, stats in big.polls.items():
        rows.append(
            f"| `{path}` | {stats.reads} | {spread([s * 1000 for s in stats.seconds])} | "
            f"{med(stats.sizes) / 2**20:.2f} MB | {len(stats.errors)} |"
        )
    return rows
