"""What notifications carry: Alertmanager alerts and signed webhook bodies. Pure."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from healthd.events import rfc3339

CHECK_ALERT = "HealthdCheckDown"
SERVICE_ALERT = "HealthdServiceDown"
SIGNATURE_HEADER = "X-Healthd-Signature"


def signature(secret: str, body: bytes) -> str:
    """The `X-Healthd-Signature` value: `sha256=` and the hex HMAC-SHA256 of the exact body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def check_url(base: str, service: str, check: str | None = None) -> str:
    path = f"/api/v1/services/{quote(service, safe='')}"
    if check is not None:
        path += f"/checks/{quote(check, safe='')}"
    return base.rstrip("/") + path


def check_alert(
    fields: Mapping[str, Any], service_labels: Mapping[str, str], severity: str, base_url: str
) -> dict[str, Any]:
    """An Alertmanager alert (without its times) for a check that is down.

    `fields` are a `check` event's; a service label may override the severity,
    never the identifying labels.
    """
    service, check = fields["service"], fields["check"]
    error = fields.get("error") or {}
    kind, message = error.get("kind", ""), error.get("message", "")
    labels = {
        "severity": severity,
        **service_labels,
        "alertname": CHECK_ALERT,
        "service": service,
        "check": check,
        "type": fields["check_type"],
        "target": fields["target"],
    }
    summary = f"{service}/{check} ({fields['check_type']} {fields['target']}) is down"
    return {
        "labels": labels,
        "annotations": {
            "summary": summary + (f": {kind}" if kind else ""),
            "error_kind": kind,
            "error_message": message,
        },
        "generatorURL": check_url(base_url, service, check),
    }


def service_alert(
    service: str, service_labels: Mapping[str, str], severity: str, base_url: str
) -> dict[str, Any]:
    """An Alertmanager alert (without its times) for a service whose every check is down."""
    return {
        "labels": {"severity": severity, **service_labels, "alertname": SERVICE_ALERT, "service": service},
        "annotations": {"summary": f"service {service} is down: all its checks are down"},
        "generatorURL": check_url(base_url, service),
    }


def with_times(alert: Mapping[str, Any], starts_at: float, ends_at: float) -> dict[str, Any]:
    return {**alert, "startsAt": rfc3339(starts_at), "endsAt": rfc3339(ends_at)}


def describe_error(exc: BaseException) -> str:
    """A failed delivery, for the log: never the URL (its path, query or user part may be a secret)."""
    os_error = getattr(exc, "os_error", None)
    if isinstance(os_error, OSError) and os_error.strerror:
        return f"cannot connect: {os_error.strerror}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return type(exc).__name__
