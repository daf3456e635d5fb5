"""Alerts to Alertmanager's v2 API: `POST {url}/api/v2/alerts`.

Kept as state, not as a queue: the alerts firing now and those resolved but
not yet delivered. Every post carries all of them, so a lost post is
repaired by the next one and memory is bounded by the number of checks.
Firing alerts are re-sent every `resend_interval` with `endsAt` four
intervals ahead, as Prometheus does: while healthd runs they never time out
in Alertmanager; if it dies, Alertmanager resolves them by itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import aiohttp

from healthd.alerting.payload import check_alert, describe_error, service_alert, with_times
from healthd.config import AlertmanagerConfig, check_key
from healthd.events import Event

log = logging.getLogger(__name__)

AlertKey = tuple[str, ...]  # ("check", service, check) or ("service", service)
Count = Callable[[str, str], None]
LabelsOf = Callable[[str], Mapping[str, str] | None]  # a service's labels; None once it is gone
RECEIVER = "alertmanager"
ENDS_AFTER_RESENDS = 4


class AlertmanagerNotifier:
    name = RECEIVER

    def __init__(
        self,
        config: AlertmanagerConfig,
        base_url: str,
        labels_of: LabelsOf,
        count: Count,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._base_url = base_url
        self._labels_of = labels_of
        self._count = count
        self._clock = clock
        self._firing: dict[AlertKey, tuple[dict[str, Any], float]] = {}  # alert, startsAt
        self._resolved: dict[AlertKey, tuple[dict[str, Any], float, float]] = {}  # + endsAt
        self._wake = asyncio.Event()
        self._stopping = False

    @property
    def firing(self) -> list[AlertKey]:
        return list(self._firing)

    def seed(self, down_checks: Iterable[Mapping[str, Any]], down_services: Iterable[str]) -> None:
        """Start from what is down already (after a reload replaced this notifier)."""
        now = self._clock()
        for fields in down_checks:
            self._on_check(fields, now)
        for service in down_services:
            self._on_service({"service": service, "status": "down"}, now)

    def on_event(self, event: Event) -> None:
        if event.type == "check":
            self._on_check(event.fields, event.time)
        elif event.type == "service":
            self._on_service(event.fields, event.time)
        elif event.type == "reload":
            self._on_reload(event.fields, event.time)

    def _on_check(self, fields: Mapping[str, Any], when: float) -> None:
        key = ("check", fields["service"], fields["check"])
        if fields["status"] != "down":
            self._resolve(key, when)
            return
        labels = self._labels_of(fields["service"]) or {}
        self._fire(key, check_alert(fields, labels, self.config.severity, self._base_url), when)

    def _on_service(self, fields: Mapping[str, Any], when: float) -> None:
        key = ("service", fields["service"])
        if fields["status"] != "down" or not self.config.service_alerts:
            self._resolve(key, when)
            return
        labels = self._labels_of(fields["service"]) or {}
        self._fire(key, service_alert(fields["service"], labels, self.config.severity, self._base_url), when)

    def _on_reload(self, fields: Mapping[str, Any], when: float) -> None:
        # removed checks are gone; changed ones start afresh and fire again if still down
        for check_id in (*fields.get("removed", ()), *fields.get("changed", ())):
            self._resolve(("check", *check_key(check_id)), when)
        for key in [key for key in self._firing if key[0] == "service"]:
            if self._labels_of(key[1]) is None:
                self._resolve(key, when)

    def _fire(self, key: AlertKey, alert: dict[str, Any], when: float) -> None:
        started = self._firing[key][1] if key in self._firing else when
        self._firing[key] = (alert, started)
        self._resolved.pop(key, None)
        self._wake.set()

    def _resolve(self, key: AlertKey, when: float) -> None:
        firing = self._firing.pop(key, None)
        if firing is not None:
            self._resolved[key] = (*firing, when)
            self._wake.set()

    def payload(self) -> list[dict[str, Any]]:
        ends = self._clock() + ENDS_AFTER_RESENDS * self.config.resend_interval
        alerts = [with_times(alert, start, ends) for alert, start in self._firing.values()]
        alerts += [with_times(alert, start, end) for alert, start, end in self._resolved.values()]
        return alerts

    def stop(self) -> None:
        """Ask `run` to deliver what is resolved once more and return."""
        self._stopping = True
        self._wake.set()

    async def run(self, session: aiohttp.ClientSession) -> None:
        failures = 0
        while True:
            delay = (
                self.config.resend_interval
                if failures == 0
                else min(2.0**failures, self.config.resend_interval)
            )
            if not self._stopping:
                try:
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
                except TimeoutError:
                    pass
            self._wake.clear()
            if self._stopping and not self._resolved:
                return
            if not self._firing and not self._resolved:
                continue
            sent = dict(self._resolved)
            if await self._post(session, self.payload()):
                failures = 0
                for key, value in sent.items():
                    if self._resolved.get(key) is value:  # not resolved again meanwhile
                        del self._resolved[key]
            else:
                failures += 1
            if self._stopping:
                return

    async def _post(self, session: aiohttp.ClientSession, alerts: list[dict[str, Any]]) -> bool:
        url = self.config.url + "/api/v2/alerts"
        headers = {name: value.get_secret_value() for name, value in self.config.headers.items()}
        try:
            timeout = aiohttp.ClientTimeout(total=self.config.timeout)
            post = session.post(url, json=alerts, headers=headers, timeout=timeout, allow_redirects=False)
            async with post as resp:
                if resp.status == 200:
                    self._count(RECEIVER, "sent")
                    return True
                reason = f"HTTP {resp.status}: {(await resp.text())[:200]}"
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            reason = describe_error(exc)
        self._count(RECEIVER, "failed")
        log.warning("alertmanager: posting %d alerts failed (%s); will retry", len(alerts), reason)
        return False
