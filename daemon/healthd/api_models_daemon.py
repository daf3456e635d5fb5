"""Response models of the routes about the daemon itself: errors, reload, health, events."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from healthd.api_examples import example


class ErrorBody(BaseModel):
    code: str = Field(
        description="what went wrong, for programs: bad_request, unauthorized, not_found,"
        " method_not_allowed, invalid_config, too_many_connections or internal",
        examples=["not_found"],
    )
    message: str = Field(description="what went wrong, for people")
    errors: list[str] | None = Field(None, description="every problem, for a rejected config")


class ErrorResponse(BaseModel):
    model_config = example({"error": {"code": "not_found", "message": "no service named 'nope'"}})
    error: ErrorBody


class ReloadResponse(BaseModel):
    model_config = example({"added": ["db/tcp"], "removed": [], "changed": ["web/http"]})
    added: list[str]
    removed: list[str]
    changed: list[str]


class HealthResponse(BaseModel):
    model_config = example({"status": "ok"})
    status: Literal["ok"]


class ReadyResponse(BaseModel):
    model_config = example({"status": "ready"})
    status: Literal["ready"]


class StartingResponse(BaseModel):
    """/readyz's 503: the config is not loaded or the scheduler does not run yet."""

    model_config = example({"status": "starting"})
    status: Literal["starting"]


class EventModel(BaseModel):
    """One event; the fields beyond these depend on `type` (see docs/notifications.md)."""

    model_config = ConfigDict(extra="allow")

    id: int = Field(description="increases by one per event within a run of the daemon")
    time: datetime
    type: str = Field(description="check, service, reload, start or stop")


class EventsResponse(BaseModel):
    model_config = example(
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
