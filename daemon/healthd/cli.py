"""Command line: `healthd run | check-config | schema | probe | healthcheck | print-unit | print-config`,
`healthd shard-of`.

The only place that exits. Sub-commands are rows of `COMMANDS`: a new one is a
function taking the parsed arguments and returning an exit status, plus a row.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import resource
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from healthd import __version__, cli_probe, cli_tools, cluster, loops
from healthd.api_server import start_api
from healthd.app import DAEMON, create_app, read_token
from healthd.bindings import binding_warnings
from healthd.config import Config, Loaded, load, split_host_port
from healthd.config.loader import locator
from healthd.config.schema import config_schema
from healthd.errors import ConfigError
from healthd.logs import setup_logging
from healthd.metrics import event_loop_name
from healthd.notify import Notifier

log = logging.getLogger("healthd")

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
DEFAULT_CONFIG = "/etc/healthd/config.yaml"
ENVIRONMENT = """\
environment:
  HEALTHD_CONFIG   config file when -c is not given (else /etc/healthd/config.yaml)
  HEALTHD_LISTEN   API address when --listen is not given (else server.listen)
  HEALTHD_SHARD_INDEX, HEALTHD_SHARD_COUNT, HEALTHD_SHARD_REPLICAS, POD_INDEX   the shard
                   (run); see docs/scaling-out.md
  HEALTHD_LOOP     event loop when --loop is not given: auto (the default), uvloop or asyncio
  NOTIFY_SOCKET, WATCHDOG_USEC, JOURNAL_STREAM   set by systemd; see docs/operations.md

exit status: 0 ok, 1 failure (a probe failed, the daemon could not serve), 2 bad config or usage
"""


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    handler: Callable[[argparse.Namespace], int]
    arguments: Callable[[argparse.ArgumentParser], None] = lambda parser: None
    config: bool = False  # takes -c/--config
    listen: bool = False  # takes --listen
    log_level: Callable[[argparse.Namespace], str] = lambda args: str(getattr(args, "log_level", "info"))


def _run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--log-format", default="text", choices=["text", "json"])
    parser.add_argument(
        "--loop",
        default=os.environ.get("HEALTHD_LOOP") or loops.DEFAULT,
        choices=loops.CHOICES,
        help="event loop: asyncio's own, uvloop, or auto (uvloop where installed) "
        "(default: $HEALTHD_LOOP, else auto)",
    )
    parser.add_argument(
        "--shard-index", type=int, help=f"this instance's shard (default: ${cluster.ENV_INDEX})"
    )
    parser.add_argument("--shard-count", type=int, help=f"how many shards (default: ${cluster.ENV_COUNT})")


def _shard_of_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checks", nargs="+", metavar="SERVICE/CHECK")
    parser.add_argument("--shard-count", type=int, required=True)
    parser.add_argument("--replicas", type=int, default=1, help="shards per check (default 1)")


COMMANDS: tuple[Command, ...] = (
    Command(
        "run",
        "run the daemon (the default)",
        lambda a: run(a.config, a.listen, a.shard_index, a.shard_count, a.loop),
        _run_arguments,
        True,
        True,
    ),
    Command("check-config", "validate a config and exit", lambda a: check_config(a.config), config=True),
    Command("schema", "print the JSON Schema of the config (for editors)", lambda a: print_schema()),
    Command(
        "probe",
        "run one probe now and print the result",
        cli_probe.probe_once,
        cli_probe.add_arguments,
        log_level=cli_probe.log_level,
    ),
    Command(
        "healthcheck",
        "exit 0 if the daemon on this host answers /healthz (for container HEALTHCHECKs)",
        cli_tools.healthcheck,
        cli_tools.add_healthcheck_arguments,
        config=True,
        listen=True,
        log_level=lambda args: "warning",
    ),
    Command("print-unit", "print the systemd unit this package carries", cli_tools.print_unit),
    Command("print-config", "print the example config this package carries", cli_tools.print_config),
    Command(
        "shard-of",
        "print the shard(s) that own each SERVICE/CHECK",
        lambda a: shard_of(a),
        _shard_of_arguments,
    ),
)
SUBCOMMANDS = {command.name for command in COMMANDS}


def main(argv: list[str] | None = None) -> None:
    sys.exit(dispatch(sys.argv[1:] if argv is None else argv))


def dispatch(argv: list[str]) -> int:
    if not argv or (argv[0] not in SUBCOMMANDS and argv[0] not in ("-h", "--help", "--version")):
        argv = ["run", *argv]  # `healthd -c x.yaml` means `healthd run -c x.yaml`
    args = build_parser().parse_args(argv)
    command = next(c for c in COMMANDS if c.name == args.command)
    setup_logging(command.log_level(args), getattr(args, "log_format", "text"))
    try:
        return command.handler(args)
    except KeyboardInterrupt:
        return EXIT_OK
    except BrokenPipeError:  # the reader went away (`healthd print-unit | head -1`): not an error
        cli_tools.silence_stdout()
        return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The whole command line (also read by shtab and argparse-manpage)."""
    parser = argparse.ArgumentParser(
        prog="healthd",
        description="Health-check daemon: TCP, SYN-only, ICMP and HTTP probes with a REST API\n"
        "and Prometheus metrics. Without a sub-command, runs the daemon.\n"
        "The config file is -c PATH, else $HEALTHD_CONFIG, else /etc/healthd/config.yaml.",
        epilog=ENVIRONMENT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"healthd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    default_config = os.environ.get("HEALTHD_CONFIG", DEFAULT_CONFIG)
    for command in COMMANDS:
        child = sub.add_parser(command.name, help=command.help, description=command.help, epilog=ENVIRONMENT,
                               formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
        if command.config:
            child.add_argument(
                "-c",
                "--config",
                default=default_config,
                help=f"config file (default: $HEALTHD_CONFIG, else {DEFAULT_CONFIG})",
            )
        if command.listen:
            child.add_argument(
                "--listen",
                default=os.environ.get("HEALTHD_LISTEN") or None,
                metavar="HOST:PORT",
                help="API address, overriding server.listen (default: $HEALTHD_LISTEN); port 0 picks one",
            )
        command.arguments(child)
    return parser


# ---- check-config --------------------------------------------------------------------


def _load_or_report(path: str) -> Loaded | None:
    """The config, or None after printing why not (exit 2 follows, whatever went wrong)."""
    try:
        loaded = load(path)
        read_token(loaded.config)  # everything `run` reads before it starts
        return loaded
    except ConfigError as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
    except Exception:  # a loader bug: still exit 2, so systemd does not restart into it
        log.exception("%s: internal error reading the config", path)
    return None


def check_config(path: str) -> int:
    loaded = _load_or_report(path)
    if loaded is None:
        return EXIT_USAGE
    config = loaded.config
    for warning in binding_warnings(config, locator(path)):
        print(warning, file=sys.stderr)
    print(f"OK: {_count(len(config.services), 'service')}, {_count(config.check_count, 'check')}")
    return EXIT_OK


def print_schema() -> int:
    print(json.dumps(config_schema(), indent=2, ensure_ascii=False))
    return EXIT_OK


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


# ---- run -----------------------------------------------------------------------------


def shard_of(args: argparse.Namespace) -> int:
    try:
        lines = cluster.owner_table(args.checks, args.shard_count, args.replicas)
    except ValueError as exc:
        print(f"healthd shard-of: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print("\n".join(lines))
    return EXIT_OK


def run(
    path: str,
    listen: str | None,
    shard_index: int | None = None,
    shard_count: int | None = None,
    loop: str = loops.DEFAULT,
) -> int:
    loaded = _load_or_report(path)
    if loaded is None:
        return EXIT_USAGE
    config = loaded.config
    try:
        shard = cluster.ShardOverrides.from_environment(
            os.environ, socket.gethostname(), shard_index, shard_count
        )
    except ValueError as exc:
        print(f"healthd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        loop_name = loops.resolve(loop)
    except (ValueError, loops.LoopUnavailable) as exc:
        print(f"healthd: --loop: {exc}", file=sys.stderr)
        return EXIT_USAGE
    address = listen or config.server.listen
    try:
        host, port = split_host_port(address, allow_port_zero=True)
    except ValueError as exc:
        print(f"healthd: --listen: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        app = create_app(config, Path(path), shard=shard, watched=loaded.watched, use_workers=True)
    except ConfigError as exc:  # e.g. an unreadable token file
        for line in exc.errors:
            print(f"{path}: {line}", file=sys.stderr)
        return EXIT_USAGE
    raise_fd_limit()
    return loops.run(serve(app, host, port), loop_name)


def raise_fd_limit() -> None:
    """Each probe in flight holds a socket: allow as many as the hard limit does."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def serve(app: web.Application, host: str, port: int) -> int:
    daemon = app[DAEMON]
    notifier = Notifier()
    try:
        server = await start_api(app, host, port)
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", host, port, exc.strerror or exc)
        return EXIT_FAILURE
    # Everything built so far (config, check tasks, modules) lives as long as the process:
    # keep it out of the cyclic GC's full collections, which otherwise scan it all and
    # pause the loop for ~100 ms at 5,000 checks (measured as scheduler lag).
    gc.freeze()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task[None]] = set()

    async def reload_on_signal() -> None:
        notifier.send("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")
        outcome = await daemon.reload()
        notifier.send(
            "READY=1", f"STATUS={_status(daemon.config)}" + ("" if outcome.ok else " (last reload failed)")
        )

    def on_hup() -> None:
        task = loop.create_task(reload_on_signal())
        pending.add(task)
        task.add_done_callback(pending.discard)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, on_hup)
    watchdog = _start_watchdog(notifier)
    config = daemon.config
    bound = _join(host, server.port)  # the port the kernel chose for --listen HOST:0
    log.info(
        "healthd %s listening on http://%s, %s, on the %s event loop",
        __version__,
        bound,
        _status(config),
        event_loop_name(),
        extra={"event": "start", "listen": bound, "event_loop": event_loop_name()},
    )
    index, count, replicas = daemon.store.daemon.shard
    if count > 1:
        log.info("shard %d of %d (%d replicas per check)", index, count, replicas)
    notifier.send("READY=1", f"STATUS={_status(config)}")
    await stop.wait()
    log.info("stopping")
    notifier.send("STOPPING=1")
    if watchdog is not None:
        watchdog.cancel()
    await server.close()
    return EXIT_OK


def _start_watchdog(notifier: Notifier) -> asyncio.Task[None] | None:
    interval = notifier.watchdog_interval()
    return asyncio.create_task(notifier.watchdog(interval)) if interval else None


def _status(config: Config) -> str:
    return f"probing {_count(config.check_count, 'check')} in {_count(len(config.services), 'service')}"


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
