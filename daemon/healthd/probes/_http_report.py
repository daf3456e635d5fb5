"""What the HTTP probe says of a response: its details and gauges, and a mismatch told
without the request's secrets. Pure functions over what `http.probe_http` read."""

from __future__ import annotations

import time
from typing import Any

import aiohttp

from healthd.config import HttpCheck
from healthd.config.checks import redact_url
from healthd.config.http_rules import Expectations, Mismatch, Observed, judge
from healthd.errors import REDACTED, redact
from healthd.gauges import gauge_key
from healthd.probes._http_conn import PhaseClock
from healthd.probes._resolve import IP_PROTOCOL, ip_protocol


def report(
    check: HttpCheck, seen: Observed, response: aiohttp.ClientResponse, clock: PhaseClock
) -> tuple[dict[str, Any], dict[str, float]]:
    """The result's details and the gauges (blackbox_exporter's names) of the final response."""
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


def _iso(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


def regex_failed(expect: Expectations, seen: Observed) -> bool:
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


def told_without(secrets: list[str], mismatch: Mismatch, expect: Expectations, seen: Observed) -> Mismatch:
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
