"""Notifications: Alertmanager and webhooks, fed by the event hub.

`Notifications` owns the receivers, their worker tasks and the one HTTP
client session they share; it counts every delivery by receiver and result
(sent, failed, dropped) for `healthd_notifications_total`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

import aiohttp

from healthd.alerting.alertmanager import AlertmanagerNotifier, LabelsOf
from healthd.alerting.webhook import WebhookReceiver
from healthd.config import NotifyConfig
from healthd.events import Event, EventHub

log = logging.getLogger(__name__)

RESULTS = ("sent", "failed", "dropped")
STOP_GRACE = 0.5  # seconds to deliver what is queued at stop; the daemon stops within 2 s


class Receiver(Protocol):
    name: str

    def on_event(self, event: Event) -> None: ...

    def stop(self) -> None: ...

    async def run(self, session: aiohttp.ClientSession) -> None: ...


# the fields of the checks down now, and the services down now
DownNow = Callable[[], tuple[Sequence[Mapping[str, Any]], Sequence[str]]]


class Notifications:
    def __init__(self, hub: EventHub, base_url: str, labels_of: LabelsOf, down_now: DownNow) -> None:
        self._hub = hub
        self._base_url = base_url
        self._labels_of = labels_of
        self._down_now = down_now
        self.counts: dict[tuple[str, str], int] = {}
        self._config = NotifyConfig()
        self._receivers: list[Receiver] = []
        self._tasks: dict[Receiver, asyncio.Task[None]] = {}
        self._session: aiohttp.ClientSession | None = None

    @property
    def receivers(self) -> list[Receiver]:
        return list(self._receivers)

    def count(self, receiver: str, result: str) -> None:
        if (receiver, result) in self.counts:  # not a receiver a reload removed, still finishing
            self.counts[(receiver, result)] += 1

    async def start(self, config: NotifyConfig) -> None:
        self._session = aiohttp.ClientSession(trust_env=False)
        self.apply(config)

    def apply(self, config: NotifyConfig) -> None:
        """Replace the receivers if their config changed (a reload); unchanged ones keep running."""
        if self._session is None or (config == self._config and self._receivers):
            self._config = config
            return
        old, self._receivers, self._config = self._receivers, self._build(config), config
        names = {receiver.name for receiver in self._receivers}
        self.counts = {key: n for key, n in self.counts.items() if key[0] in names}  # removed: gone
        for receiver in old:
            self._hub.unlisten(receiver.on_event)
            receiver.stop()
        for receiver in self._receivers:
            self._hub.listen(receiver.on_event)
            self._tasks[receiver] = asyncio.create_task(self._run(receiver), name=f"notify {receiver.name}")

    def _build(self, config: NotifyConfig) -> list[Receiver]:
        receivers: list[Receiver] = [WebhookReceiver(hook, self.count) for hook in config.webhooks]
        if config.alertmanager is not None:
            base = config.alertmanager.external_url or self._base_url
            am = AlertmanagerNotifier(config.alertmanager, base, self._labels_of, self.count)
            am.seed(*self._down_now())
            receivers.insert(0, am)
        for receiver in receivers:  # every receiver's counters exist from the start, at 0
            for result in RESULTS:
                self.counts.setdefault((receiver.name, result), 0)
        return receivers

    async def _run(self, receiver: Receiver) -> None:
        assert self._session is not None
        try:
            await receiver.run(self._session)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug in one receiver must not end the others
            log.exception("notification receiver %s failed; it sends nothing more", receiver.name)
        finally:
            self._tasks.pop(receiver, None)

    async def stop(self, grace: float = STOP_GRACE) -> None:
        """Let the receivers deliver what they hold for up to `grace` seconds, then cancel them."""
        for receiver in self._receivers:
            self._hub.unlisten(receiver.on_event)
            receiver.stop()
        tasks: Iterable[asyncio.Task[None]] = list(self._tasks.values())
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
                log.warning("%d notification receivers had not finished within %.1fs", len(pending), grace)
        if self._session is not None:
            await self._session.close()
            self._session = None
