"""OpenAPI 3.1 document, generated from the route table and its pydantic models."""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import models_json_schema

from healthd import __version__
from healthd.api import ROUTES, Route
from healthd.api_models import ErrorResponse

_REF = "#/components/schemas/{model}"
_STATUS_TEXT = {400: "Bad request", 401: "Missing or wrong token", 404: "Not found", 503: "Not ready"}


def build_openapi(routes: tuple[Route, ...] = ROUTES) -> dict[str, Any]:
    models = {r.response for r in routes if r.response is not None} | {ErrorResponse}
    _, top = models_json_schema([(m, "serialization") for m in models], ref_template=_REF)
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {"title": "healthd", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": top.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _operation(route: Route) -> dict[str, Any]:
    if route.response is not None:
        ok = {
            "content": {"application/json": {"schema": {"$ref": _REF.format(model=route.response.__name__)}}}
        }
    else:
        ok = {
            "content": {
                route.content_type: {
                    "schema": {"type": "string" if route.content_type != "application/json" else "object"}
                }
            }
        }
    responses: dict[str, Any] = {"200": {"description": "OK", **ok}}
    error = {"content": {"application/json": {"schema": {"$ref": _REF.format(model="ErrorResponse")}}}}
    for status in route.errors:
        responses[str(status)] = {"description": _STATUS_TEXT.get(status, "Error"), **error}
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in ("service", "check")
        if "{" + name + "}" in route.path
    ]
    parameters += [
        {
            "name": q.name,
            "in": "query",
            "required": False,
            "description": q.description,
            "schema": dict(q.schema)
            if q.schema is not None
            else {"type": "integer", "minimum": q.minimum, "maximum": q.maximum},
        }
        for q in route.query
    ]
    operation: dict[str, Any] = {"summary": route.summary, "responses": responses}
    if parameters:
        operation["parameters"] = parameters
    if route.mutating:
        operation["security"] = [{"bearer": []}]
    return operation
