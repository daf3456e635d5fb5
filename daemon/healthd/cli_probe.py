"""`healthd probe TYPE TARGET`: one probe now, with the daemon's engine, printed for a person or as JSON.

HTTP options follow curl's spelling (`-k`, `-H`, `-X`, `--data`), so a curl
command line that reproduces a problem carries over.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from healthd import loops
from healthd.api_dicts import encode, result_dict
from healthd.cli_tools import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, write_stdout
from healthd.config import CHECK_MODELS, CheckBase, parse_duration
from healthd.probes import PROBES, Probe, ProbeResources
from healthd.results import ProbeResult
from healthd.scheduler import run_probe

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("type", choices=sorted(PROBES), help="check type")
    parser.add_argument("target", help="HOST:PORT (tcp, syn), HOST (icmp) or URL (http)")
    parser.add_argument("--timeout", default="2s", help="e.g. 500ms, 2s (default 2s)")
    parser.add_argument("--count", type=int, help="echo requests (icmp)")
    parser.add_argument("--source-ip", help="bind the probe to this source address")
    parser.add_argument("--interface", help="bind the probe to this interface")
    parser.add_argument("--json", action="store_true", help="print the API's result object as JSON")
    loops.add_argument(parser)
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="log INFO lines to stderr (-vv: DEBUG)"
    )
    http = parser.add_argument_group("http options (as curl spells them)")
    http.add_argument("-X", "--method", metavar="METHOD", help="request method (GET; POST with --data)")
    http.add_argument(
        "-H",
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="request header; repeat for more",
    )
    http.add_argument("--data", metavar="BODY", help="request body, sent as given")
    http.add_argument("-k", "--insecure", action="store_true", help="do not verify the server's certificate")


def log_level(args: argparse.Namespace) -> str:
    """One-shot output is the result: log lines only when asked for."""
    return {0: "warning", 1: "info"}.get(args.verbose, "debug")


def _usage(message: str) -> int:
    print(f"healthd probe: {message}", file=sys.stderr)
    return EXIT_USAGE


def _headers(values: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for value in values:
        name, colon, content = value.partition(":")
        if not colon or not name.strip():
            raise ValueError(f"-H {value!r}: use 'Name: value'")
        headers[name.strip()] = content.strip()
    return headers


def check_options(args: argparse.Namespace, timeout: float, headers: dict[str, str]) -> dict[str, Any]:
    """The check the flags describe, as config keys."""
    model = CHECK_MODELS[args.type]
    options: dict[str, Any] = {
        "type": args.type,
        "name": "cli",
        model.TARGET_FIELD: args.target,
        "timeout": timeout,
        "interval": max(timeout, 1.0),
    }
    given: dict[str, Any] = {
        "count": args.count,
        "source_ip": args.source_ip,
        "interface": args.interface,
        "method": args.method or ("POST" if args.data is not None else None),
        "headers": headers or None,
        "body": args.data,
        "verify": False if args.insecure else None,
    }
    options.update({key: value for key, value in given.items() if value is not None})
    return options


def probe_once(args: argparse.Namespace) -> int:
    try:
        timeout = parse_duration(args.timeout)
    except ValueError as exc:
        return _usage(f"--timeout: {exc}")
    try:
        headers = _headers(args.header)
    except ValueError as exc:
        return _usage(str(exc))
    try:
        check = CHECK_MODELS[args.type].model_validate(check_options(args, timeout, headers))
    except ValidationError as exc:
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or args.type
            reason = "does not apply to this probe type" if err["type"] == "extra_forbidden" else err["msg"]
            print(f"healthd probe: {where}: {reason}", file=sys.stderr)
        return EXIT_USAGE
    try:
        loop_name = loops.resolve(args.loop)
    except loops.LoopUnavailable as exc:
        return _usage(f"--loop: {exc}")
    log.info("probing on the %s event loop", loop_name)
    result = loops.run(_probe_with_own_resources(PROBES[args.type], check), loop_name)
    write_stdout(render(args.type, args.target, result, as_json=args.json) + "\n")
    return EXIT_OK if result.ok else EXIT_FAILURE


async def _probe_with_own_resources(probe: Probe, check: CheckBase) -> ProbeResult:
    async with ProbeResources() as resources:
        return await run_probe(probe, check, resources)


def render(kind: str, target: str, result: ProbeResult, as_json: bool) -> str:
    if as_json:
        return encode(result_dict(result), indent=True).decode()
    total = f"{result.duration * 1000:.3f} ms"
    if result.ok:
        latency = result.latency if result.latency is not None else result.duration
        lines = [f"{kind} {target}: ok, latency {latency * 1000:.3f} ms (total {total})"]
    else:
        lines = [f"{kind} {target}: FAIL {result.error_kind}: {result.error_message} (after {total})"]
    if result.phases:
        lines.append("  phases: " + ", ".join(f"{k} {v * 1000:.3f} ms" for k, v in result.phases.items()))
    summary = _echo_summary(result.details)
    shown = {k: v for k, v in result.details.items() if not (summary and k in _ECHO_STATS)}
    lines += [f"  {key}: {value}" for key, value in shown.items()]
    if summary:
        lines.append(f"  {result.details.get('address', target)} : {summary}")
    return "\n".join(lines)


_ECHO_STATS = ("sent", "received", "loss_ratio", "rtt_min_ms", "rtt_avg_ms", "rtt_max_ms", "rtt_stddev_ms")


def _echo_summary(details: Mapping[str, Any]) -> str:
    """fping's closing line for echo statistics (icmp), e.g. `xmt/rcv/%loss = 5/5/0%, min/avg/max/...`."""
    if "sent" not in details or "received" not in details:
        return ""
    sent, received = details["sent"], details["received"]
    line = f"xmt/rcv/%loss = {sent}/{received}/{round(100 * details.get('loss_ratio', 0))}%"
    if received:
        times = "/".join(f"{details[f'rtt_{name}_ms']:.3f}" for name in ("min", "avg", "max", "stddev"))
        line += f", min/avg/max/stddev = {times} ms"
    return line
