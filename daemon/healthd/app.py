"""Wiring: config -> store + scheduler -> aiohttp app; reload."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from healthd import __version__, api, cluster, files, page, watch
from healthd.alerting import Notifications
from healthd.config import Config, ConfigDiff, Loaded, diff_configs, format_check_id, load
from healthd.errors import ConfigError
from healthd.event_fields import ServiceStatuses, check_fields, down_check_fields
from healthd.eventlog import FirstVerdicts, log_check_transition, log_reload, log_service_transition
from healthd.events import EventHub
from healthd.infos import service_infos
from healthd.metrics import NotificationCollector
from healthd.openapi import SERVED, openapi_source
from healthd.probes import GAUGE_HELP, PROBES, SPECS, Probe, ProbeResources
from healthd.scheduler import Scheduler
from healthd.scrape import MetricsRenderer
from healthd.statefile import StateFile
from healthd.store import Status, Store, Transition
from healthd.workers import WorkerPool
from healthd.workers_metrics import WorkerCollector
from healthd.workers_wire import resolve_workers
from healthd.workers_zygote import Zygote

log = logging.getLogger(__name__)


def worker_count(config: Config) -> int:
    """How many probing processes `scheduler.workers` asks for here."""
    return resolve_workers(config.scheduler.workers, len(os.sched_getaffinity(0)))


def read_token(config: Config) -> str:
    """The API token, or "" when none is configured. Raises ConfigError if unreadable."""
    path = config.server.token_file
    if path is None:
        return ""
    try:
        return files.read_secret(path)
    except files.FileOptionError as exc:  # it changed since the config was validated
        raise ConfigError([f"server.token_file: {exc}"]) from None


class Daemon:
    """The running daemon's parts; owns reload."""

    def __init__(
        self,
        config: Config,
        config_path: str | Path | None,
        probes: Mapping[str, Probe],
        on_reload: Callable[[bool], None] | None,
        shard: cluster.ShardOverrides | None = None,
        watched: Sequence[Path] = (),
        use_workers: bool = False,
        zygote: Zygote | None = None,
    ) -> None:
        self.shard_overrides = shard or cluster.ShardOverrides()
        config, shard_now = self._own_share(config)
        self.config = config
        self.config_path = config_path
        self.watched = tuple(watched) or ((Path(config_path),) if config_path is not None else ())
        self.store = Store(probe_histograms=config.metrics.probe_duration_histogram)
        self.store.apply(service_infos(config), now=time.time())
        self.store.daemon.shard = shard_now.triple
        self.store.daemon.last_reload_success_time = time.time()
        self.resources = ProbeResources()  # entered and closed by the app's lifecycle
        self.scheduler = Scheduler(
            self.store, probes, resources=self.resources, on_transition=self._on_transition
        )
        count = worker_count(config) if use_workers else 1
        # workers: 1 probes in this process, as before; more start child processes (healthd.workers)
        self.pool = WorkerPool(self.store, count, self._on_transition, zygote) if count > 1 else None
        self.auth = api.Auth(read_token(config), config.server.protect_reads)
        self.events = EventHub()
        self._service_statuses = ServiceStatuses()
        self._service_statuses.update(self._statuses())
        self.notifications = Notifications(
            self.events, f"http://{config.server.listen}", self._service_labels, self._down_now
        )
        self.state_file = StateFile(self.store, config.state_dir) if config.state_dir else None
        self._on_reload = on_reload
        self._reload_lock = asyncio.Lock()
        self._first_verdicts = FirstVerdicts(())  # restore_state() sets the checks to wait for

    async def restore_state(self) -> None:
        """Load the snapshot, if any, before the first probe (so nothing restored overwrites one)."""
        if self.state_file is not None and await self.state_file.restore():
            self._service_statuses.update(self._statuses())  # restored statuses are not changes
        unknown = (state.info.key for state in self.store.all_states() if state.status is Status.UNKNOWN)
        self._first_verdicts = FirstVerdicts(unknown)

    def _on_transition(self, transition: Transition) -> None:
        log_check_transition(transition)
        self._first_verdicts.seen(transition)
        self.events.publish("check", **check_fields(transition))
        # only this check's service can have changed: all services per transition is O(n²) at start
        self._publish_service_changes([transition.info.service])

    def _statuses(self, names: Iterable[str] | None = None) -> dict[str, Status]:
        services = self.store.services if names is None else filter(None, map(self.store.service, names))
        return {service.name: self.store.status_of(service) for service in services}

    def _publish_service_changes(self, names: Iterable[str] | None = None) -> None:
        # a service's status is derived from its checks': compare with what was published last
        for fields in self._service_statuses.update(self._statuses(names)):
            now, before = Status(fields["status"]), Status(fields["previous"])
            log_service_transition(self.store, fields["service"], now, before)
            self.events.publish("service", **fields)

    def _service_labels(self, name: str) -> Mapping[str, str] | None:
        service = self.store.service(name)
        return None if service is None else service.labels

    def _down_now(self) -> tuple[Sequence[Mapping[str, Any]], Sequence[str]]:
        checks = [fields for state in self.store.all_states() if (fields := down_check_fields(state))]
        services = [name for name, status in self._statuses().items() if status is Status.DOWN]
        return checks, services

    def _own_share(self, config: Config) -> tuple[Config, cluster.Shard]:
        """The config with only the checks this instance owns. Raises ConfigError."""
        try:
            shard = cluster.resolve(config.cluster, self.shard_overrides)
        except ValueError as exc:
            raise ConfigError([f"cluster: {exc}"]) from None
        return cluster.own_share(config, shard), shard

    async def reload(self) -> api.ReloadOutcome:
        async with self._reload_lock:  # two reloads at once would diff against a stale config
            outcome = await self._reload()
        if self._on_reload is not None:
            self._on_reload(outcome.ok)
        return outcome

    def _read_config(self, path: str | Path) -> tuple[Loaded, Config, cluster.Shard, str]:
        """The new config, this instance's share of it and the token: file reads and parsing,
        run in a thread so a 10,000-check file does not hold the loop for its load time."""
        loaded = load(path)
        new, shard = self._own_share(loaded.config)
        return loaded, new, shard, read_token(new)

    async def _reload(self) -> api.ReloadOutcome:
        daemon = self.store.daemon
        if self.config_path is None:
            return api.ReloadOutcome(ok=False, errors=["no config file to reload from"])
        try:
            loaded, new, shard, token = await asyncio.to_thread(self._read_config, self.config_path)
        except ConfigError as exc:
            daemon.last_reload_ok = False
            log.error("reload rejected, the old config keeps running:\n  %s", "\n  ".join(exc.errors))
            return api.ReloadOutcome(ok=False, errors=exc.errors)
        except Exception:  # a loader bug must not kill the daemon nor leave the reload unanswered
            daemon.last_reload_ok = False
            log.exception("reload failed unexpectedly, the old config keeps running")
            errors = [f"{self.config_path}: internal error reading the config (see the log)"]
            return api.ReloadOutcome(ok=False, errors=errors)
        if new.server.listen != self.config.server.listen:
            log.warning("server.listen changed to %s: that takes a restart", new.server.listen)
        if (new.state_dir, new.snapshot_interval) != (self.config.state_dir, self.config.snapshot_interval):
            log.warning("state_dir and snapshot_interval changes take a restart")
        diff = diff_configs(self.config, new)
        self.store.apply(service_infos(new), restart=diff.reset, now=time.time())  # timing-only: kept
        self._apply_probing(new, diff)
        self._first_verdicts.keep_only(state.info.key for state in self.store.all_states())
        self.config, self.watched = new, loaded.watched
        self.store.daemon.shard = shard.triple
        self.auth.token, self.auth.protect_reads = token, new.server.protect_reads
        daemon.last_reload_ok = True
        daemon.last_reload_success_time = time.time()
        added, removed, changed = (
            [format_check_id(key) for key in keys] for keys in (diff.added, diff.removed, diff.changed)
        )
        log_reload(added, removed, changed, new.check_count)
        outcome = api.ReloadOutcome(ok=True, added=added, removed=removed, changed=changed)
        self._announce_reload(new, outcome)
        return outcome

    def _apply_probing(self, new: Config, diff: ConfigDiff) -> None:
        if self.pool is None:
            if new.scheduler.workers != self.config.scheduler.workers:
                log.warning("scheduler.workers: going from one process to several takes a restart")
            self.scheduler.apply(new, diff)
        else:  # any count, 1 included, stays in workers: moved checks start where they land
            self.pool.apply(new, diff, worker_count(new))

    def worker_figures(self) -> tuple[int, int]:
        """(worker processes, their restarts), for /metrics."""
        return (0, 0) if self.pool is None else (self.pool.count, self.pool.restarts)

    def _announce_reload(self, new: Config, outcome: api.ReloadOutcome) -> None:
        self.notifications.apply(new.notify)  # first, so that new receivers get the reload event too
        self.events.publish("reload", added=outcome.added, removed=outcome.removed, changed=outcome.changed)
        self._service_statuses.forget(service.name for service in new.services)
        self._publish_service_changes()


DAEMON = web.AppKey("daemon", Daemon)


def create_app(
    config: Config,
    config_path: str | Path | None = None,
    *,
    probes: Mapping[str, Probe] = PROBES,
    on_reload: Callable[[bool], None] | None = None,
    heartbeat: float = 15.0,
    shard: cluster.ShardOverrides | None = None,
    watched: Sequence[Path] = (),
    use_workers: bool = False,
    zygote: Zygote | None = None,
) -> web.Application:
    """The daemon as an aiohttp application; the scheduler (and the watcher) run while the app runs.

    `config` is the whole config: the daemon keeps the share of its shard.
    `heartbeat`: seconds between the comment lines that keep idle event streams open.
    `use_workers`: probe in `scheduler.workers` processes (the CLI does); else in this one.
    `zygote`: fork them from it (healthd.workers_zygote); else each is exec'd.
    """
    daemon = Daemon(config, config_path, probes, on_reload, shard, watched, use_workers, zygote)
    daemon.events.heartbeat = heartbeat
    app = web.Application(middlewares=[page.compress_middleware, api.error_middleware])
    app[DAEMON] = daemon
    app[api.STORE] = daemon.store
    app[api.AUTH] = daemon.auth
    app[api.RELOAD] = daemon.reload
    app[api.OPENAPI] = openapi_source(SERVED)
    app[api.EVENTS] = daemon.events
    app[api.RENDER_METRICS] = MetricsRenderer(
        daemon.store,
        GAUGE_HELP,
        [
            NotificationCollector(lambda: daemon.notifications.counts),
            WorkerCollector(daemon.store, daemon.worker_figures),
        ],
        uptime_ratio=config.metrics.uptime_ratio,
    ).render
    app[page.ASSETS] = page.load_assets()
    api.add_routes(app, SERVED)
    app.cleanup_ctx.append(_run_scheduler)
    app.on_shutdown.append(_end_event_streams)
    if config_path is not None:
        app.cleanup_ctx.append(_run_watcher)
    return app


async def _run_scheduler(app: web.Application) -> AsyncIterator[None]:
    """The probes' resources live while the app runs; the scheduler stops before they close."""
    daemon = app[DAEMON]
    state_file = daemon.state_file
    await daemon.restore_state()
    prober = daemon.pool or daemon.scheduler
    async with daemon.resources as resources:
        if daemon.pool is None:  # workers open their own
            # open now what the start-up log should report (ICMP socket modes, the SYN mode)
            await resources.prepare(SPECS, (check for svc in daemon.config.services for check in svc.checks))
        else:
            log.info("probing in %d worker processes", daemon.pool.count)
        await daemon.notifications.start(daemon.config.notify)
        daemon.events.publish("start", version=__version__)
        prober.start(daemon.config)
        if daemon.pool is not None:
            await daemon.pool.started()
        if state_file is not None:
            state_file.start(daemon.config.snapshot_interval)
        daemon.store.daemon.ready = True
        try:
            yield
        finally:
            daemon.store.daemon.ready = False
            _publish_stop(daemon)
            # side by side: the daemon stops within 2 s (probes get 1 s, receivers 0.5 s to deliver `stop`)
            await asyncio.gather(prober.stop(), daemon.notifications.stop())
            if state_file is not None:
                await state_file.stop()  # the final snapshot, after the last probe


def _publish_stop(daemon: Daemon) -> None:
    if not daemon.events.closed:
        daemon.events.publish("stop")
        daemon.events.close()


async def _end_event_streams(app: web.Application) -> None:
    """Before the server waits for open requests: say `stop` and end every event stream."""
    _publish_stop(app[DAEMON])


async def _run_watcher(app: web.Application) -> AsyncIterator[None]:
    daemon = app[DAEMON]
    task = asyncio.create_task(
        watch.watch(lambda: daemon.watched, lambda: daemon.config.watch, daemon.reload), name="watch"
    )
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
