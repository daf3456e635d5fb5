"""OpenAPI 3.1 document, generated from the route table and its pydantic models.

The document served is the one for the token settings in force: with no token nothing
needs one; with `server.token_file` the mutating operations do; with `protect_reads`
the `/api/v1` reads do too. Each operation's description states both modes.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from healthd import __version__, page
from healthd.api import ROUTES, Auth, OpenApiSource
from healthd.api_models import ErrorResponse
from healthd.api_table import Access, Route

_REF = "#/components/schemas/{model}"
_ERROR_REF = {"$ref": _REF.format(model="ErrorResponse")}
_PATH_EXAMPLES = {"service": "web", "check": "tcp", "name": "page.css"}
SERVED: tuple[Route, ...] = ROUTES + page.ROUTES  # the API and the status page, one table
_TAGS = {
    "services": "Services, their checks and each check's results",
    "config": "The running configuration",
    "health": "The daemon's own liveness and readiness",
    "metrics": "Prometheus exposition",
    "meta": "This document",
    "page": "The status page (HTML), its login and its assets",
    "badges": "SVG badges for READMEs",
}
_ACCESS_NOTE = {
    Access.OPEN: "Never needs a token.",
    Access.READ: "Needs `Authorization: Bearer <token>` when `server.token_file` is set and"
    " `server.protect_reads` is on; open otherwise.",
    Access.MUTATE: "Needs `Authorization: Bearer <token>` when `server.token_file` is set.",
    Access.SESSION: "When `server.token_file` is set and `server.protect_reads` is on, needs"
    " `Authorization: Bearer <token>` or the session cookie `POST /login` sets; without either,"
    " the answer is the login form with 401.",
}
_GUARDED_WITH_READS = (Access.READ, Access.SESSION)
_DESCRIPTION = """\
healthd's REST API. Every error is JSON, `{"error": {"code", "message"}}`, with a 4xx status.
Besides the statuses listed per operation: an unknown path gets 404 and a method a path does
not serve gets 405 with `Allow`; a request the HTTP parser refuses gets 400; past the cap on
open connections a new connection gets 503 `too_many_connections` and is closed.
This document describes the daemon's current token settings: %s"""
_MODES = {
    (False, False): "no token is configured, so no operation needs one.",
    (True, False): "a token is configured; mutating operations need it, reads are open.",
    (True, True): "a token is configured and `protect_reads` is on; mutations and `/api/v1` reads need it.",
}


def _error(description: str, example: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": _ERROR_REF, "example": {"error": example}}},
        **extra,
    }


_RESPONSES: dict[str, dict[str, Any]] = {
    "BadRequest": _error(
        "A query parameter out of its range, or a request the HTTP parser refused",
        {"code": "bad_request", "message": "limit must be a whole number from 1 to 10000"},
    ),
    "Unauthorized": _error(
        "The bearer token is missing or wrong",
        {"code": "unauthorized", "message": "this endpoint needs 'Authorization: Bearer <token>'"},
        headers={"WWW-Authenticate": {"schema": {"type": "string", "const": "Bearer"}}},
    ),
    "NotFound": _error(
        "No such service or check", {"code": "not_found", "message": "no service named 'nope'"}
    ),
    "MethodNotAllowed": _error(
        "The path does not serve this method (any path, any undocumented method)",
        {"code": "method_not_allowed", "message": "Method Not Allowed"},
        headers={"Allow": {"schema": {"type": "string"}, "description": "the methods the path serves"}},
    ),
}
_RESPONSE_OF_STATUS = {400: "BadRequest", 401: "Unauthorized", 404: "NotFound"}


def openapi_source(routes: tuple[Route, ...] = SERVED) -> OpenApiSource:
    """The document as JSON bytes for an `Auth`, built once per token mode."""
    cache: dict[tuple[bool, bool], bytes] = {}

    def source(auth: Auth) -> bytes:
        mode = (bool(auth.token), bool(auth.token) and auth.protect_reads)
        if mode not in cache:
            cache[mode] = json.dumps(build_openapi(*mode, routes=routes)).encode()
        return cache[mode]

    return source


def build_openapi(
    token: bool = False, protect_reads: bool = False, routes: tuple[Route, ...] = SERVED
) -> dict[str, Any]:
    models = {r.response for r in routes if r.response is not None} | {ErrorResponse}
    models |= {m for r in routes for m in r.error_models.values()}
    _, top = models_json_schema(
        [(m, "serialization") for m in sorted(models, key=lambda m: m.__name__)], ref_template=_REF
    )
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        guarded = token and (
            route.access is Access.MUTATE or (route.access in _GUARDED_WITH_READS and protect_reads)
        )
        operation = _operation(route, guarded)
        paths.setdefault(route.path, {})[route.method.lower()] = operation
        if route.method == "GET":
            paths[route.path]["head"] = _head(operation)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "healthd",
            "version": __version__,
            "description": _DESCRIPTION % _MODES[token, protect_reads],
        },
        "tags": [{"name": n, "description": d} for n, d in _TAGS.items() if any(r.group == n for r in routes)]
        + [{"name": n} for n in sorted({r.group for r in routes} - _TAGS.keys())],
        "paths": paths,
        "components": {
            "schemas": top.get("$defs", {}),
            "responses": _RESPONSES,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _example(model: type[BaseModel]) -> Any:
    extra = model.model_config.get("json_schema_extra")
    examples = extra.get("examples") if isinstance(extra, dict) else None
    return examples[0] if isinstance(examples, list) and examples else None


def _content(route: Route, model: type[BaseModel] | None) -> dict[str, Any]:
    if model is not None:
        media: dict[str, Any] = {"schema": {"$ref": _REF.format(model=model.__name__)}}
        example = _example(model)
    else:
        kind = "object" if route.content_type == "application/json" else "string"
        media, example = {"schema": {"type": kind}}, route.example
    if example is not None:
        media["example"] = example
    if model is not None:
        return {"application/json": media}
    return {content_type: media for content_type in (route.content_type, *route.other_content_types)}


def _ok_content(route: Route) -> dict[str, Any]:
    """The 200 answer's media types: a model's JSON and the text forms it may also take."""
    content = _content(route, route.response)
    if route.response is not None:
        for content_type in route.other_content_types:  # e.g. the events' text/event-stream
            content[content_type] = {"schema": {"type": "string"}, "example": route.example}
    return content


def _responses(route: Route, guarded: bool) -> dict[str, Any]:
    ok: dict[str, Any] = {"description": "OK", "content": _ok_content(route)}
    if route.links:
        ok["links"] = {
            link.name: {"operationId": link.operation_id, "parameters": dict(link.parameters)}
            for link in route.links
        }
    responses: dict[str, Any] = {"200": ok}
    for status in sorted({400, *route.errors, *((401,) if guarded else ())}):
        if status < 400:
            responses[str(status)] = _redirect(status)
        elif route.content_type == "text/html":
            responses[str(status)] = _html_error(status)
        elif status in route.error_models:
            model = route.error_models[status]
            description = HTTPStatus(status).phrase
            responses[str(status)] = {"description": description, "content": _content(route, model)}
        elif status in _RESPONSE_OF_STATUS:
            responses[str(status)] = {"$ref": f"#/components/responses/{_RESPONSE_OF_STATUS[status]}"}
        else:
            responses[str(status)] = {
                "description": "Error",
                "content": {"application/json": {"schema": _ERROR_REF}},
            }
    return responses


def _redirect(status: int) -> dict[str, Any]:
    return {
        "description": HTTPStatus(status).phrase,
        "headers": {"Location": {"schema": {"type": "string"}, "description": "where to go next"}},
    }


def _html_error(status: int) -> dict[str, Any]:
    """A page's error is an HTML page; a request the HTTP parser (or a bad query) refuses is JSON."""
    content: dict[str, Any] = {"text/html": {"schema": {"type": "string"}}}
    if status == 400:
        content["application/json"] = {"schema": _ERROR_REF}
    response: dict[str, Any] = {"description": HTTPStatus(status).phrase, "content": content}
    if status == 401:
        response["headers"] = {"WWW-Authenticate": {"schema": {"type": "string", "const": "Bearer"}}}
    return response


def _parameters(route: Route) -> list[dict[str, Any]]:
    parameters: list[dict[str, Any]] = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": {"type": "string", "minLength": 1},
            "example": example,
        }
        for name, example in _PATH_EXAMPLES.items()
        if "{" + name + "}" in route.path
    ]
    for q in route.query:
        param: dict[str, Any] = {
            "name": q.name,
            "in": "query",
            "required": False,
            "description": q.description,
            "schema": dict(q.schema)
            if q.schema is not None
            else {"type": "integer", "minimum": q.minimum, "maximum": q.maximum},
        }
        if q.example is not None:
            param["example"] = q.example
        parameters.append(param)
    return parameters


def _operation(route: Route, guarded: bool) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": route.op_id,
        "tags": [route.group],
        "summary": route.summary,
        "description": _ACCESS_NOTE[route.access],
        "responses": _responses(route, guarded),
        "security": [{"bearer": []}] if guarded else [],
    }
    if parameters := _parameters(route):
        operation["parameters"] = parameters
    if route.request_body is not None:
        operation["requestBody"] = dict(route.request_body)
    return operation


def _head(get: dict[str, Any]) -> dict[str, Any]:
    """The HEAD twin of a GET operation: the same statuses and headers, no body."""
    responses = {
        status: {
            "description": _RESPONSES[r["$ref"].rsplit("/", 1)[1]]["description"]
            if "$ref" in r
            else r["description"]
        }
        for status, r in get["responses"].items()
    }
    return {
        **get,
        "operationId": get["operationId"] + "_head",
        "summary": "Headers only: " + get["summary"],
        "responses": responses,
    }
