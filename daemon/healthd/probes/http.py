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
Our connector, resolver and socket note the timestamps (see _http_conn);
sessions and TLS contexts are kept in the probes' resources (`HttpSessions`).
"""

from __future__ import annotations

import logging
import ssl
import time
from pathlib import Path
from types import MappingProxyType
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy

from healthd import __version__
from healthd.config import HttpCheck
from healthd.config.checks import redact_url
from healthd.config.http_rules import Expectations, Mismatch, Observed, judge
from healthd.errors import REDACTED, ProbeFailure, redact
from healthd.gauges import gauge_key
from healthd.probes._http_conn import PhaseClock, timing
from healthd.probes._http_errors import MAX_REDIRECTS, translate
from healthd.probes._http_redirects import redirect_guard
from healthd.probes._http_sessions import HttpSessions
from healthd.probes._http_tls import TlsInfo, TlsSettings, expiry_shortfall
from healthd.probes._resolve import IP_PROTOCOL, IP_PROTOCOL_HELP, ip_protocol
from healthd.probes.base import ProbeContext, ProbeSpec
from healthd.results import ErrorKind, ProbeOutcome

READ_CHUNK = 64 * 1024
USER_AGENT = f"healthd/{__version__}"
_OWN_HEADERS = frozenset({"User-Agent"})  # ours, not the config's (no secret)
NO_RESPONSE = MappingProxyType({"probe_http_status_code": 0.0})  # the gauge when no response came


async def probe_http(check: HttpCheck, ctx: ProbeContext) -> ProbeOutcome:
    clock = PhaseClock()
    ctx.report_progress(lambda: ProbeOutcome(phases=clock.so_far(), gauges=NO_RESPONSE))
    sessions = ctx.resources.get(HttpSessions)
    headers = _request_headers(check)
    try:
        with timing(clock):
            seen, response = await _exchange(sessions, check, clock, headers)
    except ProbeFailure as exc:  # from our resolver, socket factory or TLS files
        clock.interrupted()
        measured = ProbeOutcome(phases={**clock.phases, **exc.outcome.phases}, gauges=NO_RESPONSE)
        raise exc.with_outcome(measured) from exc
    except (aiohttp.ClientError, OSError, ssl.SSLError) as exc:
        kind, message = translate(exc, check, clock)
        clock.interrupted()
        measured = ProbeOutcome(phases=dict(clock.phases), gauges=NO_RESPONSE)
        raise ProbeFailure(kind, message, measured) from exc
    secrets = [value for name, value in headers.items() if name not in _OWN_HEADERS]
    return _verdict(check, ctx, clock, seen, response, secrets)


# ---- the exchange ----------------------------------------------------------------------


async def _exchange(
    sessions: HttpSessions, check: HttpCheck, clock: PhaseClock, headers: dict[str, str]
) -> tuple[Observed, aiohttp.ClientResponse]:
    tls = sessions.tls_context(_tls_settings(check)) if _may_use_tls(check) else True
    async with sessions.session_for(check).request(
        check.method,
        check.parsed_url,
        headers=headers,
        data=check.body.encode() if check.body is not None else None,
        allow_redirects=check.follow_redirects,
        max_redirects=MAX_REDIRECTS,
        middlewares=(redirect_guard(check.parsed_url, check.redirect_policy, check.headers),),
        ssl=tls,
        server_hostname=check.server_name,
        # none of aiohttp's own: the caller's deadline (ctx.deadline) bounds the exchange
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=None),
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
        raise ProbeFailure(ErrorKind.ERROR, f"{option}: cannot read {path}: {exc}") from exc


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
    check: HttpCheck,
    ctx: ProbeContext,
    clock: PhaseClock,
    seen: Observed,
    response: aiohttp.ClientResponse,
    secrets: list[str],
) -> ProbeOutcome:
    expect = Expectations(
        status=tuple(check.expect_status),
        body_regex=check.body_regex,
        body_not_regex=check.body_not_regex,
        headers=check.expect_headers,
        json_path=tuple(check.json_path),
    )
    tls = clock.tls
    details, gauges = _report(check, seen, response, clock)
    mismatch = judge(expect, seen) or _cert_mismatch(check, tls)
    gauges["probe_failed_due_to_regex"] = 1.0 if _regex_failed(expect, seen) else 0.0
    if mismatch is not None and secrets:
        mismatch = _told_without(secrets, mismatch, expect, seen)
    phases = dict(clock.phases)
    latency = sum(phases.values()) - phases["resolve"]
    if ctx.log.isEnabledFor(logging.DEBUG):  # the message is built on every call
        ctx.log.debug(
            "%s -> %d%s",
            check.method,
            seen.status,
            f" ({mismatch.kind}: {mismatch.message})" if mismatch else "",
        )
    outcome = ProbeOutcome(phases=phases, details=details, gauges=gauges, latency=latency)
    if mismatch is not None:
        raise ProbeFailure(mismatch.kind, mismatch.message, outcome)
    return outcome


def _regex_failed(expect: Expectations, seen: Observed) -> bool:
    """blackbox_exporter's probe_failed_due_to_regex: a header or body regex did not hold."""
    if not (expect.headers or expect.body_regex or expect.body_not_regex):
        return False
    regexes = Expectations(
        status=_ANY_STATUS,
        body_regex=expect.body_regex,
        body_not_regex=expect.body_not_regex,
        headers=expect.headers,
        json_path=(),
    )
    return judge(regexes, seen) is not None


_ANY_STATUS = ("1xx", "2xx", "3xx", "4xx", "5xx")


def _told_without(secrets: list[str], mismatch: Mismatch, expect: Expectations, seen: Observed) -> Mismatch:
    """The mismatch told from a response with our secrets taken out (a target may echo the
    request's headers): no excerpt can then show a secret, not even a cut-off part of one."""
    redacted = [secret.encode(seen.charset, "replace") for secret in secrets if secret]
    body = seen.body
    for secret in redacted:
        body = body.replace(secret, REDACTED.encode())
    headers = {name: [redact(value, secrets) for value in values] for name, values in seen.headers.items()}
    location = redact(seen.location, secrets) if seen.location is not None else None
    clean = Observed(seen.status, headers, body, seen.charset, seen.truncated, location)
    told = judge(expect, clean)
    if told is None or told.kind != mismatch.kind:  # the secret itself decided the verdict
        return Mismatch(mismatch.kind, f"{mismatch.kind}: the response holds a configured secret (not shown)")
    return Mismatch(told.kind, redact(told.message, secrets))


def _report(
    check: HttpCheck, seen: Observed, response: aiohttp.ClientResponse, clock: PhaseClock
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
    tls = clock.tls
    gauges = {
        "probe_http_status_code": float(seen.status),
        "probe_http_version": float(version),
        "probe_http_content_length": float(content_length if content_length is not None else -1),
        "probe_http_redirects": float(len(response.history)),
        "probe_http_ssl": 0.0 if tls is None else 1.0,
        # what was read, decompressed, up to max_body_bytes (blackbox reads it all)
        "probe_http_uncompressed_body_length": float(len(seen.body)),
    }
    if clock.address:
        gauges[IP_PROTOCOL] = ip_protocol(clock.address.rpartition(":")[0])
    if tls is not None:
        details.update(tls_version=tls.version, tls_cipher=tls.cipher)
        gauges[gauge_key("probe_tls_version_info", version=_tls_label(tls.version))] = 1.0
        if tls.earliest_expiry is not None:
            details["cert_expiry"] = _iso(tls.earliest_expiry)
            gauges["probe_ssl_earliest_cert_expiry"] = tls.earliest_expiry
            if check.verify:  # a chain that was verified; blackbox reports it for verified chains only
                gauges["probe_ssl_last_chain_expiry_timestamp_seconds"] = tls.earliest_expiry
    return details, gauges


def _tls_label(version: str) -> str:
    """blackbox_exporter's spelling: OpenSSL's `TLSv1.3` -> `TLS 1.3`."""
    return version.replace("TLSv", "TLS ", 1) if version.startswith("TLSv") else version


def _cert_mismatch(check: HttpCheck, tls: TlsInfo | None) -> Mismatch | None:
    if check.cert_expiry_min is None or tls is None:
        return None
    reason = expiry_shortfall(tls, check.cert_expiry_min, time.time())
    return Mismatch(ErrorKind.TLS, reason) if reason else None


def _iso(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


SPEC = ProbeSpec(
    type="http",
    model=HttpCheck,
    probe=probe_http,
    gauges={
        "probe_http_status_code": "HTTP status of the last probe's final response (0: no response)",
        "probe_http_content_length": "Content-Length of the last HTTP response (-1: not sent)",
        "probe_http_version": "HTTP version of the last response, e.g. 1.1",
        "probe_ssl_earliest_cert_expiry": "Unix time the first certificate the server sent expires",
        "probe_http_redirects": "Redirects the last HTTP probe followed",
        "probe_http_ssl": "Whether the last HTTP probe's final response came over TLS (1) or not (0)",
        "probe_http_uncompressed_body_length": "Bytes of the last response's body read, decompressed "
        "(up to max_body_bytes)",
        "probe_failed_due_to_regex": "Whether a header or body regex of the last HTTP probe failed (1 or 0)",
        "probe_tls_version_info": "TLS version of the last HTTP probe's connection, in the version label",
        "probe_ssl_last_chain_expiry_timestamp_seconds": "Unix time the first certificate of the verified "
        "chain expires (checks with verify on)",
        IP_PROTOCOL: IP_PROTOCOL_HELP,
    },
    resource=HttpSessions,
)
