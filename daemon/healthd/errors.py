"""The project's exceptions, and the one table that turns OS errors into error kinds."""

from __future__ import annotations

import errno
import os
from collections.abc import Mapping
from typing import Any

from healthd.results import ErrorKind


class ConfigError(Exception):
    """A config that cannot be used; `errors` holds one line per problem."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


class ProbeError(Exception):
    """A probe failed for a reason of kind `kind`.

    Probes raise it; exactly one place (the scheduler's `run_probe`) turns it
    into a failed `ProbeResult`. `phases`, `details` and `gauges` carry what was
    measured before the failure (e.g. an HTTP status that did not match).
    """

    kind: ErrorKind = ErrorKind.ERROR

    def __init__(
        self,
        message: str,
        *,
        kind: ErrorKind | None = None,
        phases: Mapping[str, float] | None = None,
        details: Mapping[str, Any] | None = None,
        gauges: Mapping[str, float] | None = None,
        latency: float | None = None,
    ) -> None:
        super().__init__(message)
        if kind is not None:
            self.kind = kind
        self.message = message
        self.phases = dict(phases or {})
        self.details = dict(details or {})
        self.gauges = dict(gauges or {})
        self.latency = latency


class ProbeTimeout(ProbeError):
    kind = ErrorKind.TIMEOUT


class ProbeRefused(ProbeError):
    kind = ErrorKind.REFUSED


class ProbeUnreachable(ProbeError):
    kind = ErrorKind.UNREACHABLE


class ProbeDNSError(ProbeError):
    kind = ErrorKind.DNS


class ProbePermissionError(ProbeError):
    kind = ErrorKind.PERMISSION


_ERRNO_KINDS: dict[int, ErrorKind] = {
    errno.ECONNREFUSED: ErrorKind.REFUSED,
    errno.EHOSTUNREACH: ErrorKind.UNREACHABLE,
    errno.ENETUNREACH: ErrorKind.UNREACHABLE,
    errno.EHOSTDOWN: ErrorKind.UNREACHABLE,
    errno.ENETDOWN: ErrorKind.UNREACHABLE,
    errno.ETIMEDOUT: ErrorKind.TIMEOUT,
    errno.EACCES: ErrorKind.PERMISSION,
    errno.EPERM: ErrorKind.PERMISSION,
}


def kind_of_errno(number: int | None) -> ErrorKind:
    return _ERRNO_KINDS.get(number or 0, ErrorKind.ERROR)


def from_os_error(exc: OSError, context: str = "") -> ProbeError:
    """Translate an OSError at the socket edge into a ProbeError of the right kind."""
    # asyncio replaces strerror with "Connect call failed (...)": prefer the errno's own text
    reason = os.strerror(exc.errno) if exc.errno else (str(exc) or type(exc).__name__)
    message = f"{context}: {reason}" if context else reason
    return ProbeError(message, kind=kind_of_errno(exc.errno))
