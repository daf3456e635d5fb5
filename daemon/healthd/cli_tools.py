"""Small sub-commands: `print-unit`, `print-config` (files the package carries) and `healthcheck`.

`healthcheck` is what a container's HEALTHCHECK runs: it finds the API's address
the way `run` does (`--listen`, `$HEALTHD_LISTEN`, `server.listen`), so a changed
port needs no second edit, and asks `/healthz` (open even with a token).
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.error
import urllib.request
from importlib import resources

from healthd.config import load_config, parse_duration, split_host_port
from healthd.errors import ConfigError

#: every sub-command's exit statuses (the epilog of `healthd --help` says them)
EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2

#: package data: the files in deploy/ and the repository root, carried by the wheel
UNIT_FILE = "healthd.service"
EXAMPLE_CONFIG = "config.example.yaml"

#: a wildcard listen address is reached on the loopback of its family
_LOOPBACK = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def write_stdout(text: str) -> None:
    """Print `text`; a reader that went away (`| head -1`) is not an error, and is not reported."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        silence_stdout()


def silence_stdout() -> None:
    # later writes, and the interpreter's last flush, go to /dev/null instead of raising
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def data_text(name: str) -> str:
    return resources.files("healthd").joinpath("data", name).read_text(encoding="utf-8")


def print_unit(args: argparse.Namespace) -> int:
    write_stdout(data_text(UNIT_FILE))
    return EXIT_OK


def print_config(args: argparse.Namespace) -> int:
    write_stdout(data_text(EXAMPLE_CONFIG))
    return EXIT_OK


def add_healthcheck_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--timeout", default="3s", help="give up after this long (default 3s)")


def health_url(listen: str) -> str:
    host, port = split_host_port(listen, allow_port_zero=False)
    host = _LOOPBACK.get(host, host)
    return f"http://[{host}]:{port}/healthz" if ":" in host else f"http://{host}:{port}/healthz"


def healthcheck(args: argparse.Namespace) -> int:
    """0 when the daemon's /healthz answers 200, 1 otherwise (as HEALTHCHECK expects)."""
    try:
        timeout = parse_duration(args.timeout)
        listen = args.listen or load_config(args.config).server.listen
        url = health_url(listen)
    except ConfigError as exc:
        print(f"healthd healthcheck: {exc.errors[0]}", file=sys.stderr)
        return EXIT_FAILURE
    except ValueError as exc:
        print(f"healthd healthcheck: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            status = int(answer.status)
    except urllib.error.HTTPError as exc:
        status = exc.code
    except OSError as exc:
        print(f"healthd healthcheck: {url}: {getattr(exc, 'reason', exc)}", file=sys.stderr)
        return EXIT_FAILURE
    if status != 200:
        print(f"healthd healthcheck: {url}: HTTP {status}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"healthy: {url}")
    return EXIT_OK
