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
sessions and TLS contexts are kept in the probes' resources (`HttpSessions`);
the rules a response must meet are `config.http_rules`, what it is reported as
(details, gauges) is `_http_report`.
"""

from __future__ import annotations

import logging
import ssl
import time
from types import MappingProxyType

import aiohttp
from multidict import CIMultiDictProxy

from healthd import __version__
from healthd.config import HttpCheck
from healthd.config.http_rules import Expectations, Mismatch, Observed, judge
from healthd.errors import ProbeFailure, kind_of_errno
from healthd.files import FileOptionError, SecretFile
from healthd.probes._http_conn import PhaseClock, timing
from healthd.probes._http_errors import MAX_REDIRECTS, translate
from healthd.probes._http_redirects import redirect_guard
from healthd.probes._http_report import regex_failed, report, told_without
from healthd.probes._http_sessions import HttpSessions
from healthd.probes._http_tls import TlsInfo, TlsSettings, expiry_shortfall
from healthd.probes._resolve import IP_PROTOCOL, IP_PROTOCOL_HELP
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
    try:
        with timing(clock):
            headers = await _request_headers(check)  # a secret file is read off the loop
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


async def _request_headers(check: HttpCheck) -> dict[str, str]:
    headers = {"User-Agent": USER_AGENT}
    headers.update({name: value.get_secret_value() for name, value in check.headers.items()})
    if check.bearer_token is not None:
        headers["Authorization"] = f"Bearer {await _read_secret(check.bearer_token, 'bearer_token_file')}"
    if check.basic_auth is not None:
        password = check.basic_auth.password
        secret = password.get_secret_value() if password is not None else ""
        if check.basic_password is not None:
            secret = await _read_secret(check.basic_password, "basic_auth.password_file")
        headers["Authorization"] = aiohttp.encode_basic_auth(check.basic_auth.username, secret)
    return headers


async def _read_secret(source: SecretFile, option: str) -> str:
    # re-read (off the loop) only when the file changed, so a rotated token is used at once
    try:
        return await source.read()
    except FileOptionError as exc:  # out of descriptors or memory here is ours, not the target's
        kind = ErrorKind.LOCAL if kind_of_errno(exc.errno) is ErrorKind.LOCAL else ErrorKind.ERROR
        raise ProbeFailure(kind, f"{option}: {exc}") from exc


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


# ---- the verdict (details and gauges: _http_report) -------------------------------------


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
    details, gauges = report(check, seen, response, clock)
    mismatch = judge(expect, seen) or _cert_mismatch(check, tls)
    gauges["probe_failed_due_to_regex"] = 1.0 if regex_failed(expect, seen) else 0.0
    if mismatch is not None and secrets:
        mismatch = told_without(secrets, mismatch, expect, seen)
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


def _cert_mismatch(check: HttpCheck, tls: TlsInfo | None) -> Mismatch | None:
    if check.cert_expiry_min is None or tls is None:
        return None
    reason = expiry_shortfall(tls, check.cert_expiry_min, time.time())
    return Mismatch(ErrorKind.TLS, reason) if reason else None


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
