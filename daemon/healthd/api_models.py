"""Response models of the REST API; the OpenAPI document is generated from these."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from healthd.results import ProbeResult
from healthd.store import CheckState


class ErrorBody(BaseModel):
    code: str = Field(examples=["not_found"])
    message: str
    errors: list[str] | None = Field(None, description="every problem, for a rejected config")


class ErrorResponse(BaseModel):
    error: ErrorBody


class ResultError(BaseModel):
    kind: str = Field(
        description="timeout, refused, unreachable, dns, tls, http_status, body_mismatch, permission or error"
    )
    message: str


class Result(BaseModel):
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
            error = ResultError(kind=result.error_kind.value, message=result.error_message or "")
        return cls(
            time=datetime.fromtimestamp(result.time, UTC),
            ok=result.ok,
            latency_ms=None if result.latency is None else round(result.latency * 1000, 4),
            duration_ms=round(result.duration * 1000, 4),
            error=error,
            phases_ms={k: round(v * 1000, 4) for k, v in result.phases.items()},
            details=dict(result.details),
        )


class CheckSummary(BaseModel):
    name: str
    type: str
    target: str
    status: str = Field(description="unknown, up or down")
    last: Result | None

    @classmethod
    def of(cls, state: CheckState) -> CheckSummary:
        info = state.info
        last = Result.of(state.last) if state.last else None
        return cls(name=info.name, type=info.type, target=info.target, status=state.status.value, last=last)


class CheckDetail(CheckSummary):
    service: str
    since: datetime | None = Field(description="time of the last transition (or first verdict)")
    consecutive_successes: int
    consecutive_failures: int
    counters: dict[str, int] = Field(description="probes run, by result (success or an error kind)")
    transitions: dict[str, int] = Field(description="state changes, by new state")
    settings: dict[str, Any] = Field(description="effective settings, secrets redacted")

    @classmethod
    def of(cls, state: CheckState) -> CheckDetail:
        info = state.info
        return cls(
            **CheckSummary.of(state).model_dump(),
            service=info.service,
            since=datetime.fromtimestamp(state.since, UTC) if state.since is not None else None,
            consecutive_successes=state.streak_ok,
            consecutive_failures=state.streak_fail,
            counters=dict(state.counts),
            transitions=dict(state.transitions),
            settings=dict(info.settings),
        )


class ServiceModel(BaseModel):
    name: str
    status: str = Field(description="up, down, degraded or unknown")
    labels: dict[str, str]
    checks: list[CheckSummary]


class ServicesResponse(BaseModel):
    services: list[ServiceModel]


class HistoryResponse(BaseModel):
    results: list[Result] = Field(description="newest first")


class ReloadResponse(BaseModel):
    added: list[str]
    removed: list[str]
    changed: list[str]


class StatusResponse(BaseModel):
    status: str


class EventModel(BaseModel):
    """One event; the fields beyond these depend on `type` (see docs/notifications.md)."""

    model_config = ConfigDict(extra="allow")

    id: int = Field(description="increases by one per event within a run of the daemon")
    time: datetime
    type: str = Field(description="check, service, reload, start or stop")


class EventsResponse(BaseModel):
    events: list[EventModel] = Field(description="oldest first")
