"""Who may call what: the bearer token, the status page's session cookie, and each route's access."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from aiohttp import web

from healthd.api_table import Access, Route

SESSION_COOKIE = "healthd_session"


@dataclass
class Auth:
    """Mutable: a reload may change the token."""

    token: str = ""  # "" when no token is configured
    protect_reads: bool = False


def session_value(token: str) -> str:
    """The status page's login cookie: derived from the token, so a new token ends every session."""
    return hmac.new(token.encode(), b"healthd status page session", "sha256").hexdigest()


def needs_token(request: web.Request, auth: Auth, policy: dict[tuple[str, str], Route]) -> bool:
    if request.match_info.http_exception is not None:
        return False  # no such path or method: the 404/405 says nothing a token protects
    resource = request.match_info.route.resource
    method = "GET" if request.method == "HEAD" else request.method
    route = policy.get((method, resource.canonical)) if resource is not None else None
    if route is None:
        return request.method not in ("GET", "HEAD")
    if route.access is Access.READ:
        return auth.protect_reads
    return route.access is Access.MUTATE  # OPEN, and SESSION pages that ask for the login themselves


def authorized(request: web.Request, token: str) -> bool:
    """A bearer token; for reads also the status page's session cookie (mutations keep needing
    the header, so no other site can make a browser reload the config)."""
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    # aiohttp keeps bytes that are not UTF-8 as surrogates: give them back as bytes, never raise
    presented = given.strip().encode("utf-8", "surrogateescape")
    if scheme.lower() == "bearer" and hmac.compare_digest(presented, token.encode()):
        return True
    cookie = request.cookies.get(SESSION_COOKIE, "").encode("utf-8", "surrogateescape")
    reading = request.method in ("GET", "HEAD")
    return reading and bool(cookie) and hmac.compare_digest(cookie, session_value(token).encode())
