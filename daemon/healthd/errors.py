"""The project's exceptions, and the one table that turns OS errors into error kinds."""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterable
from types import MappingProxyType

from healthd.results import ErrorKind, ProbeOutcome


class ConfigError(Exception):
    """A config that cannot be used; `errors` holds one line per problem."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


class ProbeFailure(Exception):
    """A probe failed for a reason of kind `kind`: the one way a probe says so.

    Probes raise it (chained to the cause: `raise ProbeFailure(...) from exc`);
    exactly one place (the scheduler's `run_probe`) turns it into a failed
    `ProbeResult`. `outcome` holds what was measured before the failure (phases,
    details, gauges, latency), e.g. the HTTP status that did not match.
    """

    def __init__(self, kind: ErrorKind, message: str, outcome: ProbeOutcome | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.outcome = outcome if outcome is not None else ProbeOutcome()

    def with_outcome(self, outcome: ProbeOutcome) -> ProbeFailure:
        """The same failure carrying `outcome` (raise it `from` this one)."""
        return ProbeFailure(self.kind, self.message, outcome)


_ERRNO_KINDS = MappingProxyType(
    {
        errno.ECONNREFUSED: ErrorKind.REFUSED,
        errno.EHOSTUNREACH: ErrorKind.UNREACHABLE,
        errno.ENETUNREACH: ErrorKind.UNREACHABLE,
        errno.EHOSTDOWN: ErrorKind.UNREACHABLE,
        errno.ENETDOWN: ErrorKind.UNREACHABLE,
        errno.ETIMEDOUT: ErrorKind.TIMEOUT,
        errno.EACCES: ErrorKind.PERMISSION,
        errno.EPERM: ErrorKind.PERMISSION,
        # this host's limits, not the target's: out of descriptors, buffers or memory
        errno.EMFILE: ErrorKind.LOCAL,
        errno.ENFILE: ErrorKind.LOCAL,
        errno.ENOBUFS: ErrorKind.LOCAL,
        errno.ENOMEM: ErrorKind.LOCAL,
    }
)


def kind_of_errno(number: int | None) -> ErrorKind:
    return _ERRNO_KINDS.get(number or 0, ErrorKind.ERROR)


def local_reason(exc: BaseException) -> str:
    """The `reason` label of a local failure: the errno name (`EMFILE`) found down the
    cause chain, `ENOMEM` for a MemoryError, else `other`."""
    seen: BaseException | None = exc
    for _ in range(8):  # bounded walk down __cause__/__context__
        if seen is None:
            break
        if isinstance(seen, MemoryError):
            return "ENOMEM"
        inner = getattr(seen, "os_error", None)  # aiohttp's connector errors wrap the OS's
        for candidate in (seen, inner):
            number = candidate.errno if isinstance(candidate, OSError) else None
            if number is not None and kind_of_errno(number) is ErrorKind.LOCAL:
                return errno.errorcode[number]
        seen = seen.__cause__ or seen.__context__
    return "other"


def from_os_error(exc: OSError, context: str = "") -> ProbeFailure:
    """Translate an OSError at the socket edge into a ProbeFailure of the right kind.

    The caller chains it: `raise from_os_error(exc, "connect to ...") from exc`.
    """
    # asyncio replaces strerror with "Connect call failed (...)": prefer the errno's own text
    reason = os.strerror(exc.errno) if exc.errno else (str(exc) or type(exc).__name__)
    message = f"{context}: {reason}" if context else reason
    return ProbeFailure(kind_of_errno(exc.errno), message)


# connect() hears of a remote rejection as an errno, and two of them are misleading:
# an ICMPv6 "administratively prohibited" from a router or the target's firewall arrives
# as EACCES (IPv4's equivalent as EHOSTUNREACH), and an ICMP "protocol unreachable" as
# ENOPROTOOPT. Both say the target cannot be reached; neither is a problem of this host.
_CONNECT_REASONS = MappingProxyType(
    {
        errno.EACCES: "administratively prohibited (a router or firewall on the path rejected it)",
        errno.ENOPROTOOPT: "protocol unreachable (the target does not speak TCP)",
    }
)


def from_connect_error(exc: OSError, context: str) -> ProbeFailure:
    """`from_os_error` for the errno a connect() ended with (see _CONNECT_REASONS)."""
    reason = _CONNECT_REASONS.get(exc.errno or 0)
    if reason is None:
        return from_os_error(exc, context)
    return ProbeFailure(ErrorKind.UNREACHABLE, f"{context}: {reason}")


# ---- messages ---------------------------------------------------------------------------

MESSAGE_CHARS = 300  # a failure message is one line of at most this many characters
REDACTED = "<redacted>"
_OBJECT_REPR = re.compile(r"<([\w.]+) object at 0x[0-9a-fA-F]+>")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every occurrence of each secret replaced, longest first (one may hold another)."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


def clean_message(text: str, secrets: Iterable[str] = ()) -> str:
    """A failure message fit for the API, logs and events: secrets redacted, one line
    (control characters escaped), no object reprs (`<ssl.SSLContext object at 0x..>` ->
    `SSLContext`), at most MESSAGE_CHARS characters."""
    text = redact(text, secrets)
    text = _OBJECT_REPR.sub(lambda m: m.group(1).rsplit(".", 1)[-1], text)
    text = _CONTROL.sub(_escape, text)
    if len(text) > MESSAGE_CHARS:
        text = text[: MESSAGE_CHARS - 1] + "…"
    return text


def _escape(match: re.Match[str]) -> str:
    char = match.group(0)
    named = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char)
    if named is not None:
        return named
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"
