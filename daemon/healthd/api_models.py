"""Response models of the REST API: the contract. The OpenAPI document is generated from these,
and tests validate the answers `api_dicts` builds against them; no handler builds a model.
The models of the daemon's own routes are in `api_models_daemon`, re-exported here."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from healthd.api_examples import CHECK, RESULT_DOWN, RESULT_UP, SERVICE, WINDOW, WINDOW_LONG, example
from healthd.api_models_daemon import (
    ErrorBody,
    ErrorResponse,
    EventModel,
    EventsResponse,
    HealthResponse,
    ReadyResponse,
    ReloadResponse,
    StartingResponse,
)
from healthd.results import ErrorKind

__all__ = [
    "ErrorBody",
    "ErrorResponse",
    "EventModel",
    "EventsResponse",
    "HealthResponse",
    "ReadyResponse",
    "ReloadResponse",
    "StartingResponse",
]

CheckStatus = Literal["unknown", "up", "down"]
ServiceStatus = Literal["unknown", "up", "down", "degraded"]


class ResultError(BaseModel):
    kind: ErrorKind = Field(description="why the probe failed")
    message: str


class Result(BaseModel):
    model_config = example(RESULT_DOWN)
    time: datetime = Field(description="start of the probe, RFC 3339 UTC")
    ok: bool
    latency_ms: float | None = Field(description="target's answer time; null when it gave none")
    duration_ms: float = Field(description="whole probe, start to verdict")
    error: ResultError | None
    phases_ms: dict[str, float]
    details: dict[str, Any]


_RATIO = "successes / probes in the window, 0..1; null: no probes in it"


class UptimeRatios(BaseModel):
    """Uptime ratio per window; windows end now and are made of whole UTC minutes/hours/days."""

    model_config = ConfigDict(serialize_by_alias=True, validate_by_name=True)

    h1: float | None = Field(alias="1h", description=_RATIO + " (60 minute buckets)")
    h24: float | None = Field(alias="24h", description=_RATIO + " (24 hour buckets)")
    d7: float | None = Field(alias="7d", description=_RATIO + " (168 hour buckets)")
    d30: float | None = Field(alias="30d", description=_RATIO + " (30 day buckets)")


class CheckSummary(BaseModel):
    model_config = example(CHECK)
    name: str
    type: str
    target: str
    status: CheckStatus = Field(description="debounced state: unknown until the first result")
    labels: dict[str, str] = Field(description="the check's own labels (e.g. from file_sd)")
    since: datetime | None = Field(description="time of the last transition (or first verdict)")
    last_success: datetime | None = Field(description="start of the last successful probe")
    last_failure: datetime | None = Field(description="start of the last failed probe")
    uptime: UptimeRatios
    last: Result | None
    stale: bool = Field(False, description="no result for over 2 x interval + timeout (its prober is down)")


class LatencyMean(BaseModel):
    mean: float | None = Field(description="mean latency of the successful probes, ms")


class LatencyPercentiles(LatencyMean):
    p50: float | None = Field(description="estimated from fixed latency buckets, ms")
    p95: float | None
    p99: float | None


class WindowStats(BaseModel):
    probes: int
    successes: int
    ratio: float | None = Field(description=_RATIO)
    down_seconds: float = Field(description="time the check's debounced state was down")
    latency_ms: LatencyPercentiles | LatencyMean = Field(description="percentiles for 1h and 24h only")


class Windows(BaseModel):
    model_config = ConfigDict(serialize_by_alias=True, validate_by_name=True)

    h1: WindowStats = Field(alias="1h")
    h24: WindowStats = Field(alias="24h")
    d7: WindowStats = Field(alias="7d")
    d30: WindowStats = Field(alias="30d")


class CheckDetail(CheckSummary):
    model_config = example(
        {
            **CHECK,
            "service": "web",
            "since": "2026-01-02T03:00:00.000Z",
            "consecutive_successes": 42,
            "consecutive_failures": 0,
            "counters": {"success": 42, "refused": 1},
            "transitions": {"up": 1, "down": 1},
            "settings": {"type": "tcp", "target": "127.0.0.1:5432", "interval": "10s", "timeout": "2s"},
            "windows": {"1h": WINDOW, "24h": WINDOW, "7d": WINDOW_LONG, "30d": WINDOW_LONG},
            "failures": [RESULT_DOWN],
        }
    )
    service: str
    consecutive_successes: int
    consecutive_failures: int
    counters: dict[str, int] = Field(description="probes run, by result (success or an error kind)")
    transitions: dict[str, int] = Field(description="state changes, by new state")
    settings: dict[str, Any] = Field(description="effective settings, secrets redacted")
    windows: Windows
    failures: list[Result] = Field(description="the last failures, newest first, kept apart from history")


class ServiceModel(BaseModel):
    model_config = example(SERVICE)
    name: str
    status: ServiceStatus = Field(
        description="up: all checks up; down: all down; unknown: none down, some unknown; degraded: otherwise"
    )
    labels: dict[str, str]
    uptime: UptimeRatios = Field(description="probes and successes summed over the service's checks")
    checks: list[CheckSummary]


class ShardModel(BaseModel):
    index: int = Field(description="the shard that answered")
    count: int = Field(description="how many shards share the checks")
    replicas: int = Field(description="how many shards probe each check")
    checks: int = Field(description="how many checks this shard owns")


class SeriesLatency(BaseModel):
    mean: float | None = Field(description="mean latency of the bucket's successful probes, ms")


class SeriesBucketModel(BaseModel):
    start: datetime
    probes: int
    successes: int
    ratio: float | None
    down_seconds: float
    latency_ms: SeriesLatency


class UptimeSeries(BaseModel):
    model_config = example(
        {
            "service": "web",
            "check": "tcp",
            "window": "2h",
            "step": "1h",
            "buckets": [
                {
                    "start": "2026-01-02T02:00:00Z",
                    "probes": 360,
                    "successes": 359,
                    "ratio": 0.9972,
                    "down_seconds": 10.0,
                    "latency_ms": {"mean": 0.41},
                },
                {
                    "start": "2026-01-02T03:00:00Z",
                    "probes": 0,
                    "successes": 0,
                    "ratio": None,
                    "down_seconds": 0.0,
                    "latency_ms": {"mean": None},
                },
            ],
        }
    )
    service: str
    check: str
    window: str
    step: str
    buckets: list[SeriesBucketModel] = Field(description="oldest first, window/step of them")


class ServicesResponse(BaseModel):
    model_config = example(
        {"shard": {"index": 0, "count": 1, "replicas": 1, "checks": 1}, "services": [SERVICE]}
    )
    shard: ShardModel
    services: list[ServiceModel]


class HistoryResponse(BaseModel):
    model_config = example({"results": [RESULT_UP, RESULT_DOWN]})
    results: list[Result] = Field(description="newest first")
