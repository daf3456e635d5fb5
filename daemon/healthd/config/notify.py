"""The `notify:` section: where healthd sends alerts and events."""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, field_validator

from healthd.config.types import Duration, Name

EventType = Literal["check", "service", "reload", "start", "stop"]
ALL_EVENTS: tuple[EventType, ...] = ("check", "service", "reload", "start", "stop")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an http:// or https:// URL")
    return value.rstrip("/") if parts.path in ("", "/") else value


HttpUrl = Annotated[str, AfterValidator(_http_url)]


class AlertmanagerConfig(_Strict):
    # Alertmanager's base URL; alerts go to {url}/api/v2/alerts
    url: HttpUrl
    # healthd's own address as Alertmanager's users reach it, for generatorURL
    external_url: HttpUrl | None = None
    severity: str = Field("critical", min_length=1)
    # below Alertmanager's resolve_timeout (5m by default), like Prometheus' 1m
    resend_interval: Duration = 60.0
    timeout: Duration = 10.0
    service_alerts: bool = True
    headers: dict[str, SecretStr] = Field(default_factory=dict)


class WebhookConfig(_Strict):
    # the receiver's label in metrics and logs; defaults to the URL's host[:port]
    name: Name | None = None
    url: HttpUrl
    events: list[EventType] = Field(default_factory=lambda: list(ALL_EVENTS), min_length=1)
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    secret: SecretStr | None = None
    timeout: Duration = 5.0
    retries: int = Field(3, ge=0, le=20)
    # wait before the first retry; doubles each time, up to 60s
    backoff: Duration = 1.0
    queue_size: int = Field(1000, ge=1, le=100_000)

    @property
    def receiver(self) -> str:
        if self.name is not None:
            return self.name
        parts = urlsplit(self.url)
        # never the path or query: they often hold the receiver's secret (e.g. chat webhooks)
        return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)


class NotifyConfig(_Strict):
    alertmanager: AlertmanagerConfig | None = None
    webhooks: list[WebhookConfig] = Field(default_factory=list)

    @field_validator("webhooks")
    @classmethod
    def _receivers_are_distinct(cls, webhooks: list[WebhookConfig]) -> list[WebhookConfig]:
        seen = {"alertmanager"}
        for hook in webhooks:
            if hook.receiver in seen:
                raise ValueError(f"two receivers named {hook.receiver!r}: give the webhooks distinct names")
            seen.add(hook.receiver)
        return webhooks
