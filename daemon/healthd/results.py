"""Result values shared by probes, scheduler, store, API and metrics.

Everything here is immutable and free of I/O so it can be handed from the
scheduler to the store and read by the API and the metrics collector safely.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class ErrorKind(StrEnum):
    """Why a probe failed: a small, fixed vocabulary (also a metric label value)."""

    TIMEOUT = "timeout"
    REFUSED = "refused"
    UNREACHABLE = "unreachable"
    DNS = "dns"
    TLS = "tls"
    HTTP_STATUS = "http_status"
    BODY_MISMATCH = "body_mismatch"
    PERMISSION = "permission"
    ERROR = "error"
    # this host ran out of something (descriptors, buffers, memory): says nothing about the
    # target, so such a result never moves a check's state (see Store)
    LOCAL = "local"


#: The `result` label of a successful probe in `healthd_probes_total`.
SUCCESS = "success"


@dataclass(frozen=True, slots=True)
class ProbeOutcome:
    """What a probe returns on success (and may attach to a failure).

    `phases` are durations in seconds of the probe's own steps (resolve,
    connect, ...); `latency` is the figure that best answers "how long did the
    target take" (e.g. the handshake or echo RTT), or None to use the total.
    """

    phases: Mapping[str, float] = field(default_factory=dict)
    details: Mapping[str, Any] = field(default_factory=dict)
    gauges: Mapping[str, float] = field(default_factory=dict)
    latency: float | None = None


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One probe run as the store keeps it."""

    time: float  # wall-clock start, unix seconds
    ok: bool
    duration: float  # seconds, start to verdict, measured by the caller
    latency: float | None  # seconds; None when the target gave no answer
    error_kind: ErrorKind | None = None
    error_message: str | None = None
    phases: Mapping[str, float] = field(default_factory=dict)
    details: Mapping[str, Any] = field(default_factory=dict)
    gauges: Mapping[str, float] = field(default_factory=dict)

    @property
    def result_label(self) -> str:
        """`success` or the error kind: the `result` label of `healthd_probes_total`."""
        return SUCCESS if self.error_kind is None else self.error_kind.value
