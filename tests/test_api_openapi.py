"""The OpenAPI document tells the truth: valid, complete, the token modes as enforced,
and /readyz's 503 body what the daemon sends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from healthd import api_models
from healthd.api import STORE
from healthd.app import create_app
from healthd.config import load_config
from healthd.openapi import SERVED, build_openapi
from healthd.results import ErrorKind
from openapi_spec_validator import validate
from pydantic import BaseModel

from tests.conftest import TcpServer
from tests.test_api import MakeClient, config_text, token_server

MODES = [(False, False), (True, False), (True, True)]
Client = TestClient[Any, web.Application]


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, ops in doc["paths"].items() for method, op in ops.items()]


@pytest.mark.parametrize(("token", "protect_reads"), MODES)
def test_document_is_valid_and_complete(token: bool, protect_reads: bool) -> None:
    doc = build_openapi(token, protect_reads)
    validate(doc)
    ops = operations(doc)
    assert len({op["operationId"] for _, _, op in ops}) == len(ops)
    declared_tags = {tag["name"] for tag in doc["tags"]}
    for path, method, op in ops:
        assert op["tags"] and set(op["tags"]) <= declared_tags, (path, method)
        assert op["summary"] and op["description"], (path, method)
        assert "400" in op["responses"], (path, method)
        if "{service}" in path:
            assert "404" in op["responses"], (path, method)
        if method != "head":
            for media in op["responses"]["200"]["content"].values():
                assert media.get("example") is not None, (path, method)
    gets = {path for path, method, _ in ops if method == "get"}
    assert gets == {path for path, method, _ in ops if method == "head"}
    assert {"BadRequest", "Unauthorized", "NotFound", "MethodNotAllowed"} <= doc["components"][
        "responses"
    ].keys()


def test_security_is_declared_as_each_token_mode_enforces_it() -> None:
    # the status page's HTML reads (access "session") are guarded like the API's reads
    reads = {r.path for r in SERVED if r.access.value in ("read", "session")}
    mutations = {(r.path, r.method.lower()) for r in SERVED if r.access.value == "mutate"}
    refuses_token = {(r.path, r.method.lower()) for r in SERVED if 401 in r.errors}  # POST /login
    assert reads and mutations and refuses_token
    for token, protect_reads in MODES:
        doc = build_openapi(token, protect_reads)
        for path, method, op in operations(doc):
            guarded = token and ((path, method) in mutations or (protect_reads and path in reads))
            assert op["security"] == ([{"bearer": []}] if guarded else []), (
                token,
                protect_reads,
                path,
                method,
            )
            answers_401 = guarded or (path, method) in refuses_token
            assert ("401" in op["responses"]) == answers_401, (token, protect_reads, path, method)
    for path in ("/healthz", "/readyz", "/metrics", "/api/v1/openapi.json", "/login", "/static/{name}"):
        assert build_openapi(True, True)["paths"][path]["get"]["security"] == []


def test_status_values_and_error_kinds_are_enums() -> None:
    schemas = build_openapi()["components"]["schemas"]
    assert set(schemas["ErrorKind"]["enum"]) == {kind.value for kind in ErrorKind}
    assert set(schemas["CheckSummary"]["properties"]["status"]["enum"]) == {"unknown", "up", "down"}
    assert set(schemas["ServiceModel"]["properties"]["status"]["enum"]) == {
        "unknown",
        "up",
        "down",
        "degraded",
    }
    assert schemas["ReadyResponse"]["properties"]["status"]["const"] == "ready"
    assert schemas["StartingResponse"]["properties"]["status"]["const"] == "starting"


def test_examples_are_valid_answers() -> None:
    models = [m for m in vars(api_models).values() if isinstance(m, type) and issubclass(m, BaseModel)]
    with_examples = [m for m in models if m.model_config.get("json_schema_extra")]
    assert len(with_examples) >= 9
    for model in with_examples:
        extra = model.model_config.get("json_schema_extra")
        assert isinstance(extra, dict)
        for example in extra["examples"]:  # type: ignore[union-attr]
            model.model_validate(example)


def validator(doc: dict[str, Any], path: str, method: str, status: str) -> jsonschema.Draft202012Validator:
    schema = doc["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]
    return jsonschema.Draft202012Validator({**schema, "components": doc["components"]})


async def test_readyz_while_starting_sends_what_the_document_says(
    tmp_path: Path, tcp_server: TcpServer, closed_port: int, aiohttp_client: MakeClient
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(config_text(tcp_server.target, f"127.0.0.1:{closed_port}"))
    client: Client = await aiohttp_client(create_app(load_config(path), path))
    doc = await (await client.get("/api/v1/openapi.json")).json()
    validate(doc)
    ready = await client.get("/readyz")
    assert ready.status == 200
    validator(doc, "/readyz", "get", "200").validate(await ready.json())
    client.app[STORE].daemon.ready = False  # as before the scheduler starts
    starting = await client.get("/readyz")
    assert starting.status == 503
    body = await starting.json()
    assert body == {"status": "starting"}
    validator(doc, "/readyz", "get", "503").validate(body)
    head = await client.head("/readyz")
    assert head.status == 503 and await head.read() == b""


async def token_client(tmp_path: Path, target: str, closed_port: int, make: MakeClient) -> Client:
    """A daemon with the token `s3cret` and `protect_reads`, and a client of it."""
    path = tmp_path / "config.yaml"
    path.write_text(config_text(target, f"127.0.0.1:{closed_port}", server=token_server(tmp_path, "s3cret")))
    client: Client = await make(create_app(load_config(path), path))
    return client


async def test_served_document_follows_the_token_mode(
    tmp_path: Path, tcp_server: TcpServer, closed_port: int, aiohttp_client: MakeClient
) -> None:
    path = tmp_path / "config.yaml"
    client = await token_client(tmp_path, tcp_server.target, closed_port, aiohttp_client)
    doc = await (await client.get("/api/v1/openapi.json")).json()
    assert doc == build_openapi(True, True)
    path.write_text(config_text(tcp_server.target, f"127.0.0.1:{closed_port}"))
    reload = await client.post("/api/v1/reload", headers={"Authorization": "Bearer s3cret"})
    assert reload.status == 200
    assert await (await client.get("/api/v1/openapi.json")).json() == build_openapi(False, False)


def test_event_stream_and_login_form_are_documented() -> None:
    doc = build_openapi(True, True)
    validate(doc)
    events = doc["paths"]["/api/v1/events"]["get"]["responses"]["200"]["content"]
    assert set(events) == {"application/json", "text/event-stream"}
    stream = events["text/event-stream"]
    assert stream["schema"] == {"type": "string"}
    assert stream["example"].startswith(": connected\n\n") and "\nevent: check\ndata: {" in stream["example"]
    body = doc["paths"]["/login"]["post"]["requestBody"]
    assert body["required"] is False  # without a body: the login form again, with 401
    form = body["content"]["application/x-www-form-urlencoded"]
    assert form["schema"]["required"] == ["token"] and set(form["schema"]["properties"]) == {"token", "next"}
    assert "requestBody" not in doc["paths"]["/logout"]["post"]


async def test_the_login_form_the_document_describes_logs_in(
    tmp_path: Path, tcp_server: TcpServer, closed_port: int, aiohttp_client: MakeClient
) -> None:
    client = await token_client(tmp_path, tcp_server.target, closed_port, aiohttp_client)
    doc = await (await client.get("/api/v1/openapi.json")).json()
    example = doc["paths"]["/login"]["post"]["requestBody"]["content"]["application/x-www-form-urlencoded"]
    form = {**example["example"], "token": "s3cret"}
    answer = await client.post("/login", data=form, allow_redirects=False)
    assert answer.status == 303 and answer.headers["Location"] == form["next"]
    assert "healthd_session" in answer.cookies
    stream = await client.get(
        "/api/v1/events", headers={"Accept": "text/event-stream"}, cookies=answer.cookies
    )
    assert stream.headers["Content-Type"] == "text/event-stream"
    assert await stream.content.readuntil(b"\n\n") == b": connected\n\n"
    stream.close()
