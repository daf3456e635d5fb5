"""HTTP probe against real local servers: aiohttp on 127.0.0.1/::1, TLS from certificates made here."""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp import web
from aiohttp.test_utils import TestClient
from cryptography import x509
from healthd.app import create_app
from healthd.config import HttpCheck, build_config, load_config
from healthd.errors import ConfigError, ProbeFailure
from healthd.probes import ProbeContext, ProbeResources
from healthd.probes._http_sessions import HttpSessions
from healthd.probes._http_tls import TlsSettings
from healthd.probes.http import probe_http
from healthd.results import ErrorKind, ProbeResult
from healthd.scheduler import run_probe

from tests.fds import new_fds, new_fds_settled, open_fds
from tests.netlab import Namespace
from tests.waiting import LOOP_CLOCK_SLACK

MiB = 1024 * 1024
SECRET = "s3cr3t-header-value-7f1e"
ROOT = Path(__file__).resolve().parents[2]


# ---- servers -------------------------------------------------------------------------


@dataclass
class Seen:
    """What the test server saw: one entry per request, and the bytes /big managed to send."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    big_sent: int = 0


def make_app(seen: Seen) -> web.Application:
    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        transport = request.transport
        peer = transport.get_extra_info("peername") if transport else None
        local = transport.get_extra_info("sockname") if transport else None
        seen.requests.append(
            {
                "method": request.method,
                "path": request.path,
                "headers": dict(request.headers),
                "body": await request.read(),
                "peer": peer,
                "connection": (peer, local),  # a client port may be reused towards another server
            }
        )
        response: web.StreamResponse = await handler(request)
        return response

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="OK healthy")

    async def status(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), text="status page")

    async def health_json(request: web.Request) -> web.Response:
        return web.json_response({"status": "UP", "checks": [{"name": "db", "status": "UP"}]})

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("/ok")

    async def loop(request: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    async def elsewhere(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"http://127.0.0.1:{int(request.match_info['port'])}/ok")  # loopback only

    async def empty(request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def trickle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": "100"})
        await response.prepare(request)
        for _ in range(100):  # 10 s in all: far longer than any probe's timeout
            await response.write(b"x")
            await asyncio.sleep(0.1)
        return response

    async def big(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": str(100 * MiB)})
        await response.prepare(request)
        chunk = b"x" * (64 * 1024)
        try:
            while seen.big_sent < 100 * MiB:
                await response.write(chunk)
                seen.big_sent += len(chunk)
        except ConnectionError:
            pass  # the probe stopped reading and closed: that is the point
        return response

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(30)  # cancelled when the client goes away
        return web.Response(text="late")

    app = web.Application(middlewares=[record])
    app.router.add_get("/ok", ok)
    app.router.add_get("/status/{code}", status)
    app.router.add_get("/json", health_json)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/loop", loop)
    app.router.add_get("/elsewhere/{port}", elsewhere)
    app.router.add_get("/empty", empty)
    app.router.add_get("/trickle", trickle)
    app.router.add_get("/big", big)
    app.router.add_get("/slow", slow)
    app.router.add_route("*", "/echo", ok)
    return app


@asynccontextmanager
async def serving(
    app: web.Application, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None
) -> AsyncIterator[str]:
    """Serve `app` on HOST, port 0; yield its base URL."""
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.1, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, 0, ssl_context=tls)
    await site.start()
    port = runner.addresses[0][1]
    shown = f"[{host}]" if ":" in host else host
    try:
        yield f"{'https' if tls else 'http'}://{shown}:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
def seen() -> Seen:
    return Seen()


@pytest.fixture
async def server(seen: Seen) -> AsyncIterator[str]:
    async with serving(make_app(seen)) as base:
        yield base


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """Accepts connections and never says a word (no TLS handshake, no HTTP response)."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        await reader.read()  # until the client hangs up; then let go of our end too
        writer.close()

    listener = await asyncio.start_server(hold, "127.0.0.1", 0)
    async with listener:
        yield listener.sockets[0].getsockname()[1]
        for writer in held:
            writer.close()


def http_check(url: str, **options: object) -> HttpCheck:
    options.setdefault("interval", "5s")
    return HttpCheck.model_validate({"type": "http", "name": "h", "url": url, **options})


async def probe(url: str, *, resources: ProbeResources, **options: object) -> ProbeResult:
    return await run_probe(probe_http, http_check(url, **options), resources)


async def settle() -> None:
    # closed transports (ours and the in-process servers') release their sockets a few turns later
    for _ in range(5):
        await asyncio.sleep(0)
    await asyncio.sleep(0.02)


# ---- plain HTTP ----------------------------------------------------------------------


async def test_200_is_up_with_phases_details_and_gauges(server: str, resources: ProbeResources) -> None:
    result = await probe(f"{server}/ok", resources=resources)
    assert result.ok, result.error_message
    assert set(result.phases) == {"resolve", "connect", "tls", "processing", "transfer"}
    assert result.phases["tls"] == 0.0 and result.phases["connect"] > 0 and result.phases["processing"] > 0
    assert sum(result.phases.values()) <= result.duration
    assert result.latency is not None and 0 < result.latency <= result.duration
    details = result.details
    assert details["status"] == 200 and details["http_version"] == "1.1"
    assert details["body_bytes"] == len("OK healthy") == details["content_length"]
    assert details["final_url"] == f"{server}/ok" and details["redirects"] == 0
    assert details["address"] == server.removeprefix("http://")
    assert result.gauges == {
        "probe_http_status_code": 200.0,
        "probe_http_version": 1.1,
        "probe_http_content_length": 10.0,
        # blackbox_exporter's names, same meaning (tests/test_blackbox_parity.py compares them)
        "probe_http_redirects": 0.0,
        "probe_http_ssl": 0.0,
        "probe_http_uncompressed_body_length": 10.0,
        "probe_failed_due_to_regex": 0.0,
        "probe_ip_protocol": 4.0,
    }


async def test_ipv6_literal_url(seen: Seen, resources: ProbeResources) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    async with serving(make_app(seen), host="::1") as base:
        result = await probe(f"{base}/ok", resources=resources)
    assert result.ok, result.error_message
    assert result.details["address"] == base.removeprefix("http://")


async def test_name_is_resolved_in_its_own_phase(server: str, resources: ProbeResources) -> None:
    port = server.rsplit(":", 1)[1]
    result = await probe(f"http://localhost:{port}/ok", ip_family="ipv4", resources=resources)
    assert result.ok, result.error_message
    assert result.details["address"] == f"127.0.0.1:{port}"
    assert result.phases["resolve"] > 0


async def test_500_is_http_status_with_the_code(server: str, resources: ProbeResources) -> None:
    result = await probe(f"{server}/status/500", resources=resources)
    assert result.error_kind is ErrorKind.HTTP_STATUS
    assert result.error_message == "status 500, expected 2xx"
    assert result.gauges["probe_http_status_code"] == 500.0
    assert result.latency is not None  # the server did answer


async def test_expect_status_codes_and_classes(server: str, resources: ProbeResources) -> None:
    assert (await probe(f"{server}/status/404", expect_status=[404], resources=resources)).ok
    assert (await probe(f"{server}/status/201", expect_status=["2xx", 404], resources=resources)).ok
    assert (await probe(f"{server}/empty", resources=resources)).ok  # 204, no body, still 2xx
    wrong = await probe(f"{server}/status/200", expect_status=["3xx"], resources=resources)
    assert wrong.error_kind is ErrorKind.HTTP_STATUS


async def test_body_regex_match_and_mismatch(server: str, resources: ProbeResources) -> None:
    assert (await probe(f"{server}/ok", body_regex=r"\bhealthy\b", resources=resources)).ok
    miss = await probe(f"{server}/ok", body_regex="^READY$", resources=resources)
    assert miss.error_kind is ErrorKind.BODY_MISMATCH
    assert miss.error_message == "body does not match /^READY$/: 'OK healthy'"
    hit = await probe(f"{server}/ok", body_not_regex="health", resources=resources)
    assert hit.error_kind is ErrorKind.BODY_MISMATCH and "body_not_regex" in (hit.error_message or "")


async def test_json_path_and_expected_headers(server: str, resources: ProbeResources) -> None:
    good = await probe(
        f"{server}/json",
        json_path=['status == "UP"', 'checks[0].status != "DOWN"'],
        expect_headers={"Content-Type": "^application/json"},
        resources=resources,
    )
    assert good.ok, good.error_message
    down = await probe(f"{server}/json", json_path='status == "DOWN"', resources=resources)
    assert down.error_kind is ErrorKind.BODY_MISMATCH
    assert down.error_message == 'json_path status == "DOWN": found "UP"'
    header = await probe(f"{server}/ok", expect_headers={"Content-Type": "json"}, resources=resources)
    assert header.error_kind is ErrorKind.BODY_MISMATCH and "header Content-Type" in (
        header.error_message or ""
    )


async def test_redirect_counts_against_expect_status_unless_followed(
    server: str, seen: Seen, resources: ProbeResources
) -> None:
    stay = await probe(f"{server}/redirect", resources=resources)
    assert stay.error_kind is ErrorKind.HTTP_STATUS
    assert stay.error_message == "status 302 (Location: /ok), expected 2xx"
    assert [r["path"] for r in seen.requests] == ["/redirect"]
    follow = await probe(
        f"{server}/redirect", follow_redirects=True, body_regex="healthy", resources=resources
    )
    assert follow.ok, follow.error_message
    assert follow.details["final_url"] == f"{server}/ok" and follow.details["redirects"] == 1
    assert follow.phases["connect"] > 0 and follow.phases["processing"] > 0
    assert sum(follow.phases.values()) <= follow.duration  # two hops, each moment charged once
    loop = await probe(f"{server}/loop", follow_redirects=True, resources=resources)
    assert loop.error_kind is ErrorKind.HTTP_STATUS and "more than 10 redirects" in (loop.error_message or "")


async def test_request_options_reach_the_server(
    server: str, seen: Seen, tmp_path: Path, resources: ProbeResources
) -> None:
    token = tmp_path / "token"
    token.write_text("tok-123\n")
    options: dict[str, Any] = {"method": "post", "body": '{"ping": 1}', "headers": {"X-Probe": "yes"}}
    assert (await probe(f"{server}/echo", bearer_token_file=str(token), **options, resources=resources)).ok
    assert (
        await probe(f"{server}/echo", basic_auth={"username": "u", "password": "p"}, resources=resources)
    ).ok
    bearer, basic = seen.requests
    assert bearer["method"] == "POST" and bearer["body"] == b'{"ping": 1}'
    assert bearer["headers"]["X-Probe"] == "yes" and bearer["headers"]["Authorization"] == "Bearer tok-123"
    assert bearer["headers"]["User-Agent"].startswith("healthd/")
    assert basic["method"] == "GET" and basic["headers"]["Authorization"] == "Basic dTpw"


async def test_refused_and_dns_errors(closed_port: int, resources: ProbeResources) -> None:
    refused = await probe(f"http://127.0.0.1:{closed_port}/", resources=resources)
    assert refused.error_kind is ErrorKind.REFUSED
    assert refused.error_message == f"connect to 127.0.0.1:{closed_port}: Connection refused"
    assert refused.gauges == {"probe_http_status_code": 0.0} and refused.latency is None
    assert refused.phases["connect"] > 0  # the failed phase keeps its time
    dns = await probe("http://no-such-host.invalid/", resources=resources)
    assert dns.error_kind is ErrorKind.DNS and "no-such-host.invalid" in (dns.error_message or "")
    assert dns.phases["resolve"] > 0 and dns.phases["connect"] == 0


async def test_family_source_ip_and_interface(server: str, seen: Seen, resources: ProbeResources) -> None:
    mismatch = await probe(f"{server}/ok", ip_family="ipv6", resources=resources)
    assert mismatch.error_kind is ErrorKind.ERROR and "asks for ipv6" in (mismatch.error_message or "")
    assert (await probe(f"{server}/ok", source_ip="127.0.0.2", resources=resources)).ok
    assert seen.requests[-1]["peer"][0] == "127.0.0.2"
    assert (await probe(f"{server}/ok", interface="lo", resources=resources)).ok
    assert seen.requests[-1]["peer"][0] == "127.0.0.1"  # each route has its own session
    missing = await probe(f"{server}/ok", interface="nosuchif0", resources=resources)
    assert missing.error_kind in (ErrorKind.ERROR, ErrorKind.PERMISSION)


# ---- bounded time, bounded memory, no leaks --------------------------------------------


async def test_trickling_body_times_out_on_time(server: str, resources: ProbeResources) -> None:
    before = open_fds()
    started = time.monotonic()
    result = await probe(f"{server}/trickle", timeout="400ms", resources=resources)
    elapsed = time.monotonic() - started
    assert result.error_kind is ErrorKind.TIMEOUT
    assert 0.4 - LOOP_CLOCK_SLACK <= elapsed < 0.4 + 0.15  # never past its timeout (plus scheduling slack)
    assert await new_fds_settled(before) == set()


async def test_silent_server_times_out_in_tls_and_in_processing(
    silent_port: int, resources: ProbeResources
) -> None:
    before = open_fds()
    for scheme in ("https", "http"):
        started = time.monotonic()
        result = await probe(f"{scheme}://127.0.0.1:{silent_port}/", timeout="300ms", resources=resources)
        assert result.error_kind is ErrorKind.TIMEOUT, (scheme, result.error_message)
        assert time.monotonic() - started < 0.3 + 0.15
    assert await new_fds_settled(before) == set()


async def test_huge_body_stops_at_max_body_bytes_with_flat_memory(
    server: str, seen: Seen, resources: ProbeResources
) -> None:
    tracemalloc.start()
    try:
        started = time.monotonic()
        result = await probe(f"{server}/big", timeout="5s", interval="10s", resources=resources)
        elapsed = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.ok, result.error_message
    assert result.details["body_bytes"] == MiB and result.details["body_truncated"] is True
    assert result.details["content_length"] == 100 * MiB
    assert peak < 8 * MiB, f"peak {peak / MiB:.1f} MiB while reading a 100 MiB body"
    assert elapsed < 2.0
    await asyncio.sleep(0.1)
    assert seen.big_sent < 20 * MiB  # the server was cut off, not drained


async def test_small_max_body_bytes_truncates_what_regex_sees(server: str, resources: ProbeResources) -> None:
    result = await probe(f"{server}/ok", max_body_bytes=2, body_regex="healthy", resources=resources)
    assert result.error_kind is ErrorKind.BODY_MISMATCH
    assert result.error_message == "body (first 2 bytes) does not match /healthy/: 'OK'"


async def test_no_descriptor_survives_any_path(
    server: str, closed_port: int, resources: ProbeResources
) -> None:
    urls = [f"{server}/ok", f"{server}/status/503", f"http://127.0.0.1:{closed_port}/", "http://x.invalid/"]
    await probe(
        urls[0], resources=resources
    )  # warm-up: the resolver's threads and the TLS context are made once
    await probe(urls[3], resources=resources)
    before = open_fds()
    for url in urls:
        for _ in range(10):
            await probe(url, resources=resources)
    assert await new_fds_settled(before) == set()


async def test_cancelled_probe_leaves_no_socket(server: str, resources: ProbeResources) -> None:
    before = open_fds()
    for path in ("/trickle", "/slow"):
        check = http_check(f"{server}{path}", timeout="5s", interval="10s")
        task = asyncio.create_task(probe_http(check, ProbeContext.start(check, resources)))
        await asyncio.sleep(0.15)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert await new_fds_settled(before) == set()


async def test_fresh_connection_per_probe_unless_keepalive(
    server: str, seen: Seen, resources: ProbeResources
) -> None:
    fresh = http_check(f"{server}/ok")
    for _ in range(2):
        assert (await run_probe(probe_http, fresh, resources)).ok
    assert seen.requests[0]["peer"] != seen.requests[1]["peer"]
    await settle()
    before = open_fds()
    pooled = http_check(f"{server}/ok", keepalive=True)
    for _ in range(3):
        assert (await run_probe(probe_http, pooled, resources)).ok
    assert len({r["peer"] for r in seen.requests[2:]}) == 1
    for _ in range(100):  # earlier connections' server ends may take a few loop turns to close
        if len(new_fds(before)) == 2:
            break
        await asyncio.sleep(0.02)
    assert len(new_fds(before)) == 2  # the pooled connection: our end and the in-process server's
    del pooled  # the check is dropped (as at a reload): its pool goes with it
    assert await new_fds_settled(before) == set()


async def test_concurrent_probes_each_get_their_own_connection_and_phases(
    seen: Seen, resources: ProbeResources
) -> None:
    # the session and connector are shared: each probe's clock must see only its own events,
    # also for the second connection of a redirect, opened while the other probes are under way
    async with serving(make_app(seen)) as first, serving(make_app(seen)) as second:
        hops = [(first, second), (second, first)] * 10
        checks = [
            http_check(f"{a}/elsewhere/{b.rsplit(':', 1)[1]}", follow_redirects=True, redirect_policy="any")
            for a, b in hops
        ]
        results = await asyncio.gather(*(run_probe(probe_http, check, resources) for check in checks))
    for (_, final), result in zip(hops, results, strict=True):
        assert result.ok, result.error_message
        assert result.details["address"] == final.removeprefix("http://")
        assert result.details["redirects"] == 1
        assert result.phases["connect"] > 0 and result.phases["processing"] > 0
        assert sum(result.phases.values()) <= result.duration
    assert len({r["connection"] for r in seen.requests}) == 2 * len(checks)  # a fresh connection each time


async def test_shutdown_closes_the_kept_sessions(server: str, resources: ProbeResources) -> None:
    fresh, pooled = http_check(f"{server}/ok"), http_check(f"{server}/ok", keepalive=True)
    await settle()
    before = open_fds()
    for check in (fresh, pooled):
        assert (await run_probe(probe_http, check, resources)).ok
    await resources.aclose()  # as the app does when it stops
    assert await new_fds_settled(before) == set()  # the keepalive connection went with its session
    async with ProbeResources() as again:
        for check in (fresh, pooled):  # and the next probe (a new daemon in tests) makes new ones
            assert (await run_probe(probe_http, check, again)).ok


# ---- TLS -----------------------------------------------------------------------------


@dataclass
class Pki:
    ca_file: Path
    good: trustme.LeafCert
    expired: trustme.LeafCert
    expiring: trustme.LeafCert  # valid for 5 more days
    named: trustme.LeafCert  # only for the name health.test
    self_signed: ssl.SSLContext
    client_ca: trustme.CA
    client_cert: Path
    client_key: Path


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    base = tmp_path_factory.mktemp("pki")
    now = datetime.datetime.now(datetime.UTC)
    ca = trustme.CA()
    ca_file = base / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    hosts = ("localhost", "127.0.0.1", "::1")
    client_ca = trustme.CA()
    client = client_ca.issue_cert("probe@healthd")
    client.cert_chain_pems[0].write_to_path(str(base / "client.pem"))
    client.private_key_pem.write_to_path(str(base / "client.key"))
    self_signed = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    (base / "self.pem").write_bytes(ca.private_key_pem.bytes() + ca.cert_pem.bytes())
    self_signed.load_cert_chain(base / "self.pem")  # the CA's own certificate: self-signed
    return Pki(
        ca_file=ca_file,
        good=ca.issue_cert(*hosts),
        expired=ca.issue_cert(
            *hosts, not_before=now - datetime.timedelta(days=30), not_after=now - datetime.timedelta(days=1)
        ),
        expiring=ca.issue_cert(*hosts, not_after=now + datetime.timedelta(days=5)),
        named=ca.issue_cert("health.test"),
        self_signed=self_signed,
        client_ca=client_ca,
        client_cert=base / "client.pem",
        client_key=base / "client.key",
    )


def not_after(cert: trustme.LeafCert) -> float:
    leaf = x509.load_pem_x509_certificate(cert.cert_chain_pems[0].bytes())
    return leaf.not_valid_after_utc.timestamp()


def tls_server(cert: trustme.LeafCert, client_ca: trustme.CA | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        client_ca.configure_trust(context)
    return context


async def test_private_ca_fails_verification_unless_given_as_ca_file(
    pki: Pki, seen: Seen, resources: ProbeResources
) -> None:
    async with serving(make_app(seen), tls=tls_server(pki.good)) as base:
        unknown = await probe(f"{base}/ok", resources=resources)
        trusted = await probe(f"{base}/ok", ca_file=str(pki.ca_file), resources=resources)
        unverified = await probe(f"{base}/ok", verify=False, resources=resources)
    assert unknown.error_kind is ErrorKind.TLS
    assert "unable to get local issuer certificate" in (unknown.error_message or "")
    assert trusted.ok, trusted.error_message
    assert unverified.ok, unverified.error_message
    assert trusted.phases["tls"] > 0 and trusted.details["tls_version"] == "TLSv1.3"
    assert trusted.details["tls_cipher"]
    leaf_expiry = not_after(pki.good)  # trustme's CA outlives its leaves: the leaf is the earliest
    assert trusted.gauges["probe_ssl_earliest_cert_expiry"] == leaf_expiry
    assert unverified.gauges["probe_ssl_earliest_cert_expiry"] == leaf_expiry  # read unverified too
    assert (
        trusted.gauges['probe_tls_version_info{version="TLS 1.3"}'] == 1.0
        and trusted.gauges["probe_http_ssl"] == 1.0
    )
    assert trusted.gauges["probe_ssl_last_chain_expiry_timestamp_seconds"] == leaf_expiry
    assert "probe_ssl_last_chain_expiry_timestamp_seconds" not in unverified.gauges  # no verified chain
    assert trusted.details["cert_expiry"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(leaf_expiry))


async def test_tls_context_is_cached_until_a_file_changes(
    pki: Pki, tmp_path: Path, resources: ProbeResources
) -> None:
    client_context = resources.get(HttpSessions).tls_context
    ca = tmp_path / "ca.pem"
    ca.write_bytes(pki.ca_file.read_bytes())
    settings = TlsSettings(ca_file=ca)
    first = client_context(settings)
    assert client_context(settings) is first
    os.utime(ca, (time.time() + 5, time.time() + 5))  # as a renewal would
    assert client_context(settings) is not first
    ca.write_text("not a certificate")
    os.utime(ca, (time.time() + 10, time.time() + 10))
    with pytest.raises(ProbeFailure) as caught:
        client_context(settings)
    assert caught.value.kind is ErrorKind.TLS and "cannot load TLS files" in caught.value.message


async def test_self_signed_certificate_is_tls(pki: Pki, seen: Seen, resources: ProbeResources) -> None:
    async with serving(make_app(seen), tls=pki.self_signed) as base:
        result = await probe(f"{base}/ok", resources=resources)
    assert result.error_kind is ErrorKind.TLS
    assert "self-signed certificate" in (result.error_message or "")
    assert seen.requests == []  # nothing was sent over an untrusted connection


async def test_expired_certificate_is_tls(pki: Pki, seen: Seen, resources: ProbeResources) -> None:
    async with serving(make_app(seen), tls=tls_server(pki.expired)) as base:
        result = await probe(f"{base}/ok", ca_file=str(pki.ca_file), resources=resources)
    assert result.error_kind is ErrorKind.TLS
    assert "certificate has expired" in (result.error_message or "")


async def test_cert_expiry_min(pki: Pki, seen: Seen, resources: ProbeResources) -> None:
    async with serving(make_app(seen), tls=tls_server(pki.expiring)) as base:
        soon = await probe(f"{base}/ok", ca_file=str(pki.ca_file), cert_expiry_min="30d", resources=resources)
        fine = await probe(f"{base}/ok", ca_file=str(pki.ca_file), cert_expiry_min="72h", resources=resources)
    assert soon.error_kind is ErrorKind.TLS
    assert "expires in 5.0 days" in (soon.error_message or "") or "expires in 4.9 days" in (
        soon.error_message or ""
    )
    assert "less than cert_expiry_min 30 days" in (soon.error_message or "")
    assert soon.details["status"] == 200  # the response is still reported
    assert soon.gauges["probe_ssl_earliest_cert_expiry"] == not_after(pki.expiring)
    assert fine.ok, fine.error_message


async def test_client_certificate_required(pki: Pki, resources: ProbeResources) -> None:
    # a blocking server: asyncio's server side drops its TLS alert when it aborts, real servers send it
    with threaded_server(tls_server(pki.good, client_ca=pki.client_ca)) as base:
        without = await probe(f"{base}/ok", ca_file=str(pki.ca_file), resources=resources)
        with_cert = await probe(
            f"{base}/ok",
            ca_file=str(pki.ca_file),
            cert_file=str(pki.client_cert),
            key_file=str(pki.client_key),
            resources=resources,
        )
    assert without.error_kind is ErrorKind.TLS, without.error_message
    message = without.error_message or ""
    assert "certificate required" in message or "require a client certificate" in message
    assert with_cert.ok, with_cert.error_message


async def test_server_name_and_min_tls_version(pki: Pki, seen: Seen, resources: ProbeResources) -> None:
    old_server = tls_server(pki.good)
    old_server.maximum_version = ssl.TLSVersion.TLSv1_2
    async with serving(make_app(seen), tls=tls_server(pki.named)) as base:
        wrong_name = await probe(f"{base}/ok", ca_file=str(pki.ca_file), resources=resources)
        named = await probe(
            f"{base}/ok", ca_file=str(pki.ca_file), server_name="health.test", resources=resources
        )
    async with serving(make_app(seen), tls=old_server) as base:
        tls12 = await probe(f"{base}/ok", ca_file=str(pki.ca_file), resources=resources)
        refused = await probe(
            f"{base}/ok", ca_file=str(pki.ca_file), min_tls_version="1.3", resources=resources
        )
    assert wrong_name.error_kind is ErrorKind.TLS and "mismatch" in (wrong_name.error_message or "")
    assert named.ok, named.error_message
    assert tls12.ok and tls12.details["tls_version"] == "TLSv1.2"
    assert refused.error_kind is ErrorKind.TLS


# ---- secrets ---------------------------------------------------------------------------


async def test_header_secret_never_leaves_the_probe(
    server: str, seen: Seen, aiohttp_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config = build_config(
        "test",
        {
            "services": [
                {
                    "name": "web",
                    "checks": [
                        {
                            "type": "http",
                            "url": f"{server}/status/500?token=query-secret",
                            "headers": {"X-Api-Key": SECRET},
                            "basic_auth": {"username": "u", "password": SECRET},
                            "interval": "200ms",
                            "timeout": "150ms",
                            "rise": 1,
                            "fall": 1,
                        }
                    ],
                }
            ]
        },
    )
    client: TestClient[Any, Any] = await aiohttp_client(create_app(config))
    body: dict[str, Any] = {}
    for _ in range(40):  # bounded: 2 s at most
        response = await client.get("/api/v1/services/web/checks/http")
        body = await response.json()
        if body["last"] is not None:
            break
        await asyncio.sleep(0.05)
    assert body["last"] is not None and body["last"]["error"]["kind"] == "http_status"
    assert any(r["headers"].get("X-Api-Key") == SECRET for r in seen.requests)  # it was sent
    metrics = await (await client.get("/metrics")).text()
    lines = metrics.splitlines()  # label order is the exposition writer's business
    assert any(line.startswith("probe_http_status_code{") and 'check="http"' in line for line in lines)
    assert any(
        line.startswith("probe_http_duration_seconds{")
        and 'check="http"' in line
        and 'phase="processing"' in line
        for line in lines
    )
    check_text = await (await client.get("/api/v1/services/web/checks/http")).text()
    listing = await (await client.get("/api/v1/services")).text()
    for where, text in (
        ("check", check_text),
        ("list", listing),
        ("metrics", metrics),
        ("logs", caplog.text),
    ):
        assert SECRET not in text, where
        assert "query-secret" not in text, where
    assert body["settings"]["headers"] == {"X-Api-Key": "**********"}


def test_redaction_in_settings_and_target() -> None:
    check = http_check("https://example.test:8443/health?token=abc#frag", headers={"X-Key": SECRET})
    dumped = check.model_dump(mode="json")
    assert dumped["headers"] == {"X-Key": "**********"}
    assert dumped["url"] == "https://example.test:8443/health?token=***"
    assert check.display_target == "https://example.test:8443/health"
    assert http_check("http://[::1]:8080/x").display_target == "http://[::1]:8080/x"


# ---- config ----------------------------------------------------------------------------

BAD_CONFIG = """\
services:
  - name: web
    checks:
      - type: http
        url: http://127.0.0.1:8080/
        body_regex: "ok("
      - name: s
        type: http
        url: http://127.0.0.1:8080/
        expect_status: [200, 6xx]
      - name: k
        type: http
        url: https://127.0.0.1:8443/
        key_file: {key}
      - name: c
        type: http
        url: https://127.0.0.1:8443/
        ca_file: /nonexistent/ca.pem
      - name: j
        type: http
        url: http://127.0.0.1:8080/
        json_path: ['status = "UP"']
      - name: u
        type: http
        url: http://user:pw@127.0.0.1:8080/
"""


def test_bad_http_options_are_reported_with_file_and_line(tmp_path: Path, pki: Pki) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD_CONFIG.format(key=pki.client_key))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.errors == [
        f"{path}:6: services[0].checks[0].body_regex: invalid regex 'ok(': "
        "missing ), unterminated subpattern at position 2",
        f"{path}:10: services[0].checks[1].expect_status[1]: "
        "'6xx' is not a status code from 100 to 599 or a class like 2xx",
        f"{path}:11: services[0].checks[2]: key_file needs cert_file",
        f"{path}:18: services[0].checks[3].ca_file: cannot read /nonexistent/ca.pem: No such file or directory",
        f"{path}:22: services[0].checks[4].json_path[0]: json_path 'status = \"UP\"': "
        "expected an operator (== != < <= > >= =~) at '= \"UP\"'",
        f"{path}:25: services[0].checks[5].url: "
        "credentials in the URL would show in the API and metrics: use basic_auth",
    ]


def test_good_http_config_loads(tmp_path: Path, pki: Pki) -> None:
    path = tmp_path / "good.yaml"
    path.write_text(
        "defaults: {timeout: 1s}\n"
        "services:\n"
        "  - name: web\n"
        "    checks:\n"
        "      - type: http\n"
        "        url: https://127.0.0.1:8443/health\n"
        "        expect_status: 200\n"
        "        min_tls_version: 1.2\n"
        "        cert_expiry_min: 14d\n"
        f"        ca_file: {pki.ca_file}\n"
        f"        cert_file: {pki.client_cert}\n"
        f"        key_file: {pki.client_key}\n"
    )
    check = load_config(path).services[0].checks[0]
    assert isinstance(check, HttpCheck)
    assert check.expect_status == ["200"] and check.min_tls_version == "1.2"
    assert check.cert_expiry_min == 14 * 86400 and check.timeout == 1.0


# ---- a busy loop -----------------------------------------------------------------------


@contextmanager
def answering_late(delay: float, hold_loop: float) -> Iterator[str]:
    """A server on its own thread: each request is answered `delay` after it came, and just
    before the answer goes out the probe's event loop is held for `hold_loop` seconds (as a
    busy daemon's loop is), so the answer waits in the kernel until the loop is free."""
    loop = asyncio.get_running_loop()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2.0)
                request = b""
                while b"\r\n\r\n" not in request and (chunk := conn.recv(4096)):
                    request += chunk
                time.sleep(delay)
                loop.call_soon_threadsafe(time.sleep, hold_loop)
                time.sleep(0.01)  # the loop is held by now
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


async def test_a_busy_loop_is_not_charged_to_the_server(resources: ProbeResources) -> None:
    """The answer comes ~60 ms after the request while the loop is held for 300 ms: the probe
    charges the server up to the answer's arrival (TCP_INFO's age of the data), not up to the
    moment its loop got round to reading it."""
    with answering_late(0.05, hold_loop=0.3) as base:
        result = await probe(f"{base}/", resources=resources)
    assert result.ok, result.error
    assert result.duration >= 0.3  # the probe did wait for its loop
    assert 0.05 <= result.phases["processing"] < 0.25  # ~0.36 s if charged up to the read
    assert result.latency is not None and result.latency < 0.25


# ---- one-shot CLI ----------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def threaded_server(tls: ssl.SSLContext | None = None) -> Iterator[str]:
    """A blocking server on its own thread (the CLI owns its event loop; blocking TLS sends its alerts)."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    if tls is not None:
        httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def test_one_shot_cli_prints_the_phases() -> None:
    with threaded_server() as base:
        done = subprocess.run(
            [sys.executable, "-m", "healthd", "probe", "http", f"{base}/health", "--timeout", "1s"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert done.returncode == 0, done.stderr
    assert "Unclosed" not in done.stderr  # the kept session of the finished loop is let go quietly
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"http {base}/health: ok, latency ")
    assert lines[1].startswith("  phases: resolve ")
    for phase in ("connect", "tls", "processing", "transfer"):
        assert f"{phase} " in lines[1]
    assert "  status: 200" in lines


# ---- a blackholed address in a namespace -------------------------------------------------


@pytest.mark.netns
async def test_blackholed_target_times_out_on_time(netns: Namespace, resources: ProbeResources) -> None:
    netns.iptables("-A", "INPUT", "-p", "tcp", "--dport", "8080", "-j", "DROP")
    before = open_fds()
    started = time.monotonic()
    result = await probe(f"http://{netns.ns_ip}:8080/", timeout="300ms", interval="1s", resources=resources)
    elapsed = time.monotonic() - started
    assert result.error_kind is ErrorKind.TIMEOUT
    assert 0.3 - LOOP_CLOCK_SLACK <= elapsed < 0.3 + 0.1
    assert await new_fds_settled(before) == set()
