"""The examples the OpenAPI document shows for each answer (tests validate them against the models)."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict

RESULT_UP: dict[str, Any] = {
    "time": "2026-01-02T03:04:05.678Z",
    "ok": True,
    "latency_ms": 0.4123,
    "duration_ms": 0.6051,
    "error": None,
    "phases_ms": {"resolve": 0.0121, "connect": 0.4123},
    "details": {"address": "127.0.0.1"},
}
RESULT_DOWN: dict[str, Any] = {
    **RESULT_UP,
    "ok": False,
    "latency_ms": None,
    "error": {"kind": "refused", "message": "connection refused"},
    "phases_ms": {"resolve": 0.0101},
}
UPTIME: dict[str, Any] = {"1h": 1.0, "24h": 0.9993, "7d": 0.9999, "30d": None}
CHECK: dict[str, Any] = {
    "name": "tcp",
    "type": "tcp",
    "target": "127.0.0.1:5432",
    "status": "up",
    "labels": {},
    "since": "2026-01-02T03:00:00.000Z",
    "last_success": "2026-01-02T03:04:05.678Z",
    "last_failure": "2026-01-02T02:59:55.000Z",
    "uptime": UPTIME,
    "last": RESULT_UP,
}
WINDOW: dict[str, Any] = {
    "probes": 360,
    "successes": 359,
    "ratio": 0.9972,
    "down_seconds": 10.0,
    "latency_ms": {"mean": 0.41, "p50": 0.4, "p95": 0.6, "p99": 0.9},
}
WINDOW_LONG: dict[str, Any] = {**WINDOW, "latency_ms": {"mean": 0.41}}
SERVICE: dict[str, Any] = {
    "name": "web",
    "status": "up",
    "labels": {"team": "core"},
    "uptime": UPTIME,
    "checks": [CHECK],
}


def example(value: dict[str, Any]) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": [value]})
