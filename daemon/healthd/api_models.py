"""Response models of the REST API; the OpenAPI document is generated from these."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from healthd.history import History
from healthd.results import ErrorKind, ProbeResult
from healthd.store import CheckState, is_stale
from healthd.uptime import WINDOW_NAMES, SeriesBucket, Window


def _time(timestamp: float | None) -> datetime | None:
    return datetime.fromtimestamp(timestamp, UTC) if timestamp is not None else None


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 4)


CheckStatus = Literal["unknown", "up", "down"]
ServiceStatus = Literal["unknown", "up", "down", "degraded"]

# One example of each answer, shown in the OpenAPI document (tests validate them against the models).
_RESULT_UP: dict[str, Any] = {
    "time": "2026-01-02T03:04:05.678Z",
    "ok": True,
    "latency_ms": 0.4123,
    "duration_ms": 0.6051,
    "error": None,
    "phases_ms": {"resolve": 0.0121, "connect": 0.4123},
    "details": {"address": "127.0.0.1"},
}
_RESULT_DOWN: dict[str, Any] = {
    **_RESULT_UP,
    "ok": False,
    "latency_ms": None,
    "error": {"kind": "refused", "message": "connection refused"},
    "phases_ms": {"resolve": 0.0101},
}
_UPTIME: dict[str, Any] = {"1h": 1.0, "24h": 0.9993, "7d": 0.9999, "30d": None}
_CHECK: dict[str, Any] = {
    "name": "tcp",
    "type": "tcp",
    "target": "127.0.0.1:5432",
    "status": "up",
    "labels": {},
    "since": "2026-01-02T03:00:00.000Z",
    "last_success": "2026-01-02T03:04:05.678Z",
    "last_failure": "2026-01-02T02:59:55.000Z",
    "uptime": _UPTIME,
    "last": _RESULT_UP,
}
_WINDOW: dict[str, Any] = {
    "probes": 360,
    "successes": 359,
    "ratio": 0.9972,
    "down_seconds": 10.0,
    "latency_ms": {"mean": 0.41, "p50": 0.4, "p95": 0.6, "p99": 0.9},
}
_WINDOW_LONG: dict[str, Any] = {**_WINDOW, "latency_ms": {"mean": 0.41}}
_SERVICE: dict[str, Any] = {
    "name": "web",
    "status": "up",
    "labels": {"team": "core"},
    "uptime": _UPTIME,
    "checks": [_CHECK],
}


def _example(value: dict[str, Any]) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": [value]})


class ErrorBody(BaseModel):
    code: str = Field(
        description="what went wrong, for programs: bad_request, unauthorized, not_found,"
        " method_not_allowed, invalid_config, too_many_connections or internal",
        examples=["not_found"],
    )
    message: str = Field(description="what went wrong, for people")
    errors: list[str] | None = Field(None, description="every problem, for a rejected config")


class ErrorResponse(BaseModel):
    model_config = _example({"error": {"code": "not_found", "message": "no service named 'nope'"}})
    error: ErrorBody


class ResultError(BaseModel):
    kind: ErrorKind = Field(description="why the probe failed")
    message: str


class Result(BaseModel):
    model_config = _example(_RESULT_DOWN)
    time: datetime = Field(description="start of the probe, RFC 3339 UTC")
    ok: bool
    latency_ms: float | None = Field(description="target's answer time; null when it gave none")
    duration_ms: float = Field(description="whole probe, start to verdict")
    error: ResultError | None
    phases_ms: dict[str, float]
    details: dict[str, Any]

    @classmethod
    def of(cls, result: ProbeResult) -> Result:
        error = None
        if result.error_kind is not None:
            error = ResultError(kind=result.error_kind, message=result.error_message or "")
        return cls(
            time=datetime.fromtimestamp(result.time, UTC),
            ok=result.ok,
            latency_ms=_ms(result.latency),
            duration_ms=round(result.duration * 1000, 4),
            error=error,
            phases_ms={k: round(v * 1000, 4) for k, v in result.phases.items()},
            details=dict(result.details),
        )


_RATIO = "successes / probes in the window, 0..1; null: no probes in it"


class UptimeRatios(BaseModel):
    """Uptime ratio per window; windows end now and are made of whole UTC minutes/hours/days."""

    model_config = ConfigDict(serialize_by_alias=True, validate_by_name=True)

    h1: float | None = Field(alias="1h", description=_RATIO + " (60 minute buckets)")
    h24: float | None = Field(alias="24h", description=_RATIO + " (24 hour buckets)")
    d7: float | None = Field(alias="7d", description=_RATIO + " (168 hour buckets)")
    d30: float | None = Field(alias="30d", description=_RATIO + " (30 day buckets)")

    @classmethod
    def of(cls, counts: Iterable[tuple[int, int]]) -> UptimeRatios:
        ratios = [successes / probes if probes else None for probes, successes in counts]
        return cls.model_validate(dict(zip(WINDOW_NAMES, ratios, strict=True)))

    @classmethod
    def of_state(cls, state: CheckState, now: float) -> UptimeRatios:
        return cls.of(state.uptime.counts(name, now) for name in WINDOW_NAMES)


class CheckSummary(BaseModel):
    model_config = _example(_CHECK)
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

    @classmethod
    def of(cls, state: CheckState, now: float, uptime: UptimeRatios | None = None) -> CheckSummary:
        """`uptime`: the check's ratios when the caller has them already."""
        return cls(**_summary_fields(state, now, uptime))


def _summary_fields(state: CheckState, now: float, uptime: UptimeRatios | None = None) -> dict[str, Any]:
    info = state.info
    return {
        "name": info.name,
        "type": info.type,
        "target": info.target,
        "status": state.status.value,
        "labels": dict(info.labels),
        "since": _time(state.since),
        "last_success": _time(state.last_success),
        "last_failure": _time(state.last_failure),
        "uptime": uptime if uptime is not None else UptimeRatios.of_state(state, now),
        "last": Result.of(state.last) if state.last else None,
        "stale": is_stale(state, now),
    }


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

    @classmethod
    def of(cls, window: Window) -> WindowStats:
        latency: LatencyMean = LatencyMean(mean=_ms(window.latency_mean))
        if window.percentiles is not None:
            p50, p95, p99 = (_ms(p) for p in window.percentiles)
            latency = LatencyPercentiles(mean=latency.mean, p50=p50, p95=p95, p99=p99)
        return cls(
            probes=window.probes,
            successes=window.successes,
            ratio=window.ratio,
            down_seconds=round(window.down_seconds, 3),
            latency_ms=latency,
        )


class Windows(BaseModel):
    model_config = ConfigDict(serialize_by_alias=True, validate_by_name=True)

    h1: WindowStats = Field(alias="1h")
    h24: WindowStats = Field(alias="24h")
    d7: WindowStats = Field(alias="7d")
    d30: WindowStats = Field(alias="30d")

    @classmethod
    def of(cls, state: CheckState, now: float) -> Windows:
        stats = {name: WindowStats.of(state.uptime.window(name, now)) for name in WINDOW_NAMES}
        return cls.model_validate(stats)


class CheckDetail(CheckSummary):
    model_config = _example(
        {
            **_CHECK,
            "service": "web",
            "since": "2026-01-02T03:00:00.000Z",
            "consecutive_successes": 42,
            "consecutive_failures": 0,
            "counters": {"success": 42, "refused": 1},
            "transitions": {"up": 1, "down": 1},
            "settings": {"type": "tcp", "target": "127.0.0.1:5432", "interval": "10s", "timeout": "2s"},
            "windows": {"1h": _WINDOW, "24h": _WINDOW, "7d": _WINDOW_LONG, "30d": _WINDOW_LONG},
            "failures": [_RESULT_DOWN],
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

    @classmethod
    def of(cls, state: CheckState, now: float, uptime: UptimeRatios | None = None) -> CheckDetail:
        info = state.info
        return cls(
            **_summary_fields(state, now, uptime),
            service=info.service,
            consecutive_successes=state.streak_ok,
            consecutive_failures=state.streak_fail,
            counters=dict(state.counts),
            transitions=dict(state.transitions),
            settings=dict(info.settings),
            windows=Windows.of(state, now),
            failures=_newest_first(state.failures),
        )


def _newest_first(history: History) -> list[Result]:
    return [Result.of(result) for result in reversed(history)]


class ServiceModel(BaseModel):
    model_config = _example(_SERVICE)
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

    @classmethod
    def of(cls, bucket: SeriesBucket) -> SeriesBucketModel:
        window = bucket.window
        return cls(
            start=datetime.fromtimestamp(bucket.start, UTC),
            probes=window.probes,
            successes=window.successes,
            ratio=window.ratio,
            down_seconds=round(window.down_seconds, 3),
            latency_ms=SeriesLatency(mean=_ms(window.latency_mean)),
        )


class UptimeSeries(BaseModel):
    model_config = _example(
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
    model_config = _example(
        {"shard": {"index": 0, "count": 1, "replicas": 1, "checks": 1}, "services": [_SERVICE]}
    )
    shard: ShardModel
    services: list[ServiceModel]


class HistoryResponse(BaseModel):
    model_config = _example({"results": [_RESULT_UP, _RESULT_DOWN]})
    results: list[Result] = Field(description="newest first")


class ReloadResponse(BaseModel):
    model_config = _example({"added": ["db/tcp"], "removed": [], "changed": ["web/http"]})
    added: list[str]
    removed: list[str]
    changed: list[str]


class HealthResponse(BaseModel):
    model_config = _example({"status": "ok"})
    status: Literal["ok"]


class ReadyResponse(BaseModel):
    model_config = _example({"status": "ready"})
    status: Literal["ready"]


class StartingResponse(BaseModel):
    """/readyz's 503: the config is not loaded or the scheduler does not run yet."""

    model_config = _example({"status": "starting"})
    status: Literal["starting"]


class EventModel(BaseModel):
    """One event; the fields beyond these depend on `type` (see docs/notifications.md)."""

    model_config = ConfigDict(extra="allow")

    id: int = Field(description="increases by one per event within a run of the daemon")
    time: datetime
    type: str = Field(description="check, service, reload, start or stop")


class EventsResponse(BaseModel):
    model_config = _example(
        {
            "events": [
                {"id": 1, "time": "2026-01-02T03:00:00.000Z", "type": "start"},
                {
                    "id": 2,
                    "time": "2026-01-02T03:04:05.678Z",
                    "type": "check",
                    "service": "web",
                    "check": "tcp",
                    "check_type": "tcp",
                    "target": "127.0.0.1:5432",
                    "status": "down",
                    "previous": "up",
                    "error": {"kind": "refused", "message": "connection refused"},
                    "latency_ms": None,
                },
            ]
        }
    )
    events: list[EventModel] = Field(description="oldest first")
