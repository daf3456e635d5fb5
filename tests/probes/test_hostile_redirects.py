"""Secrets cannot leave through a redirect (issue 11 item 7): other origins are refused by
default; with `redirect_policy: any` the check's headers stay behind; https never goes to http."""

from __future__ import annotations

from pathlib import Path

import trustme
from aiohttp import web
from healthd.probes import ProbeResources
from healthd.results import ErrorKind

from tests.probes.test_http import http_check, probe_http, run_probe, serving, tls_server

SECRET = "Bearer-ish-s3cret"


def recorder(seen: list[dict[str, str]]) -> web.Application:
    async def anything(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/{tail:.*}", anything)
    return app


def redirector(to: str) -> web.Application:
    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(to)

    app = web.Application()
    app.router.add_get("/", redirect)
    return app


async def test_a_redirect_to_another_origin_is_refused_by_default(resources: ProbeResources) -> None:
    seen: list[dict[str, str]] = []
    async with serving(recorder(seen)) as elsewhere, serving(redirector(f"{elsewhere}/x")) as start:
        check = http_check(f"{start}/", follow_redirects=True, headers={"X-Token": SECRET})
        result = await run_probe(probe_http, check, resources)
    assert result.error_kind is ErrorKind.HTTP_STATUS, result
    assert "another origin" in (result.error_message or "")
    assert seen == []  # nothing reached the other origin


async def test_with_any_origin_the_checks_headers_stay_behind(resources: ProbeResources) -> None:
    seen: list[dict[str, str]] = []
    async with serving(recorder(seen)) as elsewhere, serving(redirector(f"{elsewhere}/x")) as start:
        check = http_check(
            f"{start}/", follow_redirects=True, redirect_policy="any", headers={"X-Token": SECRET}
        )
        result = await run_probe(probe_http, check, resources)
    assert result.ok, result
    assert len(seen) == 1 and "X-Token" not in seen[0] and SECRET not in str(seen[0])


async def test_https_never_redirects_to_plain_http(resources: ProbeResources, tmp_path: Path) -> None:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    seen: list[dict[str, str]] = []
    leaf = ca.issue_cert("127.0.0.1")
    async with (
        serving(recorder(seen)) as plain,
        serving(redirector(f"{plain}/x"), tls=tls_server(leaf)) as secure,
    ):
        check = http_check(
            f"{secure}/",
            follow_redirects=True,
            redirect_policy="any",
            ca_file=str(ca_file),
            headers={"X-Token": SECRET},
        )
        result = await run_probe(probe_http, check, resources)
    assert result.error_kind is ErrorKind.HTTP_STATUS, result
    assert "https to plain http" in (result.error_message or "")
    assert seen == []
