"""TLS for the HTTP probe: client contexts and what a handshake tells us.

Building a context that verifies against the system roots costs milliseconds,
so `HttpSessions` keeps them by their settings and the files' modification
times: a renewed `ca_file` or client certificate is picked up by the next probe.
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

TLS_VERSIONS = MappingProxyType(
    {
        "1.0": ssl.TLSVersion.TLSv1,
        "1.1": ssl.TLSVersion.TLSv1_1,
        "1.2": ssl.TLSVersion.TLSv1_2,
        "1.3": ssl.TLSVersion.TLSv1_3,
    }
)


@dataclass(frozen=True, slots=True)
class TlsSettings:
    verify: bool = True
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    min_version: str | None = None


def no_passphrase() -> bytes:
    """Key passphrase callback: never let OpenSSL prompt on a terminal for one."""
    return b""


def build_context(settings: TlsSettings) -> ssl.SSLContext:
    """A client context for these settings (the HTTP sessions keep it while the files stay the same)."""
    ca = str(settings.ca_file) if settings.ca_file else None
    if settings.verify:
        # a ca_file replaces the system roots (as blackbox_exporter's tls_config does)
        context = ssl.create_default_context(cafile=ca)
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if settings.cert_file:
        key = str(settings.key_file) if settings.key_file else None
        context.load_cert_chain(str(settings.cert_file), key, password=no_passphrase)
    if settings.min_version:
        context.minimum_version = TLS_VERSIONS[settings.min_version]
    return context


@dataclass(frozen=True, slots=True)
class TlsInfo:
    version: str
    cipher: str
    earliest_expiry: float | None  # unix seconds: the first certificate the server sent to expire
    expiring_subject: str  # that certificate's subject, for messages


def describe(ssl_object: Any) -> TlsInfo | None:
    """Version, cipher and earliest certificate expiry of an `ssl.SSLObject`, if it is one."""
    if not isinstance(ssl_object, ssl.SSLObject):
        return None
    cipher = ssl_object.cipher()
    expiry, subject = _earliest_expiry(ssl_object)
    return TlsInfo(ssl_object.version() or "", cipher[0] if cipher else "", expiry, subject)


def _earliest_expiry(ssl_object: ssl.SSLObject) -> tuple[float | None, str]:
    """Over every certificate the server sent, verified or not (as blackbox_exporter does)."""
    infos = [cert.get_info() for cert in _sent_chain(ssl_object)]
    if not infos:
        # fallback: the leaf only, which the ssl module decodes only when it was verified
        leaf = ssl_object.getpeercert()
        infos = [leaf] if leaf else []
    best: tuple[float | None, str] = (None, "")
    for info in infos:
        not_after = info.get("notAfter")
        if not not_after:
            continue
        expiry = float(ssl.cert_time_to_seconds(not_after))
        if best[0] is None or expiry < best[0]:
            best = (expiry, _subject(info))
    return best


def _sent_chain(ssl_object: ssl.SSLObject) -> list[Any]:
    # Python 3.10-3.12 keep the chain accessor on the private C object; 3.13 made it public
    # but returns DER there. Where it is missing we fall back to the leaf.
    inner = getattr(ssl_object, "_sslobj", None)
    chain = getattr(inner, "get_unverified_chain", None)
    try:
        certs = chain() if chain else None
    except (ssl.SSLError, ValueError):
        return []
    return [c for c in certs or [] if hasattr(c, "get_info")]


def _subject(info: dict[str, Any]) -> str:
    parts = [f"{key}={value}" for rdn in info.get("subject", ()) for key, value in rdn]
    return ",".join(parts) or "certificate"


def expiry_shortfall(tls: TlsInfo, minimum: float, now: float) -> str | None:
    """Why the certificates expire too soon for `cert_expiry_min` (seconds), or None."""
    if tls.earliest_expiry is None:
        return "cert_expiry_min is set, but the certificate's expiry is unreadable"
    left = tls.earliest_expiry - now
    if left >= minimum:
        return None
    when = "expired" if left < 0 else f"expires in {left / 86400:.1f} days"
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(tls.earliest_expiry))
    minimum_days = f"{minimum / 86400:g} days"
    return f"certificate {tls.expiring_subject} {when} ({stamp}), less than cert_expiry_min {minimum_days}"


def ssl_reason(error: BaseException) -> str:
    """OpenSSL's reason in words: the verify message, or e.g. 'tlsv13 alert certificate required'."""
    verify = getattr(error, "verify_message", None)
    if verify:
        return str(verify)
    reason = getattr(error, "reason", None)
    if reason:
        return str(reason).lower().replace("_", " ")
    return str(error) or type(error).__name__
