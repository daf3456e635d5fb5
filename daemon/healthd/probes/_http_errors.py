"""How the HTTP probe's failures are told apart: aiohttp's and the OS's exceptions -> error kinds."""

from __future__ import annotations

import errno
import ssl

import aiohttp

from healthd.config import HttpCheck, format_duration
from healthd.errors import from_connect_error, from_os_error
from healthd.probes._http_conn import PhaseClock
from healthd.probes._http_tls import ssl_reason
from healthd.results import ErrorKind

MAX_REDIRECTS = 10


Verdict = tuple[ErrorKind, str]


def translate(exc: BaseException, check: HttpCheck, clock: PhaseClock) -> Verdict:
    """One place that maps aiohttp's and the OS's exceptions to (kind, message).

    The clock's stage tells a hang-up during or right after the TLS handshake
    (kind `tls`) from one elsewhere.
    """
    tls = _tls_failure(exc, check, clock)
    if tls is not None:
        return ErrorKind.TLS, tls
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return ErrorKind.DNS, f"cannot resolve {exc.host!r}: {exc.os_error.strerror}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        where = f"[{exc.host}]:{exc.port}" if ":" in exc.host else f"{exc.host}:{exc.port}"
        failure = from_connect_error(exc.os_error, f"connect to {where}")
        return failure.kind, failure.message
    if isinstance(exc, TimeoutError):
        return ErrorKind.TIMEOUT, f"no answer within {format_duration(check.timeout)}"
    if isinstance(exc, aiohttp.TooManyRedirects):
        return ErrorKind.HTTP_STATUS, f"more than {MAX_REDIRECTS} redirects"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return ErrorKind.ERROR, "the server closed the connection without a complete response"
    if isinstance(exc, aiohttp.InvalidURL):
        return ErrorKind.ERROR, "redirected to an invalid or non-HTTP URL"  # the URL may hold secrets
    if isinstance(exc, aiohttp.ClientPayloadError):
        return ErrorKind.ERROR, f"body transfer failed: {exc}"
    if isinstance(exc, aiohttp.ClientResponseError):
        return ErrorKind.ERROR, f"invalid HTTP response: {exc.message}"
    if isinstance(exc, OSError) and exc.errno:
        return _os_verdict(exc)
    return ErrorKind.ERROR, f"{type(exc).__name__}: {exc}"


def _tls_failure(exc: BaseException, check: HttpCheck, clock: PhaseClock) -> str | None:
    """Why TLS failed, if that is what `exc` says."""
    if clock.stage == "request" and clock.tls is not None and _hung_up(exc):
        # TLS 1.3 servers check a client certificate after the handshake; on a fast path
        # their alert is lost in the reset that follows, and this is all the client sees
        hint = "" if check.cert_file else ": does it require a client certificate (cert_file)?"
        return f"the server closed the TLS connection before answering{hint}"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"TLS certificate of {exc.host} not accepted: {ssl_reason(exc.certificate_error)}"
    tls_error = _cause(exc, ssl.SSLError) or _cause(exc, ssl.CertificateError)
    if tls_error is not None:
        return f"TLS failed: {ssl_reason(tls_error)}"
    if isinstance(exc, aiohttp.ClientConnectorError) and clock.stage == "tls":
        where = f"[{exc.host}]:{exc.port}" if ":" in exc.host else f"{exc.host}:{exc.port}"
        reason = exc.os_error.strerror or str(exc.os_error) or "the server closed the connection"
        return f"TLS handshake with {where} failed: {reason}"
    return None


def _os_verdict(exc: OSError, context: str = "") -> Verdict:
    failure = from_os_error(exc, context)
    return failure.kind, failure.message


def _hung_up(exc: BaseException) -> bool:
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return True
    return isinstance(exc, OSError) and exc.errno in (errno.ECONNRESET, errno.EPIPE)


def _cause(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    seen: BaseException | None = exc
    for _ in range(8):  # bounded walk down __cause__/__context__
        if seen is None:
            return None
        if isinstance(seen, kind):
            return seen
        inner = getattr(seen, "os_error", None)  # aiohttp's connector errors wrap the OS's
        if isinstance(inner, kind):
            return inner
        seen = seen.__cause__ or seen.__context__
    return None
