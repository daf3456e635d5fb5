"""CPU per HTTP probe, in one process: healthd's probe against a local aiohttp server.

    .venv/bin/python bench/http_cpu.py [-n 2000] [--in-flight 50] [--rounds 3] [--https] [--profile FILE]

A server process (this script with `--serve`) answers `GET /` with a short
200 on 127.0.0.1, port 0. The bench process runs batches of N probes through
`run_probe(probe_http, check, resources)`: with `--in-flight` probes at once (one check
object per worker, as the scheduler runs one probe at a time per check) and
one at a time, alternating, `--rounds` times. For each batch it prints
probes/s and the bench process's own CPU (user + system, all threads, from
getrusage) per probe, the server's CPU apart; then the median [min-max] of
the rounds, as the machine may be shared. Traffic goes to 127.0.0.1 only;
the server is stopped on the way out.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import resource
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` and `daemon` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from healthd.config import HttpCheck
from healthd.probes import ProbeResources
from healthd.probes.http import probe_http
from healthd.scheduler import run_probe

WARMUP = 50  # probes before measuring: TLS context, resolver threads, first-use caches
DEADLINE = 300.0  # seconds per batch: a batch that takes longer is broken, not slow
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# ---- the server process ------------------------------------------------------------------


def serve(pki_dir: Path | None) -> None:
    """Answer `GET /` on 127.0.0.1:0; print the port; run until stdin closes."""
    from aiohttp import web

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="OK")

    async def main() -> None:
        tls = None
        if pki_dir is not None:
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.load_cert_chain(pki_dir / "server.pem")
        app = web.Application()
        app.router.add_get("/", ok)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
        await site.start()
        print(runner.addresses[0][1], flush=True)
        # the parent closes our stdin when it is done (or dies): that is the stop signal
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await runner.cleanup()

    asyncio.run(main())


def make_pki(where: Path) -> Path:
    """A CA (ca.pem) and a server certificate for 127.0.0.1 (server.pem), made with trustme."""
    import trustme

    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(where / "ca.pem"))
    leaf = ca.issue_cert("127.0.0.1")
    leaf.private_key_and_cert_chain_pem.write_to_path(str(where / "server.pem"))
    return where / "ca.pem"


def start_server(pki_dir: Path | None) -> tuple[subprocess.Popen[str], int]:
    argv = [sys.executable, __file__, "--serve"]
    if pki_dir is not None:
        argv += ["--pki", str(pki_dir)]
    server = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    line = server.stdout.readline()  # the port, or "" if the server died
    if not line.strip().isdigit():
        stop_server(server)
        raise SystemExit(f"the server did not start (said {line!r})")
    return server, int(line)


def stop_server(server: subprocess.Popen[str]) -> None:
    assert server.stdin is not None
    server.stdin.close()
    try:
        server.wait(timeout=5)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(timeout=5)


def own_cpu() -> tuple[float, float]:
    """User and system CPU seconds of this process, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of process `pid`."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


# ---- the probes ----------------------------------------------------------------------------


def make_check(url: str, ca_file: Path | None) -> HttpCheck:
    options: dict[str, object] = {"type": "http", "name": "bench", "url": url, "timeout": "5s"}
    if ca_file is not None:
        options["ca_file"] = str(ca_file)
    return HttpCheck.model_validate(options)


async def run_batch(checks: list[HttpCheck], total: int, resources: ProbeResources) -> tuple[int, list[str]]:
    """`total` probes spread over the checks, each check one probe at a time; (ok, errors)."""
    errors: list[str] = []
    ok = 0

    async def worker(check: HttpCheck, count: int) -> None:
        nonlocal ok
        for _ in range(count):
            result = await run_probe(probe_http, check, resources)
            if result.ok:
                ok += 1
            elif len(errors) < 5:
                errors.append(f"{result.error_kind}: {result.error_message}")

    share, extra = divmod(total, len(checks))
    async with asyncio.timeout(DEADLINE):
        await asyncio.gather(*(worker(c, share + (i < extra)) for i, c in enumerate(checks)))
    return ok, errors


async def measure_batch(
    label: str, checks: list[HttpCheck], total: int, server_pid: int, resources: ProbeResources
) -> float:
    """Run one batch, print its line; return own CPU µs per probe."""
    (user, system), server_cpu, started = own_cpu(), process_cpu(server_pid), time.perf_counter()
    ok, errors = await run_batch(checks, total, resources)
    elapsed = time.perf_counter() - started
    user_after, system_after = own_cpu()
    user, system = user_after - user, system_after - system
    server_cpu = process_cpu(server_pid) - server_cpu
    per_probe = 1e6 / total
    print(
        f"{label:>14}: {total} probes, {ok} ok, {total / elapsed:5.0f} probes/s, "
        f"CPU {(user + system) * per_probe:4.0f} µs/probe "
        f"(user {user * per_probe:3.0f} + system {system * per_probe:3.0f}; "
        f"server {server_cpu * per_probe:3.0f})",
        flush=True,
    )
    for error in errors:
        print(f"    failed: {error}")
    return (user + system) * per_probe


async def measure(args: argparse.Namespace, url: str, ca_file: Path | None, server_pid: int) -> None:
    modes = {f"{args.in_flight} in flight": args.in_flight, "one at a time": 1}
    checks = {label: [make_check(url, ca_file) for _ in range(width)] for label, width in modes.items()}
    figures: dict[str, list[float]] = defaultdict(list)
    async with ProbeResources() as resources:
        for batch in checks.values():
            await run_batch(batch, max(WARMUP, len(batch)), resources)  # first use of each check object
        for _ in range(args.rounds):
            for label, batch in checks.items():
                figures[label].append(await measure_batch(label, batch, args.n, server_pid, resources))
    for label, values in figures.items():
        print(
            f"{label:>14}: median {statistics.median(values):4.0f} µs/probe "
            f"[{min(values):.0f}-{max(values):.0f}] over {len(values)} rounds"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", type=int, default=2000, help="probes per batch (default 2000)")
    parser.add_argument("--in-flight", type=int, default=50, help="probes at once in the first mode")
    parser.add_argument("--rounds", type=int, default=3, help="batches per mode (default 3)")
    parser.add_argument("--https", action="store_true", help="probe over TLS (a CA made here)")
    parser.add_argument("--profile", type=Path, help="write a cProfile of the bench process here")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--pki", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.pki)
        return
    with tempfile.TemporaryDirectory() as scratch:
        pki_dir = Path(scratch) if args.https else None
        ca_file = make_pki(pki_dir) if pki_dir is not None else None
        server, port = start_server(pki_dir)
        try:
            url = f"{'https' if args.https else 'http'}://127.0.0.1:{port}/"
            print(f"Python {sys.version.split()[0]}, {url}, N={args.n}, load {os.getloadavg()[0]:.2f}")
            run = measure(args, url, ca_file, server.pid)
            if args.profile:
                cProfile.runctx("asyncio.run(run)", globals(), {"run": run, "asyncio": asyncio}, args.profile)
            else:
                asyncio.run(run)
        finally:
            stop_server(server)


if __name__ == "__main__":
    main()
