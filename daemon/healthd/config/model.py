"""The top-level config model: server, scheduler, metrics, services."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator, model_validator

from healthd.config.checks import Check
from healthd.config.notify import NotifyConfig
from healthd.config.types import (
    HOST_PORT_PATTERN,
    Duration,
    Name,
    SecretPath,
    check_label_names,
    label_names_schema,
    split_host_port,
)

MAX_WORKERS = 64

_RESERVED_LABELS = frozenset({"service", "check", "type", "target"})


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


ListenAddress = Annotated[str, WithJsonSchema({"type": "string", "pattern": HOST_PORT_PATTERN})]


class ServerConfig(Strict):
    listen: ListenAddress = "127.0.0.1:9180"
    token_file: SecretPath | None = None
    protect_reads: bool = False

    @field_validator("listen")
    @classmethod
    def _listen_is_host_port(cls, value: str) -> str:
        split_host_port(value, allow_port_zero=True)
        return value


class SchedulerConfig(Strict):
    # probes in flight at once, across all checks: bounds sockets and CPU bursts
    max_in_flight: int = Field(1024, ge=1, le=100_000)
    # processes that probe (healthd.workers): `auto` is one per usable CPU; 1 probes in this process
    workers: Literal["auto"] | int = Field("auto", json_schema_extra={"minimum": 1, "maximum": MAX_WORKERS})

    @field_validator("workers", mode="before")
    @classmethod
    def _workers_in_range(cls, value: object) -> object:
        if value == "auto" or (type(value) is int and 1 <= value <= MAX_WORKERS):
            return value
        raise ValueError(f"must be auto or a whole number from 1 to {MAX_WORKERS}, not {value!r}")


class MetricsConfig(Strict):
    # healthd_probe_duration_seconds: one histogram per check; switch off for huge installs
    probe_duration_histogram: bool = True
    # healthd_check_uptime_ratio{window="24h"|"30d"}: two series per check
    uptime_ratio: bool = True


class Service(Strict):
    name: Name
    labels: dict[str, str] = Field(
        default_factory=dict, json_schema_extra=label_names_schema(_RESERVED_LABELS)
    )
    checks: list[Check] = Field(min_length=1)

    @field_validator("labels")
    @classmethod
    def _labels_are_prometheus_names(cls, labels: dict[str, str]) -> dict[str, str]:
        return check_label_names(labels, _RESERVED_LABELS)


class ClusterConfig(Strict):
    """This instance's shard; flags and the environment override it (see healthd.cluster)."""

    shard_index: int | None = Field(None, ge=0)  # None: from the pod ordinal when shard_count > 1
    shard_count: int = Field(1, ge=1, le=10_000)
    replicas: int = Field(1, ge=1, le=10)

    @model_validator(mode="after")
    def _consistent(self) -> ClusterConfig:
        if self.shard_index is not None and self.shard_index >= self.shard_count:
            raise ValueError(f"shard_index {self.shard_index} is not below shard_count {self.shard_count}")
        if self.replicas > self.shard_count:
            raise ValueError(f"replicas {self.replicas} exceeds shard_count {self.shard_count}")
        return self


class Config(Strict):
    server: ServerConfig = Field(default_factory=ServerConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    notify: NotifyConfig = Field(default_factory=NotifyConfig)
    # where snapshots of state, history and uptime go; None: nothing survives a restart
    state_dir: Path | None = None
    snapshot_interval: Duration = Field(60.0, ge=1.0, le=86_400.0)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    watch: bool = False  # reload when the config or a discovery file changes (healthd.watch)
    services: list[Service] = Field(min_length=1)

    @property
    def check_count(self) -> int:
        return sum(len(service.checks) for service in self.services)
