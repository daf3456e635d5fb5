"""The API's JSON answers and its error type: every error is `{"error": {"code", "message"}}`."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from healthd.api_dicts import encode, error_dict


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, errors: list[str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.errors = status, code, message, errors


def json_response(body: Any, status: int = 200) -> web.Response:
    """`body`, built by `api_dicts`, as a JSON answer."""
    return web.Response(body=encode(body), status=status, content_type="application/json")


def error_response(status: int, code: str, message: str, errors: list[str] | None = None) -> web.Response:
    return json_response(error_dict(code, message, errors), status)
