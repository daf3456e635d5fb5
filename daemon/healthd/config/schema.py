"""A JSON Schema of the config file, for editors (`healthd schema`).

Derived from the pydantic models, so a new option appears by itself; this
module adds what the models do not say: the `defaults:` block, descriptions,
and defaults written as a user would write them (`10s`, not `10.0`). The
schema checks shape and ranges; what needs the whole config (unique names,
timeout within interval, readable files) stays with `healthd check-config`.
"""

from __future__ import annotations

import copy
from typing import Any

from healthd.config.checks import CHECK_MODELS
from healthd.config.model import Config
from healthd.config.types import DURATION_PATTERN, format_duration

DIALECT = "https://json-schema.org/draft/2020-12/schema"

# options a `defaults:` block may not set: they identify a check (as in the loader)
_IDENTITY = ("name", "type", "target", "url")

DESCRIPTIONS: dict[str, str] = {
    # top level
    "server": "The REST API and /metrics listener.",
    "scheduler": "Limits of the probe scheduler.",
    "metrics": "What /metrics exposes.",
    "defaults": "Options applied to every check whose type takes them; a check's own value wins.",
    "cluster": "This instance's shard of the checks; flags and the environment override it.",
    "watch": "true: reload when a config file or a discovery file changes (no SIGHUP needed).",
    "shard_index": "This instance's shard, below shard_count; unset: the pod ordinal when shard_count > 1.",
    "shard_count": "Shards the checks are split into (1-10000).",
    "replicas": "Instances that probe each check (1-10, at most shard_count).",
    "services": "The services, each a named group of checks.",
    # server, scheduler, metrics
    "listen": "HOST:PORT or [IPv6]:PORT of the API; keep it on loopback unless the token is set.",
    "token_file": "File holding the API token: mutating endpoints then need 'Authorization: Bearer <token>'.",
    "protect_reads": "true: GET /api/... needs the token too (/metrics, /healthz, /readyz stay open).",
    "max_in_flight": "Probes running at once across all checks (bounds sockets and bursts).",
    "workers": "Processes that probe: `auto` (one per usable CPU) or 1-64; 1 probes in the main process.",
    "probe_duration_histogram": "Expose the per-check healthd_probe_duration_seconds histogram.",
    "uptime_ratio": 'Expose healthd_check_uptime_ratio{window="24h"|"30d"}.',
    "state_dir": "Directory where state, history and uptime are kept across restarts.",
    "snapshot_interval": "How often the state is written to state_dir (also at stop).",
    "transition_interval": "Interval used while a check is between states; at least timeout.",
    "down_interval": "Interval used while a check is down; at least timeout.",
    # service
    "labels": "Labels shown in the API and in healthd_service_info; names as Prometheus label names.",
    "targets_from": "{file: PATH}: the checks are templates, one per target of this Prometheus file_sd file.",
    "checks": "The checks of this service.",
    # every check
    "name": "Name, [A-Za-z0-9_.-]+; a check's name defaults to its type and is unique within the service.",
    "type": "The check type: tcp, syn, icmp or http.",
    "interval": "Time between two probes of the check.",
    "timeout": "Time a probe may take; at most the interval.",
    "rise": "Consecutive successes that make a check up (1-100).",
    "fall": "Consecutive failures that make a check down (1-100).",
    "history": "Results kept per check (1-10000).",
    "source_ip": "Source address to bind the probe's socket to (multi-WAN).",
    "interface": "Interface to bind the probe's socket to (SO_BINDTODEVICE).",
    "ip_family": "auto (the resolver's order, or source_ip's family), ipv4 or ipv6.",
    # tcp, syn
    "target": "What is probed: HOST:PORT for tcp and syn (HOST a name, IPv4 or [IPv6]); a host for icmp.",
    "close": "tcp: graceful (FIN) or reset (RST, leaves no TIME_WAIT on the prober).",
    # icmp
    "count": "icmp: echo requests per probe (1-1000).",
    "packet_interval": "icmp: time between two requests of one probe.",
    "payload_size": "icmp: bytes of data after the 8-byte ICMP header (56 gives 64-byte messages).",
    "ttl": "icmp: TTL (IPv4) or hop limit (IPv6) of the requests.",
    "dont_fragment": "icmp: refuse fragmentation (IPv4 DF bit, IPV6_DONTFRAG).",
    "max_loss": "icmp: highest lost share (0 to below 1) that still succeeds; unset: any reply succeeds.",
    # http
    "url": "http:// or https:// URL to request; no credentials in it (use basic_auth).",
    "method": "HTTP method, e.g. GET, HEAD, POST.",
    "headers": "Request headers, name -> value; values are secrets, never shown.",
    "body": "Request body, sent as UTF-8.",
    "basic_auth": "Basic authentication: username and exactly one of password, password_file.",
    "username": "Basic authentication user name.",
    "password": "Basic authentication password (a secret).",
    "password_file": "File holding the basic authentication password.",
    "bearer_token_file": "File holding a token, sent as 'Authorization: Bearer <token>'; re-read on change.",
    "follow_redirects": "Follow up to 10 redirects.",
    "redirect_policy": "Where redirects may lead: same-origin, or any (without the check's headers).",
    "max_body_bytes": "Most body bytes read; the verdict sees only these.",
    "keepalive": "Reuse one connection per check between probes.",
    "expect_status": "Status codes (200) and classes (2xx) that pass; one value or a list.",
    "body_regex": "Regex (Python syntax) that must be found in the body.",
    "body_not_regex": "Regex that must not be found in the body.",
    "expect_headers": "Response header name -> regex that one of its values must match.",
    "json_path": "Conditions on the JSON body, all of which must hold, e.g. 'status == \"UP\"'.",
    "verify": "Verify the server's certificate chain and name.",
    "ca_file": "PEM file of CA certificates to trust instead of the system roots.",
    "cert_file": "Client certificate (PEM), with its key unless key_file is set.",
    "key_file": "Unencrypted private key (PEM) of cert_file.",
    "server_name": "Name sent as SNI and checked against the certificate.",
    "min_tls_version": "Lowest TLS version accepted: 1.0, 1.1, 1.2 or 1.3.",
    "cert_expiry_min": "Fail when a certificate the server sent expires sooner than this (e.g. 14d).",
}


# options whose meaning depends on where they are: "MODEL.option" wins over "option"
QUALIFIED: dict[str, str] = {
    "Config.notify": "Where alerts and events go: Alertmanager and webhooks.",
    "NotifyConfig.alertmanager": "Post check and service alerts to Alertmanager's API v2.",
    "NotifyConfig.webhooks": "Receivers of events as JSON POSTs.",
    "AlertmanagerConfig.url": "Alertmanager's base URL; alerts go to {url}/api/v2/alerts.",
    "AlertmanagerConfig.external_url": "Base of generatorURL, when healthd listens on 0.0.0.0 or a proxy.",
    "AlertmanagerConfig.severity": "Value of the severity label.",
    "AlertmanagerConfig.resend_interval": "How often alerts that are firing are posted again.",
    "AlertmanagerConfig.timeout": "One POST's time limit.",
    "AlertmanagerConfig.service_alerts": "Post HealthdServiceDown alerts as well.",
    "AlertmanagerConfig.headers": "Extra request headers; values are secrets, never shown.",
    "WebhookConfig.name": "The receiver's label in metrics and logs; defaults to the URL's host[:port].",
    "WebhookConfig.url": "Where events are POSTed, http:// or https://.",
    "WebhookConfig.events": "Event types to send: check, service, reload, start, stop (default all).",
    "WebhookConfig.headers": "Extra request headers; values are secrets, never shown.",
    "WebhookConfig.secret": "Signs each body: X-Healthd-Signature, sha256= HMAC of the body.",
    "WebhookConfig.timeout": "One POST's time limit.",
    "WebhookConfig.retries": "Retries after the first attempt (5xx, 408, 429, connection errors, timeouts).",
    "WebhookConfig.backoff": "Wait before the first retry; doubles each time, at most 60s.",
    **{
        f"{model.__name__}.labels": "Labels on this check's series and in the API; file_sd adds its own."
        for model in CHECK_MODELS.values()
    },
    "WebhookConfig.queue_size": "Events waiting for this receiver; beyond it new ones are dropped.",
}


def config_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a healthd config file."""
    schema = Config.model_json_schema(mode="validation")
    definitions: dict[str, Any] = schema["$defs"]
    for title, part in (("Config", schema), *definitions.items()):
        for name, prop in part.get("properties", {}).items():
            _polish(QUALIFIED.get(f"{title}.{name}") or DESCRIPTIONS.get(name), prop)
    for model in CHECK_MODELS.values():  # the loader names a check after its type
        required = definitions[model.__name__]["required"]
        required.remove("name")
    _describe_targets_from(definitions)
    schema["properties"]["defaults"] = {
        "description": DESCRIPTIONS["defaults"],
        "anyOf": [_defaults_schema(definitions), {"type": "null"}],
    }
    return {
        "$schema": DIALECT,
        "$id": "https://healthd.invalid/config.schema.json",
        "title": "healthd config",
        "description": "The YAML config of healthd; validate a file fully with `healthd check-config`.",
        **{key: value for key, value in schema.items() if key != "title"},
    }


def _describe_targets_from(definitions: dict[str, Any]) -> None:
    """`targets_from` (read and removed by config.sources); its service's checks are templates.

    A template's strings may hold placeholders (`{{host}}:443`) and its target may be left
    out, so a template is checked for its type and option names only; values are
    `healthd check-config`'s to judge once filled in.
    """
    service = definitions["Service"]
    service["properties"]["targets_from"] = {
        "description": DESCRIPTIONS["targets_from"],
        "type": "object",
        "additionalProperties": False,
        "required": ["file"],
        "properties": {"file": {"type": "string", "description": "Relative to the config file naming it."}},
    }
    checks = service["properties"]["checks"]
    templates = []
    for model in CHECK_MODELS.values():
        check = definitions[model.__name__]
        options = {name: _loose(name, prop) for name, prop in check["properties"].items()}
        definitions[f"{model.__name__}Template"] = {
            "type": "object",
            "additionalProperties": False,
            "required": ["type"],
            "properties": options,
        }
        templates.append({"$ref": f"#/$defs/{model.__name__}Template"})
    service["if"] = {"required": ["targets_from"]}
    service["then"] = {"properties": {"checks": {"items": {"oneOf": templates}}}}
    service["else"] = {"properties": {"checks": {"items": checks.pop("items")}}}


def _loose(name: str, prop: dict[str, Any]) -> dict[str, Any]:
    """A template's option: its description, any value (the type stays exact)."""
    if name == "type":
        return copy.deepcopy(prop)
    return {"description": prop["description"]} if "description" in prop else {}


def _defaults_schema(definitions: dict[str, Any]) -> dict[str, Any]:
    """Every option some check type takes, except those that identify a check."""
    options: dict[str, Any] = {}
    for model in CHECK_MODELS.values():
        for name, prop in definitions[model.__name__]["properties"].items():
            if name not in _IDENTITY:
                options.setdefault(name, copy.deepcopy(prop))
    return {"type": "object", "additionalProperties": False, "properties": options}


def _polish(own: str | None, prop: dict[str, Any]) -> None:
    """Our description, no generated title, and a duration's default as text."""
    prop.pop("title", None)
    duration = _duration_part(prop)
    forms = str(duration.pop("description", "")) if duration is not None else ""
    if own is not None:
        # with a duration's range and forms: "... A duration from 1ms to 7d: use e.g. 250ms, ..."
        prop["description"] = f"{own} {forms[:1].upper()}{forms[1:]}." if forms else own
    if duration is not None and isinstance(prop.get("default"), int | float):
        prop["default"] = format_duration(float(prop["default"]))


def _duration_part(prop: dict[str, Any]) -> dict[str, Any] | None:
    """The duration schema in `prop` (itself, or a variant of an optional one)."""
    for candidate in (prop, *prop.get("anyOf", [])):
        if any(v.get("pattern") == DURATION_PATTERN for v in candidate.get("anyOf", [])):
            return candidate  # type: ignore[no-any-return]
    return None
