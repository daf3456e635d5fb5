"""Events to a generic HTTP receiver: one JSON POST per event, optionally signed.

Each receiver has its own bounded queue and worker: a receiver that is down,
slow or failing delays only its own deliveries; when its queue is full, new
events for it are dropped and counted, and nothing upstream ever waits.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable

import aiohttp

from healthd import __version__
from healthd.alerting.payload import SIGNATURE_HEADER, describe_error, signature
from healthd.config import WebhookConfig
from healthd.events import Event

log = logging.getLogger(__name__)

Count = Callable[[str, str], None]
MAX_BACKOFF = 60.0


def retryable(status: int) -> bool:
    """Server errors, timeouts and rate limits may pass later; other client errors will not."""
    return status >= 500 or status in (408, 429)


class WebhookReceiver:
    def __init__(self, config: WebhookConfig, count: Count) -> None:
        self.config = config
        self.name = config.receiver
        self._count = count
        self._queue: deque[Event] = deque()
        self._wake = asyncio.Event()
        self._stopping = False
        self._events = frozenset(config.events)
        self._failing = False  # log the first failure of a run of them, and the recovery

    @property
    def queued(self) -> int:
        return len(self._queue)

    def on_event(self, event: Event) -> None:
        if event.type not in self._events:
            return
        if len(self._queue) >= self.config.queue_size:
            self._count(self.name, "dropped")
            return
        self._queue.append(event)
        self._wake.set()

    def stop(self) -> None:
        """Ask `run` to deliver what is queued (no retries) and return."""
        self._stopping = True
        self._wake.set()

    async def run(self, session: aiohttp.ClientSession) -> None:
        while True:
            if not self._queue:
                if self._stopping:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            event = self._queue.popleft()
            ok = await self._deliver(session, event)
            self._count(self.name, "sent" if ok else "failed")
            if ok and self._failing:
                log.info("webhook %s: delivering again", self.name)
            self._failing = not ok

    def _headers(self, event: Event, body: bytes) -> dict[str, str]:
        headers = {name: value.get_secret_value() for name, value in self.config.headers.items()}
        headers.update(
            {
                "Content-Type": "application/json",
                "User-Agent": f"healthd/{__version__}",
                "X-Healthd-Event": event.type,
                "X-Healthd-Delivery": str(event.id),
            }
        )
        if self.config.secret is not None:
            headers[SIGNATURE_HEADER] = signature(self.config.secret.get_secret_value(), body)
        return headers

    async def _deliver(self, session: aiohttp.ClientSession, event: Event) -> bool:
        """POST with retries and doubling backoff; True once the receiver answered 2xx."""
        body = event.json
        headers = self._headers(event, body)
        timeout = aiohttp.ClientTimeout(total=self.config.timeout)
        backoff = self.config.backoff
        for attempt in range(self.config.retries + 1):
            if attempt:
                if self._stopping:
                    break
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
            try:
                async with session.post(
                    self.config.url, data=body, headers=headers, timeout=timeout, allow_redirects=False
                ) as resp:
                    if 200 <= resp.status < 300:
                        return True
                    reason = f"HTTP {resp.status}"
                    if not retryable(resp.status):
                        break
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                reason = describe_error(exc)
        # the URL is never logged: its path or query often holds the receiver's secret
        level = logging.DEBUG if self._failing else logging.WARNING
        log.log(level, "webhook %s: event %d (%s) not delivered: %s", self.name, event.id, event.type, reason)
        return False
