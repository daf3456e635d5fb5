"""The HTTP probe's kept sessions and TLS contexts, owned by the probes' resources.

A ClientSession and connector built for every probe, with aiohttp's trace
hooks, took over a fifth of the probe's CPU (bench/http_cpu.py). So sessions
are kept: one per route (`ip_family`, `source_ip`, `interface`), shared by the
checks that take it, whose connector force-closes every connection after its
response, so each probe still opens a fresh TCP connection and does a fresh
TLS handshake; and, with `keepalive`, one per check, whose connector keeps its
connection between probes. Per route rather than per check: a session and
its connector take ~5 KB, which 10,000 checks would multiply.

Sessions live until the resources close (at shutdown) or, for a keepalive
check, until the check is dropped (e.g. a reload replaced it).
"""

from __future__ import annotations

import asyncio
import os
import ssl
import weakref
from collections import OrderedDict
from pathlib import Path

import aiohttp

from healthd.config import HttpCheck
from healthd.errors import ProbeFailure
from healthd.probes._http_conn import ProbeConnector, Route
from healthd.probes._http_response import BoundedResponse
from healthd.probes._http_tls import TlsSettings, build_context
from healthd.probes._resolve import Resolver
from healthd.probes.base import ProbeResources, SharedResource
from healthd.results import ErrorKind

TLS_CONTEXTS = 128  # distinct TLS settings kept (each context costs ~20 ms to build)


class HttpSessions(SharedResource):
    """Sessions by route (fresh connections) or by check (keepalive), and cached TLS contexts."""

    def __init__(self, resources: ProbeResources) -> None:
        super().__init__(resources)
        self._resolver = resources.get(Resolver)
        self._loop = asyncio.get_running_loop()  # made by a probe, so on the probes' loop
        self._kept: dict[Route | int, aiohttp.ClientSession] = {}
        self._finalizers: list[weakref.finalize[[Route | int], HttpCheck]] = []
        self._closing: set[asyncio.Task[None]] = set()
        self._contexts: OrderedDict[tuple[TlsSettings, tuple[float, ...]], ssl.SSLContext] = OrderedDict()

    def session_for(self, check: HttpCheck) -> aiohttp.ClientSession:
        """The session the check's probes go through, made on first use."""
        route = Route(check.ip_family, check.source_ip, check.interface)
        key: Route | int = id(check) if check.keepalive else route
        session = self._kept.get(key)
        if session is not None and not session.closed:
            return session
        if check.keepalive:
            # a keepalive pool goes with its check (e.g. when a reload replaces the check)
            self._finalizers.append(weakref.finalize(check, self._drop, key))
        # idle longer than a probe cycle means the check is gone: let the pool close it
        idle = check.interval + check.timeout + 1.0 if check.keepalive else None
        session = aiohttp.ClientSession(
            connector=ProbeConnector(route, self._resolver, idle),
            cookie_jar=aiohttp.DummyCookieJar(),  # no cookie of one probe reaches the next
            response_class=BoundedResponse,  # a stream of 1xx cannot pin the loop
        )
        self._kept[key] = session
        return session

    def tls_context(self, settings: TlsSettings) -> ssl.SSLContext:
        """The shared client context for these settings; a renewed file makes a new one.

        ProbeFailure(tls) if a file is bad.
        """
        key = (settings, tuple(_mtime(p) for p in (settings.ca_file, settings.cert_file, settings.key_file)))
        context = self._contexts.get(key)
        if context is None:
            try:
                context = build_context(settings)
            except (OSError, ssl.SSLError) as exc:
                raise ProbeFailure(ErrorKind.TLS, f"cannot load TLS files: {exc}") from exc
            self._contexts[key] = context
            if len(self._contexts) > TLS_CONTEXTS:
                self._contexts.popitem(last=False)
        else:
            self._contexts.move_to_end(key)
        return context

    async def aclose(self) -> None:
        for finalizer in self._finalizers:
            finalizer.detach()
        self._finalizers.clear()
        sessions = list(self._kept.values())
        self._kept.clear()
        for session in sessions:
            await session.close()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        self._contexts.clear()

    def _drop(self, key: Route | int) -> None:
        session = self._kept.pop(key, None)
        if session is None or session.closed:
            return
        if self._loop.is_closed():  # nothing can run there any more
            session.detach()  # marks it closed, so that it does not warn when collected
            return
        closing = self._loop.create_task(session.close())
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)


def _mtime(path: Path | None) -> float:
    if path is None:
        return 0.0
    try:
        return os.stat(path).st_mtime
    except OSError:
        return -1.0  # build_context reports the real error
