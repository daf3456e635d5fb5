"""`healthd run`: load the config, build the app, serve it until SIGTERM; SIGHUP reloads.

Everything between the parsed command line and the event loop: the shard, the
loop and the listen address are checked before anything starts (exit 2 when
wrong), systemd hears READY/RELOADING/STOPPING, and the watchdog is kept fed.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import resource
import signal
import socket
import sys
import time
from pathlib import Path

from aiohttp import web

from healthd import __version__, cluster, loops
from healthd.api_server import start_api
from healthd.app import DAEMON, Daemon, create_app, read_token
from healthd.cli_tools import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from healthd.config import Config, Loaded, load, split_host_port
from healthd.errors import ConfigError
from healthd.metrics import event_loop_name
from healthd.notify import Notifier
from healthd.workers_zygote import Zygote

log = logging.getLogger("healthd")


def load_or_report(path: str) -> Loaded | None:
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


def run(
    path: str,
    listen: str | None,
    shard_index: int | None = None,
    shard_count: int | None = None,
    loop: str = loops.DEFAULT,
) -> int:
    # first thing, with every module imported and no config, thread or loop yet: workers
    # forked from it share those pages (healthd.workers_zygote)
    zygote = Zygote.fork()
    try:
        return _run(path, listen, shard_index, shard_count, loop, zygote)
    finally:
        if zygote is not None:
            zygote.close()


def _run(
    path: str,
    listen: str | None,
    shard_index: int | None,
    shard_count: int | None,
    loop: str,
    zygote: Zygote | None,
) -> int:
    loaded = load_or_report(path)
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
        app = create_app(
            config, Path(path), shard=shard, watched=loaded.watched, use_workers=True, zygote=zygote
        )
    except ConfigError as exc:  # e.g. an unreadable token file
        for line in exc.errors:
            print(f"{path}: {line}", file=sys.stderr)
        return EXIT_USAGE
    if zygote is not None and app[DAEMON].pool is None:
        zygote.close()  # probing in this process: no worker will ever be forked
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
    _handle_signals(daemon, notifier, stop)
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


def _handle_signals(daemon: Daemon, notifier: Notifier, stop: asyncio.Event) -> None:
    """SIGTERM and SIGINT set `stop`; SIGHUP reloads, telling systemd (RELOADING, then READY)."""
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task[None]] = set()  # the loop holds tasks only weakly: keep reloads here

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


def _start_watchdog(notifier: Notifier) -> asyncio.Task[None] | None:
    interval = notifier.watchdog_interval()
    return asyncio.create_task(notifier.watchdog(interval)) if interval else None


def _status(config: Config) -> str:
    return f"probing {plural(config.check_count, 'check')} in {plural(len(config.services), 'service')}"


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def plural(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"
