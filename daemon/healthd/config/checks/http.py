"""The `http` check: a request, and the verdict on status, headers, body and TLS."""

from __future__ import annotations

import re
import ssl
from functools import cached_property
from typing import Annotated, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    SecretStr,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from yarl import URL

from healthd import files
from healthd.config import http_rules
from healthd.config.checks.base import CheckBase
from healthd.config.json_path import parse_condition
from healthd.config.types import CertDuration, PemFile, SecretPath, compile_regex

_MIB = 1024 * 1024
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_METHOD = re.compile(r"^[A-Z]+$")


def _compile_regex(value: object) -> object:
    return compile_regex(value) if isinstance(value, str) else value


Regex = Annotated[
    re.Pattern[str],
    BeforeValidator(_compile_regex),
    PlainSerializer(lambda pattern: pattern.pattern, return_type=str, when_used="json"),
]


def _as_list(value: object) -> object:
    return [value] if isinstance(value, str | int) else value


def _status(value: object) -> str:
    return str(http_rules.parse_status(value))


def _condition(value: str) -> str:
    parse_condition(value)
    return value


_STATUS_SCHEMA = {
    "anyOf": [
        {"type": "integer", "minimum": 100, "maximum": 599},
        {"type": "string", "pattern": r"^\s*[1-5]([xX]{2}|[0-9]{2})\s*$"},
    ]
}
StatusPattern = Annotated[str, BeforeValidator(_status), WithJsonSchema(_STATUS_SCHEMA)]
StatusList = Annotated[
    list[StatusPattern],
    BeforeValidator(_as_list),
    WithJsonSchema({"anyOf": [_STATUS_SCHEMA, {"type": "array", "items": _STATUS_SCHEMA, "minItems": 1}]}),
]
JsonCondition = Annotated[str, AfterValidator(_condition)]
JsonConditions = Annotated[
    list[JsonCondition],
    BeforeValidator(_as_list),
    WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}),
]
TlsVersion = Annotated[
    Literal["1.0", "1.1", "1.2", "1.3"],
    WithJsonSchema({"enum": ["1.0", "1.1", "1.2", "1.3", 1.0, 1.1, 1.2, 1.3]}),  # YAML reads 1.2 as a number
]


def redact_url(url: URL) -> str:
    """The URL with query values masked: a query string often carries an API key."""
    url = url.with_user(None).with_fragment(None)
    if url.query_string:
        url = url.with_query([(key, "***") for key in url.query])
    return str(url)


def _check_url(value: object) -> object:
    if not isinstance(value, str):
        return value
    try:
        url = URL(value)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"invalid URL {value!r}: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"{value!r} is not an http:// or https:// URL with a host")
    if url.user is not None or url.password is not None:
        raise ValueError("credentials in the URL would show in the API and metrics: use basic_auth")
    return value


HttpUrl = Annotated[
    str,
    BeforeValidator(_check_url),
    PlainSerializer(lambda url: redact_url(URL(url)), return_type=str, when_used="json"),
]


class BasicAuth(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    username: str
    password: SecretStr | None = None
    password_file: SecretPath | None = None

    @model_validator(mode="after")
    def _one_password(self) -> BasicAuth:
        if (self.password is None) == (self.password_file is None):
            raise ValueError("basic_auth needs exactly one of password and password_file")
        return self


class HttpCheck(CheckBase):
    """HTTP(S) request with a verdict on status, headers, body and TLS."""

    TARGET_FIELD: ClassVar[str] = "url"

    type: Literal["http"]
    url: HttpUrl
    method: str = "GET"
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    body: str | None = None
    basic_auth: BasicAuth | None = None
    bearer_token_file: SecretPath | None = None
    follow_redirects: bool = False
    # where a redirect may lead: the same origin only, or anywhere (secret headers then stay
    # behind); never from https to http
    redirect_policy: Literal["same-origin", "any"] = "same-origin"
    max_body_bytes: int = Field(_MIB, ge=0, le=1024 * _MIB)
    keepalive: bool = False
    expect_status: StatusList = Field(default_factory=lambda: ["2xx"], min_length=1)
    body_regex: Regex | None = None
    body_not_regex: Regex | None = None
    expect_headers: dict[str, Regex] = Field(default_factory=dict)
    json_path: JsonConditions = Field(default_factory=list)
    verify: bool = True
    ca_file: PemFile | None = None
    cert_file: PemFile | None = None
    key_file: PemFile | None = None
    server_name: str | None = Field(None, min_length=1, max_length=253)
    min_tls_version: TlsVersion | None = None
    cert_expiry_min: CertDuration | None = None

    @cached_property  # parsed once; cheaper to read than a pydantic private attribute
    def parsed_url(self) -> URL:
        return URL(self.url)

    @cached_property  # one per check: it caches the token between probes
    def bearer_token(self) -> files.SecretFile | None:
        return files.SecretFile(self.bearer_token_file) if self.bearer_token_file else None

    @cached_property
    def basic_password(self) -> files.SecretFile | None:
        auth = self.basic_auth
        return files.SecretFile(auth.password_file) if auth and auth.password_file else None

    @property
    def display_target(self) -> str:
        return str(self.parsed_url.with_query(None).with_fragment(None))

    @field_validator("method", mode="before")
    @classmethod
    def _method_token(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.upper()
            if not _METHOD.match(value):
                raise ValueError(f"{value!r} is not an HTTP method")
        return value

    @field_validator("min_tls_version", mode="before")
    @classmethod
    def _version_text(cls, value: object) -> object:
        # YAML reads an unquoted 1.2 as a number
        return f"{value:.1f}" if isinstance(value, float) else value

    @field_validator("headers", "expect_headers")
    @classmethod
    def _header_names(cls, headers: dict[str, object]) -> dict[str, object]:
        seen: set[str] = set()
        for name, value in headers.items():
            if not _HEADER_NAME.match(name):
                raise ValueError(f"{name!r} is not a valid header name")
            if name.lower() in seen:
                raise ValueError(f"header {name!r} is given twice (names ignore case)")
            seen.add(name.lower())
            if isinstance(value, SecretStr) and any(c in value.get_secret_value() for c in "\r\n\0"):
                raise ValueError(f"the value of header {name!r} contains a line break")
        return headers

    @model_validator(mode="after")
    def _consistent(self) -> HttpCheck:
        authorization = any(name.lower() == "authorization" for name in self.headers)
        if sum((authorization, self.basic_auth is not None, self.bearer_token_file is not None)) > 1:
            raise ValueError("use only one of basic_auth, bearer_token_file and an Authorization header")
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file needs cert_file")
        if self.cert_file is not None:
            key = self.key_file or self.cert_file
            if b"ENCRYPTED" in files.read_file(key, files.MAX_PEM_BYTES):
                raise ValueError(f"{key}: the private key is encrypted; healthd needs it unencrypted")
            try:
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                context.load_cert_chain(self.cert_file, self.key_file, password=lambda: b"")
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(f"cert_file/key_file: cannot load the client certificate: {exc}") from None
        if self.ca_file is not None:
            try:
                ssl.create_default_context(cafile=str(self.ca_file))
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(f"ca_file {self.ca_file}: no usable CA certificate: {exc}") from None
        return self
