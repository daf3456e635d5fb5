"""Command line: `healthd run | check-config | schema | probe | healthcheck | print-unit | print-config`,
`healthd shard-of`.

The only place that exits. Sub-commands are rows of `COMMANDS`: a new one is a
function taking the parsed arguments and returning an exit status, plus a row.
`run` itself (serving until a signal) is in `cli_run`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

from healthd import __version__, cli_probe, cli_tools, cluster, loops
from healthd.bindings import binding_warnings
from healthd.cli_run import load_or_report, plural, run
from healthd.cli_tools import EXIT_OK, EXIT_USAGE
from healthd.config.loader import locator
from healthd.config.schema import config_schema
from healthd.logs import setup_logging

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
    loops.add_argument(parser)
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


# ---- check-config, schema, shard-of ---------------------------------------------------


def check_config(path: str) -> int:
    loaded = load_or_report(path)
    if loaded is None:
        return EXIT_USAGE
    config = loaded.config
    for warning in binding_warnings(config, locator(path)):
        print(warning, file=sys.stderr)
    print(f"OK: {plural(len(config.services), 'service')}, {plural(config.check_count, 'check')}")
    return EXIT_OK


def print_schema() -> int:
    print(json.dumps(config_schema(), indent=2, ensure_ascii=False))
    return EXIT_OK


def shard_of(args: argparse.Namespace) -> int:
    try:
        lines = cluster.owner_table(args.checks, args.shard_count, args.replicas)
    except ValueError as exc:
        print(f"healthd shard-of: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print("\n".join(lines))
    return EXIT_OK
