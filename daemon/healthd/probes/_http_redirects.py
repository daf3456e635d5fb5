"""Where the HTTP probe follows a redirect, as an aiohttp client middleware (it sees each hop).

With `follow_redirects`, aiohttp itself would go anywhere `Location` points and
drop only `Authorization` and cookies on the way: a check's secret `headers`
went to other origins, even from https to plain http (issue 11 item 7). Here a
hop to another origin is refused unless `redirect_policy: any`, and then it goes
without the check's configured headers; a hop from https to http is always refused.
"""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import ClientHandlerType, ClientRequest, ClientResponse
from aiohttp.client_middlewares import ClientMiddlewareType
from yarl import URL

from healthd.config.checks import redact_url
from healthd.errors import ProbeFailure
from healthd.results import ErrorKind


def redirect_guard(start: URL, policy: str, secret_headers: Iterable[str]) -> ClientMiddlewareType:
    """A middleware for one request that starts at `start` (see the module docstring)."""
    origin = start.origin()
    secret = [name.lower() for name in secret_headers]

    async def guard(request: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
        hop = request.url
        if hop.origin() != origin:
            where = redact_url(hop.with_path("/").with_query(None).with_fragment(None))
            if start.scheme == "https" and hop.scheme == "http":
                raise ProbeFailure(
                    ErrorKind.HTTP_STATUS, f"redirected from https to plain http ({where}): not followed"
                )
            if policy != "any":
                raise ProbeFailure(
                    ErrorKind.HTTP_STATUS,
                    f"redirected to another origin ({where}): not followed (redirect_policy: same-origin)",
                )
            for name in list(request.headers):
                if name.lower() in secret or name.lower() == "authorization":
                    del request.headers[name]
        return await handler(request)

    return guard
