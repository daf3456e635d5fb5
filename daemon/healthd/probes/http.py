"""HTTP(S) probe, on aiohttp's client.

On the wire: a new TCP connection for every probe (unless `keepalive: true`,
which reuses one kept per check), the TLS handshake for https, one request
(`method`, `url`, `headers`, `body`), the response headers and at most
`max_body_bytes` of the body; then the connection is closed. With
`follow_redirects`, up to 10 more requests follow `Location`.

Phases, summed over redirects as blackbox_exporter does: `resolve` (name
lookup; 0 for an IP literal), `connect` (TCP handshake), `tls` (TLS handshake;
0 for http), `processing` (connection ready -> response headers: sending the
request plus the server's time) and `transfer` (headers -> body read).
Our connector, resolver and socket note the timestamps (see _http_conn).
"""

from __future__ import annotations

import errno
import logging
import ssl
import time
from pathlib import Path
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy

from healthd import __version__
from healthd.config import HttpCheck, format_duration
from healthd.config.checks import redact_url
from healthd.config.http_rules import Expectations, Mismatch, Observed, judge
from healthd.errors import ProbeError, ProbeTimeout, from_os_error
from healthd.probes._http_conn import PhaseClock, session_for, timing
from healthd.probes._http_tls import TlsInfo, TlsSettings, client_context, expiry_shortfall, ssl_reason
from healthd.results import ErrorKind, ProbeOutcome

log = logging.getLogger(__name__)

MAX_REDIRECTS = 10
READ_CHUNK = 64 * 1024
USER_AGENT = f"healthd/{__version__}"


async def probe_http(check: HttpCheck) -> ProbeOutcome:
    clock = PhaseClock()
    session = session_for(check)
    try:
        with timing(clock):
            seen, response = await _exchange(session, check, clock)
    except ProbeError as exc:  # from our resolver, socket factory or TLS files
        clock.interrupted()
        exc.phases = {**clock.phases, **exc.phases}
        exc.gauges = {"probe_http_status_code": 0.0, **exc.gauges}
        raise
    except (aiohttp.ClientError, OSError, ssl.SSLError) as exc:
        error = _translate(exc, check, clock)
        clock.interrupted()
        error.phases = dict(clock.phases)
        error.gauges = {"probe_http_status_code": 0.0}
        raise error from None
    return _verdict(check, clock, seen, response)


# ---- the exchange ----------------------------------------------------------------------


async def _exchange(
    session: aiohttp.ClientSession, check: HttpCheck, clock: PhaseClock
) -> tuple[Observed, aiohttp.ClientResponse]:
    async with session.request(
        check.method,
        check.parsed_url,
        headers=_request_headers(check),
        data=check.body.encode() if check.body is not None else None,
        allow_redirects=check.follow_redirects,
        max_redirects=MAX_REDIRECTS,
        ssl=client_context(_tls_settings(check)) if _may_use_tls(check) else True,
        server_hostname=check.server_name,
        # a backstop for direct callers: the scheduler's own deadline (the same) fires first
        timeout=aiohttp.ClientTimeout(total=check.timeout),
    ) as response:
        clock.answered()
        body, truncated = await _read_bounded(response.content, check.max_body_bytes)
        clock.body_read()
    seen = Observed(
        status=response.status,
        headers=_lowered(response.headers),
        body=body,
        charset=response.charset or "utf-8",
        truncated=truncated,
        location=response.headers.get("Location"),
    )
    return seen, response


async def _read_bounded(content: aiohttp.StreamReader, limit: int) -> tuple[bytes, bool]:
    """At most `limit` bytes of the body, and whether more was left unread."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await content.read(min(READ_CHUNK, limit - size))
        if not chunk:
            return b"".join(chunks), False
        chunks.append(chunk)
        size += len(chunk)
    # the rest is never read: leaving the response closes the connection under it
    return b"".join(chunks), not content.at_eof()


def _request_headers(check: HttpCheck) -> dict[str, str]:
    headers = {"User-Agent": USER_AGENT}
    headers.update({name: value.get_secret_value() for name, value in check.headers.items()})
    if check.bearer_token_file is not None:
        headers["Authorization"] = f"Bearer {_read_secret(check.bearer_token_file, 'bearer_token_file')}"
    if check.basic_auth is not None:
        headers["Authorization"] = aiohttp.encode_basic_auth(
            check.basic_auth.username, _basic_password(check)
        )
    return headers


def _basic_password(check: HttpCheck) -> str:
    auth = check.basic_auth
    assert auth is not None
    if auth.password is not None:
        return auth.password.get_secret_value()
    assert auth.password_file is not None
    return _read_secret(auth.password_file, "basic_auth.password_file")


def _read_secret(path: Path, option: str) -> str:
    # read on every probe, so a rotated token is used at once
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ProbeError(f"{option}: cannot read {path}: {exc}") from None


def _may_use_tls(check: HttpCheck) -> bool:
    # building a verifying context costs ~20 ms once: a one-shot plain-http probe skips it
    return check.parsed_url.scheme == "https" or check.follow_redirects


def _tls_settings(check: HttpCheck) -> TlsSettings:
    return TlsSettings(check.verify, check.ca_file, check.cert_file, check.key_file, check.min_tls_version)


def _lowered(headers: CIMultiDictProxy[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in headers.items():
        out.setdefault(name.lower(), []).append(value)
    return out


# ---- verdict, details, gauges ----------------------------------------------------------


def _verdict(
    check: HttpCheck, clock: PhaseClock, seen: Observed, response: aiohttp.ClientResponse
) -> ProbeOutcome:
    expect = Expectations(
        status=tuple(check.expect_status),
        body_regex=check.body_regex,
        body_not_regex=check.body_not_regex,
        headers=check.expect_headers,
        json_path=tuple(check.json_path),
    )
    tls = clock.tls
    details, gauges = _report(seen, response, clock)
    mismatch = judge(expect, seen) or _cert_mismatch(check, tls)
    phases = dict(clock.phases)
    latency = sum(phases.values()) - phases["resolve"]
    if log.isEnabledFor(logging.DEBUG):  # display_target and the message are built on every call
        log.debug(
            "http check %s: %s %s -> %d%s",
            check.name,
            check.method,
            check.display_target,
            seen.status,
            f" ({mismatch.kind}: {mismatch.message})" if mismatch else "",
        )
    if mismatch is not None:
        raise ProbeError(
            mismatch.message,
            kind=mismatch.kind,
            phases=phases,
            details=details,
            gauges=gauges,
            latency=latency,
        )
    return ProbeOutcome(phases=phases, details=details, gauges=gauges, latency=latency)


def _report(
    seen: Observed, response: aiohttp.ClientResponse, clock: PhaseClock
) -> tuple[dict[str, Any], dict[str, float]]:
    version = f"{response.version.major}.{response.version.minor}" if response.version else "1.1"
    content_length = response.content_length
    details: dict[str, Any] = {
        "status": seen.status,
        "http_version": version,
        "content_length": content_length,
        "body_bytes": len(seen.body),
        "body_truncated": seen.truncated,
        "final_url": redact_url(response.url),
        "redirects": len(response.history),
        "address": clock.address,
    }
    gauges = {
        "probe_http_status_code": float(seen.status),
        "probe_http_version": float(version),
        "probe_http_content_length": float(content_length if content_length is not None else -1),
    }
    tls = clock.tls
    if tls is not None:
        details.update(tls_version=tls.version, tls_cipher=tls.cipher)
        if tls.earliest_expiry is not None:
            details["cert_expiry"] = _iso(tls.earliest_expiry)
            gauges["probe_ssl_earliest_cert_expiry"] = tls.earliest_expiry
    return details, gauges


def _cert_mismatch(check: HttpCheck, tls: TlsInfo | None) -> Mismatch | None:
    if check.cert_expiry_min is None or tls is None:
        return None
    reason = expiry_shortfall(tls, check.cert_expiry_min, time.time())
    return Mismatch(ErrorKind.TLS, reason) if reason else None


def _iso(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


# ---- errors ----------------------------------------------------------------------------


def _translate(exc: BaseException, check: HttpCheck, clock: PhaseClock) -> ProbeError:
    """One place that maps aiohttp's and the OS's exceptions to error kinds.

    The clock's stage tells a hang-up during or right after the TLS handshake
    (kind `tls`) from one elsewhere.
    """
    if clock.stage == "request" and clock.tls is not None and _hung_up(exc):
        # TLS 1.3 servers check a client certificate after the handshake; on a fast path
        # their alert is lost in the reset that follows, and this is all the client sees
        hint = "" if check.cert_file else ": does it require a client certificate (cert_file)?"
        return ProbeError(f"the server closed the TLS connection before answering{hint}", kind=ErrorKind.TLS)
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        reason = ssl_reason(exc.certificate_error)
        return ProbeError(f"TLS certificate of {exc.host} not accepted: {reason}", kind=ErrorKind.TLS)
    tls_error = _cause(exc, ssl.SSLError) or _cause(exc, ssl.CertificateError)
    if tls_error is not None:
        return ProbeError(f"TLS failed: {ssl_reason(tls_error)}", kind=ErrorKind.TLS)
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return ProbeError(f"cannot resolve {exc.host!r}: {exc.os_error.strerror}", kind=ErrorKind.DNS)
    if isinstance(exc, aiohttp.ClientConnectorError):
        where = f"[{exc.host}]:{exc.port}" if ":" in exc.host else f"{exc.host}:{exc.port}"
        if clock.stage == "tls":
            reason = exc.os_error.strerror or str(exc.os_error) or "the server closed the connection"
            return ProbeError(f"TLS handshake with {where} failed: {reason}", kind=ErrorKind.TLS)
        return from_os_error(exc.os_error, f"connect to {where}")
    if isinstance(exc, TimeoutError):
        return ProbeTimeout(f"no answer within {format_duration(check.timeout)}")
    if isinstance(exc, aiohttp.TooManyRedirects):
        return ProbeError(f"more than {MAX_REDIRECTS} redirects", kind=ErrorKind.HTTP_STATUS)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return ProbeError("the server closed the connection without a complete response")
    if isinstance(exc, aiohttp.InvalidURL):
        return ProbeError("redirected to an invalid or non-HTTP URL")  # the URL may hold secrets
    if isinstance(exc, aiohttp.ClientPayloadError):
        return ProbeError(f"body transfer failed: {exc}")
    if isinstance(exc, aiohttp.ClientResponseError):
        return ProbeError(f"invalid HTTP response: {exc.message}")
    if isinstance(exc, OSError) and exc.errno:
        return from_os_error(exc)
    return ProbeError(f"{type(exc).__name__}: {exc}")


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
